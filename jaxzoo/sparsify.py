"""Sparsified twins: `python -m jaxzoo.sparsify --workdir W --out TWIN [--epochs 25]`.

Every model of the trained CNN-s zoo in W is sparsified with Variational Dropout (`jaxzoo.ard`)
from its last epoch, the whole population at once, as the original's CNN_ARD runs
: log sigma^2 = -10, the model's own optimizer and learning rate (fresh state),
cross-entropy + KL with weight min(1, 0.01 * (epoch - 1) / n) over the run's n epochs (25 by default). Each model draws its
noise from its own seed (the original gave every twin the same seed). The twin zoo is a
workdir like any other (config.json, models.json, metrics.jsonl, Orbax checkpoints 0..25,
resume by rerunning), with the metric `sparsity` per epoch; evaluation (val, test) uses the
masked weights. Before sparsifying, each twin's epoch 0 (masked weights) is compared with its
source's final test accuracy (within 0.01) and cross-entropy (within 1%; `test_nll` is the test
cross-entropy without the KL term); `models.json` records the check.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import pathlib
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import NamedSharding, PartitionSpec
from ml_collections import ConfigDict

from jaxzoo import ard, checkpoint
from jaxzoo.architectures import arch_name
from jaxzoo.config import dataset_identity, identity, load_config_dataset
from jaxzoo.cli import ArgumentParser, check_destination, number_in, run, setup_logging
from jaxzoo.errors import UserError
from jaxzoo.export import read_zoo
from jaxzoo.optim import init_state
from jaxzoo.population import build_population
from jaxzoo.steps import ARD_NOISE_STREAM, GroupSpec, StepFunctions, model_key, nll_and_correct
from jaxzoo.train import POPULATION_AXIS, Group, ZooRun, run_epochs, tree_take

DEFAULT_EPOCHS = 25
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


class TwinRun(ZooRun):
    """The trainer's run (groups, chunks, data, evaluation) with the twins' objective: each
    group's init starts from its source models and its step adds the KL term."""

    def __init__(self, config: ConfigDict, population, dataset, source_params: dict):
        self.source_params = source_params
        super().__init__(config, population, dataset)
        self.model_stats = jax.jit(jax.vmap(lambda p: (ard.sparsity(p), ard.kl_total(p), ard.masked_params(p))))

    def group_functions(self, spec: GroupSpec, members: np.ndarray, conv: str, shared: dict) -> StepFunctions:
        base = super().group_functions(spec, members, "xla", shared)
        stochastic = ard.StochasticCNN(base.model.arch, (spec.activation,))
        transform = base.transform

        def init_one(source_params, values):
            params = ard.from_source(source_params)
            return {"params": params, "opt_state": init_state(transform, params, values)}

        def init(source_params, factors):
            return jax.vmap(init_one)(source_params, {name: factors[name] for name in spec.injected})

        num_epochs = self.config.training.num_epochs

        def train(state, factors, x, y, mask, epoch, first_step):
            kl_w = ard.kl_weight(epoch - 1, num_epochs)

            def one_step(params, opt_state, xb, yb, mb, key):
                def loss_fn(p):
                    logits = stochastic.apply({}, p, xb, 0, rngs={"noise": key})
                    loss_sum, correct = nll_and_correct(logits, yb, mb)
                    loss = loss_sum / jnp.maximum(jnp.sum(mb), 1.0) + kl_w * ard.kl_total(p)
                    return loss, (loss * jnp.sum(mb), correct)

                grads, (loss_sum, correct) = jax.grad(loss_fn, has_aux=True)(params)
                updates, new_state = transform.update(grads, opt_state, params)
                new_params = optax.apply_updates(params, updates)
                if spec.subset:  # a step past the model's subset is no step at all
                    new_params, new_state = jax.tree.map(lambda new, old: jnp.where(jnp.sum(mb) > 0, new, old),
                                                         (new_params, new_state), (params, opt_state))
                return new_params, new_state, loss_sum, correct

            def body(carry, batch):
                params, opt_state, step = carry
                keys = jax.vmap(lambda s: jax.random.fold_in(
                    jax.random.fold_in(model_key(s, ARD_NOISE_STREAM), epoch), step))(factors["seed"])
                params, opt_state, loss_sum, correct = jax.vmap(one_step)(params, opt_state, *batch, keys)
                return (params, opt_state, step + 1), (loss_sum, correct)

            carry = (state["params"], state["opt_state"], first_step)
            (params, opt_state, _), (losses, corrects) = jax.lax.scan(body, carry, (x, y, mask))
            return {"params": params, "opt_state": opt_state}, losses.sum(0), corrects.sum(0)

        # Twins have no dropout: groups that differ only there share their programs.
        models = NamedSharding(self.mesh, PartitionSpec(POPULATION_AXIS))
        optimizer = (spec.optimizer, spec.injected, spec.fixed)
        init_fn = shared.setdefault(("twin_init", *optimizer), jax.jit(init, out_shardings=models))
        donate = (0,) if self.donate_state else ()
        train_fn = shared.setdefault(("twin_train", spec.activation, *optimizer, spec.subset, spec.label_noise),
                                     jax.jit(train, out_shardings=models, donate_argnums=donate))
        return dataclasses.replace(base, init=init_fn, train=train_fn)

    def init_chunk(self, group: Group, indices: np.ndarray):
        source = jax.device_put(tree_take(self.source_params, indices), self.models)
        return group.fns.init(source, self.chunk_factors(indices))

    def evaluate(self, group: Group, state, factors, splits: tuple[str, ...], real: int,
                 epoch: int) -> dict[str, np.ndarray]:
        """Masked-weight metrics; logged losses include kl_weight * KL, as the original."""
        sparsity, kl, masked = self.model_stats(state["params"])
        kl_w = float(ard.kl_weight(epoch - 1, self.config.training.num_epochs))
        metrics = {"sparsity": np.asarray(sparsity)[:real]}
        plain = super().evaluate(group, {"params": masked}, factors, splits, real, epoch)
        for split in splits:
            metrics[f"{split}_loss"] = plain[f"{split}_loss"] + kl_w * np.asarray(kl)[:real]
            metrics[f"{split}_acc"] = plain[f"{split}_acc"]
            if split == "test":  # the cross-entropy alone, comparable with the source's test loss
                metrics["test_nll"] = plain["test_loss"]
        return metrics


def sparsify(source_workdir, twin_workdir, epochs: int = DEFAULT_EPOCHS) -> dict:
    """Creates (or resumes) the twin zoo of `source_workdir` in `twin_workdir`."""
    if pathlib.Path(twin_workdir).absolute() == pathlib.Path(source_workdir).absolute():
        raise SparsifyError(f"--out {twin_workdir} is the source zoo's --workdir: give the twin a workdir of its own")
    check_destination(pathlib.Path(twin_workdir), "--out")
    source = read_zoo(source_workdir)
    if arch_name(source.config["model"]) != "cnn_s":
        raise SparsifyError(f"sparsify supports CNN-s zoos (the original's CNN_ARD), not {arch_name(source.config['model'])}")
    if "sparsify" in source.config:
        raise SparsifyError(f"{source_workdir} is already a sparsified twin: pass the trained source zoo")
    if not 1 <= epochs <= 1000:
        raise SparsifyError(f"--epochs {epochs} is out of range: use 1..1000 (the original: 25)")
    source_epoch = source.epochs[-1]
    config = twin_config(source.config, source.identity_hash, source_epoch, epochs)
    dataset = load_config_dataset(ConfigDict(config))
    zoo_identity = identity(ConfigDict(config))
    zoo_identity["dataset"] = dataset_identity(ConfigDict(config), dataset)
    table = [dict(row) for row in source.table]
    models_path = pathlib.Path(twin_workdir) / "models.json"
    if models_path.exists():  # a resumed twin keeps its recorded source checks
        recorded = json.loads(models_path.read_text())
        if [r["model_id"] for r in recorded] == [r["model_id"] for r in table]:
            table = recorded
    population = build_population(table, config["population"])
    source_params = source.state(source_epoch)["params"]
    run = TwinRun(ConfigDict(config), population, dataset, source_params)
    path = checkpoint.prepare_workdir(twin_workdir, zoo_identity, config, table)
    checkpoint.set_aside_damaged(path)
    manager = checkpoint.open_manager(path, async_save=True)

    def record_source_checks(metrics: dict) -> None:
        """Epoch 0: does each twin's masked model reproduce its source? (models.json records it)"""
        acc_gap = np.abs(metrics["test_acc"] - source.metrics[source_epoch]["test_acc"])
        source_loss = source.metrics[source_epoch]["test_loss"]
        loss_gap = np.abs(metrics["test_nll"] - source_loss) / np.maximum(np.abs(source_loss), 1e-8)
        for row, gap, rel in zip(table, acc_gap, loss_gap):
            ok = gap <= ACCURACY_TOLERANCE and rel <= LOSS_RTOL
            row["source_check"] = {"test_acc_gap": float(gap), "test_loss_rel_gap": float(rel), "ok": bool(ok)}
        checkpoint.prepare_workdir(path, zoo_identity, config, table)
        failed = int(sum(not r["source_check"]["ok"] for r in table))
        log.info("twin epoch 0: %d of %d twins reproduce their source's test accuracy (within %.2f) and "
                 "loss (within %.0f%%)", len(table) - failed, len(table), ACCURACY_TOLERANCE, 100 * LOSS_RTOL)

    def describe(epoch: int, metrics: dict, seconds: float) -> str:
        return (f"twin epoch {epoch}/{epochs}: sparsity mean {np.nanmean(metrics['sparsity']):.3f}, test_acc mean "
                f"{np.nanmean(metrics['test_acc']):.4f}; {seconds:.1f} s")

    try:
        run_epochs(run, manager, path, population.arrays["model_id"], epochs, on_fresh=record_source_checks,
                   describe=describe)
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
