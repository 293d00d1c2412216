"""The epoch loop every zoo shares: resume or start, epoch 0, train, checkpoint, record.

`train_in_workdir` opens a zoo's workdir (identity checked, damaged epochs set aside, the
epoch writer opened and closed) and `run_epochs` drives a run (`EpochRun`: the
classification `ZooRun`, its sparsified twins, `jaxzoo.inr.train.InrRun`) through it; the
population axis of every zoo is the mesh axis 'pop'. Each epoch's checkpoint is written while
the next epoch trains.
"""

from __future__ import annotations

import collections
import logging
import os
import pathlib
import sys
import time
from collections.abc import Callable
from typing import Any, Protocol

import jax
import numpy as np
from tqdm import tqdm

from jaxzoo import compile_cache
from jaxzoo.training import distributed
from jaxzoo.zoo import checkpoint

log = logging.getLogger("jaxzoo")
POPULATION_AXIS = "pop"


def population_mesh() -> jax.sharding.Mesh:
    """This process's devices on one 'pop' axis (each process trains its own models)."""
    # Auto axes: XLA propagates the population sharding through the (model-local) program.
    return jax.make_mesh(
        (jax.local_device_count(),),
        (POPULATION_AXIS,),
        axis_types=(jax.sharding.AxisType.Auto,),
        devices=jax.local_devices(),
    )


def summarize(epoch: int, num_epochs: int, metrics: dict[str, np.ndarray], seconds: float) -> str:
    ok = ~metrics["diverged"]
    acc = metrics["test_acc"][ok]
    acc_text = (
        f"test_acc mean {acc.mean():.4f} min {acc.min():.4f} max {acc.max():.4f}" if acc.size else "no finite model"
    )
    return f"epoch {epoch}/{num_epochs}: {acc_text}; diverged {int((~ok).sum())}/{ok.size}; {seconds:.1f} s"


class CallProgress:
    """A tqdm bar advanced as compiled calls finish, never waiting for one: `add(output, amount)`
    after dispatching a call (`output`: one of its results), `finish()` at the end of an epoch.
    The postfix shows models/s: the bar's rate over `samples_per_model`."""

    def __init__(self, bar: tqdm, samples_per_model: int):
        self.bar, self.samples_per_model = bar, samples_per_model
        self.pending: collections.deque = collections.deque()

    def add(self, output: jax.Array, amount: int) -> None:
        self.pending.append((output, amount))
        done = 0
        while self.pending and self.pending[0][0].is_ready():
            done += self.pending.popleft()[1]
        if done:
            self.update(done)

    def update(self, amount: int) -> None:
        self.bar.update(amount)
        rate = self.bar.format_dict["rate"]
        if rate:
            self.bar.set_postfix_str(f"{rate / self.samples_per_model:.2f} models/s", refresh=False)

    def finish(self) -> None:
        self.update(sum(amount for _, amount in self.pending))
        self.pending.clear()


class EpochRun(Protocol):
    """What `run_epochs` needs of a zoo's run: its population, how to start, train and save it."""

    unit: str  # what the progress bar counts (model-sample, model-step)
    num_train: int  # units per model and epoch

    @property
    def population_size(self) -> int:
        """Models this process trains."""

    def abstract_state(self) -> Any:
        """Shapes and dtypes of the population's state [M, ...] (what a checkpoint restores)."""

    def compile(self) -> int:
        """Compiles the run's programs ahead of the first epoch; returns how many."""

    def init_state(self) -> Any:
        """The fresh population's state."""

    def place_state(self, state) -> Any:
        """The state where the run keeps it between epochs (devices or host)."""

    def initial_epoch(self, state) -> dict[str, np.ndarray]:
        """Epoch 0: the fresh models' metrics [M] per name."""

    def train_epoch(self, state, epoch: int, progress: tqdm | None) -> tuple[Any, dict[str, np.ndarray]]:
        """One epoch -> (new state, metrics [M] per name)."""


def train_in_workdir(
    workdir: str | os.PathLike,
    identity: dict,
    resolved: dict,
    table: list[dict],
    make_run: Callable[[pathlib.Path], EpochRun],
    num_epochs: int,
    *,
    async_save: bool,
    show_progress: bool = False,
    on_fresh: Callable[[dict], None] | None = None,
    describe: Callable[[int, dict, float], str] | None = None,
) -> tuple[pathlib.Path, dict]:
    """Opens (or creates) the workdir of the zoo `identity` and trains it to `num_epochs`.

    Every process checks the workdir before the first one writes (so all fail alike), the
    primary writes config.json and models.json (`table`), `make_run(path)` builds the run,
    damaged epochs are set aside, and `run_epochs` resumes or starts it. Returns the workdir
    and the last epoch's metrics.
    """
    path = checkpoint.prepare_workdir(workdir, identity, resolved, table, write=False)
    distributed.barrier("jaxzoo-workdir-checked")
    if distributed.is_primary():
        checkpoint.prepare_workdir(workdir, identity, resolved, table)
    distributed.barrier("jaxzoo-workdir-ready")
    run = make_run(path)
    if distributed.is_primary():
        checkpoint.set_aside_damaged(path)
    distributed.barrier("jaxzoo-checkpoints-checked")
    writer = checkpoint.open_writer(path, async_save)
    model_ids = np.array([row["model_id"] for row in table])
    try:
        metrics = run_epochs(run, writer, path, model_ids, num_epochs, show_progress, on_fresh, describe)
    finally:
        writer.close()
    return path, metrics


def run_epochs(
    run: EpochRun,
    writer,
    path: pathlib.Path,
    model_ids: np.ndarray,
    num_epochs: int,
    show_progress: bool = False,
    on_fresh: Callable[[dict], None] | None = None,
    describe: Callable[[int, dict, float], str] | None = None,
) -> dict[str, np.ndarray]:
    """Resumes a zoo after its newest complete epoch, or starts it (fresh state, epoch 0 =
    evaluation before training), then trains up to `num_epochs`: each epoch is checkpointed,
    then recorded in metrics.jsonl. `on_fresh(metrics)` runs after epoch 0's evaluation,
    before it is saved; `describe(epoch, metrics, seconds)` is the log line of an epoch.
    Returns the last epoch's metrics [M] per name (every process's models)."""
    describe = describe or (lambda epoch, metrics, seconds: summarize(epoch, num_epochs, metrics, seconds))
    restored = checkpoint.restore_latest(writer, run.abstract_state())
    if restored is None or restored[0] < num_epochs:
        start = time.time()
        with compile_cache.CompileCount() as count:
            programs = run.compile()
        log.info("compiled %d program(s) in %.1f s%s", programs, time.time() - start, count.describe())
    if restored is None:
        log.info("fresh zoo")
        start = time.time()
        state = run.place_state(run.init_state())
        metrics = distributed.gather_metrics(run.initial_epoch(state))
        if on_fresh is not None:
            on_fresh(metrics)
        checkpoint.save_epoch(writer, 0, state, metrics)
        if distributed.is_primary():
            checkpoint.rewrite_metrics_file(path, checkpoint.metrics_lines(0, model_ids, metrics))
        log.info(describe(0, metrics, time.time() - start))
        first_epoch = 1
    else:
        last, state = restored
        state = run.place_state(jax.tree.map(np.asarray, state))
        metrics = checkpoint.restore_metrics(writer.directory, last)  # what a finished zoo returns
        if distributed.is_primary():
            lines = checkpoint.saved_metrics_lines(writer.directory, range(last + 1), model_ids)
            checkpoint.rewrite_metrics_file(path, lines)
        log.info("resuming after epoch %d of %d", last, num_epochs)
        first_epoch = last + 1
    unrecorded = None  # (epoch, metrics) whose checkpoint is being written

    def record(epoch: int, metrics: dict) -> None:
        """Waits for the epoch's checkpoint, then adds its rows to metrics.jsonl."""
        checkpoint.wait_for_save(writer, epoch)
        if distributed.is_primary():
            checkpoint.append_metrics(path, checkpoint.metrics_lines(epoch, model_ids, metrics))

    for epoch in range(first_epoch, num_epochs + 1):
        start = time.time()
        progress = None
        if show_progress:
            progress = tqdm(
                total=run.population_size * run.num_train,
                desc=f"epoch {epoch}/{num_epochs}",
                unit=run.unit,
                unit_scale=True,
                file=sys.stderr,
                leave=False,
            )
        state, metrics = run.train_epoch(state, epoch, progress)
        metrics = distributed.gather_metrics(metrics)
        if progress is not None:
            progress.close()
        if unrecorded is not None:
            record(*unrecorded)
        checkpoint.save_epoch(writer, epoch, state, metrics, wait=False)  # written while the next epoch trains
        unrecorded = (epoch, metrics)
        seconds = time.time() - start
        log.info(
            "%s; %.0f %ss/s", describe(epoch, metrics, seconds), len(model_ids) * run.num_train / seconds, run.unit
        )
    if unrecorded is not None:
        record(*unrecorded)
    return metrics
