"""Serving a dataset: pick a source, read, transform, cache, split.

Sources, in the order `auto` tries them: a cache made earlier from raw files or TFDS, raw
files under `raw_dir`, prepared TFDS data, the embedded subset (mnist_5k only). The first
load reads the source, applies the protocol's transform (PIL, as torchvision) and caches the
uint8 result; later loads read the cache (checked against its manifest). The train/val split
is the original's torch `random_split(seed 42)` applied to the source's train split.

Names other than the registry's (`tfds:NAME`, `npz:PATH`, `py:MODULE:FUNCTION`, or a function
object; `names.parse_name` decides) are served by `custom` with the same cache, checks and
split rule; `describe_dataset` gives the DatasetInfo of any name.
"""

from __future__ import annotations

import hashlib
import pathlib

import numpy as np

from jaxzoo.data import cache, custom, embedded, raw, splits, tfds_source
from jaxzoo.data.errors import DataUnavailableError
from jaxzoo.data.names import is_registry_name, parse_name  # noqa: F401  (re-exported)
from jaxzoo.data.options import SOURCES, DataOptions  # noqa: F401  (re-exported)
from jaxzoo.data.preprocess import apply_transform
from jaxzoo.data.registry import DATASETS, Dataset, DatasetInfo


def sources_of(info: DatasetInfo) -> tuple[str, ...]:
    """The sources that exist for `info` at all (whether or not they are prepared here)."""
    has = {
        "embedded": info.source_name in embedded.SOURCE_NAMES,
        "raw": info.source_name in raw.READERS,
        "tfds": info.source_name in tfds_source.TFDS_NAMES,
    }
    return tuple(source for source, present in has.items() if present)


def check_source(info: DatasetInfo, source: str) -> None:
    """A one-line DataUnavailableError unless `source` is 'auto' or one of the dataset's sources."""
    if source not in SOURCES:
        raise DataUnavailableError(f"unknown data source {source!r}: choose from {SOURCES}")
    if source == "auto" or source in sources_of(info):
        return
    mine = sources_of(info)
    obtain = f"; to obtain it: {how_to_obtain(info)}" if set(mine) - {"embedded"} else ""
    raise DataUnavailableError(
        f"dataset {info.name} has no {source!r} source, only {' or '.join(repr(s) for s in mine)}: set "
        f"--config.data.source (--source for `python -m jaxzoo.data`) to one of them or to 'auto'{obtain}"
    )


def can_serve(info: DatasetInfo, source: str, options: DataOptions) -> bool:
    if source == "embedded":
        return info.source_name in embedded.SOURCE_NAMES
    if source == "raw":
        return info.source_name in raw.READERS and raw.available(options.raw_dir, info.source_name)
    if source == "tfds":
        return tfds_source.prepared(info.source_name, options.tfds_dir)
    return False


def cache_folder(info: DatasetInfo, source: str, image_size: int, options: DataOptions) -> pathlib.Path:
    tag = info.transforms[image_size].tag
    return cache.cache_root(options.cache_dir) / cache.cache_key(info.source_name, source, tag)


def how_to_obtain(info: DatasetInfo) -> str:
    ways = []
    if info.source_name in raw.READERS:
        ways.append(
            "put the published files in a folder and pass it as raw_dir (--config.data.raw_dir=DIR to "
            "train, --raw_dir DIR to `python -m jaxzoo.data prepare`; the files: `python -m jaxzoo.data info`)"
        )
    if info.source_name in tfds_source.TFDS_NAMES:
        ways.append(f"run `python -m jaxzoo.data prepare {info.name}` (TFDS; needs TensorFlow and the network once)")
    return "; or ".join(ways)


def resolve_source(info: DatasetInfo, image_size: int, options: DataOptions) -> str:
    """The source `options.source` names, or the first that can serve `info` when 'auto'."""
    check_source(info, options.source)
    if options.source != "auto":
        return options.source
    for source in ("raw", "tfds"):  # a cache made earlier serves without the source present
        if cache.present(cache_folder(info, source, image_size, options)):
            return source
    for source in ("raw", "tfds", "embedded"):
        if can_serve(info, source, options):
            return source
    raise DataUnavailableError(f"no source on this machine serves {info.name}: {how_to_obtain(info)}")


def read_source(info: DatasetInfo, source: str, options: DataOptions):
    if source == "embedded":
        return embedded.load_raw()
    if source == "raw":
        if not options.raw_dir:
            raise DataUnavailableError(
                f"source 'raw' needs --config.data.raw_dir=DIR holding the {info.source_name} files"
            )
        return raw.READERS[info.source_name](pathlib.Path(options.raw_dir).expanduser())
    return tfds_source.read(info.source_name, options.tfds_dir)


def check_sizes(info: DatasetInfo, native: dict, source: str, strict: bool) -> None:
    n_train, n_val, n_test = info.split_sizes
    expected = {"train": n_train + (0 if "val" in native else n_val), "test": n_test}
    for split, count in expected.items():
        got = len(native[split][1])
        if strict and got != count:
            raise DataUnavailableError(
                f"{info.name} from {source} has {got} {split} images, the protocol needs {count}: "
                "the files are incomplete or of another dataset"
            )


def empty_split(like: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """A split of no images, shaped like `like`."""
    return like[0][:0], like[1][:0]


def describe_dataset(
    name, options: DataOptions = DataOptions(), val_fraction: float = custom.DEFAULT_VAL_FRACTION
) -> DatasetInfo:
    """The DatasetInfo of any dataset name (see `names`): a registry name's entry (no data read);
    for tfds:/npz:/py: names, read from the data (checked, cached like a load; memoised per
    process): split sizes after the val cut, channels, classes, mean/std, the native size, and
    `resizable=True` (any size 1..MAX_IMAGE_SIZE: check with `info.accepts_size(size)`).
    `val_fraction` is the part of the source train split cut off for val when the source gives
    no val split (registry datasets ignore it: their protocol fixes the split)."""
    parsed = parse_name(name)
    if parsed.form == "registry":
        return DATASETS[parsed.name]
    return custom.describe_name(parsed, options, val_fraction)


def load_dataset(
    name,
    image_size: int,
    max_examples_per_split: int = 0,
    options: DataOptions = DataOptions(),
    strict_sizes: bool = True,
    val_fraction: float = custom.DEFAULT_VAL_FRACTION,
    source_order: bool = False,
) -> Dataset:
    """The dataset `name` at `image_size` px: uint8 splits, the protocol's mean/std, its source.

    `name`: a registry name, tfds:NAME, npz:PATH, py:MODULE:FUNCTION or a function (`names`).
    `strict_sizes=False` accepts source splits of other sizes (val keeps the protocol's
    fraction of train): for subsets of the published files and for tests. `val_fraction`:
    for non-registry names without a val split, the part of train cut off for val by the
    seed-42 rule (`custom`); `strict_sizes` does not apply to them. `source_order=True` cuts no
    val: train is the source's train split in its own order (image i is the source's image i),
    val the source's own val split or empty (INR zoos fit the images where they stand).
    """
    parsed = parse_name(name)
    if parsed.form != "registry":
        return custom.load(parsed, image_size, max_examples_per_split, options, val_fraction, source_order)
    info = DATASETS[name]
    if image_size not in info.transforms:
        raise DataUnavailableError(f"dataset {name!r} is used at image sizes {info.image_sizes}, not {image_size}")
    source = resolve_source(info, image_size, options)
    folder = cache_folder(info, source, image_size, options)
    stored = cache.read(folder)
    if stored is None:
        cache.check_writable(options.cache_dir)  # before the (long) read, not after it
        native = read_source(info, source, options)
        check_sizes(info, native, source, strict_sizes)
        transform = info.transforms[image_size]
        stored = {
            split: (apply_transform(images, transform), labels.astype(np.int32))
            for split, (images, labels) in native.items()
        }
        cache.write(folder, stored)
    check_sizes(info, stored, source, strict_sizes)
    if "val" in stored or source_order:
        train, val, method = stored["train"], stored.get("val", empty_split(stored["train"])), "given"
    else:
        n = len(stored["train"][1])
        n_val = info.split_sizes[1] if strict_sizes else round(n * info.split_sizes[1] / sum(info.split_sizes[:2]))
        train_idx, val_idx, method = splits.train_val_split(n, n - n_val, n_val)
        images, labels = stored["train"]
        train, val = (images[train_idx], labels[train_idx]), (images[val_idx], labels[val_idx])
    fingerprint = hashlib.sha256(f"{cache.fingerprint(folder)}-{method}-{len(val[1])}".encode()).hexdigest()[:16]
    dataset = Dataset(name, info.num_classes, train, val, stored["test"], info.mean, info.std, source, fingerprint)
    return dataset.limited(max_examples_per_split)
