"""Sparsified twins: every model of a trained CNN-s zoo sparsified with Variational Dropout
(`jaxzoo.models.ard`) from its last epoch, the whole population at once, as the original's
CNN_ARD runs: log sigma^2 = -10, the model's own optimizer, learning rate and schedule (fresh
state), cross-entropy + KL with weight min(1, 0.01 * (epoch - 1) / n) over the run's n epochs
(25 by default). Each model draws its noise from its own seed (the original gave every twin the
same seed). The twin zoo is a workdir like any other (config.json, models.json, metrics.jsonl,
Orbax checkpoints 0..n, resume by rerunning), with the metric `sparsity` per epoch; evaluation
(val, test) uses the masked weights. Before sparsifying, each twin's epoch 0 (masked weights) is
compared with its source's final test accuracy (within 0.01) and cross-entropy (within 1%;
`test_nll` is the test cross-entropy without the KL term); `models.json` records the check.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
from ml_collections import ConfigDict

from jaxzoo.config import check_recorded_dataset, dataset_identity, identity, load_config_dataset
from jaxzoo.errors import UserError
from jaxzoo.host import check_destination
from jaxzoo.models import ard
from jaxzoo.models.registry import arch_name, build_model
from jaxzoo.training.loop import train_in_workdir
from jaxzoo.training.optimizers import init_state
from jaxzoo.training.plan import GroupPlan
from jaxzoo.training.population import build_population
from jaxzoo.training.run import Group, ZooRun
from jaxzoo.training.steps import (
    ARD_NOISE_STREAM,
    GroupSpec,
    Objective,
    StepFunctions,
    make_step_functions,
    nll_and_correct,
)
from jaxzoo.zoo import checkpoint
from jaxzoo.zoo.reader import read_zoo
from jaxzoo.zoo.trees import tree_take

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
        "method": "variational_dropout",
        "source_zoo": source_hash,
        "source_epoch": source_epoch,
        "log_sigma2_init": ard.LOG_SIGMA2_INIT,
        "threshold": ard.THRESHOLD,
        "notes": "each twin draws its noise from its own seed; the original used one seed for all twins",
    }
    return config


class TwinRun(ZooRun):
    """The trainer's run (groups, chunks, data, evaluation, the one step builder) with the twins'
    objective: each group's init starts from its source models and its loss adds the KL term."""

    def __init__(self, config: ConfigDict, population, dataset, source_params: dict):
        self.source_params = source_params
        self.objectives: dict[str, Objective] = {}  # one per activation: groups share their programs
        super().__init__(config, population, dataset)
        self.model_stats = jax.jit(jax.vmap(lambda p: (ard.sparsity(p), ard.kl_total(p), ard.masked_params(p))))

    def objective(self, arch, activation: str) -> Objective:
        """Cross-entropy of the stochastic (Variational Dropout) model plus the KL term weighted by
        `ard.kl_weight(epoch - 1, n)`; noise from the model's own stream, no dropout."""
        if activation not in self.objectives:
            stochastic = ard.StochasticCNN(arch, (activation,))
            num_epochs = self.config.training.num_epochs

            def loss(params, x, y, mask, key, factors_one, epoch):
                logits = stochastic.apply({}, params, x, 0, rngs={"noise": key}).astype(jnp.float32)
                loss_sum, correct = nll_and_correct(logits, y, mask)
                value = loss_sum / jnp.maximum(jnp.sum(mask), 1.0) + ard.kl_weight(
                    epoch - 1, num_epochs
                ) * ard.kl_total(params)
                return value, {"loss_sum": value * jnp.sum(mask), "correct": correct}

            self.objectives[activation] = Objective(loss, ARD_NOISE_STREAM, uses_dropout=False)
        return self.objectives[activation]

    def plan_groups(self, arch) -> GroupPlan:
        """Every static factor compiled apart: the twins' objective is built per activation."""
        return dataclasses.replace(super().plan_groups(arch), merged=(), chosen_by="split")

    def group_functions(self, spec: GroupSpec, members: np.ndarray, conv: str, shared: dict) -> StepFunctions:
        config, dataset = self.config, self.dataset
        model = build_model(
            config.model, spec.activations, spec.use_dropout, "xla", dataset.image_shape, dataset.num_classes
        )
        setup = dataclasses.replace(self.setup, max_train_examples=int(self.train_examples[members].max()))
        base = make_step_functions(
            model,
            spec,
            setup,
            self.population.inits,
            self.mesh,
            shared,
            self.objective(model.arch, spec.activations[0]),
        )
        transform = base.transform

        def init_one(source_params, values):
            params = ard.from_source(source_params)
            return {"params": params, "opt_state": init_state(transform, params, values)}

        def init(source_params, factors):
            return jax.vmap(init_one)(source_params, {name: factors[name] for name in spec.injected})

        optimizer = (spec.optimizer, spec.injected, spec.fixed)
        init_fn = shared.setdefault(("twin_init", *optimizer), jax.jit(init, out_shardings=self.models))
        return dataclasses.replace(base, init=init_fn)

    def init_chunk(self, group: Group, indices: np.ndarray):
        source = jax.device_put(tree_take(self.source_params, indices), self.models)
        return group.fns.init(source, self.chunk_factors(indices))

    def init_shapes(self, group: Group, indices: np.ndarray):
        return group.fns.init.eval_shape(tree_take(self.source_params, indices), self.chunk_factors(indices))

    def evaluate(
        self, group: Group, state, factors, splits: tuple[str, ...], real: int, epoch: int
    ) -> dict[str, np.ndarray]:
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
    check_destination(pathlib.Path(twin_workdir), "twin workdir")
    source = read_zoo(source_workdir)
    if arch_name(source.config["model"]) != "cnn_s":
        raise SparsifyError(
            f"sparsify supports CNN-s zoos (the original's CNN_ARD), not {arch_name(source.config['model'])}"
        )
    if "sparsify" in source.config:
        raise SparsifyError(f"{source_workdir} is already a sparsified twin: pass the trained source zoo")
    if not 1 <= epochs <= 1000:
        raise SparsifyError(f"--epochs {epochs} is out of range: use 1..1000 (the original: 25)")
    source_epoch = source.epochs[-1]
    config = twin_config(source.config, source.identity_hash, source_epoch, epochs)
    dataset = check_recorded_dataset(load_config_dataset(ConfigDict(config)), source.dataset_record, source.workdir)
    zoo_identity = identity(ConfigDict(config))
    zoo_identity["dataset"] = dataset_identity(ConfigDict(config), dataset)
    table = [dict(row) for row in source.table]
    models_path = pathlib.Path(twin_workdir) / "models.json"
    if models_path.exists():  # a resumed twin keeps its recorded source checks
        recorded = json.loads(models_path.read_text())
        if [r["model_id"] for r in recorded] == [r["model_id"] for r in table]:
            table = recorded
    population = build_population(table, config["population"])
    source_params = source.checkpoints.params(source_epoch)  # params only, no optimizer state
    path = pathlib.Path(twin_workdir).absolute()

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
        log.info(
            "twin epoch 0: %d of %d twins reproduce their source's test accuracy (within %.2f) and "
            "loss (within %.0f%%)",
            len(table) - failed,
            len(table),
            ACCURACY_TOLERANCE,
            100 * LOSS_RTOL,
        )

    def describe(epoch: int, metrics: dict, seconds: float) -> str:
        return (
            f"twin epoch {epoch}/{epochs}: sparsity mean {np.nanmean(metrics['sparsity']):.3f}, test_acc mean "
            f"{np.nanmean(metrics['test_acc']):.4f}; {seconds:.1f} s"
        )

    path, _ = train_in_workdir(
        path,
        zoo_identity,
        config,
        table,
        lambda _: TwinRun(ConfigDict(config), population, dataset, source_params),
        epochs,
        async_save=True,
        on_fresh=record_source_checks,
        describe=describe,
    )
    return {"workdir": str(path), "epochs": epochs}
