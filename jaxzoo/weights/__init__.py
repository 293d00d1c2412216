"""Weights as data: flat-vector files (`vectors`), loaders for training on them (`loaders`:
standardisation, augmentation, tokens), weight-space symmetries (`symmetry`, and on the device
`augment`), permutation specs as JSON (`perm_spec`), SANE's tokens (`sane`), adapters from flat
vectors to what weight-space methods and frameworks take, and back (`adapters`: PyTorch
state_dicts, NFN, DWSNets, ScaleGMN, Flax params), and scoring many weight vectors on a zoo's
data (`evaluate`)."""
