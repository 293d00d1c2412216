"""Zoo diversity metrics of the paper's Table 2, in matrix form over all pairs of models.

All functions take population arrays (leading axis M) and return plain numbers or [M, M]
matrices; pair statistics are over the M(M-1)/2 pairs i < j.
"""

from __future__ import annotations

import dataclasses

import numpy as np

DEFAULT_THRESHOLD = 5.0
CKA_IMAGES = 50


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


def pair_values(matrix: np.ndarray) -> np.ndarray:
    """The strictly upper triangle of an [M, M] matrix: one value per pair i < j."""
    rows, cols = np.triu_indices(matrix.shape[0], k=1)
    return matrix[rows, cols]


def mean_std(values: np.ndarray) -> dict[str, float]:
    values = np.asarray(values, np.float64)
    if values.size == 0:
        return {"mean": float("nan"), "std": float("nan")}
    return {"mean": float(values.mean()), "std": float(values.std())}


def agreement_matrix(predictions: np.ndarray, num_classes: int) -> np.ndarray:
    """predictions [M, N] class ids -> [M, M] share of the N images where two models agree."""
    m, n = predictions.shape
    agree = np.zeros((m, m), np.float64)
    for c in range(num_classes):
        hits = (predictions == c).astype(np.float32)
        agree += hits @ hits.T
    return agree / n


def centered_gram(features: np.ndarray) -> np.ndarray:
    """features [M, n, d] -> centred linear Gram matrices H (X X^T) H, [M, n, n]."""
    x = features.reshape(features.shape[0], features.shape[1], -1).astype(np.float32)
    x = x - x.mean(axis=1, keepdims=True)  # centring the features centres the Gram matrix
    return (x @ np.swapaxes(x, 1, 2)).astype(np.float64)


def linear_cka_matrix(features: np.ndarray) -> np.ndarray:
    """features [M, n, d] (n images) -> [M, M] linear CKA between every pair of models.

    CKA(X, Y) = <HKH, HLH>_F / (||HKH||_F ||HLH||_F) with K = X X^T, L = Y Y^T; invariant
    to orthogonal transforms and isotropic scaling of the features, not to general linear maps.
    """
    grams = centered_gram(features).reshape(features.shape[0], -1)
    norms = np.linalg.norm(grams, axis=1, keepdims=True)
    unit = grams / np.where(norms > 0, norms, 1.0)
    return unit @ unit.T


def distance_matrices(weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """weights [M, P] -> (l2 distances [M, M], cosine distances 1 - cos [M, M])."""
    w = weights.astype(np.float64)
    sq = (w * w).sum(axis=1)
    dot = w @ w.T
    l2 = np.sqrt(np.maximum(sq[:, None] + sq[None, :] - 2 * dot, 0.0))
    norms = np.sqrt(sq)
    cosine = 1.0 - dot / np.maximum(norms[:, None] * norms[None, :], 1e-30)
    return l2, cosine


def table2_row(
    test_acc: np.ndarray,
    predictions: np.ndarray,
    layer_features: list[np.ndarray],
    weights: np.ndarray,
    num_classes: int,
    threshold: float = DEFAULT_THRESHOLD,
) -> dict:
    """The Table 2 metrics of a zoo at its last epoch, non-viable models removed.

    test_acc [M]; predictions [M, N] on the test split; layer_features: per layer [M, n, d]
    on the first n test images; weights [M, P]. kappa_cka of a pair is the mean over layers.
    """
    v = viability(weights, threshold)
    keep = v.keep
    agree = agreement_matrix(predictions[keep], num_classes)
    per_layer = [linear_cka_matrix(f[keep]) for f in layer_features]
    cka = np.mean(per_layer, axis=0) if per_layer else np.zeros((keep.sum(), keep.sum()))
    l2, cosine = distance_matrices(weights[keep])
    kept = weights[keep]
    return {
        "models": int(len(keep)),
        "viable": int(keep.sum()),
        "removed_non_finite": v.non_finite,
        "removed_over_threshold": v.over_threshold,
        "threshold": threshold,
        "accuracy": mean_std(test_acc[keep]),
        "agreement": mean_std(pair_values(agree)),
        "cka": mean_std(pair_values(cka)),
        "cka_per_layer": [mean_std(pair_values(m))["mean"] for m in per_layer],
        "weights": mean_std(kept.reshape(-1)) if kept.size else mean_std(np.array([])),
        "l2_distance": mean_std(pair_values(l2)),
        "cosine_distance": mean_std(pair_values(cosine)),
    }
