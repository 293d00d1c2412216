"""Trains a zoo: `python -m jaxzoo.train --config configs/<zoo>.py --workdir DIR`.

`train_and_evaluate(config, workdir)` does the work; `main` only parses flags. The population
is cut into chunks of models; each chunk is one compiled program (all models of a chunk train
at once, mixed factors included) whose population axis is sharded over the local devices.
Per epoch: every chunk trains over the whole train split in its own per-model data order,
then val and test are evaluated; the whole population's state and metrics are checkpointed.
Epoch 0 evaluates the fresh models (train split in eval mode, val, test) before any update.
Rerunning the same command resumes from the last complete epoch.
"""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import functools
import math
import os
import pathlib
import sys
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import logging

from absl import app, flags
from jax.sharding import NamedSharding, PartitionSpec
from ml_collections import config_flags
from tqdm import tqdm

from jaxzoo import checkpoint, cpu_conv, distributed, host
from jaxzoo.loop import POPULATION_AXIS, CallProgress, population_mesh, run_epochs
from jaxzoo.cli import check_destination, error_exit, quiet_libraries, setup_logging, use_cpu_cores
from jaxzoo.config import (RESNET_ARCHS, ConfigError, dataset_identity, identity, load_config_dataset,
                           to_json_dict, to_plain, validate)
from jaxzoo.data import Dataset
from jaxzoo.errors import UserError
from jaxzoo.inr.config import is_inr
from jaxzoo.inr.train import train_inr_zoo
from jaxzoo.factors import fixed_value, model_value, values_of
from jaxzoo.architectures import ModelError, arch_spec, build_model, check_custom_model, is_custom
from jaxzoo.models import ArchSpec
from jaxzoo.optim import optimizer_entry
from jaxzoo.population import Population, build_population, expand_grid
from jaxzoo.resnet_steps import make_resnet_step_functions
from jaxzoo.schedules import schedule_options
from jaxzoo.steps import GroupSpec, StepFunctions, eval_batches, make_step_functions

log = logging.getLogger("jaxzoo")
# On CPU the per-model path is memory-bound: 8 models per device and call, one device per
# core, ran fastest (docs/benchmarks.md). An accelerator takes the whole population (up to
# 4,096 models, or what fits) in one call.
DEFAULT_CHUNK_PER_DEVICE = {"cpu": 8, "gpu": 4096, "tpu": 4096}
# Model-images per evaluation step, and images per model: small on CPU (measured fastest),
# large on accelerators (few long steps keep them busy).
EVAL_MODEL_IMAGES_PER_STEP = {"cpu": 256, "gpu": 1 << 20, "tpu": 1 << 20}
MAX_EVAL_BATCH = {"cpu": 32, "gpu": 1024, "tpu": 1024}
# Bytes of gathered training images per compiled call (what sets the steps per call).
GATHER_BYTES_PER_CALL = {"cpu": 64 << 20, "gpu": 1 << 30, "tpu": 1 << 30}
MAX_CALLS_AHEAD = 8  # compiled calls dispatched ahead of the device
COMPILE_THREADS = 4  # measured on 2 cores: 8 groups compiled in 24 s with 4 threads, 43 s one by one


@dataclasses.dataclass(frozen=True)
class RunPlan:
    chunk_size: int  # models per compiled call (a multiple of the device count)
    steps_per_call: int  # training steps per compiled call
    eval_batch_size: int  # images per evaluation batch


def activation_floats_per_image(arch: ArchSpec, channels: int) -> int:
    """Floats one image produces in a forward pass (patches and layer outputs)."""
    size, total = arch.image_size, 0
    for conv in arch.convs:
        out = size - conv.kernel + 1
        total += out * out * (conv.kernel**2 * channels + 2 * conv.features)
        size = out // 2 if conv.pool else out
        channels = conv.features
    return total + sum(arch.hidden) * 2 + arch.num_classes


def available_memory_bytes() -> int:
    """Free memory of the first local device (accelerators), else of the host."""
    device = jax.local_devices()[0]
    stats = device.memory_stats() if device.platform != "cpu" else None
    if stats and "bytes_limit" in stats:
        return int(stats["bytes_limit"] - stats.get("bytes_in_use", 0))
    return host.available_memory_bytes()


def plan_run(config, population_size: int, arch: ArchSpec, image_shape, num_train: int,
             platform: str | None = None, memory_bytes: int | None = None) -> RunPlan:
    """Chunk size, steps per call and eval batch from the config, or when 0 from the devices:
    their `platform` (cpu, gpu, tpu) and free `memory_bytes` (default: the local ones')."""
    n_devices = jax.local_device_count()
    platform = platform or jax.local_devices()[0].platform
    platform = platform if platform in DEFAULT_CHUNK_PER_DEVICE else "gpu"
    budget = (memory_bytes or available_memory_bytes()) // 4
    per_image = activation_floats_per_image(arch, image_shape[-1]) * 4
    batch = config.training.batch_size
    chunk = config.runtime.chunk_size
    if not chunk:
        per_model = 3 * batch * per_image + 64 * 1024  # fwd+bwd activations, state, slack
        default = DEFAULT_CHUNK_PER_DEVICE[platform] * n_devices
        # A CPU shares its memory with everything else: a quarter of the budget there.
        share = 4 if platform == "cpu" else 1
        chunk = max(1, min(population_size, default, budget // (share * per_model)))
    chunk = n_devices * math.ceil(chunk / n_devices)
    steps_per_epoch = math.ceil(num_train / batch)
    steps = config.runtime.steps_per_call
    if not steps:
        image_bytes = math.prod(image_shape) * 4
        gather_bytes = min(GATHER_BYTES_PER_CALL[platform], budget // 4)
        target = max(1, min(steps_per_epoch, gather_bytes // (chunk * batch * image_bytes)))
        divisors = [d for d in range(max(1, target // 2), target + 1) if steps_per_epoch % d == 0]
        steps = divisors[-1] if divisors else target
    steps = min(steps, steps_per_epoch)
    # Small evaluation batches run fastest on CPU (measured): aim at ~256 model-images per step,
    # and at most 32 images per model (1 model: 35k images/s at 32 against 21k at 256).
    eval_batch = config.runtime.eval_batch_size or max(1, min(
        MAX_EVAL_BATCH[platform], EVAL_MODEL_IMAGES_PER_STEP[platform] // chunk, budget // (4 * chunk * per_image)))
    return RunPlan(chunk, steps, eval_batch)


def resnet_plan(config, population_size: int, num_train: int) -> RunPlan:
    """One model per device per call by default: each device runs its models one by one."""
    n_devices = jax.local_device_count()
    chunk = config.runtime.chunk_size or n_devices
    chunk = n_devices * math.ceil(min(chunk, max(population_size, 1)) / n_devices)
    full_steps = max(1, num_train // config.training.batch_size)
    default_steps = 1 if jax.default_backend() == "cpu" else 16  # CPU unrolls the steps of a call
    steps = min(config.runtime.steps_per_call or default_steps, full_steps)
    eval_batch = config.runtime.eval_batch_size or config.training.batch_size  # as the original's loaders
    return RunPlan(chunk, steps, eval_batch)


def chunk_indices(population_size: int, chunk_size: int) -> list[tuple[np.ndarray, int]]:
    """[(indices padded to chunk_size by repeating the last model, number of real models)]."""
    chunks = []
    for start in range(0, population_size, chunk_size):
        real = np.arange(start, min(start + chunk_size, population_size))
        padded = np.concatenate([real, np.full(chunk_size - len(real), real[-1])])
        chunks.append((padded, len(real)))
    return chunks


def tree_take(tree, indices: np.ndarray):
    return jax.tree.map(lambda a: np.asarray(a)[indices], tree)


def tree_concat(trees: list):
    return jax.tree.map(lambda *parts: np.concatenate(parts), *trees)


@jax.jit
def finite_rows(params) -> jax.Array:
    """[M] bool: every parameter of the model is finite (computed where `params` lie)."""
    finite = [jnp.isfinite(leaf.reshape(leaf.shape[0], -1)).all(axis=1) for leaf in jax.tree.leaves(params)]
    return functools.reduce(jnp.logical_and, finite)


def diverged(state, train_loss: np.ndarray) -> np.ndarray:
    """[M] bool: a non-finite parameter or train loss."""
    return ~(np.isfinite(train_loss) & np.asarray(finite_rows(state["params"])))


@functools.partial(jax.jit, static_argnums=(3, 4))
def take_steps(order: jax.Array, mask: jax.Array, first: jax.Array, steps: int, size: int | None):
    """Steps first..first+steps-1 of an epoch's order and mask [M, steps_per_epoch, B] (their
    first `size` samples); `first` is a device scalar, so a call transfers nothing."""
    order = jax.lax.dynamic_slice_in_dim(order, first, steps, axis=1)
    mask = jax.lax.dynamic_slice_in_dim(mask, first, steps, axis=1)
    return order[..., :size], mask[..., :size]


class DeviceInts:
    """int32 scalars placed on the devices once (epoch and step numbers of compiled calls)."""

    def __init__(self, sharding: NamedSharding):
        self.sharding = sharding
        self.values: dict[int, jax.Array] = {}

    def __call__(self, value: int) -> jax.Array:
        if value not in self.values:
            self.values[value] = jax.device_put(np.int32(value), self.sharding)
        return self.values[value]


def epoch_calls(steps_per_epoch: int, steps_per_call: int, last_batch_size: int = 0) -> list[tuple[int, int, int | None]]:
    """An epoch's compiled calls as (first step, end step, batch size or None: the full batch)."""
    full = steps_per_epoch - (1 if last_batch_size else 0)
    calls = [(first, min(first + steps_per_call, full), None) for first in range(0, full, steps_per_call)]
    if last_batch_size:
        calls.append((full, steps_per_epoch, last_batch_size))
    return calls


def train_chunk_epoch(fns: StepFunctions, state, factors, images, labels, epoch: int, steps_per_call: int,
                      after_call=None, last_batch_size: int = 0, device_int: Callable[[int], jax.Array] = jnp.int32):
    """One epoch of a chunk in its per-model data order, `steps_per_call` steps per compiled call.

    `fns.train(state, factors, x, y, mask, epoch, first_step) -> (state, loss_sum, correct)`
    may donate `state`; `after_call(first, last, loss_sum)` runs after each call is dispatched
    (progress; it must not wait for it). With `last_batch_size` the epoch's partial last batch
    runs alone at its real size (BatchNorm statistics must not see padding); otherwise it is
    padded and masked. `device_int(n)`: n as a device scalar (`DeviceInts` places each once).
    Returns the chunk's state and its running train loss sum and correct count [M] over the
    epoch, all on the device. At most MAX_CALLS_AHEAD calls are queued beyond the running one.
    """
    order, mask = fns.order(factors, device_int(epoch))
    loss_sum = correct = None
    queued: collections.deque = collections.deque()
    for first, last, size in epoch_calls(fns.steps_per_epoch, steps_per_call, last_batch_size):
        step_order, step_mask = take_steps(order, mask, device_int(first), last - first, size)
        x, y, m = fns.gather(images, labels, step_order, step_mask, factors)
        state, step_loss, step_correct = fns.train(state, factors, x, y, m, device_int(epoch), device_int(first))
        if loss_sum is None:
            loss_sum, correct = step_loss, step_correct
        else:
            loss_sum, correct = loss_sum + step_loss, correct + step_correct
        if after_call is not None:
            after_call(first, last, step_loss)
        queued.append(step_loss)
        if len(queued) > MAX_CALLS_AHEAD:  # bounds the memory of queued calls' batches
            queued.popleft().block_until_ready()
    return state, loss_sum, correct


def with_divergence(state, metrics: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The metrics [M] with 'diverged' (a non-finite parameter or train loss) added."""
    return {**metrics, "diverged": diverged(state, metrics["train_loss"])}


@dataclasses.dataclass(frozen=True)
class Group:
    """Models that share one compiled program: `members` index the population (table order);
    `chunks` are (population indices padded to the chunk size, number of real models)."""

    spec: GroupSpec | None  # None: a ResNet zoo (one group)
    members: np.ndarray
    fns: StepFunctions
    chunks: list[tuple[np.ndarray, int]]


def group_spec(config: ml_collections.ConfigDict, static: dict[str, Any]) -> GroupSpec:
    """The program of models with static factors `static` (`Population.groups`): which optimizer
    hyperparameters are per-model arrays (lr, weight decay, every other one the zoo varies), the
    fixed rest, the schedule's options; dropout, train subset and label noise as flags."""
    pop = config.population
    entry = optimizer_entry(static["optimizer"])
    injected = tuple(name for name in entry.hyperparams if name in ("lr", "weight_decay") or values_of(pop, name))
    fixed = tuple((name, float(fixed_value(pop, name, static["optimizer"])))
                  for name in entry.hyperparams if name not in injected)
    schedule = static["schedule"]
    options = schedule_options(schedule, to_plain(config.training.get("schedule_options")).get(schedule))
    return GroupSpec(static["activation"], static["optimizer"], injected, fixed, schedule,
                     tuple(sorted(options.items())), static["dropout"], static["train_fraction"],
                     static["label_noise"])


def group_chunks(members: np.ndarray, chunk_size: int) -> list[tuple[np.ndarray, int]]:
    """A group's chunks: at most `chunk_size` models, at least the devices' count."""
    n_devices = jax.local_device_count()
    size = n_devices * math.ceil(min(chunk_size, len(members)) / n_devices)
    return [(members[indices], real) for indices, real in chunk_indices(len(members), size)]


def tree_put(tree, indices: np.ndarray, values) -> None:
    """tree[indices] = values, leaf by leaf, in place (numpy leaves)."""
    jax.tree.map(lambda leaf, value: leaf.__setitem__(indices, value), tree, values)


class ZooRun:
    """One training run of a zoo: holds the data on device and each group's compiled functions."""

    unit = "model-sample"  # what the progress bar counts: models x train images

    @property
    def donate_state(self) -> bool:
        """Whether the training calls donate the state they get (updated in place): on
        accelerators. On XLA:CPU donation made the CNN-s epoch ~8% slower (measured)."""
        return jax.default_backend() != "cpu"

    def __init__(self, config: ml_collections.ConfigDict, population: Population, dataset: Dataset):
        self.config = config
        self.population = population
        self.dataset = dataset
        self.num_train = len(dataset.train[1])
        batch = config.training.batch_size
        self.steps_per_epoch = math.ceil(self.num_train / batch)
        self.mesh = population_mesh()
        self.models = NamedSharding(self.mesh, PartitionSpec(POPULATION_AXIS))
        replicated = NamedSharding(self.mesh, PartitionSpec())
        self.ints = DeviceInts(replicated)
        self._device_inputs: dict[tuple, Any] = {}  # per chunk: factors and rows, placed once
        self.is_resnet = config.model.arch in RESNET_ARCHS
        fractions = np.array([model_value(row, "train_fraction", config.population) for row in population.table])
        self.train_examples = np.maximum(1, np.round(fractions * self.num_train)).astype(np.int32)
        if self.is_resnet:
            self.plan = resnet_plan(config, population.size, self.num_train)
            fns = make_resnet_step_functions(
                dataset.num_classes, dataset.image_shape, self.num_train, batch, dataset.mean, dataset.std,
                self.mesh, config.training.augmentation, config.training.scheduler, config.population.momentum,
                config.training.num_epochs * self.steps_per_epoch, self.steps_per_epoch,
                config.training.compute_dtype, donate_state=self.donate_state,
            )
            members = np.arange(population.size)
            self.groups = [Group(None, members, fns, group_chunks(members, self.plan.chunk_size))]
            self.last_batch_size = self.num_train % batch
        else:
            # A custom module's memory is estimated as an MLP's (its activations are unknown here).
            shape_of = {"arch": "mlp"} if is_custom(config.model) else config.model
            arch = arch_spec(shape_of, dataset.image_shape[0], dataset.image_shape[-1], dataset.num_classes)
            self.plan = plan_run(config, population.size, arch, dataset.image_shape, self.num_train)
            # The CPU kernel computes in float32 only: other compute dtypes take XLA's convolutions.
            conv = "xla" if config.training.compute_dtype != "float32" else cpu_conv.resolve(config.runtime.conv)
            self.groups, shared = [], {}
            for static, members in population.groups():
                spec = group_spec(config, static)
                fns = self.group_functions(spec, members, conv, shared)
                self.groups.append(Group(spec, members, fns, group_chunks(members, self.plan.chunk_size)))
            self.last_batch_size = 0
        self.train_images = jax.device_put(dataset.train[0], replicated)
        self.train_labels = jax.device_put(dataset.train[1], replicated)
        eb = self.plan.eval_batch_size
        self.eval_splits = {  # Tiny-ImageNet has no val split: its val metrics are NaN
            split: jax.device_put(eval_batches(*getattr(dataset, split), eb), replicated)
            for split in ("train", "val", "test") if len(getattr(dataset, split)[1])
        }
        # The state is split over the devices when the population divides over them.
        self.state_sharding = self.models if population.size % jax.local_device_count() == 0 else replicated
        self.on_device = self.state_on_device(config.runtime.get("state_placement", "auto"))
        self.take_rows = jax.jit(lambda tree, rows: jax.tree.map(lambda a: a[rows], tree), out_shardings=self.models)
        self.put_rows = jax.jit(
            lambda tree, rows, values: jax.tree.map(lambda a, v: a.at[rows].set(v, mode="drop"), tree, values),
            out_shardings=self.state_sharding, donate_argnums=(0,))
        for group in self.groups:  # every call's step number, placed before the first epoch
            for first, _, _ in epoch_calls(group.fns.steps_per_epoch, self.plan.steps_per_call, self.last_batch_size):
                self.ints(first)

    def state_on_device(self, placement: str) -> bool:
        """Whether the population's state stays on the devices between calls and epochs:
        `runtime.state_placement`, where 'auto' means on an accelerator when the state (held
        twice while a chunk is written back, plus a checkpoint's copy) fits a quarter of its memory."""
        if placement != "auto":
            return placement == "device"
        if jax.local_devices()[0].platform == "cpu":
            return False
        state_bytes = sum(math.prod(a.shape) * a.dtype.itemsize for a in jax.tree.leaves(self.abstract_state()))
        return 3 * state_bytes <= available_memory_bytes() // 4

    def group_functions(self, spec: GroupSpec, members: np.ndarray, conv: str, shared: dict) -> StepFunctions:
        """The compiled functions of one group (a subclass may train another objective)."""
        config, dataset = self.config, self.dataset
        model = build_model(config.model, spec.activation, spec.use_dropout, conv, dataset.image_shape,
                            dataset.num_classes)
        return make_step_functions(
            model, spec, self.population.inits, dataset.image_shape, self.num_train, config.training.batch_size,
            config.training.num_epochs, dataset.num_classes, dataset.mean, dataset.std, self.mesh,
            int(self.train_examples[members].max()), shared, config.training.compute_dtype, self.donate_state,
        )

    @property
    def chunks(self) -> list[tuple[np.ndarray, int]]:
        return [chunk for group in self.groups for chunk in group.chunks]

    def chunk_factors(self, indices: np.ndarray) -> dict[str, jax.Array]:
        """The factors [chunk] of the models `indices` on the devices (placed once per chunk)."""
        key = ("factors", indices.tobytes())
        if key not in self._device_inputs:
            factors = {**self.population.factors(indices), "train_examples": self.train_examples[indices]}
            self._device_inputs[key] = jax.device_put(factors, self.models)
        return self._device_inputs[key]

    def chunk_rows(self, indices: np.ndarray, real: int) -> tuple[jax.Array, jax.Array]:
        """Device int32 rows of a chunk in the population: to read (padding repeats the last
        model) and to write (padding points past the population, so it is dropped)."""
        key = ("rows", indices.tobytes(), real)
        if key not in self._device_inputs:
            write = np.where(np.arange(len(indices)) < real, indices, self.population.size)
            rows = (indices.astype(np.int32), write.astype(np.int32))
            self._device_inputs[key] = jax.device_put(rows, NamedSharding(self.mesh, PartitionSpec()))
        return self._device_inputs[key]

    def place_state(self, state):
        """The population's state [M, ...] where this run keeps it between calls: on the
        devices (`self.on_device`) or as numpy arrays."""
        if self.on_device:
            return jax.device_put(state, self.state_sharding)
        return jax.tree.map(np.asarray, state)

    def chunk_state(self, group: Group, state, indices: np.ndarray, real: int):
        """The chunk's state on the devices, as the group's program takes it."""
        if self.on_device:
            return self.take_rows(self.group_state(group, state, None), self.chunk_rows(indices, real)[0])
        return jax.device_put(self.group_state(group, state, indices), self.models)

    def store_chunk(self, group: Group, state, indices: np.ndarray, real: int, chunk_state):
        """The population's state with the chunk's first `real` models written back (on the
        device path the given `state` is donated; on the host path it is updated in place)."""
        if not self.on_device:
            self.put_group_state(group, state, indices[:real], tree_take(jax.device_get(chunk_state), np.arange(real)))
            return state
        rows = self.chunk_rows(indices, real)[1]
        if group.spec is None:
            return self.put_rows(state, rows, chunk_state)
        opt_states = dict(state["opt_state"])
        params, opt_states[group.spec.optimizer] = self.put_rows(
            (state["params"], state["opt_state"][group.spec.optimizer]), rows,
            (chunk_state["params"], chunk_state["opt_state"]))
        return {"params": params, "opt_state": opt_states}

    def group_state(self, group: Group, state, indices: np.ndarray | None):
        """The rows `indices` (None: all) of the zoo's state as the group's program takes them (its
        own optimizer's state: the zoo keeps one state per optimizer it uses, for every model)."""
        take = (lambda tree: tree) if indices is None else (lambda tree: tree_take(tree, indices))
        if group.spec is None:
            return take(state)
        return {"params": take(state["params"]), "opt_state": take(state["opt_state"][group.spec.optimizer])}

    def put_group_state(self, group: Group, state, indices: np.ndarray, values) -> None:
        if group.spec is None:
            tree_put(state, indices, values)
        else:
            tree_put(state["params"], indices, values["params"])
            tree_put(state["opt_state"][group.spec.optimizer], indices, values["opt_state"])

    def abstract_state(self):
        """Shapes of the whole population's state [M, ...] (traced on one chunk per group: the
        population axis of a compiled call must divide over the devices, M need not)."""
        whole = lambda tree: jax.tree.map(
            lambda a: jax.ShapeDtypeStruct((self.population.size, *a.shape[1:]), a.dtype), tree)
        shapes = {}
        for group in self.groups:
            self.chunk_factors(group.chunks[0][0])  # placed outside the trace (they are cached)
            chunk = whole(jax.eval_shape(lambda: self.init_chunk(group, group.chunks[0][0])))
            if group.spec is None:
                return chunk
            shapes.setdefault("params", chunk["params"])
            shapes.setdefault("opt_state", {}).setdefault(group.spec.optimizer, chunk["opt_state"])
        shapes["opt_state"] = dict(sorted(shapes["opt_state"].items()))
        return shapes

    def compile(self, max_workers: int = COMPILE_THREADS) -> int:
        """Compiles every group's init, training and evaluation programs ahead of the first
        epoch, several at once (XLA compiles in parallel threads; a population of many groups
        would otherwise wait for each in turn). Returns the number of programs compiled."""
        tasks = {}
        pop_axis = NamedSharding(self.mesh, PartitionSpec(POPULATION_AXIS))
        steps_axis = NamedSharding(self.mesh, PartitionSpec(None, POPULATION_AXIS))
        step_number = jax.ShapeDtypeStruct((), jnp.int32, sharding=NamedSharding(self.mesh, PartitionSpec()))
        on = lambda tree, sharding: jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=sharding), tree)
        for group in self.groups:
            if group.spec is None:  # ResNet steps are Python loops around their compiled parts
                continue
            fns, steps_per_call = group.fns, min(self.plan.steps_per_call, group.fns.steps_per_epoch)
            for indices in {len(indices): indices for indices, _ in group.chunks}.values():
                factors = self.chunk_factors(indices)  # placed outside the trace (they are cached)
                state = on(jax.eval_shape(lambda: self.init_chunk(group, indices)), pop_axis)
                tasks[(id(fns.init), len(indices))] = lambda g=group, i=indices: self.init_chunk(g, i)
                params = {"params": state["params"]}
                for x, y, mask in {a[0].shape: a for a in self.eval_splits.values()}.values():
                    tasks[(id(fns.evaluate), len(indices), x.shape)] = functools.partial(
                        fns.evaluate.lower, params, factors, x, y, mask)
                for first, last, _ in epoch_calls(fns.steps_per_epoch, steps_per_call):
                    b = self.config.training.batch_size
                    x = jax.ShapeDtypeStruct((last - first, len(indices), b, *self.dataset.image_shape), jnp.float32,
                                             sharding=steps_axis)
                    y = jax.ShapeDtypeStruct((last - first, len(indices), b), jnp.int32, sharding=steps_axis)
                    mask = jax.ShapeDtypeStruct((last - first, len(indices), b), jnp.float32, sharding=steps_axis)
                    tasks[(id(fns.train), len(indices), last - first)] = functools.partial(
                        fns.train.lower, state, factors, x, y, mask, step_number, step_number)

        def run(task):
            out = task()
            if hasattr(out, "compile"):
                out.compile()

        with concurrent.futures.ThreadPoolExecutor(max(1, min(max_workers, len(tasks)))) as pool:
            list(pool.map(run, tasks.values()))
        return len(tasks)

    def init_state(self):
        """The whole population's fresh state, as numpy arrays [M, ...] (an optimizer's state
        of models that use another optimizer stays zero)."""
        state = jax.tree.map(lambda a: np.zeros(a.shape, a.dtype), self.abstract_state())
        for group in self.groups:
            for indices, real in group.chunks:
                fresh = jax.device_get(self.init_chunk(group, indices))
                self.put_group_state(group, state, indices[:real], tree_take(fresh, np.arange(real)))
        return state

    def init_chunk(self, group: Group, indices: np.ndarray):
        """Fresh state of the models `indices` (padded chunk), on device."""
        return group.fns.init(self.chunk_factors(indices))

    def evaluate(self, group: Group, state, factors, splits: tuple[str, ...], real: int,
                 epoch: int) -> dict[str, np.ndarray]:
        """Eval-mode loss and accuracy per split of the first `real` models of a chunk, after `epoch`."""
        metrics = {}
        for split in splits:
            if split not in self.eval_splits:
                metrics[f"{split}_loss"] = metrics[f"{split}_acc"] = np.full(real, np.nan)
                continue
            x, y, mask = self.eval_splits[split]
            # Only the params: groups that share an evaluation differ in their optimizer state.
            params = state if group.spec is None else {"params": state["params"]}
            loss_sum, correct = group.fns.evaluate(params, factors, x, y, mask)
            n = len(getattr(self.dataset, split)[1])
            metrics[f"{split}_loss"] = np.asarray(loss_sum)[:real] / n
            metrics[f"{split}_acc"] = np.asarray(correct)[:real] / n
        return metrics

    def initial_epoch(self, state) -> dict[str, np.ndarray]:
        """Epoch 0: evaluation of the fresh models, train split in eval mode."""
        metrics: dict[str, np.ndarray] = {}
        for group in self.groups:
            for indices, real in group.chunks:
                chunk_state = self.chunk_state(group, state, indices, real)
                part = self.evaluate(group, chunk_state, self.chunk_factors(indices), ("train", "val", "test"), real, 0)
                put_metrics(metrics, indices[:real], part, self.population.size)
        return with_divergence(state, metrics)

    def train_epoch(self, state, epoch: int, progress: tqdm | None):
        """One epoch for the whole population -> (new state, metrics). On the host path the
        caller's state stays as it was; on the device path it is donated (use the returned one)."""
        if not self.on_device:
            state = jax.tree.map(np.array, state)  # a copy: the caller's state stays as it was
        self.ints(epoch)  # the epoch's number, placed on the devices once
        return self.epoch_body(state, epoch, progress)

    def epoch_body(self, state, epoch: int, progress: tqdm | None):
        """`train_epoch` once the epoch's number is placed (`self.ints`): on the device path
        nothing goes from the host to the devices here (state, data, factors and step numbers
        are all there already)."""
        metrics: dict[str, np.ndarray] = {}
        calls = CallProgress(progress, self.num_train) if progress is not None else None
        for group in self.groups:
            steps_per_call = min(self.plan.steps_per_call, group.fns.steps_per_epoch)
            for indices, real in group.chunks:
                factors = self.chunk_factors(indices)
                chunk_state = self.chunk_state(group, state, indices, real)

                def show(first, last, step_loss, real=real):
                    batch = self.config.training.batch_size
                    calls.add(step_loss, real * (min(last * batch, self.num_train) - min(first * batch, self.num_train)))

                chunk_state, loss_sum, correct = train_chunk_epoch(
                    group.fns, chunk_state, factors, self.train_images, self.train_labels, epoch, steps_per_call,
                    show if calls is not None else None, self.last_batch_size, self.ints,
                )
                evaluation = self.evaluate(group, chunk_state, factors, ("val", "test"), real, epoch)
                state = self.store_chunk(group, state, indices, real, chunk_state)
                seen = np.minimum(self.train_examples[indices[:real]], self.num_train)
                part = {"train_loss": np.asarray(loss_sum)[:real] / seen, "train_acc": np.asarray(correct)[:real] / seen}
                put_metrics(metrics, indices[:real], {**part, **evaluation}, self.population.size)
        if calls is not None:
            calls.finish()
        return state, with_divergence(state, metrics)


def put_metrics(metrics: dict[str, np.ndarray], indices: np.ndarray, part: dict[str, np.ndarray], size: int) -> None:
    """metrics[name][indices] = part[name], creating [size] arrays as needed."""
    for name, values in part.items():
        values = np.asarray(values)
        metrics.setdefault(name, np.full(size, np.nan, values.dtype))[indices] = values


def shard_workdir(workdir: str | os.PathLike, index: int, count: int) -> str:
    """Where job-array shard `index` of `count` trains: <workdir>/shards/<index>-of-<count>."""
    return os.path.join(os.fspath(workdir), "shards", f"{index}-of-{count}")


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str | os.PathLike) -> dict[str, Any]:
    """Trains (or resumes) the zoo of `config` in `workdir`; returns the last epoch's metrics.

    Raises UserError subclasses on bad input before anything in the workdir is changed. An INR
    config (`task='inr'`) fits one SIREN per image instead (`jaxzoo.inr.train`).
    """
    if is_inr(config):
        return train_inr_zoo(config, workdir)
    validate(config)
    check_destination(pathlib.Path(workdir), "--workdir")
    table = expand_grid(config.population, config.seed)
    dataset = load_config_dataset(config)
    try:
        check_custom_model(config.model, dataset.image_shape, dataset.num_classes)
    except ModelError as error:
        raise ConfigError(str(error)) from None
    zoo_identity = identity(config)
    zoo_identity["dataset"] = dataset_identity(config, dataset)
    if config.num_shards > 1:  # job-array shard: its block of models in its own workdir
        if distributed.is_multiprocess():
            raise distributed.PartitionError(
                "num_shards > 1 with jax.distributed: use one of them (processes split the zoo themselves)"
            )
        table = table[distributed.block(len(table), config.shard_index, config.num_shards)]
        if not table:
            raise distributed.PartitionError(f"shard {config.shard_index} of {config.num_shards} has no models: "
                                             "use fewer shards than models")
        workdir = shard_workdir(workdir, config.shard_index, config.num_shards)
        zoo_identity["shard"] = [config.shard_index, config.num_shards]
    local_table = table[distributed.process_block(len(table))]
    population = build_population(local_table, config.population)
    # Every process checks the workdir before the first one writes, so all fail alike.
    path = checkpoint.prepare_workdir(workdir, zoo_identity, to_json_dict(config), table, write=False)
    distributed.barrier("jaxzoo-workdir-checked")
    if distributed.is_primary():
        checkpoint.prepare_workdir(workdir, zoo_identity, to_json_dict(config), table)
    distributed.barrier("jaxzoo-workdir-ready")
    log.info("zoo %s: writing to %s", config.name, path)
    log.info(
        "data %s from %s: train/val/test %d/%d/%d", dataset.name, dataset.source,
        len(dataset.train[1]), len(dataset.val[1]), len(dataset.test[1]),
    )
    run = ZooRun(config, population, dataset)
    num_epochs = config.training.num_epochs
    log.info(
        "zoo %s: %d models (process %d of %d: %d) in %d group(s) compiled apart, %d chunk(s) of up to %d on %d "
        "device(s), %d steps/epoch, %d per call",
        config.name, len(table), jax.process_index(), jax.process_count(), population.size, len(run.groups),
        len(run.chunks), run.plan.chunk_size, jax.local_device_count(), run.steps_per_epoch, run.plan.steps_per_call,
    )
    model_ids = np.array([row["model_id"] for row in table])
    if distributed.is_primary():
        checkpoint.set_aside_damaged(path)
    distributed.barrier("jaxzoo-checkpoints-checked")
    manager = checkpoint.open_manager(path, config.runtime.async_checkpointing)
    try:
        metrics = run_epochs(run, manager, path, model_ids, num_epochs, config.runtime.progress)
    finally:
        manager.close()
    return {"epoch": num_epochs, "metrics": metrics, "workdir": str(path)}


_CONFIG = config_flags.DEFINE_config_file("config", None, "Zoo config file (configs/*.py).", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints and metrics of the zoo "
                               "(default: runs/<config name>).")
_DISTRIBUTED = flags.DEFINE_bool(
    "distributed", False, "Call jax.distributed.initialize: each process trains its block of the zoo "
    "into the shared --workdir (coordinator from the flags below, or auto-detected on clusters).")
_COORDINATOR = flags.DEFINE_string("coordinator_address", "", "host:port of process 0 (with --distributed).")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", 1, "Processes in the job (with --coordinator_address).")
_PROCESS_ID = flags.DEFINE_integer("process_id", 0, "This process's index (with --coordinator_address).")
_DISTRIBUTED_TIMEOUT = flags.DEFINE_integer(
    "distributed_timeout", 300, "Seconds to wait for every process to join (with --distributed).")
_CPU_DEVICES = flags.DEFINE_integer(
    "cpu_devices", 0, "XLA CPU devices (0: one per core; the population is sharded over them).")
_VERBOSE = flags.DEFINE_bool("verbose", False, "Show the libraries' own log lines and warnings.")


def fail(message: str) -> None:
    """One line on stderr, exit code 2: how every bad input ends."""
    sys.exit(error_exit(message))


def parse_flags(argv: list[str]) -> list[str]:
    try:
        return flags.FLAGS(argv)
    except flags.Error as error:
        fail(f"{error}".splitlines()[0])
    except Exception as error:  # a config file that fails to load, or an override of no field
        missing = str(error).strip("'\"")
        overrides = [arg.split("=", 1)[0] for arg in argv if arg.startswith("--config.")]
        named = [flag for flag in overrides if missing and missing in flag.split(".")]
        if isinstance(error, (AttributeError, KeyError)) and named:
            fail(f"{named[0]}: the config has no field {missing!r} there: check the name, or set it in the config "
                 "file (new keys cannot be added from the command line)")
        fail(f"cannot load the config ({type(error).__name__}: {error})".splitlines()[0])


def default_workdir(config: ml_collections.ConfigDict) -> str:
    """runs/<zoo name>, relative to the current folder."""
    return os.path.join("runs", config.name)


def next_steps(workdir: str, config: ml_collections.ConfigDict, base_workdir: str) -> list[str]:
    """What a user runs after training: export and analysis of the zoo (merge for a shard)."""
    if config.get("num_shards", 1) > 1:
        return [f"shard {config.shard_index} of {config.num_shards} ready in {workdir}; once every shard is, "
                f"join them: python -m jaxzoo.merge --workdir {base_workdir}"]
    return [
        f"zoo ready in {workdir}; next:",
        f"  python -m jaxzoo.analyze --workdir {workdir}",
        f"  python -m jaxzoo.export --workdir {workdir} --out exports",
    ]


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        fail(f"unexpected arguments {argv[1:]}: use --config FILE [--workdir DIR] [--config.FIELD=VALUE]")
    config = _CONFIG.value
    if config is None:
        fail("no config: pass --config configs/<zoo>.py (configs/quickstart.py to try it)")
    if not isinstance(config, ml_collections.ConfigDict):  # config_flags defers load errors
        try:
            config.name
        except Exception as error:
            reason = [line.strip() for line in str(error).splitlines() if line.strip()][-1]
            fail(f"cannot load --config {config_flags.get_config_filename(flags.FLAGS['config'])}: {reason}")
    if _CPU_DEVICES.value < 0:
        fail(f"--cpu_devices={_CPU_DEVICES.value} must be >= 0 (0: one device per core)")
    setup_logging()
    quiet_libraries(_VERBOSE.value)
    workdir = _WORKDIR.value or default_workdir(config)
    use_cpu_cores(_CPU_DEVICES.value)
    try:
        if _DISTRIBUTED.value:
            distributed.initialize(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value,
                                   _DISTRIBUTED_TIMEOUT.value)
        result = train_and_evaluate(config, workdir)
    except UserError as error:
        fail(str(error).splitlines()[0])
    if distributed.is_primary():
        for line in next_steps(result["workdir"], config, workdir):
            log.info(line)


if __name__ == "__main__":
    app.run(main, flags_parser=parse_flags)
