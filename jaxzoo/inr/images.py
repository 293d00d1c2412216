"""The images of an INR zoo: which image of the dataset each model fits.

Images are numbered in train-then-test order of the source dataset (a source's own val split
counts as train, after the train images), the order NFN's `net{idx}` files use; `images.splits`
picks the splits and `images.first`/`images.count` a range of what they hold. No val split is
cut from train: an INR zoo fits the images where the source has them.
"""

from __future__ import annotations

import dataclasses

import ml_collections
import numpy as np

from jaxzoo.config import ConfigError, data_options
from jaxzoo.data import Dataset, load_dataset


@dataclasses.dataclass(frozen=True)
class InrImages:
    """The fitted images, one row each: uint8 pixels [N, H, W, C], int32 labels [N], the image
    index [N] (train-then-test order), its source split ('train'|'test') and its index there."""

    pixels: np.ndarray
    labels: np.ndarray
    image_index: np.ndarray
    split: np.ndarray
    split_index: np.ndarray
    num_classes: int
    dataset: Dataset

    def __len__(self) -> int:
        return len(self.labels)


def source_splits(dataset: Dataset) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{'train': the source's train (then val) images, 'test': its test images}."""
    train = tuple(np.concatenate([a, b]) for a, b in zip(dataset.train, dataset.val))
    return {"train": train, "test": dataset.test}


def select_images(dataset: Dataset, splits, first: int, count: int) -> InrImages:
    """The images `splits` hold, from position `first`, `count` of them (0: all the rest)."""
    parts = source_splits(dataset)
    offsets = {"train": 0, "test": len(parts["train"][1])}
    pixels, labels, index, split, split_index = [], [], [], [], []
    for name in splits:
        x, y = parts[name]
        pixels.append(x)
        labels.append(y)
        index.append(offsets[name] + np.arange(len(y)))
        split.append(np.full(len(y), name))
        split_index.append(np.arange(len(y)))
    total = sum(len(y) for y in labels)
    if first >= total:
        raise ConfigError(
            f"images.first={first} is past the {total} images of splits {list(splits)}: use 0..{total - 1}"
        )
    end = total if not count else first + count
    if end > total:
        raise ConfigError(
            f"images.count={count} from images.first={first} needs {end} images, splits "
            f"{list(splits)} hold {total}: lower images.count (0: all the rest)"
        )
    cut = lambda arrays: np.concatenate(arrays)[first:end]
    return InrImages(
        cut(pixels),
        cut(labels).astype(np.int32),
        cut(index),
        cut(split),
        cut(split_index),
        dataset.num_classes,
        dataset,
    )


def load_images(config: ml_collections.ConfigDict) -> InrImages:
    """The images an INR config fits (read, cached and checked like a classification zoo's data)."""
    data = config.data
    dataset = load_dataset(data.name, data.image_size, options=data_options(config), source_order=True)
    return select_images(dataset, tuple(config.images.splits), config.images.first, config.images.count)
