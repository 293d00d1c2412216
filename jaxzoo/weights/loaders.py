"""Batches of an export's flat vectors for training on weights (numpy only, no torch).

`VectorLoader(export, split)` iterates numpy batches {'weights': [B, P] float32, <property>: [B]}
of `<export>/vectors/<split>.safetensors` (`export` the export folder or its vectors/ folder),
one row per (model, epoch); numeric properties are float32 (integers such as epoch and model_id
stay integers), categorical ones strings (`batch_properties`). Optionally:

- `epochs=[...]`: only those checkpoints' rows (each must be in the export);
- `shuffle` (from `seed`; each pass over the loader draws a new order), `batch_size`, `drop_last`;
- `permute=True`: each row's hidden units permuted at random (function-preserving; the helpers
  are `jaxzoo.weights.symmetry.random_permutations` / `permute_vectors`), applied first;
- `standardise=True`: per layer, weights and biases separately, (w - mean) / std with the TRAIN
  split's statistics (`vectors/standardisation.json` when present, written by
  `write_standardisation`; computed from the train split otherwise);
- `noise_std > 0`: Gaussian noise added last. noise_mode 'relative' (default): sigma = noise_std x
  the layer's train std (weights and biases separately), i.e. noise_std in standardised units
  whether or not the rows are standardised; 'absolute': sigma = noise_std in the units of the
  rows returned (standardised units when standardise=True);
- `tokens=True`: the batch also holds weight tokens (Schürholt et al.): one token per output unit
  (a conv unit's kernel [in*kh*kw] then its bias; a dense unit's incoming row then its bias),
  zero-padded to the widest, `tokens` [B, T, D], `mask` [B, T, D] (True on real entries),
  `layer_id` [B, T] and `position` [B, T] (unit within its layer); `detokenize` inverts it.

Only the CNN / MLP layouts (index_dict with idx_start, kernel_no, ...) are supported.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
from collections.abc import Iterator

import numpy as np

from jaxzoo.analysis.table2 import Moments
from jaxzoo.weights import symmetry
from jaxzoo.weights.sane import token_table
from jaxzoo.weights.vectors import (  # noqa: F401  (LoaderError, vectors_folder, layers, ... keep their import path here)
    Layer,
    LoaderError,
    VectorFileError,
    VectorSplit,
    check_layout,
    layers,
    layout_size,
    load_vectors_split,
    split_name,
    take_rows,
    tensor_rows,
    vectors_folder,
)
from jaxzoo.zoo.blocks import READ_BYTES

STANDARDISATION_FILE = "standardisation.json"
NOISE_MODES = ("relative", "absolute")


# ---------------------------------------------------------------- standardisation


def layer_statistics(train_split) -> dict:
    """Per layer, over all rows of `train_split` (a VectorSplit): mean and std of its weights and of
    its biases, {'rows', 'layers': [{'layer', 'weight_mean', 'weight_std', 'bias_mean', 'bias_std'}]}."""
    weights = np.asarray(train_split.weights, np.float64)
    if len(weights) == 0:
        raise LoaderError("the train split has no rows: standardisation statistics need train rows")
    out = []
    module_index = train_split.index_dict.get("layer", list(range(len(train_split.index_dict["idx_start"]))))
    for index, layer in zip(module_index, layers(train_split.index_dict)):
        w, b = weights[:, layer.start : layer.bias_start], weights[:, layer.bias_start : layer.end]
        out.append(
            {
                "layer": int(index),
                "weight_mean": float(w.mean()),
                "weight_std": float(w.std()),
                "bias_mean": float(b.mean()),
                "bias_std": float(b.std()),
            }
        )
    return {"split": "train", "rows": int(len(weights)), "layers": out}


def train_statistics(folder: pathlib.Path) -> dict:
    """`layer_statistics` of a vectors folder's train split. A split past `READ_BYTES` (as float64)
    is read that many bytes of rows at a time, with file reads (`tensor_rows`), and its moments
    merged (`Moments`): equal to the whole split's values up to float64 rounding, in the memory
    of one read."""
    path, meta = folder / "train.safetensors", folder / "train.json"
    if not (path.is_file() and meta.is_file()):
        return layer_statistics(load_vectors_split(folder, "train"))  # which names what is missing
    (rows, size), read = tensor_rows(path, "weights")
    if rows * size * 8 <= READ_BYTES:
        return layer_statistics(load_vectors_split(folder, "train"))
    try:
        index_dict = json.loads(meta.read_text())["index_dict"]
    except Exception:  # json and key errors alike
        raise VectorFileError(
            f"{meta} is damaged: export the zoo again (python -m jaxzoo.export --overwrite)"
        ) from None
    module_index = index_dict.get("layer", list(range(len(index_dict["idx_start"]))))
    parts = layers(index_dict)
    moments = [[Moments(), Moments()] for _ in parts]
    step = max(1, READ_BYTES // (8 * size))
    for start in range(0, rows, step):
        chunk = read(start, min(start + step, rows))
        for pair, layer in zip(moments, parts):
            pair[0] += Moments.of(chunk[:, layer.start : layer.bias_start])
            pair[1] += Moments.of(chunk[:, layer.bias_start : layer.end])
    out = []
    for index, (weight, bias) in zip(module_index, moments):
        w, b = weight.summary(), bias.summary()
        out.append(
            {
                "layer": int(index),
                "weight_mean": w["mean"],
                "weight_std": w["std"],
                "bias_mean": b["mean"],
                "bias_std": b["std"],
            }
        )
    return {"split": "train", "rows": int(rows), "layers": out}


def write_standardisation(folder: str | os.PathLike) -> pathlib.Path:
    """Writes `vectors/standardisation.json` (the train split's `train_statistics`); returns its path."""
    folder = vectors_folder(folder)
    stats = train_statistics(folder)
    path = folder / STANDARDISATION_FILE
    tmp = folder / f".{STANDARDISATION_FILE}.partial"
    tmp.write_text(json.dumps(stats, indent=1))
    os.replace(tmp, path)
    return path


def read_standardisation(folder: str | os.PathLike, index_dict: dict | None = None) -> dict:
    """The train statistics: `standardisation.json` when present, else computed from the train split."""
    folder = vectors_folder(folder)
    path = folder / STANDARDISATION_FILE
    if path.exists():
        try:
            stats = json.loads(path.read_text())
        except json.JSONDecodeError:
            raise LoaderError(
                f"{path} is damaged: delete it or rewrite it with jaxzoo.weights.loaders.write_standardisation"
            ) from None
    else:
        stats = train_statistics(folder)
    if index_dict is not None and len(stats.get("layers", [])) != len(layers(index_dict)):
        raise LoaderError(
            f"{path} describes {len(stats.get('layers', []))} layers and the vectors have "
            f"{len(layers(index_dict))}: rewrite it with jaxzoo.weights.loaders.write_standardisation"
        )
    return stats


def element_statistics(index_dict: dict, stats: dict) -> tuple[np.ndarray, np.ndarray]:
    """Per-element mean [P] and std [P] float32 (a zero std counts as 1: such parts are only centred)."""
    size = layout_size(index_dict)
    mean, std = np.zeros(size, np.float32), np.ones(size, np.float32)
    for layer, s in zip(layers(index_dict), stats["layers"]):
        for lo, hi, kind in ((layer.start, layer.bias_start, "weight"), (layer.bias_start, layer.end, "bias")):
            mean[lo:hi] = s[f"{kind}_mean"]
            std[lo:hi] = s[f"{kind}_std"] if s[f"{kind}_std"] > 0 else 1.0
    return mean, std


def standardise(vectors: np.ndarray, index_dict: dict, stats: dict) -> np.ndarray:
    mean, std = element_statistics(index_dict, stats)
    return ((vectors - mean) / std).astype(np.float32)


def unstandardise(vectors: np.ndarray, index_dict: dict, stats: dict) -> np.ndarray:
    """The inverse of `standardise` (e.g. for decoded vectors)."""
    mean, std = element_statistics(index_dict, stats)
    return (vectors * std + mean).astype(np.float32)


# ---------------------------------------------------------------- tokens


@dataclasses.dataclass(frozen=True)
class TokenLayout:
    """Where each token entry comes from: `index` [T, D] into the vector (0 on padding), `mask`
    [T, D], `layer_id` [T] (layer number 0..L-1), `position` [T] (unit within its layer)."""

    index: np.ndarray
    mask: np.ndarray
    layer_id: np.ndarray
    position: np.ndarray

    @property
    def shape(self) -> tuple[int, int]:
        return self.index.shape


def token_layout(index_dict: dict) -> TokenLayout:
    """One token per output unit (its kernel or row, then its bias), zero-padded to the widest:
    SANE's tokens of width 0 (`jaxzoo.weights.sane.token_table`) of a CNN / MLP layout."""
    check_layout(index_dict)
    table = token_table(index_dict, 0)
    positions = table.positions.astype(np.int64)
    return TokenLayout(table.index.astype(np.int64), table.mask, positions[:, 1], positions[:, 2])


def tokenize(vectors: np.ndarray, index_dict: dict | TokenLayout) -> np.ndarray:
    """[N, P] -> tokens [N, T, D] (zeros on padding)."""
    tl = index_dict if isinstance(index_dict, TokenLayout) else token_layout(index_dict)
    # where, not a product: padding is +0.0 even next to a negative, infinite or NaN entry 0
    return np.where(tl.mask, np.take(vectors, tl.index, axis=1), np.zeros((), vectors.dtype))


def detokenize(tokens: np.ndarray, index_dict: dict | TokenLayout) -> np.ndarray:
    """tokens [N, T, D] -> [N, P], the exact inverse of `tokenize`."""
    tl = index_dict if isinstance(index_dict, TokenLayout) else token_layout(index_dict)
    vectors = np.zeros((len(tokens), int(tl.mask.sum())), tokens.dtype)
    vectors[:, tl.index[tl.mask]] = tokens[:, tl.mask]
    return vectors


# ---------------------------------------------------------------- transforms


class VectorTransform:
    """The augmentation and views shared by `VectorLoader` and `jaxzoo.torch.ZooVectorDataset`:
    permute -> standardise -> noise on [N, P] rows, then optionally the token view."""

    def __init__(
        self,
        index_dict: dict,
        stats: dict | None = None,
        standardise: bool = False,
        noise_std: float = 0.0,
        noise_mode: str = "relative",
        permute: bool = False,
        tokens: bool = False,
    ):
        check_layout(index_dict)
        if noise_mode not in NOISE_MODES:
            raise LoaderError(f"unknown noise_mode {noise_mode!r}: choose from {NOISE_MODES}")
        if not (noise_std >= 0 and np.isfinite(noise_std)):
            raise LoaderError(f"noise_std must be a finite number >= 0, got {noise_std!r}")
        self.index_dict, self.stats = index_dict, stats
        self.standardise, self.noise_std, self.noise_mode = standardise, float(noise_std), noise_mode
        self.permute, self.tokens = permute, tokens
        needs_stats = standardise or (noise_std > 0 and noise_mode == "relative")
        if needs_stats and stats is None:
            raise LoaderError("standardise and relative noise need the train statistics (stats=...)")
        if needs_stats:
            self.mean, self.std = element_statistics(index_dict, stats)
        if noise_std > 0:  # sigma per element in the units of the rows returned
            relative = noise_mode == "relative"
            self.sigma = np.full(layout_size(index_dict), noise_std, np.float32)
            if relative and not standardise:
                self.sigma *= self.std
        if permute:
            self.symmetry = symmetry
        self.token_layout = token_layout(index_dict) if tokens else None

    @property
    def augments(self) -> bool:
        return self.permute or self.noise_std > 0

    @property
    def active(self) -> bool:
        return self.augments or self.standardise or self.tokens

    def vectors(self, weights: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """[N, P] -> [N, P] float32: permuted (a fresh permutation per row), standardised, noised."""
        out = np.array(weights, np.float32)  # a copy: the loader's rows stay as read
        if self.permute and len(out):
            perms = self.symmetry.random_permutations(self.index_dict, rng, count=len(out))  # [N, n] per layer
            out = np.asarray(self.symmetry.permute_vectors(out, self.index_dict, perms), np.float32)
        if self.standardise:
            out -= self.mean
            out /= self.std
        if self.noise_std > 0:
            noise = rng.standard_normal(out.shape, np.float32)
            noise *= self.sigma
            out += noise
        return out

    def __call__(self, weights: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """[N, P] -> {'weights': [N, P]} plus, with tokens, 'tokens', 'mask', 'layer_id', 'position'."""
        out = self.vectors(weights, rng) if self.active else np.asarray(weights)
        batch = {"weights": out}
        if self.tokens:
            tl, n = self.token_layout, len(out)
            batch["tokens"] = tokenize(out, tl)
            batch["mask"] = np.broadcast_to(tl.mask, (n, *tl.shape)).copy()
            batch["layer_id"] = np.broadcast_to(tl.layer_id, (n, tl.shape[0])).copy()
            batch["position"] = np.broadcast_to(tl.position, (n, tl.shape[0])).copy()
        return batch


# ---------------------------------------------------------------- the loader


def check_epochs(folder: pathlib.Path, split: str, epochs: list[int], row_epochs: np.ndarray) -> None:
    """Refuses epochs the export does not hold (its json's 'epochs', else those of its rows)."""
    exported = sorted(
        json.loads((folder / f"{split}.json").read_text()).get("epochs", [])
        or set(np.unique(np.asarray(row_epochs)).tolist())
    )
    missing = [e for e in epochs if e not in exported]
    if missing:
        raise LoaderError(f"epochs {missing} are not in {folder} (exported: {exported}): choose from those")


def batch_properties(properties: dict[str, np.ndarray | list]) -> dict[str, np.ndarray]:
    """A split's per-row properties as batches hold them, [rows] each: floating ones float32 (as
    the weights; the files keep lr, weight decay and dropout in float64), integers (epoch,
    model_id, seed, training_iteration) as stored; categorical ones numpy strings."""
    out = {}
    for name, values in properties.items():
        values = np.asarray(values)
        out[name] = values.astype(np.float32) if np.issubdtype(values.dtype, np.floating) else values
    return out


def load_split(folder: str | os.PathLike, split: str, epochs: list[int] | None = None):
    """(VectorSplit of the selected rows, vectors folder); refuses unknown splits, epochs and layouts."""
    split = split_name(split)
    folder = vectors_folder(folder)
    data = load_vectors_split(folder, split)
    check_layout(data.index_dict)
    if epochs is None:
        return data, folder
    check_epochs(folder, split, epochs, data.properties["epoch"])
    return take_rows(data, np.isin(data.properties["epoch"], np.asarray(list(epochs)))), folder


class VectorLoader:
    """Numpy batches of one split of an export's flat vectors (see the module docstring).

    Each `iter(loader)` is one pass (every selected row once, or all full batches with
    drop_last); with shuffle the order and the augmentation draws come from (seed, pass number),
    so runs repeat. `len(loader)` is the batches per pass; `loader.stats` the train statistics
    (None unless standardise or relative noise need them).
    """

    def __init__(
        self,
        export: str | os.PathLike,
        split: str = "train",
        *,
        epochs: list[int] | None = None,
        batch_size: int = 64,
        shuffle: bool = True,
        seed: int = 0,
        drop_last: bool = False,
        standardise: bool = False,
        noise_std: float = 0.0,
        noise_mode: str = "relative",
        permute: bool = False,
        tokens: bool = False,
    ):
        if not (isinstance(batch_size, (int, np.integer)) and batch_size >= 1):
            raise LoaderError(f"batch_size must be an integer >= 1, got {batch_size!r}")
        self.data, self.folder = load_split(export, split, epochs)
        self.split, self.batch_size, self.shuffle = split, int(batch_size), shuffle
        self.seed, self.drop_last, self.passes = seed, drop_last, 0
        needs_stats = standardise or (noise_std > 0 and noise_mode == "relative")
        self.stats = read_standardisation(self.folder, self.data.index_dict) if needs_stats else None
        self.transform = VectorTransform(
            self.data.index_dict, self.stats, standardise, noise_std, noise_mode, permute, tokens
        )
        self.properties = batch_properties(self.data.properties)

    @property
    def index_dict(self) -> dict:
        return self.data.index_dict

    @property
    def rows(self) -> int:
        return len(self.data.weights)

    def __len__(self) -> int:
        full, rest = divmod(self.rows, self.batch_size)
        return full if self.drop_last or not rest else full + 1

    def batches(self, pass_number: int) -> Iterator[dict[str, np.ndarray]]:
        """The batches of pass `pass_number` (deterministic given the seed)."""
        rng = np.random.default_rng([self.seed, pass_number])
        order = rng.permutation(self.rows) if self.shuffle else np.arange(self.rows)
        for b in range(len(self)):
            index = order[b * self.batch_size : (b + 1) * self.batch_size]
            batch = self.transform(self.data.weights[index], rng)
            batch.update({k: v[index] for k, v in self.properties.items()})
            yield batch

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        number, self.passes = self.passes, self.passes + 1
        return self.batches(number)
