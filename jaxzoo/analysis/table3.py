"""Property prediction from weights, the paper's Table 3, for any zoo.

  python -m jaxzoo.benchmark --workdir W [--workdir W2 ...] [--epochs 5,15,50] [--out table.md]
  python -m jaxzoo.benchmark --vectors EXPORT/vectors

Rows are (model, epoch) states, split by model 70/15/15 as the export. Features: w, the full
flat vector, and s(w): per layer, for the weights then the biases, mean, population variance
and the 1/25/50/75/99 percentiles (14 per layer). Numeric targets (test_acc, ggap, epoch, lr,
wd, dropout): closed-form ridge with an intercept column (penalised too, as the original),
lambda among the original's 17 values by validation R^2; test R^2 is reported. Categorical
targets (optimizer, init, activation): the original's linear classifier (one linear layer,
kaiming-normal init, Adam lr 1e-4, wd 1e-6, 50 epochs, batch 10, NLL, seed 42); test accuracy.
Targets constant in the zoo are "n/a". Values are x100, as the paper.

ResNet-18 zoos, and zoos whose w features would pass `W_FEATURE_BYTES`: s(w) only (w is "n/a",
the table's note says why), computed per tensor of the flat vector a stored block of models at
a time, so Table 3's memory does not grow with the zoo.

Default epochs: the original notebook's [5, 15, 50] when the zoo has 50 epochs or more,
else every epoch 1..E (the paper does not state its epochs); an export's vectors: those of them
it holds. Both a workdir and an export's vectors drop rows with NaN/inf or |w| > threshold
(default 5; rows the export dropped stay dropped), print one line naming the epochs, the rows
per split and the dropped counts (`rows_line`), and record them in table3.json (the workdir's
card/, the vectors/ folder).
"""

from __future__ import annotations

import json
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxzoo.analysis import table2 as analysis
from jaxzoo.analysis.forward import MODEL_CHUNK, model_chunks
from jaxzoo.export.rows import dropped_rows, model_splits, vector_splits
from jaxzoo.models import resnet
from jaxzoo.training.factors import CORE_FACTORS, FACTOR_TABLE
from jaxzoo.weights.loaders import check_epochs
from jaxzoo.weights.vectors import (
    DEFAULT_THRESHOLD,
    SPLITS,
    VectorSplit,
    layout_size,
    load_vectors,
    take_rows,
    vectors_folder,
)
from jaxzoo.zoo.reader import Zoo, read_zoo

LAMBDAS = (1e3, 3e2, 1e2, 3e1, 1e1, 3.0, 1.0, 0.3, 0.1, 3e-2, 1e-2, 3e-3, 1e-3, 3e-4, 1e-4, 3e-5, 1e-5)
# Table 3's targets: the metrics, then every factor of the table (a zoo that does not vary one
# shows n/a). The original's column order: Acc GGap Epoch LR WD Dropout ... Opt Init Act.
NUMERIC_TARGETS = {
    "test_acc": "Acc",
    "ggap": "GGap",
    "epoch": "Epoch",
    **{f.name: f.table3 for f in FACTOR_TABLE if f.kind == "numeric"},
}
CATEGORICAL_TARGETS = {f.name: f.table3 for f in reversed(FACTOR_TABLE) if f.kind == "categorical"}
CORE_TARGETS = ("test_acc", "ggap", "epoch", *CORE_FACTORS)  # always a column, n/a where not varied
NOTEBOOK_EPOCHS = (5, 15, 50)
PERCENTILES = (1, 25, 50, 75, 99)


def layout_blocks(index_dict: dict) -> list[tuple[int, int]]:
    """(offset, size) of each tensor of a flat vector: per layer its weight, then its bias (the
    original's index_dict), or each tensor of a {'tensors': [...]} layout in order."""
    if "tensors" in index_dict:
        return [(t["offset"], int(np.prod(t["shape"]))) for t in index_dict["tensors"]]
    blocks = []
    for i in range(len(index_dict["layer"])):
        start = index_dict["idx_start"][i]
        n_weight = index_dict["kernel_no"][i] * index_dict["channels_in"][i] * index_dict["kernel_size"][i]
        blocks += [(start, n_weight), (start + n_weight, index_dict["kernel_no"][i])]
    return blocks


W_FEATURE_BYTES = 512 * 2**20  # Table 3's w features held in memory; past it w is n/a and s(w) streamed


def w_feature_bytes(zoo: Zoo, epochs: list[int]) -> int:
    """Bytes of the w features: every (model, epoch) row's float32 flat vector."""
    return len(zoo.table) * len(epochs) * 4 * layout_size(zoo.vector_layout())


def statistics_note(zoo: Zoo, epochs: list[int]) -> str:
    """Why a zoo's Table 3 has no w column (ResNet-18, or w features past `W_FEATURE_BYTES`)."""
    layout = zoo.vector_layout()
    why = (
        "too many to hold for every row (the paper reports s(w) only for them)"
        if zoo.is_resnet
        else f"and its {w_feature_bytes(zoo, epochs) / 2**30:.1f} GiB of w features are more than the "
        f"{W_FEATURE_BYTES // 2**20} MiB held in memory"
    )
    return (
        f"w is n/a for {'ResNet-18 zoos' if zoo.is_resnet else 'this zoo'}: a flat vector is "
        f"{layout_size(layout):,} numbers per model, {why}; s(w) is computed per tensor "
        f"({len(layout_blocks(layout))} tensors), a block of models at a time."
    )


def tensor_statistics(values: np.ndarray) -> list[np.ndarray]:
    """values [rows, n] of one tensor -> its 7 statistics, [rows] each: mean, population variance
    and the percentiles 1, 25, 50, 75, 99 (in float64)."""
    block = values.astype(np.float64)
    return [block.mean(axis=1), block.var(axis=1), *np.percentile(block, PERCENTILES, axis=1)]


def layer_statistics(weights: np.ndarray, index_dict: dict) -> np.ndarray:
    """s(w): [rows, P] -> [rows, 7 * tensors]; per tensor (a layer's weight, then its bias) the
    mean, variance and the percentiles 1, 25, 50, 75, 99 (`tensor_statistics`)."""
    return np.stack(
        [s for start, size in layout_blocks(index_dict) for s in tensor_statistics(weights[:, start : start + size])],
        axis=1,
    )


def resnet_statistics(params: dict) -> np.ndarray:
    """s(w) of ResNet-18 params [b, ...] -> [b, 7 * tensors]: `layer_statistics` of their flat
    vectors (`Zoo.flat_vectors`, the tensors of `resnet.torch_parameters` in order), computed one
    tensor at a time without building the vectors."""
    return np.stack(
        [
            s
            for _, tensor in resnet.torch_parameters(params)
            for s in tensor_statistics(tensor.reshape(len(tensor), -1))
        ],
        axis=1,
    )


def ridge_fit(x: np.ndarray, y: np.ndarray, penalty: float) -> np.ndarray:
    """Coefficients b of (X1^T X1 + penalty I) b = X1^T y, X1 = [X, 1], in float64. With more
    features than rows the same b comes from the rows' side, X1^T (X1 X1^T + penalty I)^-1 y
    (a model's flat vector can be far longer than a zoo has rows)."""
    x1 = np.concatenate([x, np.ones((len(x), 1))], axis=1).astype(np.float64)
    y = y.astype(np.float64)
    if x1.shape[1] > x1.shape[0]:
        return x1.T @ np.linalg.solve(x1 @ x1.T + penalty * np.eye(len(x1)), y)
    gram = x1.T @ x1 + penalty * np.eye(x1.shape[1])
    return np.linalg.solve(gram, x1.T @ y)


def ridge_predict(x: np.ndarray, coefficients: np.ndarray) -> np.ndarray:
    return x.astype(np.float64) @ coefficients[:-1] + coefficients[-1]


def r2(target: np.ndarray, prediction: np.ndarray) -> float:
    """1 - mean squared error / variance of the target (mean of the evaluated split)."""
    target = target.astype(np.float64)
    denominator = np.mean((target - target.mean()) ** 2)
    return float(1 - np.mean((target - prediction) ** 2) / denominator) if denominator > 0 else float("nan")


def ridge_select(train, val, test) -> dict:
    """Fits every penalty on train, picks the best val R^2, reports its R^2 on each split."""
    best = None
    for penalty in LAMBDAS:
        coefficients = ridge_fit(*train, penalty)
        score = r2(val[1], ridge_predict(val[0], coefficients))
        if best is None or score > best[0]:
            best = (score, penalty, coefficients)
    _, penalty, coefficients = best
    return {
        "penalty": penalty,
        **{
            name: r2(y, ridge_predict(x, coefficients))
            for name, (x, y) in (("train", train), ("val", val), ("test", test))
        },
    }


def linear_classifier(train, test, num_classes: int, epochs: int = 50, batch: int = 10, seed: int = 42) -> float:
    """The original's linear probe; returns test accuracy after the last epoch."""
    x_train, y_train = jnp.asarray(train[0], jnp.float32), jnp.asarray(train[1])
    n, d = x_train.shape
    key = jax.random.key(seed)
    params = {"w": jax.random.normal(key, (d, num_classes)) * np.sqrt(2.0 / d), "b": jnp.zeros(num_classes)}
    optimizer = optax.chain(optax.add_decayed_weights(1e-6), optax.adam(1e-4))
    steps = -(-n // batch)

    def loss_fn(p, x, y, mask):
        logp = jax.nn.log_softmax(x @ p["w"] + p["b"])
        nll = -jnp.take_along_axis(logp, y[:, None], axis=1)[:, 0]
        return jnp.sum(nll * mask) / jnp.sum(mask)

    @jax.jit
    def epoch(carry, epoch_key):
        params, opt_state = carry
        order = jnp.concatenate([jax.random.permutation(epoch_key, n), jnp.zeros(steps * batch - n, jnp.int32)])
        mask = (jnp.arange(steps * batch) < n).astype(jnp.float32).reshape(steps, batch)

        def step(carry, inputs):
            params, opt_state = carry
            idx, m = inputs
            grads = jax.grad(loss_fn)(params, x_train[idx], y_train[idx], m)
            updates, opt_state = optimizer.update(grads, opt_state, params)
            return (optax.apply_updates(params, updates), opt_state), None

        return jax.lax.scan(step, (params, opt_state), (order.reshape(steps, batch), mask))[0]

    carry = (params, optimizer.init(params))
    for key_e in jax.random.split(jax.random.fold_in(key, 1), epochs):
        carry = epoch(carry, key_e)
    params = carry[0]
    predictions = np.asarray(jnp.asarray(test[0], jnp.float32) @ params["w"] + params["b"]).argmax(1)
    return float((predictions == test[1]).mean())


def default_epochs(num_epochs: int) -> list[int]:
    return list(NOTEBOOK_EPOCHS) if num_epochs >= max(NOTEBOOK_EPOCHS) else list(range(1, num_epochs + 1))


def epoch_statistics(zoo: Zoo, epoch: int) -> tuple[np.ndarray, analysis.WeightFacts]:
    """(s(w) of every model at `epoch` [M, 7 * tensors], the models' `analysis.WeightFacts`), a
    stored block of models at a time (ResNet-18: `resnet_statistics`, else `layer_statistics`
    of the flat vectors; twins' raw weights, as `vector_splits`)."""
    features, facts = [], []
    index_dict = zoo.vector_layout()
    for _, params in model_chunks(zoo, epoch, np.arange(len(zoo.table)), MODEL_CHUNK, masked=False):
        if zoo.is_resnet:
            features.append(resnet_statistics(params))
            facts.append(analysis.WeightFacts.of_tensors(jax.tree.leaves(params)))
        else:
            vectors = zoo.params_vectors(params)
            features.append(layer_statistics(vectors, index_dict))
            facts.append(analysis.WeightFacts.of(vectors))
    return np.concatenate(features), analysis.WeightFacts.concat(facts)


def statistics_splits(zoo: Zoo, epochs: list[int], threshold: float) -> tuple[dict[str, VectorSplit], dict]:
    """`vector_splits` of a zoo whose vectors are too many or too long to hold: the split's
    weights are the s(w) rows [rows, 7 * tensors] (`epoch_statistics`); rows with NaN/inf or
    |w| > threshold in the model's flat vector are dropped and counted."""
    statistics, over = {}, {}
    for epoch in epochs:
        features, facts = epoch_statistics(zoo, epoch)
        keep = facts.viability(threshold).keep
        statistics[epoch] = np.where(keep[:, None], features, np.nan)
        over[epoch] = ~keep & ~facts.non_finite
    layout = {"tensors": [{"key": "s(w)", "offset": 0, "shape": [next(iter(statistics.values())).shape[1]]}]}
    splits, counts = vector_splits(zoo, epochs, np.inf, vectors=statistics, layout=layout)
    for split, models in model_splits(zoo).items():  # NaN rows above: tell the two reasons apart
        dropped = int(sum(over[epoch][models].sum() for epoch in epochs))
        counts[split].update(dropped_nan=counts[split]["dropped_nan"] - dropped, dropped_threshold=dropped)
    return splits, counts


def feature_sets(splits: dict[str, VectorSplit]) -> dict[str, dict[str, np.ndarray]]:
    """Table 3's features of each split: w, the flat vectors [rows, P], and s(w) (`layer_statistics`)."""
    return {
        "w": {k: v.weights for k, v in splits.items()},
        "s(w)": {k: layer_statistics(v.weights, v.index_dict) for k, v in splits.items()},
    }


def table3(splits: dict[str, VectorSplit], features: dict[str, dict[str, np.ndarray]] | None = None) -> dict:
    """{target: {feature: value} | 'n/a'} (x100) plus the raw details. features: {name: {split:
    [rows, F]}} (default `feature_sets`: w and s(w)); the splits give the targets."""
    features = feature_sets(splits) if features is None else features
    results, details = {}, {}
    for target in (*NUMERIC_TARGETS, *CATEGORICAL_TARGETS):
        if any(target not in v.properties for v in splits.values()):
            if target in CORE_TARGETS:
                results[target] = "n/a"
            continue
        values = {k: np.asarray(v.properties[target]) for k, v in splits.items()}
        if len(set(np.concatenate([np.asarray(v).astype(str) for v in values.values()]).tolist())) < 2:
            results[target] = "n/a"
            continue
        results[target], details[target] = {}, {}
        for name, feats in features.items():
            if target in NUMERIC_TARGETS:
                data = {}
                for split in ("train", "val", "test"):
                    y = values[split].astype(np.float64)
                    finite = np.isfinite(y)
                    data[split] = (feats[split][finite], y[finite])
                outcome = ridge_select(data["train"], data["val"], data["test"])
                results[target][name] = 100 * outcome["test"]
            else:
                classes = sorted(set(values["train"].tolist()))
                lookup = {c: i for i, c in enumerate(classes)}
                known = np.array([c in lookup for c in values["test"]])
                train = (feats["train"], np.array([lookup[c] for c in values["train"]]))
                test = (feats["test"][known], np.array([lookup[c] for c in values["test"][known]]))
                outcome = {"test": linear_classifier(train, test, len(classes)), "classes": classes}
                results[target][name] = 100 * outcome["test"]
            details[target][name] = outcome
    return {"table": results, "details": details}


def markdown(rows: dict[str, dict]) -> str:
    """Paper layout: one row per zoo, a (w, s(w)) column pair per property."""
    targets = [t for t in (*NUMERIC_TARGETS, *CATEGORICAL_TARGETS) if any(t in r for r in rows.values())]
    labels = {**NUMERIC_TARGETS, **CATEGORICAL_TARGETS}
    head = "| zoo | " + " | ".join(f"{labels[t]} w | {labels[t]} s(w)" for t in targets) + " |"
    lines = [head, "|---|" + "---:|" * (2 * len(targets))]
    cell = lambda value, feature: "n/a" if value == "n/a" or feature not in value else f"{value[feature]:.1f}"
    for zoo, table in rows.items():
        cells = [cell(table.get(target, "n/a"), feature) for target in targets for feature in ("w", "s(w)")]
        lines.append(f"| {zoo} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def rows_line(result: dict) -> str:
    """The line both paths print: the zoo, its epochs, rows per split and the rows dropped."""
    rows = result["rows"]
    dropped = {key: sum(rows[split][key] for split in SPLITS) for key in ("dropped_nan", "dropped_threshold")}
    line = (
        f"Table 3 of {result['zoo']}: epochs {result['epochs']}, train/val/test "
        f"{'/'.join(str(rows[split]['rows']) for split in SPLITS)} rows; dropped {dropped['dropped_nan']} "
        f"with NaN/inf, {dropped['dropped_threshold']} with |w| > {result['threshold']:g}"
    )
    if "exported" in result:
        at_export = sum(
            counts["dropped_nan"] + counts["dropped_threshold"] for counts in result["exported"]["rows"].values()
        )
        line += f" (the export dropped {at_export} rows over its epochs {result['exported']['epochs']})"
    return line


def benchmark_vectors(
    vectors, epochs: list[int] | None = None, threshold: float = DEFAULT_THRESHOLD, log=print
) -> dict:
    """Table 3 of an export's flat vectors (the export folder or its vectors/), on the rows of
    `epochs` (default as a workdir's, those the export holds) with |w| <= threshold, as
    `benchmark_workdir` selects them; also written to `<vectors>/table3.json`. `log` receives
    `rows_line` (None: silent)."""
    start = time.time()
    folder = vectors_folder(vectors)
    splits = load_vectors(folder)
    metas = {split: json.loads((folder / f"{split}.json").read_text()) for split in SPLITS}
    row_epochs = {  # an INR export's rows are one epoch's, named in its json
        split: np.asarray(data.properties["epoch"])
        if "epoch" in data.properties
        else np.full(len(data.weights), metas[split].get("epoch", 0))
        for split, data in splits.items()
    }
    exported = sorted(metas["train"].get("epochs") or set(np.concatenate(list(row_epochs.values())).tolist()))
    if epochs:
        for split in SPLITS:
            check_epochs(folder, split, epochs, row_epochs[split])
    else:
        epochs = [e for e in default_epochs(max(exported, default=0)) if e in exported] or exported
    counts, selected = {}, {}
    for split, data in splits.items():
        rows = take_rows(data, np.isin(row_epochs[split], epochs))
        nan, large = dropped_rows(rows.weights, threshold)
        selected[split] = take_rows(rows, ~(nan | large))
        counts[split] = {
            "rows": len(selected[split].weights),
            "dropped_nan": int(nan.sum()),
            "dropped_threshold": int(large.sum()),
        }
    at_export = {
        split: {k: meta.get(k, 0) for k in ("dropped_nan", "dropped_threshold")} for split, meta in metas.items()
    }
    result = {
        "zoo": folder.resolve().parent.name,
        "vectors": str(folder),
        "epochs": list(epochs),
        "threshold": threshold,
        "rows": counts,
        "exported": {"epochs": exported, "rows": at_export},
        **table3(selected),
    }
    result["seconds"] = time.time() - start
    (log or (lambda line: None))(rows_line(result))
    (folder / "table3.json").write_text(json.dumps(result, indent=1, default=str))
    return result


def benchmark_workdir(
    workdir, epochs: list[int] | None = None, threshold: float = DEFAULT_THRESHOLD, log=print
) -> dict:
    """Table 3 of one zoo; also written into `workdir/card/` (table3.json, table3.md, card README).
    `log` receives `rows_line` (None: silent)."""
    start = time.time()
    zoo = read_zoo(workdir)
    epochs = epochs or default_epochs(zoo.epochs[-1])
    if zoo.is_resnet or w_feature_bytes(zoo, epochs) > W_FEATURE_BYTES:
        splits, counts = statistics_splits(zoo, epochs, threshold)
        outcome = {
            **table3(splits, {"s(w)": {k: v.weights for k, v in splits.items()}}),
            "note": statistics_note(zoo, epochs),
        }
    else:
        splits, counts = vector_splits(zoo, epochs, threshold)
        outcome = table3(splits)
    result = {"zoo": zoo.config["name"], "epochs": epochs, "threshold": threshold, "rows": counts, **outcome}
    result["seconds"] = time.time() - start
    (log or (lambda line: None))(rows_line(result))
    folder = zoo.workdir / "card"
    folder.mkdir(exist_ok=True)
    (folder / "table3.json").write_text(json.dumps(result, indent=1, default=str))
    table_md = markdown({zoo.config["name"]: result["table"]}) + (f"\n{result['note']}\n" if "note" in result else "")
    (folder / "table3.md").write_text(table_md)
    readme = folder / "README.md"
    if readme.exists():
        text = readme.read_text().split("\n## Table 3")[0].rstrip() + "\n"
        readme.write_text(
            text + f"\n## Table 3 (property prediction, test R^2 / accuracy x100, epochs {epochs})\n\n{table_md}"
        )
    return result
