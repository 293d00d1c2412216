"""From a zoo to a trained weight-space predictor, with no glue code: predict each model's test
accuracy from its weights with a permutation-invariant network in NFN's form.

Steps: train the quickstart zoo if the workdir has none (configs/quickstart.py, ~40 s), export
its flat vectors with the leak-free split (`split_by="init"`: models that start from the same
weights stay in one split), turn each vector into NFN's per-layer tensors
(`jaxzoo.weights.adapters.to_nfn`), standardise each layer with the train split's statistics,
and train the predictor on the train rows, choosing the step count on val and reporting test.

The predictor: a small MLP applied to every weight of a layer (a conv weight's kh x kw kernel is
one input, a dense weight one number), averaged over the layer's output and input units, the
biases likewise; the per-layer means then go through an MLP to one number. Averaging over units
makes it invariant to every permutation of hidden units (NFN's invariant pooling).

Run:   python examples/predict_accuracy.py --workdir runs/quickstart
Time:  about 2 minutes on 2 CPU cores with the zoo trained (the export and 3,000 steps).
"""

from __future__ import annotations

import argparse
import pathlib
import runpy
import sys
import tempfile
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from scipy import stats

import jaxzoo
from jaxzoo.export import load_vectors
from jaxzoo.weights.adapters import to_nfn
from jaxzoo.weights.loaders import layer_statistics, standardise

QUICKSTART = pathlib.Path(__file__).resolve().parent.parent / "configs" / "quickstart.py"


class LayerEncoder(nn.Module):
    """One layer's (weights [N, out, in, k], biases [N, out]) -> an invariant feature [N, 2 * width]."""

    width: int

    @nn.compact
    def __call__(self, weights: jax.Array, biases: jax.Array) -> jax.Array:
        w = nn.Dense(self.width)(weights)  # every weight (its k kernel values) embedded alike
        w = nn.Dense(self.width)(nn.gelu(w)).mean(axis=(1, 2))  # mean over output and input units
        b = nn.Dense(self.width)(biases[..., None])
        b = nn.Dense(self.width)(nn.gelu(b)).mean(axis=1)
        return jnp.concatenate([w, b], axis=-1)


class InvariantPredictor(nn.Module):
    """Per-layer invariant features, concatenated, then an MLP -> one prediction per model [N]."""

    width: int = 32

    @nn.compact
    def __call__(self, weights: list[jax.Array], biases: list[jax.Array]) -> jax.Array:
        features = [LayerEncoder(self.width)(w, b) for w, b in zip(weights, biases)]
        h = nn.gelu(nn.Dense(4 * self.width)(jnp.concatenate(features, axis=-1)))
        return nn.Dense(1)(h)[:, 0]


def nfn_inputs(vectors: np.ndarray, index_dict: dict, statistics: dict) -> tuple[list, list]:
    """Standardised vectors [N, P] -> per-layer weights [N, out, in, k] and biases [N, out]."""
    weights, biases = to_nfn(standardise(vectors, index_dict, statistics), index_dict)
    weights = [w[:, 0].reshape(*w.shape[:1], *w.shape[2:4], -1) for w in weights]  # drop NFN's channel
    return [jnp.asarray(w) for w in weights], [jnp.asarray(b[:, 0]) for b in biases]


def r2(prediction: np.ndarray, target: np.ndarray) -> float:
    return float(1 - np.sum((prediction - target) ** 2) / np.sum((target - target.mean()) ** 2))


def train_predictor(splits, steps: int, batch_size: int, seed: int, log=print) -> dict:
    """Trains on splits['train'] (test accuracy as the target), evaluates on val every 100 steps,
    keeps the params of the best val R², and returns {split: {'r2', 'kendall_tau'}} at them."""
    index_dict = splits["train"].index_dict
    statistics = layer_statistics(splits["train"])
    inputs = {name: nfn_inputs(split.weights, index_dict, statistics) for name, split in splits.items()}
    targets = {name: np.asarray(split.properties["test_acc"], np.float32) for name, split in splits.items()}
    mean, std = targets["train"].mean(), targets["train"].std() + 1e-8

    model = InvariantPredictor()
    weights, biases = inputs["train"]
    params = model.init(jax.random.key(seed), [w[:1] for w in weights], [b[:1] for b in biases])
    optimizer = optax.adamw(1e-3, weight_decay=1e-4)
    opt_state = optimizer.init(params)

    @jax.jit
    def step(params, opt_state, rows):
        def loss(params):
            prediction = model.apply(params, [w[rows] for w in weights], [b[rows] for b in biases])
            return jnp.mean((prediction - (jnp.asarray(targets["train"])[rows] - mean) / std) ** 2)

        value, grads = jax.value_and_grad(loss)(params)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, value

    predict = jax.jit(lambda params, w, b: model.apply(params, w, b) * std + mean)

    def scores(params) -> dict:
        out = {}
        for name, (w, b) in inputs.items():
            prediction = np.asarray(predict(params, w, b))
            tau = stats.kendalltau(prediction, targets[name]).statistic
            out[name] = {"r2": r2(prediction, targets[name]), "kendall_tau": float(tau)}
        return out

    rng = np.random.default_rng(seed)
    count = len(targets["train"])
    best, best_params = -np.inf, params
    for number in range(1, steps + 1):
        rows = jnp.asarray(rng.choice(count, size=min(batch_size, count), replace=False))
        params, opt_state, value = step(params, opt_state, rows)
        if number % 100 == 0 or number == steps:
            now = scores(params)
            if now["val"]["r2"] > best:
                best, best_params = now["val"]["r2"], params
            log(f"step {number}: train loss {float(value):.4f}, val R² {now['val']['r2']:.3f}")
    return scores(best_params)


def run(
    workdir: str | pathlib.Path, export_to: str = "", steps: int = 3000, batch_size: int = 64, seed: int = 0
) -> dict:
    """The whole example: the zoo (trained if absent), its leak-free export, the predictor's
    scores {split: {'r2', 'kendall_tau'}}, plus 'rows' (per split) and 'shared_start'."""
    workdir = pathlib.Path(workdir)
    if not (workdir / "config.json").exists():
        print(f"training the quickstart zoo into {workdir}")
        jaxzoo.train_and_evaluate(runpy.run_path(str(QUICKSTART))["get_config"](), workdir)
    with tempfile.TemporaryDirectory() as scratch:
        out = pathlib.Path(export_to or scratch)
        report = jaxzoo.export_zoo(workdir, out, "vectors", overwrite=bool(export_to), log=None, split_by="init")
        splits = load_vectors(report["out"])
        rows = {name: len(split.weights) for name, split in splits.items()}
        print(f"rows by split (split_by=init): {rows}; shared starts: {report['split']['shared_start']}")
        results = train_predictor(splits, steps, batch_size, seed)
    return {**results, "rows": rows, "shared_start": report["split"]["shared_start"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", default="runs/quickstart", help="a classification zoo (trained here if empty)")
    parser.add_argument("--export", default="", help="where to export the vectors (default: a temporary folder)")
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    start = time.perf_counter()
    results = run(args.workdir, args.export, args.steps, args.batch_size, args.seed)
    for name in ("train", "val", "test"):
        print(f"{name}: R² {results[name]['r2']:.3f}, Kendall tau {results[name]['kendall_tau']:.3f}")
    print(f"done in {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
