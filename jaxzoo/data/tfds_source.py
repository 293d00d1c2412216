"""TensorFlow Datasets as a source: `tfds.data_source` reads prepared array_record files as
numpy, without TensorFlow. Preparing them (`prepare`) needs TensorFlow and the network once.

TFDS stores examples in its own order. Where TFDS keeps the original index in `id`
(cifar10, cifar100: 'train_00042'; svhn_cropped), examples are sorted back into the published
order, so the train/val split equals the original's. MNIST, Fashion-MNIST and STL-10 have no
such id: their train/val split has the original's sizes and seed but other members (say so in
a zoo card); use the raw files for the original membership.
"""

from __future__ import annotations

import re

import numpy as np

from jaxzoo.data.registry import DataUnavailableError

TFDS_NAMES = {
    "mnist": "mnist",
    "fashion_mnist": "fashion_mnist",
    "svhn": "svhn_cropped",
    "cifar10": "cifar10",
    "cifar100": "cifar100",
    "stl10": "stl10",
}


def tfds_module():
    try:
        import tensorflow_datasets as tfds
    except ImportError:
        raise DataUnavailableError(
            "tensorflow-datasets is not installed: pip install 'jaxzoo[tfds]' (or use raw files: "
            "--config.data.source=raw --config.data.raw_dir=DIR)"
        ) from None
    return tfds


def original_order(ids: list[str]) -> np.ndarray | None:
    """Sort order that restores the published order from TFDS ids like 'train_00042'."""
    numbers = [re.search(r"(\d+)$", str(i)) for i in ids]
    if not ids or any(n is None for n in numbers):
        return None
    return np.argsort([int(n.group(1)) for n in numbers], kind="stable")


def read_split(source_name: str, split: str, data_dir: str | None) -> tuple[np.ndarray, np.ndarray]:
    tfds = tfds_module()
    name = TFDS_NAMES[source_name]
    try:
        source = tfds.data_source(name, split=split, data_dir=data_dir or None, download=False)
    except Exception as error:  # tfds raises assertion/IO errors when the data is not prepared
        raise DataUnavailableError(
            f"TFDS {name} is not prepared in {data_dir or 'the default TFDS data_dir'} "
            f"({type(error).__name__}): run `python -m jaxzoo.data prepare {source_name}` where "
            "TensorFlow and the network are available, or use raw files (--config.data.source=raw)"
        ) from None
    images, labels, ids = [], [], []
    for index in range(len(source)):
        example = source[index]
        images.append(np.asarray(example["image"], dtype=np.uint8))
        labels.append(int(example["label"]))
        if "id" in example:
            ids.append(str(np.asarray(example["id"]).item()))
    images_array, labels_array = np.stack(images), np.asarray(labels, np.int64)
    order = original_order(ids) if len(ids) == len(labels) else None
    if order is not None:
        images_array, labels_array = images_array[order], labels_array[order]
    return images_array, labels_array


def read(source_name: str, data_dir: str | None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    return {split: read_split(source_name, split, data_dir) for split in ("train", "test")}


def prepared(source_name: str, data_dir: str | None) -> bool:
    """Whether TFDS holds the prepared dataset (False when tfds is missing)."""
    if source_name not in TFDS_NAMES:
        return False
    try:
        tfds = tfds_module()
        return bool(tfds.builder(TFDS_NAMES[source_name], data_dir=data_dir or None).is_prepared())
    except Exception:  # no tfds, unknown builder version, unreadable data_dir: not servable
        return False


def prepare(source_name: str, data_dir: str | None) -> None:
    """One-time download and preparation in array_record format (needs TensorFlow + network)."""
    tfds = tfds_module()
    try:
        import tensorflow  # noqa: F401  (TFDS builders need it to prepare)
    except ImportError:
        raise DataUnavailableError(
            "preparing TFDS data needs TensorFlow: pip install tensorflow, then rerun "
            f"`python -m jaxzoo.data prepare {source_name}` (reading afterwards needs no TensorFlow)"
        ) from None
    builder = tfds.builder(TFDS_NAMES[source_name], data_dir=data_dir or None, file_format="array_record")
    try:
        builder.download_and_prepare()
    except Exception as error:  # network and extraction failures come in many types
        raise DataUnavailableError(
            f"TFDS could not download/prepare {TFDS_NAMES[source_name]} ({type(error).__name__}: "
            f"{str(error).splitlines()[0] if str(error) else ''}): check the network, or use raw files"
        ) from None
