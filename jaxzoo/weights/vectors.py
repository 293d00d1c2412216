"""Flat-vector dataset files (an export's `vectors/` folder): one `<split>.safetensors` (weights
[rows, P] and numeric properties) and one `<split>.json` (counts, categorical properties, the
vector layout) per split, written under temporary names and renamed when complete.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
from collections.abc import Callable, Iterable

import numpy as np
from safetensors.numpy import load_file

from jaxzoo.errors import UserError

SPLITS = ("train", "val", "test")
SPLIT_ALIASES = {"validation": "val"}  # Hugging Face's name of the val split (parquet/val.parquet)
DEFAULT_THRESHOLD = 5.0  # rows (models) with a weight |w| above it are not viable, as the original


class VectorFileError(UserError):
    """A flat-vector folder that cannot be read (the message names the problem and the fix)."""


class LoaderError(UserError):
    """Bad loader input: not a flat-vector folder, unknown split, epochs not exported, unsupported
    layout, bad options (`jaxzoo.weights.loaders`, `jaxzoo.torch.ZooVectorDataset`)."""


def split_name(split: str) -> str:
    """A split's name in jaxzoo's files ('train', 'val', 'test'); 'validation', the name Hugging
    Face gives val.parquet, is taken for 'val'. LoaderError for any other name."""
    name = SPLIT_ALIASES.get(split, split)
    if name not in SPLITS:
        raise LoaderError(f"unknown split {split!r}: choose from {SPLITS} ('validation' is taken for 'val')")
    return name


def check_layout(index_dict: dict) -> None:
    """Refuses layouts other than the CNN / MLP index_dict in one line."""
    keys = ("idx_start", "kernel_no", "kernel_size", "channels_in")
    if "tensors" in index_dict or not all(k in index_dict for k in keys):
        raise LoaderError(
            "these vectors have a per-tensor layout (ResNet or custom modules): the loaders "
            "support only the CNN / MLP layouts (index_dict with idx_start, kernel_no, ...)"
        )


@dataclasses.dataclass(frozen=True)
class Layer:
    """One layer's place in the flat vector: weight [units, fan_in] at `start`, bias [units] after it."""

    start: int
    units: int
    fan_in: int  # channels_in * kernel_size

    @property
    def bias_start(self) -> int:
        return self.start + self.units * self.fan_in

    @property
    def end(self) -> int:
        return self.bias_start + self.units


def layers(index_dict: dict) -> list[Layer]:
    check_layout(index_dict)
    return [
        Layer(int(s), int(n), int(c) * int(k))
        for s, n, k, c in zip(
            index_dict["idx_start"], index_dict["kernel_no"], index_dict["kernel_size"], index_dict["channels_in"]
        )
    ]


@dataclasses.dataclass
class VectorSplit:
    """One split of an exported flat-vector dataset: weights [rows, P], properties per row."""

    weights: np.ndarray
    properties: dict[str, np.ndarray | list]
    index_dict: dict


def take_rows(data: VectorSplit, keep: np.ndarray) -> VectorSplit:
    """The rows of `data` where `keep` [rows] bool is True, in order: weights and every property."""
    index = np.flatnonzero(keep)
    properties = {
        k: (v[index] if isinstance(v, np.ndarray) else [v[i] for i in index]) for k, v in data.properties.items()
    }
    return VectorSplit(np.ascontiguousarray(data.weights[index]), properties, data.index_dict)


def load_vectors_split(folder: pathlib.Path, split: str) -> VectorSplit:
    split = split_name(split)
    for part in (folder / f"{split}.safetensors", folder / f"{split}.json"):
        if not part.is_file():
            raise VectorFileError(
                f"{part} is missing: pass a flat-vector folder written by python -m jaxzoo.export (its vectors/ folder)"
            )
    try:
        tensors = load_file(str(folder / f"{split}.safetensors"))
        meta = json.loads((folder / f"{split}.json").read_text())
    except Exception as error:  # safetensors and json raise their own types for damaged files
        raise VectorFileError(
            f"the {split} split in {folder} is damaged ({type(error).__name__}): export the zoo "
            "again (python -m jaxzoo.export --overwrite)"
        ) from None
    properties: dict = {name: tensors[name] for name in meta["numeric_properties"]}
    properties.update(meta["categorical_properties"])
    return VectorSplit(tensors["weights"], properties, meta["index_dict"])


def vectors_folder(path: str | os.PathLike) -> pathlib.Path:
    """An export's `vectors/` folder from the export (experiment) folder or the folder itself;
    `LoaderError` naming the path when it is neither."""
    folder = pathlib.Path(path)
    if (folder / "train.safetensors").exists() or (folder / "train.json").exists():
        return folder
    if (folder / "vectors").is_dir():
        return folder / "vectors"
    raise LoaderError(
        f"{folder} holds no flat vectors (vectors/train.safetensors): pass an export written "
        "by python -m jaxzoo.export with the vectors format, or its vectors/ folder"
    )


def load_vectors(export_dir: str | os.PathLike) -> dict[str, VectorSplit]:
    """Reads `<experiment>/vectors` (or the vectors folder itself) back: {'train', 'val', 'test'}."""
    folder = vectors_folder(export_dir)
    return {split: load_vectors_split(folder, split) for split in SPLITS}


# safetensors' dtype codes, in the order its writer places tensors (largest code first, then
# by name): the order of its Dtype enum, which `write_safetensors` follows to write its bytes.
SAFETENSORS_DTYPES = {
    np.dtype(np.bool_): "BOOL",
    np.dtype(np.uint8): "U8",
    np.dtype(np.int8): "I8",
    np.dtype(np.int16): "I16",
    np.dtype(np.uint16): "U16",
    np.dtype(np.float16): "F16",
    np.dtype(np.int32): "I32",
    np.dtype(np.uint32): "U32",
    np.dtype(np.float32): "F32",
    np.dtype(np.float64): "F64",
    np.dtype(np.int64): "I64",
    np.dtype(np.uint64): "U64",
}
_DTYPE_RANK = {dtype: rank for rank, dtype in enumerate(SAFETENSORS_DTYPES)}


def write_safetensors(
    path: pathlib.Path, tensors: dict[str, tuple[np.dtype, tuple[int, ...], Iterable | None]]
) -> dict[str, int]:
    """Writes a safetensors file tensor by tensor, each from an iterable of arrays (row chunks),
    so no tensor needs to be in memory whole: name -> (dtype, shape, chunks). Chunks None leave
    the tensor's bytes as zeros for the caller to fill in place. Returns each tensor's byte
    offset in the file. The bytes equal `safetensors.numpy.save_file` of the joined arrays
    (header, order, padding; tested)."""
    order = sorted(tensors, key=lambda name: (-_DTYPE_RANK[np.dtype(tensors[name][0])], name))
    header, offset = {}, 0
    for name in order:
        dtype, shape, _ = tensors[name]
        size = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
        header[name] = {
            "dtype": SAFETENSORS_DTYPES[np.dtype(dtype)],
            "shape": list(shape),
            "data_offsets": [offset, offset + size],
        }
        offset += size
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode()
    text += b" " * (-len(text) % 8)
    base = 8 + len(text)
    with open(path, "wb") as f:
        f.write(len(text).to_bytes(8, "little"))
        f.write(text)
        for name in order:
            dtype, _, chunks = tensors[name]
            expected = header[name]["data_offsets"]
            if chunks is None:
                f.seek(base + expected[1])
                continue
            written = 0
            for chunk in chunks:
                chunk = np.ascontiguousarray(chunk, np.dtype(dtype).newbyteorder("<"))
                f.write(memoryview(chunk.reshape(-1)).cast("B") if chunk.size else b"")
                written += chunk.nbytes
            if written != expected[1] - expected[0]:
                raise ValueError(f"{name}: {written} bytes written for a tensor of {expected[1] - expected[0]}")
        f.truncate(base + offset)  # a trailing tensor left to fill
    return {name: base + header[name]["data_offsets"][0] for name in order}


def tensor_rows(path: pathlib.Path, name: str) -> tuple[list[int], Callable[[int, int], np.ndarray]]:
    """(shape, rows) of a float32 tensor of a safetensors file: rows(start, stop) -> its rows
    [stop - start, ...], read with plain file reads (a memory map of the file would keep every
    page read resident). A damaged file raises `VectorFileError`."""
    try:
        with open(path, "rb") as f:
            length = int.from_bytes(f.read(8), "little")
            entry = json.loads(f.read(length))[name]
        if entry["dtype"] != "F32":
            raise ValueError(entry["dtype"])
    except Exception as error:  # json, key and dtype problems alike: the file is not what we wrote
        raise VectorFileError(
            f"{path} is damaged ({type(error).__name__}): export the zoo again (python -m jaxzoo.export --overwrite)"
        ) from None
    shape, base = entry["shape"], 8 + length + entry["data_offsets"][0]
    row = int(np.prod(shape[1:], dtype=np.int64))

    def rows(start: int, stop: int) -> np.ndarray:
        with open(path, "rb") as f:
            f.seek(base + 4 * row * start)
            values = np.fromfile(f, "<f4", count=row * (stop - start))
        if values.size != row * (stop - start):
            raise VectorFileError(f"{path} is truncated: export the zoo again (python -m jaxzoo.export --overwrite)")
        return values.reshape(stop - start, *shape[1:])

    return shape, rows


def save_vector_split(
    folder: pathlib.Path,
    split: str,
    data: VectorSplit,
    counts: dict,
    extra: dict,
    weights: tuple[tuple[int, int], Iterable[np.ndarray]] | None = None,
) -> dict:
    """Writes one split of a flat-vector dataset: `<split>.safetensors` (weights and numeric
    properties) and `<split>.json` (counts, categorical properties, index_dict, `extra`), each
    under a temporary name first; returns the JSON metadata. `weights` ((rows, P), chunks of
    rows) stream the weights in place of `data.weights`."""
    shape, chunks = weights if weights is not None else (data.weights.shape, [data.weights])
    begin_vector_split(folder, split, data, shape, chunks)
    return finish_vector_split(folder, split, data, counts, extra)


def begin_vector_split(
    folder: pathlib.Path, split: str, data: VectorSplit, shape: tuple[int, int], chunks: Iterable | None
) -> tuple[pathlib.Path, int]:
    """Writes `<split>.safetensors` under its temporary name (weights of `shape` from `chunks`,
    or zeros to fill in place when None) -> (that file, the weights' byte offset in it)."""
    numeric = {k: v for k, v in data.properties.items() if not isinstance(v, list)}
    tensors = {"weights": (np.float32, shape, chunks), **{k: (v.dtype, v.shape, [v]) for k, v in numeric.items()}}
    tmp = folder / f".{split}.safetensors.partial"
    return tmp, write_safetensors(tmp, tensors)["weights"]


def finish_vector_split(folder: pathlib.Path, split: str, data: VectorSplit, counts: dict, extra: dict) -> dict:
    """Writes `<split>.json` and moves both files of a `begin_vector_split` in place -> the metadata."""
    categorical = [k for k, v in data.properties.items() if isinstance(v, list)]
    meta = {
        "split": split,
        **counts,
        "numeric_properties": sorted(k for k in data.properties if k not in categorical),
        "categorical_properties": {k: data.properties[k] for k in categorical},
        "index_dict": data.index_dict,
        **extra,
    }
    (folder / f".{split}.json.partial").write_text(json.dumps(meta))
    os.replace(folder / f".{split}.safetensors.partial", folder / f"{split}.safetensors")
    os.replace(folder / f".{split}.json.partial", folder / f"{split}.json")
    return meta


def layout_size(layout: dict) -> int:
    if "tensors" in layout:  # ResNet: {key, offset, shape} per tensor
        last = layout["tensors"][-1]
        return last["offset"] + int(np.prod(last["shape"]))
    last = len(layout["layer"]) - 1
    return layout["idx_start"][last] + layout["kernel_no"][last] * (
        layout["channels_in"][last] * layout["kernel_size"][last] + 1
    )
