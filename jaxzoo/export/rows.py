"""The rows of an export's datasets: the zoo's models split 70/15/15 (the original's trial-name
shuffle, or groups of models kept together: `split_plan`), and per split the (model, epoch)
flat vectors with their properties, filtered as the original loader did (NaN/inf and
|w| > threshold rows dropped and counted). The flat-vector files and the Parquet files hold
the same rows.
"""

from __future__ import annotations

import hashlib
import math
import pathlib
import random
from collections.abc import Iterable, Iterator

import numpy as np

from jaxzoo.errors import UserError
from jaxzoo.models.torch_layout import module_indices
from jaxzoo.training.factors import FACTOR_TABLE, Factor
from jaxzoo.weights.vectors import VectorSplit, layout_size
from jaxzoo.zoo import blocks, checkpoint
from jaxzoo.zoo.reader import Zoo
from jaxzoo.zoo.trees import tree_take

SPLIT_FRACTIONS = (0.7, 0.15)  # train, val; test is the rest
MODEL_SPLIT_SEED = 42  # random.seed(42) before shuffling the sorted trial names, as the original
METRICS = checkpoint.METRIC_NAMES
TRIAL_FOLDER = "NN_tune_trainable_{model_id:05d}_seed={seed}"  # a model's trial folder name
# --split_by: one model per group (the original), or the models that share a seed, identical
# initial weights (the epoch-0 flat vector), an architecture or any factor of the zoo's grid.
SPLIT_RULES = ("model", "seed", "init", "architecture")


class ExportError(UserError):
    """The export cannot proceed (the message names the problem and the fix)."""


def trial_name(row: dict) -> str:
    """The trial folder of a model (row: model_id and seed), `TRIAL_FOLDER`."""
    return TRIAL_FOLDER.format(model_id=int(row["model_id"]), seed=int(row["seed"]))


def model_splits(zoo: Zoo, keys: list | None = None) -> dict[str, list[int]]:
    """{split: model indices}, 70/15/15 by model: sorted trial names shuffled with random.seed(42),
    as the original. With `keys` (one hashable per model, at least 3 distinct), the models of a
    key stay together: the groups, named by their first trial name, are shuffled by the same rule
    and cut where the split sizes come nearest to 70/15/15, each split holding a group or more."""
    members: dict = {}
    for i, row in sorted(enumerate(zoo.table), key=lambda item: trial_name(item[1])):
        members.setdefault(i if keys is None else keys[i], []).append(i)
    groups = sorted((trial_name(zoo.table[models[0]]), models) for models in members.values())
    random.seed(MODEL_SPLIT_SEED)
    random.shuffle(groups)
    n, count = len(zoo.table), len(groups)
    sizes = np.cumsum([0] + [len(models) for _, models in groups])
    n_train, n_val = int(SPLIT_FRACTIONS[0] * n), int(SPLIT_FRACTIONS[1] * n)
    if keys is None:  # the original's cuts (a split may be empty)
        train, val = n_train, n_train + n_val
    else:
        train = nearest_cut(sizes, n_train, 1, count - 2)
        val = nearest_cut(sizes, n_train + n_val, train + 1, count - 1)
    ordered = [[i for _, models in part for i in models] for part in (groups[:train], groups[train:val], groups[val:])]
    return dict(zip(("train", "val", "test"), ordered))


def nearest_cut(sizes: np.ndarray, wanted: int, low: int, high: int) -> int:
    """The cut (a number of groups in [low, high]) whose cumulative size `sizes` [G + 1] is
    nearest to `wanted` models (the smaller cut on a tie)."""
    return low + int(np.argmin(np.abs(sizes[low : high + 1] - wanted)))


def split_factors(zoo: Zoo) -> dict[str, Factor]:
    """The factors --split_by accepts, under jaxzoo's names and the original's keys."""
    factors = property_factors(zoo)
    return {**{f.original_key: f for f in factors}, **{f.name: f for f in factors}}


def init_keys(zoo: Zoo) -> list[str]:
    """Per model, a hash (blake2b, hex) of its first epoch's raw flat vector (float32 bytes):
    models with the same hash start from identical weights. One read of each stored block."""
    epoch, keys = zoo.epochs[0], []
    for start, stop in zoo.checkpoints.stored_blocks(epoch):
        vectors = zoo.flat_vectors({"params": zoo.checkpoints.params(epoch, models=(start, stop))}, False)
        keys += [hashlib.blake2b(np.ascontiguousarray(v, "<f4").tobytes(), digest_size=16).hexdigest() for v in vectors]
    return keys


def split_plan(zoo: Zoo, split_by: str = "model") -> dict:
    """The split of an export by `split_by` (`SPLIT_RULES` or a factor of the zoo): {'splits':
    {split: model indices}, 'report': what export.json, readme.md and the card say}. The report
    counts the val and test models whose initial weights (epoch-0 vector) are a train model's.
    ExportError for an unknown rule, or one that leaves every model in one group."""
    factors = split_factors(zoo)  # `init` is the rule (identical weights); model::init_type the factor
    if split_by not in SPLIT_RULES and split_by not in factors:
        raise ExportError(
            f"unknown --split_by {split_by!r}: choose from {', '.join(SPLIT_RULES)} or a factor of this zoo "
            f"({', '.join(sorted(set(factors) - set(SPLIT_RULES)))}; init means identical initial weights)"
        )
    if split_by == "architecture":
        raise ExportError(
            "--split_by architecture needs a zoo with several architectures and every model of this zoo is "
            f"{zoo.config['model']['arch']}: choose model, seed, init or a factor"
        )
    starts = init_keys(zoo)
    if split_by == "model":
        keys = None
    elif split_by == "init":
        keys = starts
    elif split_by == "seed":
        keys = [row["seed"] for row in zoo.table]
    else:
        keys = [row[factors[split_by].name] for row in zoo.table]
    if keys is not None and len(set(keys)) < 3:
        raise ExportError(
            f"--split_by {split_by} makes {len(set(keys))} group(s) of models in this zoo and train, val and test "
            "need one each: choose a key with at least 3 values (seed, init or a factor), or model"
        )
    splits = model_splits(zoo, keys)
    train_starts = {starts[i] for i in splits["train"]}
    return {
        "splits": splits,
        "report": {
            "split_by": split_by,
            "groups": len(zoo.table) if keys is None else len(set(keys)),
            "models": {split: len(models) for split, models in splits.items()},
            "shared_start": {split: sum(starts[i] in train_starts for i in splits[split]) for split in ("val", "test")},
        },
    }


def tensor_table(zoo: Zoo) -> list[dict]:
    """The flat vector cut into the state_dict's tensors, in vector order: [{key, offset, shape}]
    (offset and sizes in float32 values); built-in CNNs' keys depend on dropout, so a model with
    dropout > 0 takes `key_dropout` where the entry has one."""
    layout = zoo.vector_layout()
    if "tensors" in layout:
        return [dict(t) for t in layout["tensors"]]
    dropout = not zoo.is_twin and any(float(row.get("dropout", 0.0)) > 0 for row in zoo.table)
    indices = module_indices(zoo.arch, 0.5) if dropout else layout["layer"]
    tensors = []
    for layer, (start, out, size, cin) in enumerate(
        zip(layout["idx_start"], layout["kernel_no"], layout["kernel_size"], layout["channels_in"])
    ):
        side = math.isqrt(size)
        weight = [out, cin, side, side] if layer < len(zoo.arch.convs) else [out, cin]
        for name, offset, shape in (("weight", start, weight), ("bias", start + int(np.prod(weight)), [out])):
            entry = {"key": f"module_list.{layout['layer'][layer]}.{name}", "offset": offset, "shape": shape}
            if dropout:
                entry["key_dropout"] = f"module_list.{indices[layer]}.{name}"
            tensors.append(entry)
    return tensors


def vector_splits(
    zoo: Zoo,
    epochs: list[int],
    threshold: float,
    twin_weights: str = "raw",
    vectors: dict[int, np.ndarray] | None = None,
    layout: dict | None = None,
    splits: dict[str, list[int]] | None = None,
) -> tuple[dict[str, VectorSplit], dict]:
    """The flat-vector dataset in memory: {split: VectorSplit} and the filter counts per split.

    Rows are (model, epoch) of the split's models; rows with NaN/inf or |w| > threshold are
    dropped and counted, as the original loader did. Properties carry jaxzoo's names and the
    original's (`drop_in_properties`); twins' vectors are raw weights unless twin_weights='masked'.
    vectors {epoch: [M, P]} and their layout replace the zoo's flat vectors (e.g. features of them);
    splits {split: model indices} replaces the original 70/15/15 by model (`split_plan`).
    Every epoch of the zoo is in memory: exports stream by blocks instead (`split_chunks`).
    """
    layout = layout or zoo.vector_layout()
    masked = twin_weights == "masked"
    weights_by_epoch = vectors or {
        epoch: zoo.flat_vectors({"params": zoo.checkpoints.params(epoch)}, masked) for epoch in epochs
    }
    splits, counts = {}, {}
    for split, models in (splits or model_splits(zoo)).items():
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
