"""Flat-vector dataset files (an export's `vectors/` folder): one `<split>.safetensors` (weights
[rows, P] and numeric properties) and one `<split>.json` (counts, categorical properties, the
vector layout) per split, written under temporary names and renamed when complete.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib

import numpy as np
from safetensors.numpy import load_file, save_file

from jaxzoo.errors import UserError

SPLITS = ("train", "val", "test")
DEFAULT_THRESHOLD = 5.0  # rows (models) with a weight |w| above it are not viable, as the original


class VectorFileError(UserError):
    """A flat-vector folder that cannot be read (the message names the problem and the fix)."""


@dataclasses.dataclass
class VectorSplit:
    """One split of an exported flat-vector dataset: weights [rows, P], properties per row."""

    weights: np.ndarray
    properties: dict[str, np.ndarray | list]
    index_dict: dict


def load_vectors_split(folder: pathlib.Path, split: str) -> VectorSplit:
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


def load_vectors(export_dir: str | os.PathLike) -> dict[str, VectorSplit]:
    """Reads `<experiment>/vectors` (or the vectors folder itself) back: {'train', 'val', 'test'}."""
    folder = pathlib.Path(export_dir)
    folder = folder if (folder / "train.safetensors").exists() else folder / "vectors"
    return {split: load_vectors_split(folder, split) for split in SPLITS}


def save_vector_split(folder: pathlib.Path, split: str, data: VectorSplit, counts: dict, extra: dict) -> dict:
    """Writes one split of a flat-vector dataset: `<split>.safetensors` (weights and numeric
    properties) and `<split>.json` (counts, categorical properties, index_dict, `extra`), each
    under a temporary name first; returns the JSON metadata."""
    categorical = [k for k, v in data.properties.items() if isinstance(v, list)]
    numeric = {k: v for k, v in data.properties.items() if k not in categorical}
    tmp = folder / f".{split}.safetensors.partial"
    save_file({"weights": data.weights, **numeric}, str(tmp))
    meta = {
        "split": split,
        **counts,
        "numeric_properties": sorted(numeric),
        "categorical_properties": {k: data.properties[k] for k in categorical},
        "index_dict": data.index_dict,
        **extra,
    }
    (folder / f".{split}.json.partial").write_text(json.dumps(meta))
    os.replace(tmp, folder / f"{split}.safetensors")
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
