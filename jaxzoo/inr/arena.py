"""An INR zoo in the HDF5 layout of the Neural Field Arena (fit-a-nef), and exact maps of a
SIREN's field in weight space (translation, rotation, scaling).

The layout (`<export>/arena/`), as fit-a-nef's `SignalTrainer.save` writes it and the Neural
Field Arena's `PreloadedNeFDataset` reads it:

  nefs_{start}-{end}.hdf5  one file per seed slot, rows start..end-1 of the dataset:
                           `params` [n, D] float32, `param_config` (one vlen string: the JSON
                           list of [key, shape] that cuts a row into Flax tensors, in order),
                           `labels` [n] int64, and jaxzoo's `image`, `seed`, `model_id` [n]
                           int64 and `psnr` [n] float64
  metadata.json            per split (train, val, test, and each also by its row range
                           '{start}_{end}'): `mean` and `std` [D] per layer (every entry of a
                           tensor gets its tensor's mean and std, the Arena's 'per_layer'),
                           `start`, `end`, `rows` (finite rows the statistics are over)
  nef.json, nef_cfg.json   fit-a-nef's SIREN config {name: SIREN, params: {hidden_dim,
                           num_layers, omega_0, output_dim}}
  checksums.sha256         `sha256sum -c` lines for every file above (jaxzoo's), written last

A row is fit-a-nef's SIREN: `kernel_net_{i}.linear.{bias,kernel}` for the sine layers,
`output_linear.{bias,kernel}` for the last, bias before kernel, kernels [in, out]; the inputs
of pixel (row i, column j) are (x_j, y_i) (fit-a-nef's `jnp.meshgrid` default), no output
offset. A zoo fitted with 'ij' inputs is stored with its first kernel's two input rows swapped,
and an output offset is added to the output bias: both give the same drawing (the swap is
exact, the offset is one float32 addition). Rows are renumbered from 0 in (seed, image) order,
so a zoo of every image of a source from image 0 has fit-a-nef's own numbering (seed slot s,
image i at row s * N + i); `image` maps a row back to jaxzoo's image index.

Splits are row ranges of seed slot 0, as the Arena's datasets define them: train images first
(their last min(5000, round(n_train / 10)) rows are val: MNIST 55,000 / 5,000, CIFAR-10
45,000 / 5,000), then the test images. Other seed slots are outside the splits.

Field maps. A `FieldMap` (A [2, 2], c [2]) turns a SIREN f into g with g(p) = f(A p + c) for
every input p, exactly in real arithmetic (only the first layer changes: kernel A^T K, bias
b + c K), so it holds for the continuous field; on the pixel grid the drawing is the old image
moved only where the map sends grid points to grid points (whole-pixel shifts, quarter turns
of a square image, flips).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import pathlib

import numpy as np

from jaxzoo.data.cache import sha256
from jaxzoo.export.rows import ExportError
from jaxzoo.inr import siren
from jaxzoo.inr.zoo import InrZoo

ARENA_FOLDER = "arena"
FILE_PREFIX = "nefs"
ARENA_VAL_SIZE = 5000  # the Arena's val split: the last 5,000 train images (MNIST, CIFAR-10)
NEF_NAME = "SIREN"
CHECKSUMS = "checksums.sha256"
SPLITS = ("train", "val", "test")


# ---- which zoos fit ----------------------------------------------------------------------------


def arena_mismatch(zoo: InrZoo) -> tuple[str, str, object, str, str] | None:
    """The first field of the zoo fit-a-nef's SIREN cannot hold: (format, field, value,
    requirement, why), or None."""
    model = zoo.config.model
    widths = tuple(int(w) for w in model.widths)
    if float(model.w0_first) != float(model.w0_hidden):
        return (
            "arena",
            "model.w0_first",
            float(model.w0_first),
            f"model.w0_first=model.w0_hidden={float(model.w0_hidden)!r}",
            "fit-a-nef's SIREN has one omega_0 for every sine layer",
        )
    if len(set(widths)) != 1:
        return (
            "arena",
            "model.widths",
            widths,
            "model.widths of one width, e.g. (32, 32)",
            "fit-a-nef's SIREN has one hidden_dim",
        )
    return None


def require_h5py():
    """h5py, or the one-line ExportError that says how to install it."""
    try:
        import h5py
    except ImportError:
        raise ExportError(
            "the arena format writes HDF5 files and needs h5py: pip install 'jaxzoo[arena]' (or export --format vectors)"
        ) from None
    return h5py


# ---- fit-a-nef's parameters --------------------------------------------------------------------


def param_names(spec: siren.SirenSpec) -> list[str]:
    """fit-a-nef's Flax module names of the layers: kernel_net_{i}.linear, then output_linear."""
    return [f"kernel_net_{i}.linear" for i in range(len(spec.widths))] + ["output_linear"]


def param_config(spec: siren.SirenSpec) -> list[list]:
    """[[key, shape], ...] in the order of a row: per layer bias [out], then kernel [in, out]."""
    f = spec.features
    out = []
    for i, name in enumerate(param_names(spec)):
        out += [[f"{name}.bias", [f[i + 1]]], [f"{name}.kernel", [f[i], f[i + 1]]]]
    return out


def nef_config(spec: siren.SirenSpec) -> dict:
    """fit-a-nef's nef config of this SIREN (its `nef.json`)."""
    return {
        "name": NEF_NAME,
        "params": {
            "hidden_dim": int(spec.widths[0]),
            "num_layers": spec.num_layers,
            "omega_0": float(spec.w0_hidden),
            "output_dim": spec.out_features,
        },
    }


def arena_params(spec: siren.SirenSpec, params: dict, coordinates: str) -> dict:
    """jaxzoo SIREN params ([M, ...] numpy) -> the same drawings in fit-a-nef's convention:
    'xy' inputs (an 'ij' zoo's first kernel has its input rows swapped) and no output offset
    (added to the output bias)."""
    names = siren.layer_names(spec)
    out = {name: dict(params[name]) for name in names}
    if coordinates == "ij":
        out[names[0]]["kernel"] = np.asarray(params[names[0]]["kernel"])[..., ::-1, :]
    if spec.output_offset:
        bias = np.asarray(params[names[-1]]["bias"])
        out[names[-1]]["bias"] = (bias + np.float32(spec.output_offset)).astype(bias.dtype)
    return out


def arena_rows(spec: siren.SirenSpec, params: dict) -> np.ndarray:
    """Params ([M, ...], fit-a-nef's convention) -> rows [M, D] float32 in `param_config` order."""
    parts = []
    for name in siren.layer_names(spec):
        for kind in ("bias", "kernel"):
            array = np.asarray(params[name][kind], np.float32)
            parts.append(array.reshape(len(array), -1))
    return np.ascontiguousarray(np.concatenate(parts, axis=1))


def layer_statistics(rows: np.ndarray, config: list[list]) -> tuple[np.ndarray, np.ndarray, int]:
    """Per tensor of `config`, over the finite rows: mean and std (population) broadcast to
    its entries -> (mean [D], std [D], rows used), the Arena's 'per_layer' statistics."""
    finite = rows[np.isfinite(rows).all(axis=1)].astype(np.float64)
    mean, std = np.full(rows.shape[1], np.nan), np.full(rows.shape[1], np.nan)
    start = 0
    for _, shape in config:
        end = start + math.prod(shape)
        if len(finite):
            mean[start:end] = finite[:, start:end].mean()
            std[start:end] = finite[:, start:end].std()
        start = end
    return mean, std, len(finite)


def row_order(table: list[dict]) -> list[int]:
    """The model indices of the rows: by seed, then image."""
    return sorted(range(len(table)), key=lambda i: (table[i]["seed"], table[i]["image"]))


def arena_splits(table: list[dict], order: list[int]) -> dict[str, tuple[int, int]]:
    """Row ranges of seed slot 0 (`order`: the rows' model indices, seed slot 0 first, images
    ascending): train, val (the last min(5000, round(n_train / 10)) train images), test."""
    seed0 = table[order[0]]["seed"]
    first = [table[i] for i in order if table[i]["seed"] == seed0]
    n_train = sum(row["split"] == "train" for row in first)
    n_val = min(ARENA_VAL_SIZE, int(round(n_train / 10)))
    bounds = {"train": (0, n_train - n_val), "val": (n_train - n_val, n_train), "test": (n_train, len(first))}
    return {split: bounds[split] for split in SPLITS if bounds[split][1] > bounds[split][0]}


# ---- the writer --------------------------------------------------------------------------------


def write_arena(zoo: InrZoo, folder: pathlib.Path, params: dict, metrics: dict, log) -> dict:
    """Writes the zoo's SIRENs `params` ([M, ...], model order) into `folder` in the Arena's
    layout (module docstring); every file under a temporary name first. Returns a report."""
    h5py = require_h5py()
    folder.mkdir(parents=True, exist_ok=True)
    spec = zoo.spec
    order = row_order(zoo.table)
    rows = arena_rows(spec, arena_params(spec, params, zoo.config.model.coordinates))[order]
    config = param_config(spec)
    column = lambda name: np.array([zoo.table[i][name] for i in order], np.int64)
    columns = {"labels": column("label"), "image": column("image"), "seed": column("seed")}
    columns["model_id"] = column("model_id")
    columns["psnr"] = np.asarray(metrics["psnr"], np.float64)[order]
    files = []
    for seed in sorted(set(columns["seed"].tolist())):
        (picked,) = np.nonzero(columns["seed"] == seed)
        start, end = int(picked[0]), int(picked[-1]) + 1
        name = f"{FILE_PREFIX}_{start}-{end}.hdf5"
        tmp = folder / f".{name}.partial"
        with h5py.File(tmp, "w") as f:
            f.create_dataset("params", data=rows[start:end])
            text = f.create_dataset("param_config", (1,), dtype=h5py.special_dtype(vlen=str))
            text[0] = json.dumps(config)
            for key, values in columns.items():
                f.create_dataset(key, data=values[start:end])
        os.replace(tmp, folder / name)
        files.append(name)
    metadata = {}
    for split, (start, end) in arena_splits(zoo.table, order).items():
        mean, std, used = layer_statistics(rows[start:end], config)
        entry = {"mean": mean.tolist(), "std": std.tolist(), "start": start, "end": end, "rows": used}
        metadata[split] = metadata[f"{start}_{end}"] = entry
    write_text(folder / "metadata.json", json.dumps(metadata))
    for name in ("nef.json", "nef_cfg.json"):
        write_text(folder / name, json.dumps(nef_config(spec), indent=1))
    write_checksums(folder, [*files, "metadata.json", "nef.json", "nef_cfg.json"])
    splits = {split: [metadata[split]["start"], metadata[split]["end"]] for split in SPLITS if split in metadata}
    log(f"  arena: {len(rows)} rows in {len(files)} files; splits {splits}")
    return {"files": files, "rows": len(rows), "splits": splits}


def write_checksums(folder: pathlib.Path, names: list[str]) -> None:
    """Writes `folder/checksums.sha256`: one `sha256sum -c` line ('<hex digest>  <name>') per file
    of `names`, in that order; call it after the files are final."""
    write_text(folder / CHECKSUMS, "".join(f"{sha256(folder / name)}  {name}\n" for name in names))


def write_text(path: pathlib.Path, text: str) -> None:
    """Writes `text` to `path` under a temporary name first (a failed export removes it)."""
    tmp = path.with_name(f".{path.name}.partial")
    tmp.write_text(text)
    os.replace(tmp, path)


# ---- exact maps of the field -------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class FieldMap:
    """g(p) = f(matrix @ p + offset) for every input p (in the zoo's input order)."""

    matrix: np.ndarray  # [2, 2]
    offset: np.ndarray  # [2]


def check_coordinates(coordinates: str) -> None:
    """ValueError unless `coordinates` is a SIREN input convention ('ij' or 'xy')."""
    if coordinates not in siren.COORDINATES:
        raise ValueError(f"coordinate convention {coordinates!r}: use one of {siren.COORDINATES}")


def _input_order(rows: float, cols: float, coordinates: str) -> np.ndarray:
    """A (down, right) pair in the SIREN's input order ('ij': row first, 'xy': column first)."""
    check_coordinates(coordinates)
    return np.array([rows, cols] if coordinates == "ij" else [cols, rows], np.float64)


def translation(down: float, right: float, coordinates: str, shape: tuple[int, int] | None = None) -> FieldMap:
    """The image moved `down` and `right`: g(p) = f(p - t). Units: coordinates (each axis spans
    [-1, 1]), or pixels of an image of `shape` (H, W) when given (2 / (side - 1) each)."""
    if shape is not None:
        down, right = down * 2.0 / (shape[0] - 1), right * 2.0 / (shape[1] - 1)
    return FieldMap(np.eye(2), -_input_order(down, right, coordinates))


def rotation(angle: float, coordinates: str) -> FieldMap:
    """The image turned `angle` radians counterclockwise as drawn (rows downward) about its
    centre: g(p) = f(R^T p), R the turn in the input order."""
    check_coordinates(coordinates)
    cos, sin = math.cos(angle), math.sin(angle)
    # In (column, row) coordinates with rows downward a counterclockwise turn is [[c, s], [-s, c]].
    turn = np.array([[cos, sin], [-sin, cos]]) if coordinates == "xy" else np.array([[cos, -sin], [sin, cos]])
    return FieldMap(turn.T, np.zeros(2))


def scaling(factor: float | tuple[float, float], coordinates: str) -> FieldMap:
    """The image enlarged `factor` times about its centre (a (down, right) pair per axis; a
    negative factor also flips): g(p) = f(p / s)."""
    down, right = (factor, factor) if np.isscalar(factor) else factor
    scale = _input_order(down, right, coordinates)
    if not (np.isfinite(scale).all() and (scale != 0).all()):
        raise ValueError(f"scale factor {factor!r}: use finite, non-zero factors")
    return FieldMap(np.diag(1.0 / scale), np.zeros(2))


def map_params(params: dict, field_map: FieldMap) -> dict:
    """SIREN params ({'layer0': {'kernel' [..., 2, out], 'bias' [..., out]}, ...}, numpy or
    JAX, any leading axes) of the mapped field: kernel A^T K, bias b + c K (float64, then the
    params' dtype); the other layers are the same arrays."""
    kernel = np.asarray(params["layer0"]["kernel"])
    bias = np.asarray(params["layer0"]["bias"])
    k64 = kernel.astype(np.float64)
    new_kernel = np.einsum("ji,...jo->...io", field_map.matrix, k64)
    new_bias = bias + np.einsum("j,...jo->...o", field_map.offset, k64)
    return {**params, "layer0": {"kernel": new_kernel.astype(kernel.dtype), "bias": new_bias.astype(bias.dtype)}}


def map_vectors(vectors: np.ndarray, index_dict: dict, field_map: FieldMap) -> np.ndarray:
    """Flat vectors [N, P] of an INR export (`vectors/`, state_dict order: layer0.weight
    [out, 2], layer0.bias [out], ...) of the mapped fields: weight W A, bias b + W c."""
    tensors = {t["key"]: t for t in index_dict.get("tensors", [])}
    if "layer0.weight" not in tensors or "layer0.bias" not in tensors:
        raise ValueError("these vectors are not an INR export's (no layer0.weight / layer0.bias in the index_dict)")
    weight, bias = tensors["layer0.weight"], tensors["layer0.bias"]
    out_features, in_features = weight["shape"]
    w_slice = slice(weight["offset"], weight["offset"] + out_features * in_features)
    b_slice = slice(bias["offset"], bias["offset"] + out_features)
    vectors = np.asarray(vectors)
    out = vectors.copy()
    w = vectors[:, w_slice].reshape(len(vectors), out_features, in_features).astype(np.float64)
    out[:, w_slice] = (w @ field_map.matrix).reshape(len(vectors), -1)
    out[:, b_slice] = vectors[:, b_slice] + w @ field_map.offset
    return out
