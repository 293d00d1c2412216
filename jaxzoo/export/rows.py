"""The rows of an export's datasets: the zoo's models split 70/15/15 (the original's trial-name
shuffle), and per split the (model, epoch) flat vectors with their properties, filtered as the
original loader did (NaN/inf and |w| > threshold rows dropped and counted). The flat-vector
files and the Parquet files hold the same rows.
"""

from __future__ import annotations

import pathlib
import random
from collections.abc import Iterable, Iterator

import numpy as np

from jaxzoo.errors import UserError
from jaxzoo.training.factors import FACTOR_TABLE, Factor
from jaxzoo.weights.vectors import VectorSplit, layout_size
from jaxzoo.zoo import blocks, checkpoint
from jaxzoo.zoo.reader import Zoo
from jaxzoo.zoo.trees import tree_take

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
    Every epoch of the zoo is in memory: exports stream by blocks instead (`split_chunks`).
    """
    layout = layout or zoo.vector_layout()
    masked = twin_weights == "masked"
    weights_by_epoch = vectors or {
        epoch: zoo.flat_vectors({"params": zoo.checkpoints.params(epoch)}, masked) for epoch in epochs
    }
    splits, counts = {}, {}
    for split, models in model_splits(zoo).items():
        rows = [(m, e) for m in models for e in epochs]
        weights = (
            np.stack([weights_by_epoch[e][m] for m, e in rows])
            if rows
            else np.zeros((0, layout_size(layout)), np.float32)
        )
        splits[split], counts[split] = split_rows(zoo, rows, weights, threshold, layout)
    return splits, counts


def split_rows(
    zoo: Zoo, rows: list[tuple[int, int]], weights: np.ndarray, threshold: float, layout: dict
) -> tuple[VectorSplit, dict]:
    """(model index, epoch) rows with their flat vectors [len(rows), P], filtered (NaN/inf and
    |w| > threshold dropped and counted), with their properties."""
    nan, large = dropped_rows(weights, threshold)
    keep = ~(nan | large)
    models, epochs = np.array(rows, np.int64).reshape(-1, 2).T
    counts = {"rows": int(keep.sum()), "dropped_nan": int(nan.sum()), "dropped_threshold": int(large.sum())}
    properties = row_properties(zoo, models[keep], epochs[keep])
    return VectorSplit(np.ascontiguousarray(weights[keep]), properties, layout), counts


def dropped_rows(weights: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """Per row of [rows, P]: (has NaN/inf, finite but some |w| > threshold), as the original loader."""
    nan = ~np.isfinite(weights).all(axis=1)
    large = ~nan & (np.abs(np.nan_to_num(weights)) > threshold).any(axis=1)
    return nan, large


def row_properties(zoo: Zoo, models: np.ndarray, epochs: np.ndarray) -> dict:
    """The properties of rows (model index, epoch), two int arrays [rows]: ids, epoch, metrics,
    seed, factors, aliases. Gathered with array indexing, so a row costs its values only (the
    128,000-model exports hold every row's properties at once)."""

    def column(key: str, dtype) -> np.ndarray:
        return np.array([row[key] for row in zoo.table], dtype)[models]

    def metric(value) -> np.ndarray:
        out = np.zeros(len(models), np.float32)
        for epoch in np.unique(epochs):
            rows = epochs == epoch
            out[rows] = value(zoo.metrics[int(epoch)])[models[rows]]
        return out

    properties: dict = {
        "model_id": column("model_id", np.int64),
        "epoch": np.asarray(epochs, np.int64),
        "ggap": metric(lambda metrics: metrics["train_acc"] - metrics["test_acc"]),
    }
    for name in METRICS:
        properties[name] = metric(lambda metrics: metrics[name])
    properties["seed"] = column("seed", np.int64)
    if zoo.is_twin:
        properties["sparsity_ratio"] = metric(lambda metrics: metrics["sparsity"])
    for factor in property_factors(zoo):
        if factor.kind == "numeric":
            properties[factor.name] = column(factor.name, np.float64)
        else:
            properties[factor.name] = [zoo.table[m][factor.name] for m in models]
    properties.update(drop_in_properties(zoo, properties))
    return properties


def gathered_requests(zoo: Zoo, requests: Iterable[tuple[int, np.ndarray]], masked: bool) -> Iterator[np.ndarray]:
    """For each (epoch, models) request in turn, the flat vectors [len(models), P] of those models
    (indices, any order). Consecutive requests are gathered together while their vectors fit
    `blocks.READ_BYTES`, with one read of each stored block that holds some of them: a block is
    read once per group and epoch, not once per request (a read decodes whole blocks)."""
    size = layout_size(zoo.vector_layout())
    group: list[tuple[int, np.ndarray]] = []
    for epoch, models in requests:
        models = np.asarray(models, np.int64)
        if group and 4 * size * (sum(len(m) for _, m in group) + len(models)) > blocks.READ_BYTES:
            yield from gathered_group(zoo, group, size, masked)
            group = []
        group.append((epoch, models))
    if group:
        yield from gathered_group(zoo, group, size, masked)


def gathered_group(zoo: Zoo, group: list[tuple[int, np.ndarray]], size: int, masked: bool) -> list[np.ndarray]:
    """The flat vectors [len(models), P] of each (epoch, models) of a group, each stored block
    that holds some of them read once per epoch (params only)."""
    out = [np.zeros((len(models), size), np.float32) for _, models in group]
    for epoch in sorted({epoch for epoch, _ in group}):
        wanted = [i for i, (e, _) in enumerate(group) if e == epoch]
        for start, stop in zoo.checkpoints.stored_blocks(epoch):
            hits = {i: np.nonzero((group[i][1] >= start) & (group[i][1] < stop))[0] for i in wanted}
            needed = np.unique(np.concatenate([group[i][1][hit] for i, hit in hits.items()]))
            if len(needed):
                params = zoo.checkpoints.params(epoch, models=(start, stop))
                vectors = zoo.flat_vectors({"params": tree_take(params, needed - start)}, masked)
                for i, hit in hits.items():
                    out[i][hit] = vectors[np.searchsorted(needed, group[i][1][hit])]
    return out


def row_filter(zoo: Zoo, epochs: list[int], threshold: float, masked: bool) -> tuple[np.ndarray, np.ndarray]:
    """Of every (model, epoch): (has NaN/inf, finite but some |w| > threshold), each [M, len(epochs)]
    (`dropped_rows`), from one read of each stored block per epoch."""
    shape = (len(zoo.table), len(epochs))
    nan, large = np.zeros(shape, bool), np.zeros(shape, bool)
    for column, epoch in enumerate(epochs):
        for start, stop in zoo.checkpoints.stored_blocks(epoch):
            vectors = zoo.flat_vectors({"params": zoo.checkpoints.params(epoch, models=(start, stop))}, masked)
            nan[start:stop, column], large[start:stop, column] = dropped_rows(vectors, threshold)
    return nan, large


def fill_vectors(
    zoo: Zoo, epochs: list[int], masked: bool, destinations: list[tuple[pathlib.Path, int, np.ndarray]]
) -> None:
    """Writes every kept (model, epoch) row's flat vector in place, from one read of each stored
    block per epoch: destinations (file, byte offset of its float32 [rows, P] weights, the row of
    each (model, epoch) there [M, len(epochs)], -1 where not written)."""
    size = layout_size(zoo.vector_layout())
    files = [open(path, "r+b") for path, _, _ in destinations]
    try:
        for column, epoch in enumerate(epochs):
            for start, stop in zoo.checkpoints.stored_blocks(epoch):
                targets = [rows[start:stop, column] for _, _, rows in destinations]
                if not any((t >= 0).any() for t in targets):
                    continue
                params = zoo.checkpoints.params(epoch, models=(start, stop))
                vectors = np.ascontiguousarray(zoo.flat_vectors({"params": params}, masked), "<f4")
                for f, (_, offset, _), target in zip(files, destinations, targets):
                    for model in np.flatnonzero(target >= 0)[np.argsort(target[target >= 0])]:
                        f.seek(offset + int(target[model]) * size * 4)
                        f.write(vectors[model].data)
    finally:
        for f in files:
            f.close()


def split_chunks(models: list[int], copies: int, size: int) -> list[list[int]]:
    """A split's models (in split order) cut into chunks whose `copies` flat vectors of `size`
    float32 each fit `blocks.READ_BYTES`."""
    n = blocks.models_per_read(4 * size * copies)
    return [models[i : i + n] for i in range(0, len(models), n)]


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
