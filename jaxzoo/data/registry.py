"""Which datasets the zoos use, their shapes, splits and normalisation (zoo-spec §2).

`load_dataset(name, image_size)` returns float32 NHWC arrays, normalised as the original.
This registry knows every dataset of the paper; which sources can serve each one on this
machine is decided by the loaders. Today the embedded `mnist_5k` is always available.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from jaxzoo.data import embedded
from jaxzoo.errors import UserError


class DataUnavailableError(UserError):
    """A known dataset that no source on this machine can serve (the message says the fix)."""


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    name: str
    channels: int
    image_sizes: tuple[int, ...]  # the sizes the zoos train at (resize/crop per zoo-spec §2)
    num_classes: int
    split_sizes: tuple[int, int, int]  # train, val, test
    mean: tuple[float, ...]
    std: tuple[float, ...]


DATASETS = {
    info.name: info
    for info in (
        DatasetInfo("mnist_5k", 1, (28,), 10, (3500, 750, 750), (0.1307,), (0.3081,)),
        DatasetInfo("mnist", 1, (28,), 10, (50000, 10000, 10000), (0.1307,), (0.3081,)),
        DatasetInfo("fashion_mnist", 1, (28,), 10, (50000, 10000, 10000), (0.5,), (0.5,)),
        DatasetInfo("svhn", 1, (28,), 10, (60000, 13257, 26032), (0.5,), (0.5,)),
        DatasetInfo("usps", 1, (28,), 10, (6000, 1291, 2007), (0.1307,), (0.3081,)),
        DatasetInfo("cifar10", 3, (28, 32), 10, (42000, 8000, 10000), (0.5,) * 3, (0.5,) * 3),
        DatasetInfo("stl10", 3, (28, 32), 10, (4200, 800, 8000), (0.5,) * 3, (0.5,) * 3),
    )
}


@dataclasses.dataclass(frozen=True)
class Dataset:
    """Preprocessed splits: images float32 [N, H, W, C], labels int32 [N]."""

    name: str
    num_classes: int
    train: tuple[np.ndarray, np.ndarray]
    val: tuple[np.ndarray, np.ndarray]
    test: tuple[np.ndarray, np.ndarray]

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.train[0].shape[1:])


def normalise(images: np.ndarray, info: DatasetInfo) -> np.ndarray:
    """uint8 0..255 -> (x/255 - mean) / std per channel, float32 (ToTensor + Normalize)."""
    mean = np.asarray(info.mean, np.float32)
    std = np.asarray(info.std, np.float32)
    return ((images.astype(np.float32) / 255.0 - mean) / std).astype(np.float32)


def load_dataset(name: str, image_size: int, max_examples_per_split: int = 0) -> Dataset:
    """The dataset `name` at `image_size` pixels, ready for training.

    `max_examples_per_split` > 0 keeps the first N examples of each split (quick runs, tests).
    """
    if name not in DATASETS:
        raise DataUnavailableError(f"unknown dataset {name!r}; choose one of {sorted(DATASETS)}")
    info = DATASETS[name]
    if image_size not in info.image_sizes:
        raise DataUnavailableError(
            f"dataset {name!r} is used at image sizes {info.image_sizes}, not {image_size}"
        )
    if name != "mnist_5k":
        raise DataUnavailableError(
            f"no source for dataset {name!r} on this machine yet (only the embedded 'mnist_5k' is "
            "available): set --config.data.name=mnist_5k"
        )
    try:
        raw = embedded.load_raw()
    except (FileNotFoundError, ValueError) as error:
        raise DataUnavailableError(str(error)) from None
    limit = max_examples_per_split or None
    splits = {split: (normalise(x[:limit], info), y[:limit]) for split, (x, y) in raw.items()}
    return Dataset(name, info.num_classes, splits["train"], splits["val"], splits["test"])
