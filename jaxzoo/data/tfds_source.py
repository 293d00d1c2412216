"""TensorFlow Datasets as a source: `tfds.data_source` reads prepared array_record files as
numpy, without TensorFlow. Preparing them (`prepare`) needs TensorFlow and the network once.

TFDS stores examples in its own order. Where TFDS keeps the original index in `id`
(cifar10, cifar100: 'train_00042'; svhn_cropped), examples are sorted back into the published
order, so the train/val split equals the original's. MNIST, Fashion-MNIST and STL-10 have no
such id: their train/val split has the original's sizes and seed but other members (say so in
a zoo card); use the raw files for the original membership.

TFDS and absl log warnings such as "Variant folder ... has no dataset_info.json" for every
folder they look at; every TFDS call runs under `quiet()`, which keeps them off the terminal.
JAXZOO_VERBOSE=1 in the environment (which the CLIs' --verbose sets) shows them.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import warnings
from collections.abc import Iterator

import numpy as np

from jaxzoo.data.errors import DataUnavailableError, reading

TFDS_NAMES = {
    "mnist": "mnist",
    "fashion_mnist": "fashion_mnist",
    "svhn": "svhn_cropped",
    "cifar10": "cifar10",
    "cifar100": "cifar100",
    "stl10": "stl10",
}


# The loggers TFDS and the libraries under it write to (absl.logging logs to "absl").
CHATTY_LOGGERS = ("absl", "tensorflow_datasets", "tensorflow", "etils", "array_record")


def verbose() -> bool:
    """Whether library chatter is shown: JAXZOO_VERBOSE set to other than '' or '0'."""
    return os.environ.get("JAXZOO_VERBOSE", "") not in ("", "0")


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Around TFDS calls: their loggers' warnings and info lines and Python warnings are dropped
    (errors still show), unless `verbose()`; the loggers' levels are restored afterwards."""
    if verbose():
        yield
        return
    loggers = [logging.getLogger(name) for name in CHATTY_LOGGERS]
    levels = [logger.level for logger in loggers]
    try:
        for logger in loggers:
            logger.setLevel(logging.ERROR)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def tfds_module():
    try:
        with quiet():
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
        with quiet():
            source = tfds.data_source(name, split=split, data_dir=data_dir or None, download=False)
    except Exception as error:  # tfds raises assertion/IO errors when the data is not prepared
        raise DataUnavailableError(
            f"TFDS {name} is not prepared in {data_dir or 'the default TFDS data_dir'} "
            f"({type(error).__name__}): run `python -m jaxzoo.data prepare {source_name}` where "
            "TensorFlow and the network are available, or use raw files (--config.data.source=raw)"
        ) from None
    where = getattr(getattr(source, "dataset_info", None), "data_dir", None) or f"TFDS {name} in {data_dir or '~'}"
    again = f"delete it and run `python -m jaxzoo.data prepare {source_name}` again"
    return read_examples(source, where, again)


def read_examples(
    source, where, again: str, image_key: str = "image", label_key: str = "label"
) -> tuple[np.ndarray, np.ndarray]:
    """All examples of an opened TFDS data source -> (uint8 images [N, ...], int64 labels [N]),
    in the published order where the examples carry an id; a damaged file is `damaged(where)`."""
    images, labels, ids = [], [], []
    with reading(where, again), quiet():  # array_record files damaged after preparing
        for index in range(len(source)):
            example = source[index]
            images.append(np.asarray(example[image_key], dtype=np.uint8))
            labels.append(int(example[label_key]))
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
        with quiet():
            return bool(tfds.builder(TFDS_NAMES[source_name], data_dir=data_dir or None).is_prepared())
    except Exception:  # no tfds, unknown builder version, unreadable data_dir: not servable
        return False


def prepare(source_name: str, data_dir: str | None) -> None:
    """One-time download and preparation in array_record format (needs TensorFlow + network)."""
    prepare_named(TFDS_NAMES[source_name], data_dir, f"`python -m jaxzoo.data prepare {source_name}`")


def prepare_named(tfds_name: str, data_dir: str | None, rerun: str) -> None:
    """`prepare` for any TFDS name (NAME, NAME/CONFIG, NAME:VERSION); `rerun` is the command to repeat."""
    tfds = tfds_module()
    try:
        import tensorflow  # noqa: F401  (TFDS builders need it to prepare)
    except ImportError:
        raise DataUnavailableError(
            f"preparing TFDS data needs TensorFlow: pip install tensorflow, then rerun {rerun} "
            "(reading afterwards needs no TensorFlow)"
        ) from None
    try:
        with quiet():  # download progress bars still show (they are not logs)
            builder = tfds.builder(tfds_name, data_dir=data_dir or None, file_format="array_record")
            builder.download_and_prepare()
    except Exception as error:  # network and extraction failures come in many types
        raise DataUnavailableError(
            f"TFDS could not download/prepare {tfds_name} ({type(error).__name__}: "
            f"{str(error).splitlines()[0] if str(error) else ''}): check the network, or use raw files"
        ) from None
