"""Weights as data: flat-vector files (`vectors`), loaders for training on them (`loaders`:
standardisation, augmentation, tokens) and weight-space symmetries (`symmetry`)."""
