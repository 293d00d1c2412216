"""The original train/val split: torch `random_split(train, [n_tr, n_val], Generator().manual_seed(42))`.

random_split takes `randperm(n)` and cuts it: train = perm[:n_tr], val = perm[n_tr:]. The
permutations for every source size the zoos use were computed once with CPU torch 2.13 and
ship in `torch_split_seed42.npz`, so the split is exactly the original's with or without torch.
For another size (e.g. a user's subset) torch computes it when installed; without torch the
split falls back to a numpy permutation with seed 42 and says so.
"""

from __future__ import annotations

import importlib.resources
import logging

import numpy as np

SPLIT_SEED = 42
PERM_FILE = "torch_split_seed42.npz"
log = logging.getLogger("jaxzoo")


def stored_permutation(n: int) -> np.ndarray | None:
    with importlib.resources.files("jaxzoo.data").joinpath(PERM_FILE).open("rb") as f:
        stored = np.load(f)
        return stored[f"n{n}"] if f"n{n}" in stored.files else None


def torch_permutation(n: int, seed: int = SPLIT_SEED) -> np.ndarray | None:
    """torch.randperm(n, generator=manual_seed(seed)), or None without torch."""
    try:
        import torch
    except ImportError:
        return None
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed)).numpy()


def split_permutation(n: int) -> tuple[np.ndarray, str]:
    """-> (permutation of range(n), how it was made: 'torch' or 'numpy')."""
    perm = stored_permutation(n)
    if perm is None:
        perm = torch_permutation(n)
    if perm is not None:
        return perm.astype(np.int64), "torch"
    log.warning(
        "torch is not installed: the train/val split of %d examples uses numpy (seed 42), "
        "not the original's torch random_split",
        n,
    )
    return np.random.default_rng(SPLIT_SEED).permutation(n), "numpy"


def train_val_split(n: int, n_train: int, n_val: int) -> tuple[np.ndarray, np.ndarray, str]:
    """Indices of the train and val parts of a source train split of n examples."""
    if n_train + n_val != n:
        raise ValueError(f"split sizes {n_train} + {n_val} do not add up to the {n} source examples")
    perm, method = split_permutation(n)
    return perm[:n_train], perm[n_train:], method
