"""Zoo diversity metrics of the paper's Table 2 over all pairs of models.

The matrix functions take population arrays (leading axis M) and return [M, M] matrices;
`table2_row` and `table2` reduce the pairs i < j to their mean and std in blocks of rows and
columns (`pair_moments`), so their memory does not grow with M^2. The per-model arrays they
read (`ModelRows`) stay in memory up to a budget and are spilled to temporary files beyond it,
and the blocks are sized from the same budget, so memory does not grow with M either.
"""

from __future__ import annotations

import dataclasses
import math
import pathlib
import tempfile
from typing import Callable, Sequence

import numpy as np

DEFAULT_THRESHOLD = 5.0
CKA_IMAGES = 50
MEMORY_BUDGET = 256 * 2**20  # bytes: per-model arrays held in memory; again for the pair tiles
TILE_MATRICES = 12  # float64 [b, b] tiles alive at once in `pair_statistics`, besides 2 per layer


@dataclasses.dataclass(frozen=True)
class Viability:
    """Which models are kept for the analysis, and why the others are not."""

    keep: np.ndarray  # [M] bool
    non_finite: int
    over_threshold: int
    threshold: float


def viability(weights: np.ndarray, threshold: float = DEFAULT_THRESHOLD) -> Viability:
    """weights [M, P]: a model is non-viable with any NaN/inf, or any |w| > threshold."""
    non_finite = ~np.isfinite(weights).all(axis=1)
    over = ~non_finite & (np.abs(np.nan_to_num(weights)) > threshold).any(axis=1)
    return Viability(~(non_finite | over), int(non_finite.sum()), int(over.sum()), threshold)


class ModelRows:
    """Named per-model arrays [M, ...], written and read by blocks of models.

    An array is held in memory while all held arrays fit in `budget` bytes, else spilled to an
    .npy file in a temporary folder (removed by `close` or on leaving a `with` block). A file
    is mapped only during one read or write, and reads return copies, so no pages of it stay
    resident (the peak resident memory counts a mapping's pages).
    """

    def __init__(self, count: int, budget: int = MEMORY_BUDGET):
        self.count, self.budget = count, budget
        self._arrays: dict[str, np.ndarray | pathlib.Path] = {}
        self._held = self._files = 0
        self._folder: tempfile.TemporaryDirectory | None = None

    @classmethod
    def of(cls, budget: int = MEMORY_BUDGET, **arrays: np.ndarray) -> ModelRows:
        """Rows holding the given arrays [M, ...] (all with the same M)."""
        rows = cls(len(next(iter(arrays.values()))), budget)
        for name, values in arrays.items():
            rows.put(name, values)
        return rows

    def __enter__(self) -> ModelRows:
        return self

    def __exit__(self, *_) -> None:
        self.close()

    def close(self) -> None:
        """Drops every array and removes the spill folder."""
        self._arrays.clear()
        self._held = 0
        if self._folder is not None:
            self._folder.cleanup()
            self._folder = None

    @property
    def spilled(self) -> list[str]:
        """Names of the arrays held in files."""
        return [name for name, array in self._arrays.items() if isinstance(array, pathlib.Path)]

    def shape(self, name: str) -> tuple[int, ...]:
        """The per-model shape of an array: [M, *shape]."""
        return self._open(name).shape[1:]

    def row_bytes(self, name: str) -> int:
        """Bytes per model of an array."""
        array = self._open(name)
        return math.prod(array.shape[1:]) * array.dtype.itemsize

    def put(self, name: str, values: np.ndarray) -> None:
        """Stores a whole array [M, ...], a budget's worth of models per write."""
        step = max(1, self.budget // max(1, values[:1].nbytes))
        for start in range(0, len(values), step):
            self.write(name, start, values[start:start + step])

    def write(self, name: str, start: int, values: np.ndarray) -> None:
        """Writes models [start, start + len(values)) of an array, allocated at its first write."""
        self._allocate(name, values)
        self._open(name, writable=True)[start:start + len(values)] = values

    def read(self, name: str, index: slice | np.ndarray) -> np.ndarray:
        """A copy of the models `index` (a slice, or ascending model indices) of an array."""
        return np.array(self._open(name)[index])

    def drop(self, name: str) -> None:
        """Frees an array (its memory or its file)."""
        array = self._arrays.pop(name)
        if isinstance(array, pathlib.Path):
            array.unlink()
        else:
            self._held -= array.nbytes

    def _allocate(self, name: str, like: np.ndarray) -> None:
        if name in self._arrays:
            return
        shape = (self.count, *like.shape[1:])
        nbytes = math.prod(shape) * like.dtype.itemsize
        if self._held + nbytes <= self.budget:
            self._arrays[name] = np.empty(shape, like.dtype)
            self._held += nbytes
            return
        if self._folder is None:
            self._folder = tempfile.TemporaryDirectory(prefix="jaxzoo-rows-")
        self._files += 1
        path = pathlib.Path(self._folder.name) / f"{self._files}.npy"
        np.lib.format.open_memmap(path, "w+", like.dtype, shape)  # header and size; unmapped at once
        self._arrays[name] = path

    def _open(self, name: str, writable: bool = False) -> np.ndarray:
        """The array in memory, or its file mapped for this one access."""
        array = self._arrays[name]
        return np.load(array, mmap_mode="r+" if writable else "r") if isinstance(array, pathlib.Path) else array


@dataclasses.dataclass(frozen=True)
class Moments:
    """Count, mean and sum of squared deviations (m2) of a set of values, in float64.

    `a + b` is the moments of the union (Chan, Golub and LeVeque's pairwise update), so a
    mean and std can be accumulated over blocks of values.
    """

    count: int = 0
    mean: float = 0.0
    m2: float = 0.0

    @classmethod
    def of(cls, values: np.ndarray) -> Moments:
        values = np.asarray(values, np.float64).reshape(-1)
        if values.size == 0:
            return cls()
        mean = values.mean()
        return cls(values.size, float(mean), float(((values - mean) ** 2).sum()))

    def __add__(self, other: Moments) -> Moments:
        if not (self.count and other.count):
            return self if self.count else other
        count = self.count + other.count
        delta = other.mean - self.mean
        return Moments(count, self.mean + delta * other.count / count,
                       self.m2 + other.m2 + delta * delta * self.count * other.count / count)

    def summary(self) -> dict[str, float]:
        if not self.count:
            return {"mean": float("nan"), "std": float("nan")}
        return {"mean": self.mean, "std": math.sqrt(self.m2 / self.count)}


def mean_std(values: np.ndarray) -> dict[str, float]:
    """{"mean", "std"} of any array of values (NaN for none)."""
    return Moments.of(values).summary()


def pair_values(matrix: np.ndarray) -> np.ndarray:
    """The strictly upper triangle of an [M, M] matrix: one value per pair i < j."""
    rows, cols = np.triu_indices(matrix.shape[0], k=1)
    return matrix[rows, cols]


def blocks(models: np.ndarray, block: int) -> list[np.ndarray]:
    """models [K] -> consecutive pieces of at most `block` entries."""
    return [models[start:start + block] for start in range(0, len(models), block)]


def pair_moments(models: np.ndarray, prepare: Callable, tile: Callable[..., dict[str, np.ndarray]],
                 block: int) -> dict[str, Moments]:
    """Moments of pair matrices over the pairs i < j of `models` (ascending indices [K]).

    prepare(index [b]) -> the data of a block of models; tile(rows, cols) -> {name: [b_r, b_c]}
    from two prepared blocks. Only tiles on or above the diagonal are built, one at a time.
    """
    moments: dict[str, Moments] = {}
    pieces = blocks(models, block)
    for i, row_index in enumerate(pieces):
        rows = prepare(row_index)
        for col_index in pieces[i:]:
            cols = rows if col_index is row_index else prepare(col_index)
            upper = row_index[:, None] < col_index[None, :]
            for name, matrix in tile(rows, cols).items():
                moments[name] = moments.get(name, Moments()) + Moments.of(matrix[upper])
            del cols
    return moments


def pair_block(row_bytes: int, tile_matrices: int, budget: int = MEMORY_BUDGET) -> int:
    """The most models b per block for which two prepared blocks (row_bytes per model) and
    tile_matrices float64 [b, b] tiles fit in `budget` bytes: 8 t b^2 + 2 r b <= budget."""
    t, r = 8 * tile_matrices, 2 * row_bytes
    return max(1, int((math.sqrt(r * r + 4 * t * budget) - r) / (2 * t)))


def agreement(a: np.ndarray, b: np.ndarray, num_classes: int) -> np.ndarray:
    """Class ids a [Ma, N], b [Mb, N] -> [Ma, Mb] share of the N images where two models agree."""
    agree = np.zeros((len(a), len(b)), np.float64)
    for c in range(num_classes):
        hits_a = (a == c).astype(np.float32)
        hits_b = hits_a if b is a else (b == c).astype(np.float32)
        agree += hits_a @ hits_b.T  # exact counts; numpy runs x @ x.T as a symmetric product
    return agree / a.shape[1]


def agreement_matrix(predictions: np.ndarray, num_classes: int) -> np.ndarray:
    """predictions [M, N] class ids -> [M, M] share of the N images where two models agree."""
    return agreement(predictions, predictions, num_classes)


def centered_gram(features: np.ndarray) -> np.ndarray:
    """features [M, n, d] -> centred linear Gram matrices H (X X^T) H, [M, n, n] float64.

    Computed in float32: every value is a float32 number.
    """
    x = features.reshape(features.shape[0], features.shape[1], -1).astype(np.float32)
    x = x - x.mean(axis=1, keepdims=True)  # centring the features centres the Gram matrix
    return (x @ np.swapaxes(x, 1, 2)).astype(np.float64)


def packed_grams(features: np.ndarray) -> np.ndarray:
    """features [M, n, d] -> the upper triangles (i <= j) of `centered_gram`, [M, n(n+1)/2] float32.

    Lossless (the Gram values are float32 numbers) and half the size of the full matrices.
    """
    rows, cols = np.triu_indices(features.shape[1])
    return centered_gram(features)[:, rows, cols].astype(np.float32)


def unit_grams(packed: np.ndarray) -> np.ndarray:
    """packed [M, n(n+1)/2] (`packed_grams`) -> [M, n(n+1)/2] float64 vectors u with
    u_a . u_b = <G_a, G_b>_F / (||G_a||_F ||G_b||_F): off-diagonal entries weighted by sqrt 2."""
    n = math.isqrt(8 * packed.shape[1] + 1) // 2
    rows, cols = np.triu_indices(n)
    x = packed.astype(np.float64) * np.where(rows == cols, 1.0, math.sqrt(2.0))
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norms > 0, norms, 1.0)


def linear_cka_matrix(features: np.ndarray) -> np.ndarray:
    """features [M, n, d] (n images) -> [M, M] linear CKA between every pair of models.

    CKA(X, Y) = <HKH, HLH>_F / (||HKH||_F ||HLH||_F) with K = X X^T, L = Y Y^T; invariant
    to orthogonal transforms and isotropic scaling of the features, not to general linear maps.
    """
    unit = unit_grams(packed_grams(features))
    return unit @ unit.T


def distances(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """weights a [Ma, P], b [Mb, P] -> (l2 distances [Ma, Mb], cosine distances 1 - cos [Ma, Mb])."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    sq_a, sq_b = (a * a).sum(axis=1), (b * b).sum(axis=1)
    dot = a @ b.T
    l2 = np.sqrt(np.maximum(sq_a[:, None] + sq_b[None, :] - 2 * dot, 0.0))
    cosine = 1.0 - dot / np.maximum(np.sqrt(sq_a)[:, None] * np.sqrt(sq_b)[None, :], 1e-30)
    return l2, cosine


def distance_matrices(weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """weights [M, P] -> (l2 distances [M, M], cosine distances 1 - cos [M, M])."""
    return distances(weights, weights)


GRAM = "gram{}"  # `ModelRows` names: "predictions" [N] class ids, "weights" [P], gram0.. [n(n+1)/2]


def pair_statistics(models: np.ndarray, rows: ModelRows, layers: int, num_classes: int,
                    block: int) -> dict[str, Moments]:
    """Moments over the pairs i < j of `models` (ascending indices) of the pair metrics.

    rows: "predictions" [M, N] class ids, "gram0".. per layer [M, n(n+1)/2] (`packed_grams`),
    "weights" [M, P]. Keys: agreement, cka (mean over layers), cka0.. (per layer), l2, cosine.
    Memory: two blocks' [block, n(n+1)/2] (per layer) and [block, P] float64 arrays and a few
    [block, block] tiles at a time (`pair_block`).
    """
    def prepare(index: np.ndarray):
        return (rows.read("predictions", index), [unit_grams(rows.read(GRAM.format(k), index)) for k in range(layers)],
                rows.read("weights", index).astype(np.float64))

    def tile(block_r, block_c) -> dict[str, np.ndarray]:
        (pred_r, unit_r, w_r), (pred_c, unit_c, w_c) = block_r, block_c
        per_layer = [u @ v.T for u, v in zip(unit_r, unit_c)]
        cka = np.mean(per_layer, axis=0) if per_layer else np.zeros((len(pred_r), len(pred_c)))
        l2, cosine = distances(w_r, w_c)
        return {"agreement": agreement(pred_r, pred_c, num_classes), "cka": cka,
                **{f"cka{k}": m for k, m in enumerate(per_layer)}, "l2": l2, "cosine": cosine}

    return pair_moments(models, prepare, tile, block)


def table2_block(rows: ModelRows, layers: int) -> int:
    """Models per block of `table2_of_rows` within the rows' budget (`pair_block`)."""
    prepared = rows.row_bytes("predictions") + 8 * (sum(rows.shape(GRAM.format(k))[0] for k in range(layers))
                                                    + rows.shape("weights")[0])
    return pair_block(prepared, TILE_MATRICES + 2 * layers, rows.budget)


def rows_viability(rows: ModelRows, threshold: float, block: int) -> Viability:
    """`viability` of rows' "weights" [M, P], `block` models at a time."""
    parts = [viability(rows.read("weights", index), threshold) for index in blocks(np.arange(rows.count), block)]
    keep = np.concatenate([part.keep for part in parts]) if parts else np.zeros(0, bool)
    return Viability(keep, sum(part.non_finite for part in parts), sum(part.over_threshold for part in parts), threshold)


def table2_of_rows(test_acc: np.ndarray, rows: ModelRows, layers: int, num_classes: int,
                   threshold: float = DEFAULT_THRESHOLD, block: int | None = None) -> tuple[dict, Viability]:
    """(The Table 2 metrics of a zoo at its last epoch, non-viable models removed; the viability).

    test_acc [M]; rows: "predictions" [M, N] on the test split, "gram0".. per layer [M, n(n+1)/2]
    (`packed_grams` of the features on the first n test images), "weights" [M, P]. kappa_cka of
    a pair is the mean over layers. Pairs are reduced `block` models at a time (default: as many
    as the rows' budget allows, `table2_block`).
    """
    block = block or table2_block(rows, layers)
    v = rows_viability(rows, threshold, block)
    models = np.flatnonzero(v.keep)
    pairs = pair_statistics(models, rows, layers, num_classes, block)
    pair_summary = lambda name: pairs.get(name, Moments()).summary()  # no pairs: NaN
    weight_moments = sum((Moments.of(rows.read("weights", index)) for index in blocks(models, block)), Moments())
    return {
        "models": int(len(v.keep)),
        "viable": int(len(models)),
        "removed_non_finite": v.non_finite,
        "removed_over_threshold": v.over_threshold,
        "threshold": threshold,
        "accuracy": mean_std(test_acc[models]),
        "agreement": pair_summary("agreement"),
        "cka": pair_summary("cka"),
        "cka_per_layer": [pair_summary(f"cka{k}")["mean"] for k in range(layers)],
        "weights": weight_moments.summary(),
        "l2_distance": pair_summary("l2"),
        "cosine_distance": pair_summary("cosine"),
    }, v


def table2(
    test_acc: np.ndarray,
    predictions: np.ndarray,
    grams: Sequence[np.ndarray],
    weights: np.ndarray,
    num_classes: int,
    threshold: float = DEFAULT_THRESHOLD,
    block: int | None = None,
    budget: int = MEMORY_BUDGET,
) -> dict:
    """`table2_of_rows` of arrays: predictions [M, N], grams per layer [M, n(n+1)/2], weights
    [M, P]; beyond `budget` bytes they are copied to temporary files first."""
    arrays = {"predictions": predictions, "weights": weights, **{GRAM.format(k): g for k, g in enumerate(grams)}}
    with ModelRows.of(budget, **arrays) as rows:
        return table2_of_rows(test_acc, rows, len(grams), num_classes, threshold, block)[0]


def table2_row(
    test_acc: np.ndarray,
    predictions: np.ndarray,
    layer_features: list[np.ndarray],
    weights: np.ndarray,
    num_classes: int,
    threshold: float = DEFAULT_THRESHOLD,
    block: int | None = None,
) -> dict:
    """`table2` from the features: layer_features, per layer [M, n, d] on the first n test images."""
    return table2(test_acc, predictions, [packed_grams(f) for f in layer_features], weights,
                  num_classes, threshold, block)
