"""Zoo diversity metrics of the paper's Table 2 over all pairs of models.

The matrix functions take population arrays (leading axis M) and return [M, M] matrices;
`table2_row` and `table2` reduce the pairs i < j to their mean and std in blocks of rows and
columns (`pair_moments`), so their memory does not grow with M^2.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable, Sequence

import numpy as np

DEFAULT_THRESHOLD = 5.0
CKA_IMAGES = 50
PAIR_BLOCK = 1024


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
                 block: int = PAIR_BLOCK) -> dict[str, Moments]:
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
    return moments


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


def pair_statistics(models: np.ndarray, predictions: np.ndarray, grams: Sequence[np.ndarray],
                    weights: np.ndarray, num_classes: int, block: int = PAIR_BLOCK) -> dict[str, Moments]:
    """Moments over the pairs i < j of `models` (ascending indices) of the pair metrics.

    predictions [M, N] class ids; grams: per layer [M, n(n+1)/2] (`packed_grams`); weights
    [M, P]. Keys: agreement, cka (mean over layers), cka0.. (per layer), l2, cosine. Memory:
    two blocks' [block, n(n+1)/2] (per layer) and [block, P] float64 arrays and a few
    [block, block] tiles at a time.
    """
    def prepare(index: np.ndarray):
        return predictions[index], [unit_grams(g[index]) for g in grams], weights[index].astype(np.float64)

    def tile(rows, cols) -> dict[str, np.ndarray]:
        (pred_r, unit_r, w_r), (pred_c, unit_c, w_c) = rows, cols
        per_layer = [u @ v.T for u, v in zip(unit_r, unit_c)]
        cka = np.mean(per_layer, axis=0) if per_layer else np.zeros((len(pred_r), len(pred_c)))
        l2, cosine = distances(w_r, w_c)
        return {"agreement": agreement(pred_r, pred_c, num_classes), "cka": cka,
                **{f"cka{k}": m for k, m in enumerate(per_layer)}, "l2": l2, "cosine": cosine}

    return pair_moments(models, prepare, tile, block)


def table2(
    test_acc: np.ndarray,
    predictions: np.ndarray,
    grams: Sequence[np.ndarray],
    weights: np.ndarray,
    num_classes: int,
    threshold: float = DEFAULT_THRESHOLD,
    block: int = PAIR_BLOCK,
) -> dict:
    """The Table 2 metrics of a zoo at its last epoch, non-viable models removed.

    test_acc [M]; predictions [M, N] on the test split; grams: per layer [M, n(n+1)/2]
    (`packed_grams` of the features on the first n test images); weights [M, P].
    kappa_cka of a pair is the mean over layers. Pairs are reduced `block` models at a time.
    """
    v = viability(weights, threshold)
    models = np.flatnonzero(v.keep)
    pairs = pair_statistics(models, predictions, grams, weights, num_classes, block)
    pair_summary = lambda name: pairs.get(name, Moments()).summary()  # no pairs: NaN
    weight_moments = sum((Moments.of(weights[index]) for index in blocks(models, block)), Moments())
    return {
        "models": int(len(v.keep)),
        "viable": int(len(models)),
        "removed_non_finite": v.non_finite,
        "removed_over_threshold": v.over_threshold,
        "threshold": threshold,
        "accuracy": mean_std(test_acc[models]),
        "agreement": pair_summary("agreement"),
        "cka": pair_summary("cka"),
        "cka_per_layer": [pair_summary(f"cka{k}")["mean"] for k in range(len(grams))],
        "weights": weight_moments.summary(),
        "l2_distance": pair_summary("l2"),
        "cosine_distance": pair_summary("cosine"),
    }


def table2_row(
    test_acc: np.ndarray,
    predictions: np.ndarray,
    layer_features: list[np.ndarray],
    weights: np.ndarray,
    num_classes: int,
    threshold: float = DEFAULT_THRESHOLD,
    block: int = PAIR_BLOCK,
) -> dict:
    """`table2` from the features: layer_features, per layer [M, n, d] on the first n test images."""
    return table2(test_acc, predictions, [packed_grams(f) for f in layer_features], weights,
                  num_classes, threshold, block)
