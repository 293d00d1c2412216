"""The rows of an export's datasets: the zoo's models split 70/15/15 (the original's trial-name
shuffle), and per split the (model, epoch) flat vectors with their properties, filtered as the
original loader did (NaN/inf and |w| > threshold rows dropped and counted). The flat-vector
files and the Parquet files hold the same rows.
"""

from __future__ import annotations

import random

import numpy as np

from jaxzoo.errors import UserError
from jaxzoo.training.factors import FACTOR_TABLE, Factor
from jaxzoo.weights.vectors import VectorSplit, layout_size
from jaxzoo.zoo import checkpoint
from jaxzoo.zoo.reader import Zoo

SPLIT_FRACTIONS = (0.7, 0.15)  # train, val; test is the rest
MODEL_SPLIT_SEED = 42  # random.seed(42) before shuffling the sorted trial names, as the original
METRICS = checkpoint.METRIC_NAMES


class ExportError(UserError):
    """The export cannot proceed (the message names the problem and the fix)."""


def trial_name(row: dict) -> str:
    return f"NN_tune_trainable_{row['model_id']:05d}_seed={row['seed']}"


def model_splits(zoo: Zoo) -> dict[str, list[int]]:
    """70/15/15 by model: sorted trial names shuffled with random.seed(42), as the original."""
    names = sorted((trial_name(row), i) for i, row in enumerate(zoo.table))
    random.seed(MODEL_SPLIT_SEED)
    random.shuffle(names)
    n = len(names)
    n_train, n_val = int(SPLIT_FRACTIONS[0] * n), int(SPLIT_FRACTIONS[1] * n)
    indices = [i for _, i in names]
    return {"train": indices[:n_train], "val": indices[n_train : n_train + n_val], "test": indices[n_train + n_val :]}


def vector_splits(
    zoo: Zoo,
    epochs: list[int],
    threshold: float,
    twin_weights: str = "raw",
    vectors: dict[int, np.ndarray] | None = None,
    layout: dict | None = None,
) -> tuple[dict[str, VectorSplit], dict]:
    """The flat-vector dataset in memory: {split: VectorSplit} and the filter counts per split.

    Rows are (model, epoch) of the split's models; rows with NaN/inf or |w| > threshold are
    dropped and counted, as the original loader did. Properties carry jaxzoo's names and the
    original's (`drop_in_properties`); twins' vectors are raw weights unless twin_weights='masked'.
    vectors {epoch: [M, P]} and their layout replace the zoo's flat vectors (e.g. features of them).
    """
    layout = layout or zoo.vector_layout()
    masked = twin_weights == "masked"
    weights_by_epoch = vectors or {epoch: zoo.flat_vectors(zoo.state(epoch), masked) for epoch in epochs}
    splits, counts = {}, {}
    for split, models in model_splits(zoo).items():
        rows = [(m, e) for m in models for e in epochs]
        weights = (
            np.stack([weights_by_epoch[e][m] for m, e in rows])
            if rows
            else np.zeros((0, layout_size(layout)), np.float32)
        )
        nan = ~np.isfinite(weights).all(axis=1)
        large = ~nan & (np.abs(np.nan_to_num(weights)) > threshold).any(axis=1)
        keep = ~(nan | large)
        kept = [row for row, k in zip(rows, keep) if k]
        properties: dict = {
            "model_id": np.array([zoo.table[m]["model_id"] for m, _ in kept], np.int64),
            "epoch": np.array([e for _, e in kept], np.int64),
            "ggap": np.array(
                [zoo.metrics[e]["train_acc"][m] - zoo.metrics[e]["test_acc"][m] for m, e in kept], np.float32
            ),
        }
        for name in METRICS:
            properties[name] = np.array([zoo.metrics[e][name][m] for m, e in kept], np.float32)
        properties["seed"] = np.array([zoo.table[m]["seed"] for m, _ in kept], np.int64)
        if zoo.is_twin:
            properties["sparsity_ratio"] = np.array([zoo.metrics[e]["sparsity"][m] for m, e in kept], np.float32)
        for factor in property_factors(zoo):
            values = [zoo.table[m][factor.name] for m, _ in kept]
            properties[factor.name] = np.array(values, np.float64) if factor.kind == "numeric" else values
        properties.update(drop_in_properties(zoo, properties))
        splits[split] = VectorSplit(np.ascontiguousarray(weights[keep]), properties, layout)
        counts[split] = {"rows": int(keep.sum()), "dropped_nan": int(nan.sum()), "dropped_threshold": int(large.sum())}
    return splits, counts


def drop_in_properties(zoo: Zoo, properties: dict) -> dict:
    """The same rows under the original loader's property keys, which its consumers read:
    training_iteration (the epoch) and each factor's params.json key (model::nlin, optim::lr, ...)."""
    aliases = {"training_iteration": properties["epoch"]}
    for factor in property_factors(zoo):
        if factor.original_key not in properties:
            aliases[factor.original_key] = properties[factor.name]
    return aliases


def property_factors(zoo: Zoo) -> list[Factor]:
    """The factors each vector row carries as a property: those of the zoo's grid."""
    return [f for f in FACTOR_TABLE if f.name in zoo.table[0]]
