"""Sparsified twins: `python -m jaxzoo.sparsify --workdir W --out TWIN [--epochs 25]`.

Every model of the trained CNN-s zoo in W is sparsified with Variational Dropout (`jaxzoo.ard`)
from its last epoch, the whole population at once, as the original's CNN_ARD runs
: log sigma^2 = -10, the model's own optimizer and learning rate (fresh state),
cross-entropy + KL with weight min(1, 0.01 * (epoch - 1) / 25), 25 epochs. Each model draws its
noise from its own seed (the original gave every twin the same seed). The twin zoo is a
workdir like any other (config.json, models.json, metrics.jsonl, Orbax checkpoints 0..25,
resume by rerunning), with the metric `sparsity` per epoch; evaluation (val, test) uses the
masked weights. Before sparsifying, each twin's epoch 0 (masked weights) is compared with its
source's final test accuracy (within 0.01) and cross-entropy (within 1%; `test_nll` is the test
cross-entropy without the KL term); `models.json` records the check.
"""

from __future__ import annotations

import json
import logging
import math
import pathlib
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec
from ml_collections import ConfigDict

from jaxzoo import ard, checkpoint
from jaxzoo.config import data_options, identity
from jaxzoo.data import load_dataset
from jaxzoo.cli import ArgumentParser, check_destination, number_in, run, setup_logging
from jaxzoo.errors import UserError
from jaxzoo.export import read_zoo
from jaxzoo.optim import PopulationOptimizer
from jaxzoo.population import build_population
from jaxzoo.steps import eval_batches, make_step_functions, model_key, nll_and_correct
from jaxzoo.train import (
    POPULATION_AXIS, chunk_indices, population_mesh, train_chunk_epoch, tree_concat, tree_take,
)

NOISE_STREAM = 3
DEFAULT_EPOCHS = 25
CHUNK = 256
STEPS_PER_CALL = 25
ACCURACY_TOLERANCE = 0.01  # the original asserted rtol 1e-2 on the source's test accuracy
LOSS_RTOL = 1e-2  # and rtol 1e-3 on its loss; masking the tiniest weights moves it a little more
log = logging.getLogger("jaxzoo")


class SparsifyError(UserError):
    """The source zoo cannot be sparsified (message: problem and fix)."""


def twin_config(source_config: dict, source_hash: str, source_epoch: int, epochs: int) -> dict:
    config = json.loads(json.dumps(source_config))
    config["name"] = f"{source_config['name']}_vd"
    config["training"]["num_epochs"] = epochs
    if config.get("original", {}).get("experiment"):  # the original named them cnn_small_<data>_ard
        config["original"]["experiment"] = f"cnn_small_{config['data']['name']}_ard"
    config["sparsify"] = {
        "method": "variational_dropout", "source_zoo": source_hash, "source_epoch": source_epoch,
        "log_sigma2_init": ard.LOG_SIGMA2_INIT, "threshold": ard.THRESHOLD,
        "notes": "each twin draws its noise from its own seed; the original used one seed for all twins",
    }
    return config


class TwinRun:
    """Compiled functions and data for sparsifying a population of CNN-s models."""

    def __init__(self, config: dict, population, dataset):
        from jaxzoo.models import ARCHS

        self.arch = ARCHS[config["model"]["arch"]]
        self.population, self.dataset = population, dataset
        self.batch = config["training"]["batch_size"]
        self.num_train = len(dataset.train[1])
        self.steps_per_epoch = math.ceil(self.num_train / self.batch)
        self.mesh = population_mesh()
        self.models = NamedSharding(self.mesh, PartitionSpec(POPULATION_AXIS))
        replicated = NamedSharding(self.mesh, PartitionSpec())
        n_devices = jax.local_device_count()
        self.chunk = n_devices * math.ceil(min(CHUNK, population.size) / n_devices)
        self.fns = make_step_functions(
            self.arch, population.activations, population.inits, population.optimizers, False,
            config["population"]["momentum"], dataset.image_shape, self.num_train, self.batch,
            dataset.mean, dataset.std, self.mesh,
        )
        self.optimizer = PopulationOptimizer(population.optimizers, config["population"]["momentum"])
        self.stochastic = ard.StochasticCNN(self.arch, population.activations)
        self.train_images = jax.device_put(dataset.train[0], replicated)
        self.train_labels = jax.device_put(dataset.train[1], replicated)
        eval_batch = max(1, 256 // self.chunk)
        self.eval_splits = {s: jax.device_put(eval_batches(*getattr(dataset, s), eval_batch), replicated)
                            for s in ("train", "val", "test")}
        self.chunks = chunk_indices(population.size, self.chunk)
        self.init = jax.jit(jax.vmap(self._init_one), out_shardings=self.models)
        self.train = jax.jit(self._train, out_shardings=self.models)
        self.model_stats = jax.jit(jax.vmap(lambda p: (ard.sparsity(p), ard.kl_total(p), ard.masked_params(p))))

    def _init_one(self, source_params, lr, weight_decay):
        params = ard.from_source(source_params)
        return {"params": params, "opt_state": self.optimizer.init(params, lr, weight_decay)}

    def _train(self, state, factors, x, y, mask, epoch, first_step):
        kl_w = ard.kl_weight(epoch - 1)

        def one_step(params, opt_state, factors, xb, yb, mb, key):
            def loss_fn(p):
                logits = self.stochastic.apply({}, p, xb, factors["activation_index"], rngs={"noise": key})
                loss_sum, correct = nll_and_correct(logits, yb, mb)
                count = jnp.maximum(jnp.sum(mb), 1.0)
                loss = loss_sum / count + kl_w * ard.kl_total(p)
                return loss, (loss * jnp.sum(mb), correct)

            grads, (loss_sum, correct) = jax.grad(loss_fn, has_aux=True)(params)
            params, opt_state = self.optimizer.update(grads, opt_state, params, factors["optimizer_index"])
            return params, opt_state, loss_sum, correct

        def body(carry, batch):
            params, opt_state, step = carry
            keys = jax.vmap(lambda s: jax.random.fold_in(jax.random.fold_in(model_key(s, NOISE_STREAM), epoch), step))(factors["seed"])
            params, opt_state, loss_sum, correct = jax.vmap(one_step)(params, opt_state, factors, *batch, keys)
            return (params, opt_state, step + 1), (loss_sum, correct)

        (params, opt_state, _), (losses, corrects) = jax.lax.scan(body, (state["params"], state["opt_state"], first_step), (x, y, mask))
        return {"params": params, "opt_state": opt_state}, losses.sum(0), corrects.sum(0)

    def abstract_state(self, source_params):
        """Shapes of the whole population's twin state (the target for restoring a checkpoint)."""
        factors = self.population.factors()
        return jax.eval_shape(jax.vmap(self._init_one), source_params, factors["lr"], factors["weight_decay"])

    def factors(self, indices):
        return jax.device_put(self.population.factors(indices), self.models)

    def evaluate(self, params, factors, epoch: int, real: int) -> dict[str, np.ndarray]:
        """Masked-weight metrics; logged losses include kl_weight * KL, as the original."""
        sparsity, kl, masked = self.model_stats(params)
        kl_w = float(ard.kl_weight(epoch - 1))
        metrics = {"sparsity": np.asarray(sparsity)[:real]}
        for split in ("train", "val", "test"):
            if split == "train" and epoch > 0:
                continue  # training epochs log the running train loss instead
            x, y, mask = self.eval_splits[split]
            loss_sum, correct = self.fns.evaluate({"params": masked}, factors, x, y, mask)
            n = len(getattr(self.dataset, split)[1])
            metrics[f"{split}_loss"] = (np.asarray(loss_sum) / n + kl_w * np.asarray(kl))[:real]
            metrics[f"{split}_acc"] = (np.asarray(correct) / n)[:real]
            if split == "test":  # the cross-entropy alone, comparable with the source's test loss
                metrics["test_nll"] = (np.asarray(loss_sum) / n)[:real]
        return metrics

    def initial(self, source_params) -> tuple[dict, dict]:
        states, metric_parts = [], []
        for indices, real in self.chunks:
            factors = self.factors(indices)
            state = self.init(jax.device_put(tree_take(source_params, indices), self.models), factors["lr"], factors["weight_decay"])
            metric_parts.append(self.evaluate(state["params"], factors, 0, real))
            states.append(tree_take(jax.device_get(state), np.arange(real)))
        return tree_concat(states), {k: np.concatenate([m[k] for m in metric_parts]) for k in metric_parts[0]}

    def epoch(self, state, epoch: int) -> tuple[dict, dict]:
        states, metric_parts = [], []
        for indices, real in self.chunks:
            factors = self.factors(indices)
            chunk_state = jax.device_put(tree_take(state, indices), self.models)
            chunk_state, loss_sum, correct = train_chunk_epoch(
                self.fns, self.train, chunk_state, factors, self.train_images, self.train_labels, epoch,
                self.steps_per_epoch, STEPS_PER_CALL,
            )
            metrics = {"train_loss": np.asarray(loss_sum)[:real] / self.num_train,
                       "train_acc": np.asarray(correct)[:real] / self.num_train}
            metrics.update(self.evaluate(chunk_state["params"], factors, epoch, real))
            metric_parts.append(metrics)
            states.append(tree_take(jax.device_get(chunk_state), np.arange(real)))
        return tree_concat(states), {k: np.concatenate([m[k] for m in metric_parts]) for k in metric_parts[0]}


def with_divergence(state, metrics: dict) -> dict:
    finite = np.isfinite(metrics["train_loss"])
    for leaf in jax.tree.leaves(state["params"]):
        finite &= np.isfinite(leaf.reshape(leaf.shape[0], -1)).all(axis=1)
    return {**metrics, "diverged": ~finite}


def sparsify(source_workdir, twin_workdir, epochs: int = DEFAULT_EPOCHS) -> dict:
    """Creates (or resumes) the twin zoo of `source_workdir` in `twin_workdir`."""
    if pathlib.Path(twin_workdir).absolute() == pathlib.Path(source_workdir).absolute():
        raise SparsifyError(f"--out {twin_workdir} is the source zoo's --workdir: give the twin a workdir of its own")
    check_destination(pathlib.Path(twin_workdir), "--out")
    source = read_zoo(source_workdir)
    if source.config["model"]["arch"] != "cnn_s":
        raise SparsifyError(f"sparsify supports CNN-s zoos (the original's CNN_ARD), not {source.config['model']['arch']}")
    if "sparsify" in source.config:
        raise SparsifyError(f"{source_workdir} is already a sparsified twin: pass the trained source zoo")
    if not 1 <= epochs <= 1000:
        raise SparsifyError(f"--epochs {epochs} is out of range: use 1..1000 (the original: 25)")
    source_epoch = source.epochs[-1]
    config = twin_config(source.config, source.identity_hash, source_epoch, epochs)
    data = config["data"]
    dataset = load_dataset(data["name"], data["image_size"], data["max_examples_per_split"], data_options(ConfigDict(config)))
    zoo_identity = identity(ConfigDict(config))
    zoo_identity["dataset"] = {"source": dataset.source, "fingerprint": dataset.fingerprint}
    table = [dict(row) for row in source.table]
    models_path = pathlib.Path(twin_workdir) / "models.json"
    if models_path.exists():  # a resumed twin keeps its recorded source checks
        recorded = json.loads(models_path.read_text())
        if [r["model_id"] for r in recorded] == [r["model_id"] for r in table]:
            table = recorded
    population = build_population(table)
    run = TwinRun(config, population, dataset)
    source_params = source.state(source_epoch)["params"]
    path = checkpoint.prepare_workdir(twin_workdir, zoo_identity, config, table)
    checkpoint.set_aside_damaged(path)
    manager = checkpoint.open_manager(path, async_save=True)
    model_ids = population.arrays["model_id"]
    try:
        latest = manager.latest_step()
        if latest is None:
            state, metrics = run.initial(source_params)
            metrics = with_divergence(state, metrics)
            acc_gap = np.abs(metrics["test_acc"] - source.metrics[source_epoch]["test_acc"])
            source_loss = source.metrics[source_epoch]["test_loss"]
            loss_gap = np.abs(metrics["test_nll"] - source_loss) / np.maximum(np.abs(source_loss), 1e-8)
            for row, gap, rel in zip(table, acc_gap, loss_gap):
                ok = gap <= ACCURACY_TOLERANCE and rel <= LOSS_RTOL
                row["source_check"] = {"test_acc_gap": float(gap), "test_loss_rel_gap": float(rel), "ok": bool(ok)}
            checkpoint.prepare_workdir(path, zoo_identity, config, table)  # records the checks
            checkpoint.save_epoch(manager, 0, state, metrics)
            checkpoint.rewrite_metrics_file(path, checkpoint.metrics_lines(0, model_ids, metrics))
            failed = int(sum(not r["source_check"]["ok"] for r in table))
            log.info("twin epoch 0: %d of %d twins reproduce their source's test accuracy (within %.2f) and "
                     "loss (within %.0f%%)", len(table) - failed, len(table), ACCURACY_TOLERANCE, 100 * LOSS_RTOL)
            first = 1
        else:
            _, state = checkpoint.restore_latest(manager, run.abstract_state(source_params))
            state = jax.tree.map(np.asarray, state)
            lines = []
            for epoch in range(latest + 1):
                lines += checkpoint.metrics_lines(epoch, model_ids, checkpoint.restore_metrics(manager.directory, epoch))
            checkpoint.rewrite_metrics_file(path, lines)
            first = latest + 1
        for epoch in range(first, epochs + 1):
            start = time.time()
            state, metrics = run.epoch(state, epoch)
            metrics = with_divergence(state, metrics)
            checkpoint.save_epoch(manager, epoch, state, metrics)
            checkpoint.append_metrics(path, checkpoint.metrics_lines(epoch, model_ids, metrics))
            log.info("twin epoch %d/%d: sparsity mean %.3f, test_acc mean %.4f; %.1f s (%.1f model-epochs/s)",
                     epoch, epochs, np.nanmean(metrics["sparsity"]), np.nanmean(metrics["test_acc"]),
                     time.time() - start, len(table) / (time.time() - start))
        manager.wait_until_finished()
    finally:
        manager.close()
    return {"workdir": str(path), "epochs": epochs}


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m jaxzoo.sparsify", description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", required=True, help="the trained source zoo")
    parser.add_argument("--out", required=True, help="the twin zoo's workdir")
    parser.add_argument("--epochs", type=number_in(1, 1000, integer=True), default=DEFAULT_EPOCHS)
    args = parser.parse_args(argv)
    setup_logging()
    return run(lambda: sparsify(args.workdir, args.out, args.epochs), args.verbose)


if __name__ == "__main__":
    sys.exit(main())
