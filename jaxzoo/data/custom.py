"""Datasets outside the registry: `tfds:NAME`, `npz:PATH`, `py:MODULE:FUNCTION` (see `names`).

What each form must hold
  npz:PATH     a .npz (numpy.savez / savez_compressed) with x_train, y_train, x_test, y_test and
               optionally x_val, y_val (both or neither) and num_classes (an integer): the Keras
               convention. Other entries are ignored.
  py:...       a function called with no arguments that returns a dict with the same keys (any
               array-likes), or Keras's load_data tuple ((x_train, y_train), (x_test, y_test)).
  tfds:NAME    a TFDS dataset prepared (array_record) under tfds_dir whose supervised keys (else
               'image' and 'label') are an Image of one fixed shape and a ClassLabel; train = its
               'train' split, test = its 'test' split (a 'validation' split is not used).
  Images are uint8 0..255, [N, H, W] or [N, H, W, C] with C 1 or 3, one shape in every split;
  labels are integers [N] (or [N, 1]), 0..num_classes-1; no split may be empty.

What is derived (the same for all three forms)
  num_classes  TFDS's ClassLabel count; else the file's num_classes; else max label + 1 over all
               splits.
  val          x_val/y_val when given (val_fraction is then unused); else the source train split
               is cut by the project's seed-42 rule (`splits.train_val_split`, torch's
               random_split with seed 42): round(val_fraction * n) examples go to val.
               val_fraction (default 0.15, 0 for no val) is the `val_fraction` argument of
               `load_dataset` / `describe_dataset`; registry datasets ignore it (their protocol
               fixes the split).
  mean, std    per channel over the train split after the val cut, on the native images at the
               [0, 1] scale (x / 255); population std (ddof 0); computed exactly from integer
               sums, rounded once to float64 and returned as Python floats. A channel with std 0
               is an error (normalising would divide by zero).
  image sizes  the native size H for square images (no transform); any size 1..MAX_IMAGE_SIZE
               other than that is a PIL bilinear resize to size x size (`preprocess.Transform
               (resize=size)`, torchvision's Resize((size, size))); non-square images have no
               native size and are always resized (squashed). `DatasetInfo.resizable` is True:
               check sizes with `info.accepts_size(size)`, not `size in info.image_sizes`.

Cache and identity: as the registry's (`cache`): the checked native splits are cached once per
content, each resized size once, all before-write checks done first. Cache keys (source names)
come from the content: `npz.<sha256 of the file>` (moving or renaming the file keeps the key
and the fingerprint), `py.<sha256 of the returned arrays>` (the function runs on every load),
`tfds.<name.config.version>` (a cache made earlier serves without TFDS). `Dataset.source` is
the form: 'npz', 'callable' or 'tfds'; `Dataset.fingerprint` follows the registry's rule (the
cached uint8 content, the split method and the val size).
"""

from __future__ import annotations

import collections.abc
import dataclasses
import functools
import hashlib
import importlib
import math
import os
import pathlib
import re
import zipfile

import numpy as np

from jaxzoo.data import cache, splits, tfds_source
from jaxzoo.data.errors import DataUnavailableError, describe, exists, one_line, reading
from jaxzoo.data.names import DatasetName
from jaxzoo.data.options import SOURCES, DataOptions
from jaxzoo.data.preprocess import Transform, apply_transform
from jaxzoo.data.registry import MAX_IMAGE_SIZE, Dataset, DatasetInfo
from jaxzoo.errors import UserError

DEFAULT_VAL_FRACTION = 0.15
REQUIRED = ("x_train", "y_train", "x_test", "y_test")
MAX_CLASSES = 1_000_000
SAVEZ = "numpy.savez(path, x_train=..., y_train=..., x_test=..., y_test=...)"
CHUNK_VALUES = 1 << 22  # pixel values per chunk when summing for mean/std


@dataclasses.dataclass(frozen=True)
class Native:
    """The checked native splits of a non-registry dataset and where they are cached."""

    form: str  # 'npz' | 'callable' | 'tfds' (= Dataset.source)
    name: str  # the canonical dataset name
    key: str  # the cache's source name, derived from the content
    folder: pathlib.Path  # the native cache folder
    splits: dict  # 'train', 'test', maybe 'val' -> (uint8 [N, H, W, C], int32 [N])
    num_classes: int
    where: str  # the source in words, for messages and notes


# ---------------------------------------------------------------------------------------------
# Checks shared by npz and callables (and applied to what TFDS returns)


def check_fraction(val_fraction) -> float:
    ok = isinstance(val_fraction, (int, float)) and not isinstance(val_fraction, bool) and 0 <= val_fraction < 1
    if not ok:
        raise DataUnavailableError(
            f"val_fraction={val_fraction!r} is out of range: use a number in [0, 1) "
            "(the part of the train split cut off for val; 0.15 by default)"
        )
    return float(val_fraction)


def as_array(value, key: str, where: str) -> np.ndarray:
    try:
        return np.asarray(value)
    except UserError:
        raise
    except Exception as error:  # ragged lists and odd objects
        raise DataUnavailableError(f"{where}: {key} is not an array ({describe(error)}): give a numpy array") from None


def check_images(x, key: str, where: str) -> np.ndarray:
    x = as_array(x, key, where)
    if x.dtype != np.uint8:
        raise DataUnavailableError(
            f"{where}: {key} is {x.dtype}, not uint8: convert the images to uint8 0..255 "
            "(floats in [0, 1]: (x * 255).round().astype(np.uint8))"
        )
    good_shape = x.ndim == 3 or (x.ndim == 4 and x.shape[-1] in (1, 3))
    if not good_shape or (x.ndim >= 3 and 0 in x.shape[1:3]):
        raise DataUnavailableError(
            f"{where}: {key} has shape {x.shape}: images need [N, H, W] or [N, H, W, C] with C 1 or 3 "
            "(channels last; transpose [N, C, H, W] with x.transpose(0, 2, 3, 1))"
        )
    return np.ascontiguousarray(x[..., None] if x.ndim == 3 else x)


def check_labels(y, key: str, where: str) -> np.ndarray:
    y = as_array(y, key, where)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise DataUnavailableError(
            f"{where}: {key} has shape {y.shape}: labels need [N] (or [N, 1]) class indices "
            "(one-hot labels: y.argmax(1))"
        )
    if not np.issubdtype(y.dtype, np.integer):
        raise DataUnavailableError(
            f"{where}: {key} is {y.dtype}, not integers: give integer class indices 0..C-1 (y.astype(np.int64))"
        )
    if len(y) and (y.min() < 0 or y.max() >= MAX_CLASSES):
        bad = y.min() if y.min() < 0 else y.max()
        raise DataUnavailableError(
            f"{where}: {key} holds label {bad}, out of range: labels must be class indices 0..C-1; "
            "map the classes to 0..C-1"
        )
    return y.astype(np.int32)


def check_splits(arrays, where: str) -> tuple[dict, int]:
    """Checked splits {'train', 'test', maybe 'val': (uint8 NHWC, int32)} and num_classes from a
    mapping of arrays (an NpzFile or a function's dict); one-line DataUnavailableErrors."""
    keys = set(arrays.keys()) if hasattr(arrays, "keys") else set()
    missing = [k for k in REQUIRED if k not in keys]
    if ("x_val" in keys) != ("y_val" in keys):
        missing.append("y_val" if "x_val" in keys else "x_val")
    if missing:
        raise DataUnavailableError(
            f"{where} lacks {', '.join(missing)}: it needs x_train, y_train, x_test, y_test (and optionally "
            f"both x_val, y_val), as {SAVEZ} writes them"
        )
    out = {}
    for split in ("train", "val", "test"):
        if f"x_{split}" not in keys:
            continue
        x = check_images(arrays[f"x_{split}"], f"x_{split}", where)
        y = check_labels(arrays[f"y_{split}"], f"y_{split}", where)
        if len(x) != len(y):
            raise DataUnavailableError(
                f"{where}: x_{split} has {len(x)} images but y_{split} {len(y)} labels: give one label per image"
            )
        if not len(x):
            raise DataUnavailableError(
                f"{where}: the {split} split is empty (x_{split} has 0 images): give every split at least one example"
            )
        out[split] = (x, y)
    shapes = {split: x.shape[1:] for split, (x, _) in out.items()}
    for split, shape in shapes.items():
        if shape != shapes["train"]:
            text = lambda s: "x".join(map(str, s))
            raise DataUnavailableError(
                f"{where}: x_{split} images are {text(shape)}, x_train's {text(shapes['train'])}: give every "
                "split the same image shape (resize them first)"
            )
    train = out["train"][0].reshape(-1, out["train"][0].shape[-1])
    constant = np.flatnonzero(train.min(0) == train.max(0))
    if len(constant):
        raise DataUnavailableError(
            f"{where}: channel {constant[0]} of x_train is constant ({train[0, constant[0]]}), its std is 0 and "
            "normalising would divide by zero: check the images"
        )
    top = max(int(y.max()) for _, y in out.values()) + 1
    num_classes = top
    if "num_classes" in keys:
        declared = np.asarray(arrays["num_classes"])
        if declared.shape != () or not np.issubdtype(declared.dtype, np.integer) or not 1 <= declared <= MAX_CLASSES:
            raise DataUnavailableError(
                f"{where}: num_classes is {one_line(repr(declared))}, not a positive "
                "integer: store the class count as an int (or leave it out)"
            )
        num_classes = int(declared)
        if top > num_classes:
            split = next(s for s, (_, y) in out.items() if y.max() + 1 == top)
            raise DataUnavailableError(
                f"{where}: y_{split} holds label {top - 1} but num_classes is {num_classes}: labels must be "
                f"0..{num_classes - 1}; fix the labels or num_classes"
            )
    return out, num_classes


def content_digest(split_arrays: dict, num_classes: int) -> str:
    """sha256 of the checked arrays (shapes, dtypes, bytes) and the class count."""
    digest = hashlib.sha256(f"classes={num_classes}".encode())
    for split in sorted(split_arrays):
        for kind, array in zip(("images", "labels"), split_arrays[split]):
            digest.update(f"|{split}_{kind}:{array.dtype}:{array.shape}|".encode())
            digest.update(np.ascontiguousarray(array).data)
    return digest.hexdigest()


# ---------------------------------------------------------------------------------------------
# The three sources


def native_folder(key: str, form: str, options: DataOptions) -> pathlib.Path:
    return cache.cache_root(options.cache_dir) / cache.cache_key(key, form, Transform().tag)


def cached_or_write(folder: pathlib.Path, checked: dict | None, num_classes: int | None, options) -> tuple[dict, int]:
    """The splits of `folder` if cached (with their class count), else `checked` written there."""
    stored = cache.read(folder)
    if stored is not None:
        declared = int(cache.read_meta(folder).get("num_classes", 0))
        return stored, declared or max(int(y.max()) for _, y in stored.values()) + 1
    cache.check_writable(options.cache_dir)
    cache.write(folder, checked, {"num_classes": num_classes})
    return checked, num_classes


def npz_native(target: str, name: str, options) -> Native:
    path = pathlib.Path(target).expanduser()
    where = f"npz file {path}"
    if not exists(path):
        raise DataUnavailableError(
            f"npz file {path} does not exist (from {os.getcwd()}): give the path of a .npz written by {SAVEZ}"
        )
    fix = f"write it again with {SAVEZ} of uint8 images and integer labels"
    with reading(path, fix):
        is_zip = zipfile.is_zipfile(path)
    if not is_zip:
        raise DataUnavailableError(f"file {path} is not a .npz (not a zip archive): write the arrays with {SAVEZ}")
    with reading(path, fix):
        digest = cache.sha256(path)[:20]
    key = f"npz.{digest}"
    folder = native_folder(key, "npz", options)
    checked = num_classes = None
    if not cache.present(folder):  # checked before anything is written
        with reading(path, fix), np.load(path, allow_pickle=False) as npz:
            checked, num_classes = check_splits(npz, where)
    stored, num_classes = cached_or_write(folder, checked, num_classes, options)
    return Native("npz", name, key, folder, stored, num_classes, where)


def resolve_function(target, name: str):
    """The function `target` names ('MODULE:FUNCTION', FUNCTION possibly dotted), or `target` itself."""
    if callable(target) and not isinstance(target, str):
        return target
    module_name, _, attribute = str(target).partition(":")
    if not module_name or not attribute or not all(part.isidentifier() for part in attribute.split(".")):
        raise DataUnavailableError(
            f"dataset name {name!r} is not py:MODULE:FUNCTION: write it like py:mypackage.data:make_splits"
        )
    try:
        module = importlib.import_module(module_name)
    except Exception as error:  # the module's own code may raise anything
        raise DataUnavailableError(
            f"cannot import module {module_name!r} of dataset {name!r} ({describe(error)}): check the name and "
            "put the module on PYTHONPATH (or install its package)"
        ) from None
    function = module
    for part in attribute.split("."):
        if not hasattr(function, part):
            raise DataUnavailableError(
                f"module {module_name} has no {attribute!r} (dataset {name!r}): name a function defined there"
            )
        function = getattr(function, part)
    if not callable(function):
        raise DataUnavailableError(
            f"{module_name}:{attribute} is not a function (type {type(function).__name__}) "
            f"(dataset {name!r}): name a function that returns the splits"
        )
    return function


def as_mapping(result, name: str):
    """A function's result as a mapping: a dict, or Keras's ((x_train, y_train), (x_test, y_test))."""
    if isinstance(result, collections.abc.Mapping):
        return result
    pairs = (
        isinstance(result, (tuple, list))
        and len(result) == 2
        and all(isinstance(pair, (tuple, list)) and len(pair) == 2 for pair in result)
    )
    if pairs:
        (x_train, y_train), (x_test, y_test) = result
        return {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}
    raise DataUnavailableError(
        f"{name} returned a {type(result).__name__}, not a dict of splits: return {{'x_train': ..., 'y_train': "
        "..., 'x_test': ..., 'y_test': ...} of numpy arrays (or Keras's ((x_train, y_train), (x_test, y_test)))"
    )


def callable_native(target, name: str, options) -> Native:
    function = resolve_function(target, name)
    try:
        result = function()
    except UserError:
        raise
    except Exception as error:  # the user's code may raise anything
        raise DataUnavailableError(
            f"{name} raised {describe(error)}: fix the function (it is called with no arguments and returns the splits)"
        ) from None
    where = f"the splits {name} returned"
    checked, num_classes = check_splits(as_mapping(result, name), where)
    key = f"py.{content_digest(checked, num_classes)[:20]}"
    folder = native_folder(key, "callable", options)
    if not cache.present(folder):  # the content is the key: a present cache holds `checked`
        cache.check_writable(options.cache_dir)
        cache.write(folder, checked, {"num_classes": num_classes})
    return Native("callable", name, key, folder, checked, num_classes, where)


def tfds_keys(info) -> tuple[str, str] | None:
    keys = getattr(info, "supervised_keys", None) or ("image", "label")
    ok = isinstance(keys, (tuple, list)) and len(keys) == 2 and all(isinstance(k, str) for k in keys)
    return tuple(keys) if ok else None


def tfds_native(target: str, name: str, options) -> Native:
    tfds = tfds_source.tfds_module()
    data_dir = options.tfds_dir or None
    place = options.tfds_dir or "the default TFDS data_dir (~/tensorflow_datasets)"
    try:
        with tfds_source.quiet():
            builder = tfds.builder(target, data_dir=data_dir)
            info = builder.info
    except Exception as error:  # unknown name, config or version
        if type(error).__name__ == "DatasetNotFoundError":
            raise DataUnavailableError(
                f"TFDS has no dataset {target.split('/')[0].split(':')[0]!r} ({name}): check "
                "the name against the TFDS catalog (tfds.list_builders())"
            ) from None
        raise DataUnavailableError(
            f"TFDS cannot open {target} ({describe(error)}): check the config and version "
            "(tfds:NAME, tfds:NAME/CONFIG, tfds:NAME:VERSION)"
        ) from None
    full = info.full_name
    keys = tfds_keys(info)
    features = getattr(info, "features", None) or {}
    image = features[keys[0]] if keys and keys[0] in features else None
    label = features[keys[1]] if keys and keys[1] in features else None
    if not (isinstance(image, tfds.features.Image) and isinstance(label, tfds.features.ClassLabel)):
        raise DataUnavailableError(
            f"TFDS {full} is not an image classification dataset (supervised keys {keys}, features "
            f"{sorted(features.keys()) if hasattr(features, 'keys') else features}): use one with an Image and a "
            "ClassLabel, or a py:MODULE:FUNCTION that returns uint8 splits"
        )
    shape = tuple(image.shape)
    dtype = np.dtype(getattr(image, "np_dtype", np.uint8))
    where = f"TFDS {full}"
    if None in shape or len(shape) != 3 or shape[-1] not in (1, 3) or dtype != np.uint8:
        raise DataUnavailableError(
            f"{where} has images of shape {shape} {dtype}, not one fixed HxWx1 or HxWx3 uint8 "
            "shape: resize them to one size in a py:MODULE:FUNCTION (or an npz:PATH) that returns uint8 splits"
        )
    known = sorted(info.splits.keys()) if getattr(info, "splits", None) else []
    absent = [split for split in ("train", "test") if known and split not in known]
    if absent:
        raise DataUnavailableError(
            f"{where} has no {' or '.join(repr(s) for s in absent)} split, only {known}: jaxzoo takes train from "
            "'train' and test from 'test'; build the splits you want in a py:MODULE:FUNCTION that returns "
            "x_train, y_train, x_test, y_test"
        )
    num_classes = int(label.num_classes or 0)  # 0: a ClassLabel without a count (max label + 1 below)
    key = "tfds." + re.sub(r"[^A-Za-z0-9_.-]", "_", full.replace("/", "."))
    folder = native_folder(key, "tfds", options)
    checked = None
    if not cache.present(folder):  # a cache made earlier serves without the TFDS files
        cache.check_writable(options.cache_dir)  # before the (long) read, not after it
        again = f"delete it and prepare {target} again (`python -m jaxzoo.data prepare {name}`)"
        arrays = {}
        for split in ("train", "test"):
            try:
                with tfds_source.quiet():
                    source = tfds.data_source(target, split=split, data_dir=data_dir, download=False)
            except Exception:  # not prepared, or prepared without random access
                with tfds_source.quiet():
                    try:
                        prepared = builder.is_prepared()
                    except Exception:
                        prepared = False
                state = "is prepared without random access (tfrecord)" if prepared else f"is not prepared in {place}"
                raise DataUnavailableError(
                    f"TFDS {full} {state}: run `python -m jaxzoo.data prepare {name}` "
                    "(add --tfds_dir DIR; needs TensorFlow and the network once) and pass --config.data.tfds_dir=DIR"
                ) from None
            source_where = getattr(getattr(source, "dataset_info", None), "data_dir", None) or where
            arrays[f"x_{split}"], arrays[f"y_{split}"] = tfds_source.read_examples(source, source_where, again, *keys)
        checked, top = check_splits(arrays, where)
        num_classes = num_classes or top
        for split, (_, y) in checked.items():
            if y.max() >= num_classes:
                raise DataUnavailableError(
                    f"{where}: its {split} split holds label {y.max()}, outside its {num_classes} classes: "
                    "filter such examples in a py:MODULE:FUNCTION that returns the splits"
                )
    stored, num_classes = cached_or_write(folder, checked, num_classes, options)
    return Native("tfds", name, key, folder, stored, num_classes, where)


READERS = {"npz": npz_native, "callable": callable_native, "tfds": tfds_native}


def check_options(parsed: DatasetName, options) -> None:

    allowed = ("auto", "tfds") if parsed.form == "tfds" else ("auto",)
    if options.source not in SOURCES or options.source not in allowed:
        raise DataUnavailableError(
            f"data source {options.source!r} is for registry datasets; {parsed.name!r} is read from its "
            f"{'TFDS files' if parsed.form == 'tfds' else parsed.form}: set --config.data.source to 'auto'"
        )


def read_native(parsed: DatasetName, options) -> Native:
    """The checked native splits of a non-registry dataset (from the cache, else its source)."""
    check_options(parsed, options)
    return READERS[parsed.form](parsed.target, parsed.name, options)


# ---------------------------------------------------------------------------------------------
# Derived: the val cut, mean/std, the DatasetInfo, the Dataset


def val_cut(stored: dict, val_fraction: float, where: str):
    """-> (train, val, method): the given val split, else the seed-42 cut of round(fraction * n)."""
    if "val" in stored:
        return stored["train"], stored["val"], "given"
    images, labels = stored["train"]
    n = len(labels)
    n_val = round(n * val_fraction)
    if n - n_val < 1:
        raise DataUnavailableError(
            f"{where}: val_fraction={val_fraction} leaves none of the {n} train examples "
            "for training: lower val_fraction"
        )
    train_idx, val_idx, method = splits.train_val_split(n, n - n_val, n_val)
    return (images[train_idx], labels[train_idx]), (images[val_idx], labels[val_idx]), method


def channel_stats(images: np.ndarray, where: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and population std of uint8 NHWC images on the [0, 1] scale (exact sums)."""
    channels = images.shape[-1]
    flat = images.reshape(-1, channels)
    total = np.zeros(channels, np.int64)
    squares = np.zeros(channels, np.int64)
    step = max(1, CHUNK_VALUES // channels)
    for start in range(0, len(flat), step):
        chunk = flat[start : start + step].astype(np.int64)
        total += chunk.sum(0)
        squares += (chunk * chunk).sum(0)
    count = len(flat)
    means, stds = [], []
    for c in range(channels):
        s, q = int(total[c]), int(squares[c])
        means.append(s / (count * 255))
        variance = (count * q - s * s) / (count * count * 255 * 255)  # exact integers, one rounding
        if variance <= 0:
            raise DataUnavailableError(
                f"{where}: channel {c} of the train images is constant ({s // count}), its "
                "std is 0 and normalising would divide by zero: check the images"
            )
        stds.append(math.sqrt(variance))
    return tuple(means), tuple(stds)


def describe_native(native: Native, val_fraction: float) -> DatasetInfo:
    """The DatasetInfo of checked native splits; its mean/std need one pass over the train split,
    done once per process for each (content, val_fraction)."""
    key = (native.key, native.form, native.name, val_fraction)
    cached = _STATS.get(key)
    if cached is None:
        train, val, _ = val_cut(native.splits, val_fraction, native.where)
        images = train[0]
        mean, std = channel_stats(images, native.where)
        height, width, channels = images.shape[1:]
        val_note = (
            "val given by the source"
            if "val" in native.splits
            else f"val = round({val_fraction} x train) cut by the seed-42 rule"
        )
        cached = DatasetInfo(
            name=native.name,
            source_name=native.key,
            channels=channels,
            transforms={height: Transform()} if height == width else {},
            num_classes=native.num_classes,
            split_sizes=(len(train[1]), len(val[1]), len(native.splits["test"][1])),
            mean=mean,
            std=std,
            notes=f"{native.where}; {height}x{width}x{channels} native, any size 1..{MAX_IMAGE_SIZE} by resize; "
            f"{val_note}; mean/std of the train split",
            resizable=True,
        )
        if len(_STATS) >= 64:  # a bounded memo: the oldest entry goes
            _STATS.pop(next(iter(_STATS)))
        _STATS[key] = cached
    return cached


_STATS: dict = {}  # (content key, form, name, val_fraction) -> DatasetInfo


def file_stamp(parsed: DatasetName):
    """What makes a memoised description stale: an npz file's absolute path, size and mtime."""
    if parsed.form != "npz":
        return None
    try:
        path = pathlib.Path(parsed.target).expanduser().absolute()
        stat = path.stat()
        return (str(path), stat.st_size, stat.st_mtime_ns)
    except OSError:
        return None


@functools.lru_cache(maxsize=64)
def describe_cached(parsed: DatasetName, options, val_fraction: float, stamp) -> DatasetInfo:
    return describe_native(read_native(parsed, options), val_fraction)


def describe_name(parsed: DatasetName, options, val_fraction: float) -> DatasetInfo:
    val_fraction = check_fraction(val_fraction)
    try:
        return describe_cached(parsed, options, val_fraction, file_stamp(parsed))
    except TypeError as error:  # an unhashable function object: describe without memo
        if "unhashable" not in str(error):
            raise
        return describe_native(read_native(parsed, options), val_fraction)


def load(
    parsed: DatasetName,
    image_size: int,
    max_examples_per_split: int,
    options,
    val_fraction: float,
    source_order: bool = False,
) -> Dataset:
    """`load_dataset` for the non-registry forms."""
    val_fraction = check_fraction(val_fraction)
    native = read_native(parsed, options)
    info = describe_native(native, val_fraction)
    transform = info.transform_for(image_size)
    if transform.tag == Transform().tag:
        folder, stored = native.folder, native.splits
    else:
        folder = cache.cache_root(options.cache_dir) / cache.cache_key(native.key, native.form, transform.tag)
        stored = cache.read(folder)
        if stored is None:
            cache.check_writable(options.cache_dir)
            stored = {split: (apply_transform(x, transform), y) for split, (x, y) in native.splits.items()}
            cache.write(folder, stored, {"num_classes": native.num_classes})
    if source_order:
        train, method = stored["train"], "given"
        val = stored.get("val", (train[0][:0], train[1][:0]))
    else:
        train, val, method = val_cut(stored, val_fraction, native.where)
    fingerprint = hashlib.sha256(f"{cache.fingerprint(folder)}-{method}-{len(val[1])}".encode()).hexdigest()[:16]
    dataset = Dataset(
        native.name, native.num_classes, train, val, stored["test"], info.mean, info.std, native.form, fingerprint
    )
    return dataset.limited(max_examples_per_split)
