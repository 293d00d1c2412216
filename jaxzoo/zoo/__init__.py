"""A zoo on disk: the workdir and its epoch checkpoints, read and written in blocks of models.

checkpoint  the workdir (identity, model table, metrics), epoch writer, seals, `ZooCheckpoints`
blocks      checkpoint layout 2: each epoch's state as Orbax checkpoints of blocks of models
reader      `read_zoo` / `Zoo`: a trained classification zoo and its PyTorch terms
shards      job-array shards and their merge (block folders copied as files)
upgrade     rewrites a layout-1 workdir (before 2026-12-07) in blocks
trees       numpy pytree helpers for populations
"""
