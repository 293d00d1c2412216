"""Zoo diversity metrics of the paper's Table 2 over all pairs of models.

The matrix functions take population arrays (leading axis M) and return [M, M] matrices;
`table2_row` and `table2` reduce the pairs i < j to their mean and std in blocks of rows and
columns (`pair_moments`), so their memory does not grow with M^2. The per-model arrays they
read (`ModelRows`) stay in memory up to a budget and are spilled to temporary files beyond it,
and the blocks are sized from the same budget, so memory does not grow with M either.

Models whose flat vectors are too long to hold together (ResNet-18: 11M numbers) give their pair
distances from the matrix of their dot products instead ("dots", `jaxzoo.analysis.forward`), and
every zoo's per-model facts (`WeightFacts`) come from one pass over its blocks of models.
`paper_units` turns the values into the paper's Table 2 units (percent; l2 over the mean norm).
"""

from __future__ import annotations

import dataclasses
import math
import pathlib
import tempfile
from collections.abc import Callable, Sequence

import numpy as np

from jaxzoo.weights.vectors import DEFAULT_THRESHOLD

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
    return WeightFacts.of(weights).viability(threshold)


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
            self.write(name, start, values[start : start + step])

    def write(self, name: str, start: int, values: np.ndarray) -> None:
        """Writes models [start, start + len(values)) of an array, allocated at its first write."""
        self._allocate(name, values)
        self._open(name, writable=True)[start : start + len(values)] = values

    def read(self, name: str, index: slice | np.ndarray) -> np.ndarray:
        """A copy of the models `index` (a slice, or ascending model indices) of an array."""
        return np.array(self._open(name)[index])

    def __contains__(self, name: str) -> bool:
        return name in self._arrays

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
        return Moments(
            count,
            self.mean + delta * other.count / count,
            self.m2 + other.m2 + delta * delta * self.count * other.count / count,
        )

    def scaled(self, factor: float) -> Moments:
        """The moments of the values times `factor` (100: in percent)."""
        return Moments(self.count, self.mean * factor, self.m2 * factor * factor)

    @property
    def sum_of_squares(self) -> float:
        """The sum of the squared values: m2 + count * mean^2."""
        return self.m2 + self.count * self.mean * self.mean

    def summary(self) -> dict[str, float]:
        if not self.count:
            return {"mean": float("nan"), "std": float("nan")}
        return {"mean": self.mean, "std": math.sqrt(self.m2 / self.count)}


@dataclasses.dataclass(frozen=True)
class WeightFacts:
    """What Table 2 needs of each model's flat vector besides the pairs: viability, the moments of
    its values and its l2 norm, so a zoo's vectors are read once, a block of models at a time."""

    non_finite: np.ndarray  # [M] bool: the vector holds NaN or inf
    max_abs: np.ndarray  # [M] float64: the largest |w| (NaN read as 0, inf as the largest float)
    moments: tuple[Moments, ...]  # [M]: of the P values of each vector, in float64

    @classmethod
    def of(cls, weights: np.ndarray) -> WeightFacts:
        """weights [b, P] (float32 or float64) -> the facts of these b models."""
        max_abs = np.abs(np.nan_to_num(weights)).max(axis=1, initial=0.0).astype(np.float64)
        with np.errstate(invalid="ignore", over="ignore"):  # the moments of a vector with NaN/inf are NaN
            moments = tuple(Moments.of(row) for row in weights)
        return cls(~np.isfinite(weights).all(axis=1), max_abs, moments)

    @classmethod
    def of_tensors(cls, tensors: Sequence[np.ndarray]) -> WeightFacts:
        """The facts of the vectors made of tensors [b, ...] (in any order: the facts do not depend
        on it), one tensor at a time, so the vectors themselves are never built."""
        parts = [cls.of(tensor.reshape(len(tensor), -1)) for tensor in tensors]
        return cls(
            np.logical_or.reduce([p.non_finite for p in parts]),
            np.maximum.reduce([p.max_abs for p in parts]),
            tuple(sum(moments, Moments()) for moments in zip(*(p.moments for p in parts))),
        )

    @classmethod
    def concat(cls, parts: Sequence[WeightFacts]) -> WeightFacts:
        """The facts of consecutive blocks of models, in order."""
        return cls(
            np.concatenate([p.non_finite for p in parts]),
            np.concatenate([p.max_abs for p in parts]),
            sum((p.moments for p in parts), ()),
        )

    def viability(self, threshold: float) -> Viability:
        """Non-viable: any NaN/inf, or any |w| > threshold."""
        over = ~self.non_finite & (self.max_abs > threshold)
        return Viability(~(self.non_finite | over), int(self.non_finite.sum()), int(over.sum()), threshold)

    def total(self, models: np.ndarray) -> Moments:
        """The moments of all values of the models `models` [K] (indices) together."""
        return sum((self.moments[m] for m in models), Moments())

    def norms(self, models: np.ndarray) -> np.ndarray:
        """The l2 norms ||w||_2 of the models `models` [K] (indices), [K] float64."""
        return np.sqrt([self.moments[m].sum_of_squares for m in models])


def mean_std(values: np.ndarray) -> dict[str, float]:
    """{"mean", "std"} of any array of values (NaN for none)."""
    return Moments.of(values).summary()


def pair_values(matrix: np.ndarray) -> np.ndarray:
    """The strictly upper triangle of an [M, M] matrix: one value per pair i < j."""
    rows, cols = np.triu_indices(matrix.shape[0], k=1)
    return matrix[rows, cols]


def blocks(models: np.ndarray, block: int) -> list[np.ndarray]:
    """models [K] -> consecutive pieces of at most `block` entries."""
    return [models[start : start + block] for start in range(0, len(models), block)]


def pair_moments(
    models: np.ndarray, prepare: Callable, tile: Callable[..., dict[str, np.ndarray]], block: int
) -> dict[str, Moments]:
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
    return distances_of(a @ b.T, (a * a).sum(axis=1), (b * b).sum(axis=1))


def distances_of(dot: np.ndarray, sq_a: np.ndarray, sq_b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Dot products [Ma, Mb] and squared norms [Ma], [Mb] -> (l2 distances, cosine distances
    1 - cos), each [Ma, Mb] float64, in the vectors' units."""
    l2 = np.sqrt(np.maximum(sq_a[:, None] + sq_b[None, :] - 2 * dot, 0.0))
    cosine = 1.0 - dot / np.maximum(np.sqrt(sq_a)[:, None] * np.sqrt(sq_b)[None, :], 1e-30)
    return l2, cosine


@dataclasses.dataclass(frozen=True)
class WeightBlock:
    """The weights of a block of models for the pair distances: their flat vectors [b, P] float64,
    or their rows [b, M] of the dot-product matrix (rows' "dots")."""

    values: np.ndarray
    index: np.ndarray  # [b] model indices
    is_dots: bool

    @classmethod
    def read(cls, rows: ModelRows, index: np.ndarray) -> WeightBlock:
        if "dots" in rows:
            return cls(rows.read("dots", index), index, True)
        return cls(rows.read("weights", index).astype(np.float64), index, False)

    def squared_norms(self) -> np.ndarray:
        """[b] float64: ||w||^2 of each model."""
        if self.is_dots:
            return self.values[np.arange(len(self.index)), self.index]
        return (self.values * self.values).sum(axis=1)

    def dot(self, other: WeightBlock) -> np.ndarray:
        """[b, b_other] float64 dot products with another block's models."""
        return self.values[:, other.index] if self.is_dots else self.values @ other.values.T

    def distances(self, other: WeightBlock) -> tuple[np.ndarray, np.ndarray]:
        """(l2, cosine distances) [b, b_other] to another block's models (`distances_of`)."""
        return distances_of(self.dot(other), self.squared_norms(), other.squared_norms())


def distance_matrices(weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """weights [M, P] -> (l2 distances [M, M], cosine distances 1 - cos [M, M])."""
    return distances(weights, weights)


GRAM = "gram{}"  # `ModelRows` names: "predictions" [N] class ids, "weights" [P] or "dots" [M], gram0.. [n(n+1)/2]
PAPER_PERCENT = 100.0  # the paper's Table 2 prints every column x100


def pair_statistics(
    models: np.ndarray, rows: ModelRows, layers: int, num_classes: int, block: int
) -> dict[str, Moments]:
    """Moments over the pairs i < j of `models` (ascending indices) of the pair metrics.

    rows: "predictions" [M, N] class ids, "gram0".. per layer [M, n(n+1)/2] (`packed_grams`),
    and "weights" [M, P] or "dots" [M, M] (`WeightBlock`). Keys: agreement, cka (mean over
    layers; absent without layers), cka0.. (per layer), l2, cosine. Memory: two blocks'
    [block, n(n+1)/2] (per layer) and [block, P or M] float64 arrays and a few [block, block]
    tiles at a time (`pair_block`).
    """

    def prepare(index: np.ndarray):
        return (
            rows.read("predictions", index),
            [unit_grams(rows.read(GRAM.format(k), index)) for k in range(layers)],
            WeightBlock.read(rows, index),
        )

    def tile(block_r, block_c) -> dict[str, np.ndarray]:
        (pred_r, unit_r, w_r), (pred_c, unit_c, w_c) = block_r, block_c
        per_layer = [u @ v.T for u, v in zip(unit_r, unit_c)]
        l2, cosine = w_r.distances(w_c)
        cka = {"cka": np.mean(per_layer, axis=0)} if per_layer else {}
        return {
            "agreement": agreement(pred_r, pred_c, num_classes),
            **cka,
            **{f"cka{k}": m for k, m in enumerate(per_layer)},
            "l2": l2,
            "cosine": cosine,
        }

    return pair_moments(models, prepare, tile, block)


def table2_block(rows: ModelRows, layers: int) -> int:
    """Models per block of `table2_of_rows` within the rows' budget (`pair_block`)."""
    weights = rows.shape("dots" if "dots" in rows else "weights")[0]
    prepared = rows.row_bytes("predictions") + 8 * (sum(rows.shape(GRAM.format(k))[0] for k in range(layers)) + weights)
    return pair_block(prepared, TILE_MATRICES + 2 * layers, rows.budget)


def rows_facts(rows: ModelRows, block: int) -> WeightFacts:
    """`WeightFacts` of rows' "weights" [M, P], `block` models at a time."""
    return WeightFacts.concat(
        [WeightFacts.of(rows.read("weights", index)) for index in blocks(np.arange(rows.count), block)]
    )


def paper_units(moments: dict[str, Moments | None], mean_norm: float) -> dict[str, dict[str, float] | None]:
    """The paper's Table 2 units: {column: {"mean", "std"}} in percent (x100); the l2 distance
    divided by the zoo's mean l2 norm ||w_n||_2 first. None stays None (a column left out)."""

    def scale(name: str) -> float:
        if name != "l2_distance":
            return PAPER_PERCENT
        return PAPER_PERCENT / mean_norm if mean_norm > 0 else math.nan

    return {name: None if m is None else m.scaled(scale(name)).summary() for name, m in moments.items()}


def table2_of_rows(
    test_acc: np.ndarray,
    rows: ModelRows,
    layers: int,
    num_classes: int,
    threshold: float = DEFAULT_THRESHOLD,
    block: int | None = None,
    facts: WeightFacts | None = None,
    paired: np.ndarray | None = None,
) -> tuple[dict, Viability]:
    """(The Table 2 metrics of a zoo at its last epoch, non-viable models removed; the viability).

    test_acc [M]; rows: "predictions" [R, N] on the test split, "gram0".. per layer [R, n(n+1)/2]
    (`packed_grams` of the features on the first n test images), and "weights" [R, P] or, for
    vectors too long to hold, "dots" [R, R]. kappa_cka of a pair is the mean over layers (None
    without layers). Pairs are reduced `block` models at a time (default: as many as the rows'
    budget allows, `table2_block`).

    By default rows hold every model (R = M) and the pairs are those of the viable models. With
    `facts` (`WeightFacts` of all M models) and `paired` (ascending zoo indices of R viable
    models, row i holding model paired[i]), accuracy, weights and norms are of every viable
    model and the pair columns average the pairs of the R models.

    Raw values: accuracy, agreement and CKA as fractions, weights and distances in weight units.
    "paper": the same columns in the paper's units (`paper_units`), with "mean_l2_norm" the mean
    ||w_n||_2 over the viable models that divides the l2 distance.
    """
    block = block or table2_block(rows, layers)
    facts = rows_facts(rows, block) if facts is None else facts
    v = facts.viability(threshold)
    models = np.flatnonzero(v.keep)
    pair_rows = models if paired is None else np.arange(len(paired))
    pairs = pair_statistics(pair_rows, rows, layers, num_classes, block)
    pair = lambda name: pairs.get(name, Moments())  # no pairs: NaN
    moments = {
        "accuracy": Moments.of(test_acc[models]),
        "agreement": pair("agreement"),
        "cka": pair("cka") if layers else None,
        "weights": facts.total(models),
        "l2_distance": pair("l2"),
        "cosine_distance": pair("cosine"),
    }
    mean_norm = float(np.mean(facts.norms(models))) if len(models) else math.nan
    return {
        "models": int(len(v.keep)),
        "viable": int(len(models)),
        "removed_non_finite": v.non_finite,
        "removed_over_threshold": v.over_threshold,
        "threshold": threshold,
        "paired_models": int(len(pair_rows)),
        **{name: None if m is None else m.summary() for name, m in moments.items()},
        "cka_per_layer": [pair(f"cka{k}").summary()["mean"] for k in range(layers)],
        "mean_l2_norm": mean_norm,
        "paper": paper_units(moments, mean_norm),
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
    return table2(
        test_acc, predictions, [packed_grams(f) for f in layer_features], weights, num_classes, threshold, block
    )
