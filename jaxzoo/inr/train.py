"""Fits an INR zoo: one SIREN per (image, seed), all of a chunk at once (`jax.vmap`).

Each step is a full-image step (every pixel) on the mean squared error. A model whose PSNR
reaches `training.target_psnr` before a step stops there: that step and every later one leave
its parameters and optimizer state exactly as they are, and `stopped_at` records the updates it
took. Every epoch (`training.steps_per_epoch` steps) is checkpointed; epoch 0 holds the fresh
models. Only models still running go into the next epoch's chunks, so stopped ones cost nothing.

A model's numbers depend on its seed, its image and the config only: its init key is
key(seed) folded with the init stream and its image index (not with `population.shared_init`),
and a step reads nothing random, so neither chunking nor the other models change it.
Run as `python -m jaxzoo.train --config configs/inr_quickstart.py` (the task is in the config).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import pathlib
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from jax.sharding import NamedSharding, PartitionSpec

from jaxzoo.config import dataset_identity, last_epoch, to_json_dict
from jaxzoo.host import check_destination
from jaxzoo.inr import siren
from jaxzoo.inr.config import inr_identity, validate_inr
from jaxzoo.inr.images import InrImages, load_images
from jaxzoo.training import distributed
from jaxzoo.training.loop import CallProgress, population_mesh, train_in_workdir
from jaxzoo.training.optimizers import init_state, make_transform
from jaxzoo.training.plan import padded_chunks
from jaxzoo.training.steps import INIT_STREAM, model_key, per_device
from jaxzoo.zoo.shards import shard_part
from jaxzoo.zoo.trees import tree_put, tree_take

log = logging.getLogger("jaxzoo")
SIRENS_PER_DEVICE = {"cpu": 16, "gpu": 8192, "tpu": 8192}  # CPU: 8..32 ran fastest (docs/benchmarks.md)
EVAL_CHUNK_PER_DEVICE = 512


def model_table(config: ml_collections.ConfigDict, images: InrImages) -> list[dict[str, Any]]:
    """One row per model, seeds outermost: model_id, seed, image, split, split_index, label."""
    pop = config.population
    table = []
    for slot in range(pop.num_seeds):
        for row in range(len(images)):
            table.append(
                {
                    "model_id": len(table),
                    "seed": pop.first_seed + slot,
                    "image": int(images.image_index[row]),
                    "split": str(images.split[row]),
                    "split_index": int(images.split_index[row]),
                    "label": int(images.labels[row]),
                }
            )
    return table


@dataclasses.dataclass(frozen=True)
class InrFunctions:
    """The compiled programs of an INR zoo (one for every model: they share shape and recipe)."""

    init: Any  # (seeds [M], images [M]) -> state
    train: Any  # (state, targets [M, P, C], first_step, num_steps static) -> state
    mse: Any  # (params [M], targets [M, P, C]) -> [M]
    transform: optax.GradientTransformation


def make_functions(config: ml_collections.ConfigDict, spec: siren.SirenSpec, coords: np.ndarray, mesh) -> InrFunctions:
    """The init, train and error programs, each sharded over the mesh's 'pop' axis."""
    training = config.training
    transform = make_transform(training.optimizer, ("lr",), {"weight_decay": 0.0})
    sin = siren.sine_function(config.runtime.sine)
    coords = jnp.asarray(coords)
    target_range, target_psnr = config.model.target_range, float(training.target_psnr)
    shared_init = config.population.shared_init
    lr = float(training.lr)

    def mse_one(params, target):
        return jnp.mean(jnp.square(siren.apply(spec, params, coords, sin) - target))

    def init_one(seed, image):
        key = model_key(seed, INIT_STREAM)
        params = siren.init_params(spec, key if shared_init else jax.random.fold_in(key, image))
        return {"params": params, "opt_state": init_state(transform, params, {"lr": lr}), "stopped_at": jnp.int32(-1)}

    def step_one(state, target, step):
        loss, grads = jax.value_and_grad(mse_one)(state["params"], target)
        stopped_at = state["stopped_at"]
        if target_psnr > 0:
            reached = siren.psnr(loss, target_range) >= target_psnr
            stopped_at = jnp.where((stopped_at < 0) & reached, step, stopped_at)
        updates, opt_state = transform.update(grads, state["opt_state"], state["params"])
        new = {"params": optax.apply_updates(state["params"], updates), "opt_state": opt_state}
        running = stopped_at < 0
        kept = jax.tree.map(
            lambda a, b: jnp.where(running, a, b), new, {"params": state["params"], "opt_state": state["opt_state"]}
        )
        return {**kept, "stopped_at": stopped_at}

    def train(state, targets, first_step, num_steps):
        def body(carry, step):
            return jax.vmap(step_one, in_axes=(0, 0, None))(carry, targets, step), None

        state, _ = jax.lax.scan(body, state, first_step + jnp.arange(num_steps, dtype=jnp.int32))
        return state

    pop, rep = PartitionSpec("pop"), PartitionSpec()
    trains = {}

    def train_steps(state, targets, first_step, num_steps: int):
        if num_steps not in trains:
            fn = lambda s, t, f: train(s, t, f, num_steps)
            trains[num_steps] = per_device(fn, mesh, (pop, pop, rep), pop)
        return trains[num_steps](state, targets, first_step)

    return InrFunctions(
        init=per_device(jax.vmap(init_one), mesh, (pop, pop), pop),
        train=train_steps,
        mse=per_device(jax.vmap(mse_one), mesh, (pop, pop), pop),
        transform=transform,
    )


class InrRun:
    """One fitting run of an INR zoo (the interface `jaxzoo.training.loop.run_epochs` drives)."""

    unit = "model-step"

    @property
    def population_size(self) -> int:
        return len(self.table)

    def __init__(self, config: ml_collections.ConfigDict, table: list[dict], images: InrImages):
        self.config = config
        self.table = table
        self.images = images
        self.spec = siren.spec_from_config(config.model, images.pixels.shape[-1])
        height, width = images.pixels.shape[1:3]
        self.coords = siren.coordinates(height, width, config.model.coordinates)
        self.targets = siren.targets(images.pixels, config.model.target_range)  # [N, P, C]
        rows = {int(index): row for row, index in enumerate(images.image_index)}
        self.target_rows = np.array([rows[r["image"]] for r in table])
        self.seeds = np.array([r["seed"] for r in table], np.uint32)
        self.image_index = np.array([r["image"] for r in table], np.int32)
        self.mesh = population_mesh()
        self.sharding = NamedSharding(self.mesh, PartitionSpec("pop"))
        n_devices = jax.local_device_count()
        chunk = config.runtime.chunk_size or SIRENS_PER_DEVICE.get(jax.default_backend(), 256) * n_devices
        self.chunk_size = n_devices * math.ceil(min(chunk, len(table)) / n_devices)
        self.steps_per_epoch = config.training.steps_per_epoch
        self.steps_per_call = config.runtime.steps_per_call or self.steps_per_epoch
        self.fns = make_functions(config, self.spec, self.coords, self.mesh)
        self.num_train = self.steps_per_epoch  # progress counts model-steps

    def put(self, tree):
        return jax.device_put(tree, self.sharding)

    def chunk_targets(self, indices: np.ndarray):
        return self.put(self.targets[self.target_rows[indices]])

    def init_chunk(self, indices: np.ndarray):
        return self.fns.init(self.put(self.seeds[indices]), self.put(self.image_index[indices]))

    def abstract_state(self):
        indices = padded_chunks(np.arange(len(self.table)), self.chunk_size)[0][0]
        one = self.fns.init.eval_shape(self.seeds[indices], self.image_index[indices])
        return jax.tree.map(lambda a: jax.ShapeDtypeStruct((len(self.table), *a.shape[1:]), a.dtype), one)

    def compile(self) -> int:
        """Compiles the programs on a chunk's shapes ahead of the first epoch; -> their count."""
        indices = padded_chunks(np.arange(len(self.table)), self.chunk_size)[0][0]
        state = self.init_chunk(indices)
        targets = self.chunk_targets(indices)
        self.fns.train(state, targets, jnp.int32(0), self.steps_per_call)
        self.fns.mse(state["params"], targets)
        return 3

    def place_state(self, state):
        """INR zoos keep their state as numpy arrays between epochs (chunks shrink as models stop)."""
        return state

    def init_state(self):
        state = jax.tree.map(lambda a: np.zeros(a.shape, a.dtype), self.abstract_state())
        for indices, real in padded_chunks(np.arange(len(self.table)), self.chunk_size):
            fresh = tree_take(jax.device_get(self.init_chunk(indices)), np.arange(real))
            tree_put(state, indices[:real], fresh)
        return state

    def errors(self, params) -> np.ndarray:
        """[M] mean squared error of every model on its image."""
        n_devices = jax.local_device_count()
        size = n_devices * math.ceil(min(EVAL_CHUNK_PER_DEVICE * n_devices, len(self.table)) / n_devices)
        out = np.empty(len(self.table), np.float32)
        for indices, real in padded_chunks(np.arange(len(self.table)), size):
            mse = self.fns.mse(self.put(tree_take(params, indices)), self.chunk_targets(indices))
            out[indices[:real]] = np.asarray(mse)[:real]
        return out

    def metrics(self, state, epoch: int) -> dict[str, np.ndarray]:
        """Per model: mse, psnr (dB), steps (updates taken), steps_to_target (NaN: not reached),
        reached (final PSNR at the target), diverged (a non-finite parameter or error)."""
        mse = self.errors(state["params"])
        psnr = np.asarray(siren.psnr(mse.astype(np.float64), self.config.model.target_range), np.float64)
        stopped_at = np.asarray(state["stopped_at"])
        steps = np.where(stopped_at >= 0, stopped_at, epoch * self.steps_per_epoch)
        target = float(self.config.training.target_psnr)
        reached = (psnr >= target) if target > 0 else np.zeros(len(mse), bool)
        finite = np.isfinite(mse)
        for leaf in jax.tree.leaves(state["params"]):
            finite &= np.isfinite(leaf.reshape(len(leaf), -1)).all(axis=1)
        # A model that reaches the target with its last update stops there too.
        to_target = np.where(stopped_at >= 0, stopped_at, np.where(reached, steps, np.nan)).astype(np.float64)
        return {
            "mse": mse.astype(np.float64),
            "psnr": psnr,
            "steps": steps.astype(np.float64),
            "steps_to_target": to_target,
            "reached": reached.astype(np.float64),
            "diverged": ~finite,
        }

    def initial_epoch(self, state) -> dict[str, np.ndarray]:
        return self.metrics(state, 0)

    def train_epoch(self, state, epoch: int, progress=None):
        """`steps_per_epoch` steps for every model still running -> (new state, metrics)."""
        state = jax.tree.map(np.array, state)
        running = np.flatnonzero(state["stopped_at"] < 0)
        first_step = (epoch - 1) * self.steps_per_epoch
        calls = CallProgress(progress, self.steps_per_epoch) if progress is not None else None
        for indices, real in padded_chunks(running, self.chunk_size, jax.local_device_count()):
            chunk = self.put(tree_take(state, indices))
            targets = self.chunk_targets(indices)
            for first in range(0, self.steps_per_epoch, self.steps_per_call):
                chunk = self.fns.train(chunk, targets, jnp.int32(first_step + first), self.steps_per_call)
                if calls is not None:
                    calls.add(chunk["stopped_at"], real * self.steps_per_call)
            values = tree_take(jax.device_get(chunk), np.arange(real))
            tree_put(state, indices[:real], values)
        if calls is not None:  # stopped models take no steps
            calls.update((len(self.table) - len(running)) * self.steps_per_epoch)
            calls.finish()
        return state, self.metrics(state, epoch)


def describe_epoch(num_epochs: int, target_psnr: float):
    """The log line of an epoch: PSNR spread, models at the target, diverged models."""

    def describe(epoch: int, metrics: dict[str, np.ndarray], seconds: float) -> str:
        ok = ~metrics["diverged"]
        psnr = metrics["psnr"][ok]
        text = (
            f"psnr median {np.median(psnr):.1f} dB min {psnr.min():.1f} max {psnr.max():.1f}"
            if psnr.size
            else "no finite model"
        )
        if target_psnr > 0:
            text += f"; at {target_psnr:g} dB {int(metrics['reached'].sum())}/{ok.size}"
        return f"epoch {epoch}/{num_epochs}: {text}; diverged {int((~ok).sum())}/{ok.size}; {seconds:.1f} s"

    return describe


def train_inr_zoo(config: ml_collections.ConfigDict, workdir: str | os.PathLike) -> dict[str, Any]:
    """Fits (or resumes) the INR zoo of `config` in `workdir`; returns the last epoch's metrics."""
    validate_inr(config)
    check_destination(pathlib.Path(workdir), "workdir")
    images = load_images(config)
    table = model_table(config, images)
    zoo_identity = inr_identity(to_json_dict(config))
    zoo_identity["dataset"] = dataset_identity(config, images.dataset)
    table, workdir = shard_part(config, table, workdir, zoo_identity)  # a job-array shard: its block
    models = table[distributed.process_block(len(table))]  # this process's (all of them in one process)
    num_epochs = last_epoch(config)

    def make_run(path) -> InrRun:
        log.info("INR zoo %s: writing to %s", config.name, path)
        log.info(
            "data %s from %s: %d images (%s), %d fits each",
            images.dataset.name,
            images.dataset.source,
            len(images),
            "+".join(config.images.splits),
            config.population.num_seeds,
        )
        run = InrRun(config, models, images)
        log.info(
            "INR zoo %s: %d SIRENs (process %d of %d: %d) of %d parameters, %d steps (%d epochs), chunks of %d "
            "on %d device(s)",
            config.name,
            len(table),
            jax.process_index(),
            jax.process_count(),
            len(models),
            run.spec.num_params,
            config.training.num_steps,
            num_epochs,
            run.chunk_size,
            jax.local_device_count(),
        )
        return run

    path, metrics = train_in_workdir(
        workdir,
        zoo_identity,
        to_json_dict(config),
        table,
        make_run,
        num_epochs,
        async_save=config.runtime.async_checkpointing,
        show_progress=config.runtime.progress,
        describe=describe_epoch(num_epochs, float(config.training.target_psnr)),
    )
    return {"epoch": num_epochs, "metrics": metrics, "workdir": str(path)}
