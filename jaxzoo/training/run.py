"""One training run of a classification zoo: its static groups, chunks, data on the devices,
compiled programs and the epoch body (`ZooRun`, the run `jaxzoo.training.loop.run_epochs`
drives).

The population is cut into groups of models that share a compiled program (the static
factors; a ResNet-18 zoo is one group of its own kind) and each group into chunks of models
that train at once, the population axis sharded over the local devices. Per epoch every
chunk trains over the train split in its own per-model data order, then val and test are
evaluated.
"""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import functools
import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec
from tqdm import tqdm

from jaxzoo.config import RESNET_ARCHS, to_plain
from jaxzoo.data import Dataset
from jaxzoo.models import cpu_conv
from jaxzoo.models.registry import arch_spec, build_model, is_custom
from jaxzoo.training.factors import fixed_value, model_value, values_of
from jaxzoo.training.loop import POPULATION_AXIS, CallProgress, population_mesh
from jaxzoo.training.optimizers import optimizer_entry
from jaxzoo.training.plan import (
    GroupPlan,
    available_memory_bytes,
    epoch_calls,
    group_chunks,
    plan_groups,
    plan_run,
    resnet_plan,
)
from jaxzoo.training.population import Population
from jaxzoo.training.resnet_steps import make_resnet_step_functions
from jaxzoo.training.schedules import schedule_options
from jaxzoo.training.steps import GroupSpec, StepFunctions, StepSetup, eval_batches, make_step_functions
from jaxzoo.zoo.trees import tree_put, tree_take

MAX_CALLS_AHEAD = 8  # compiled calls dispatched ahead of the device
# Models per device in a CNN group's compiled call, at least: XLA compiles a population axis of
# one differently (it drops the size-1 axis), and a model alone on its device drifted by ulps
# from the same model beside others (measured: an RMSprop model, 2,829 of 9,550 weights after 2
# epochs). A lone model pays for one repeat of itself, dropped on write.
MIN_MODELS_PER_DEVICE = 2
COMPILE_THREADS = 4  # measured on 2 cores: 8 groups compiled in 24 s with 4 threads, 43 s one by one


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


def train_chunk_epoch(
    fns: StepFunctions,
    state,
    factors,
    images,
    labels,
    epoch: int,
    steps_per_call: int,
    after_call=None,
    last_batch_size: int = 0,
    device_int: Callable[[int], jax.Array] = jnp.int32,
):
    """One epoch of a chunk in its per-model data order, `steps_per_call` steps per compiled call.

    `fns.train(state, factors, x, y, mask, epoch, first_step) -> (state, metrics)` may donate
    `state`; `after_call(first, last, metrics)` runs after each call is dispatched (progress;
    it must not wait for it). With `last_batch_size` the epoch's partial last batch runs alone
    at its real size (BatchNorm statistics must not see padding); otherwise it is padded and
    masked. `device_int(n)`: n as a device scalar (`DeviceInts` places each once). Returns the
    chunk's state (on the devices) and its metrics [M] summed over the epoch (`loss_sum`,
    `correct`; `epoch_totals`). At most MAX_CALLS_AHEAD calls are queued beyond the running one.
    """
    order, mask = fns.order(factors, device_int(epoch))
    per_call = []
    queued: collections.deque = collections.deque()
    for first, last, size in epoch_calls(fns.steps_per_epoch, steps_per_call, last_batch_size):
        step_order, step_mask = take_steps(order, mask, device_int(first), last - first, size)
        x, y, m = fns.gather(images, labels, step_order, step_mask, factors)
        state, metrics = fns.train(state, factors, x, y, m, device_int(epoch), device_int(first))
        per_call.append(metrics)
        if after_call is not None:
            after_call(first, last, metrics)
        queued.append(metrics["loss_sum"])
        if len(queued) > MAX_CALLS_AHEAD:  # bounds the memory of queued calls' batches
            queued.popleft().block_until_ready()
    return state, epoch_totals(per_call)


def epoch_totals(per_call: list[dict[str, jax.Array]]) -> dict[str, np.ndarray]:
    """Each call's per-step metrics [M, S] -> the epoch's sums [M], added step after step
    (a running float32 sum, as numpy's cumsum): the same whatever the steps per call."""
    names = per_call[0].keys()
    return {
        name: np.cumsum(np.concatenate([np.asarray(m[name]) for m in per_call], axis=1), axis=1)[:, -1]
        for name in names
    }


def with_divergence(state, metrics: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The metrics [M] with 'diverged' (a non-finite parameter or train loss) added."""
    return {**metrics, "diverged": diverged(state, metrics["train_loss"])}


@dataclasses.dataclass(frozen=True)
class CnnGroup:
    """Models of a CNN / MLP / custom zoo that share one compiled program (their static
    factors, `spec`). The zoo's state keeps one optimizer state per optimizer it uses, for every
    model; the group's program takes the params and its own optimizer's state.

    `members` index the population (table order); `chunks` are (population indices padded
    to the chunk size, number of real models)."""

    spec: GroupSpec
    members: np.ndarray
    fns: StepFunctions
    chunks: list[tuple[np.ndarray, int]]
    compiled_ahead = True  # every program is compiled before the first epoch

    def own_state(self, state, take: Callable):
        """The group's view of the zoo's state, `take` applied to each part it reads."""
        return {"params": take(state["params"]), "opt_state": take(state["opt_state"][self.spec.optimizer])}

    def put_state(self, state, indices: np.ndarray, values) -> None:
        """Host path: the zoo's state rows `indices` = the group's `values`, in place."""
        tree_put(state["params"], indices, values["params"])
        tree_put(state["opt_state"][self.spec.optimizer], indices, values["opt_state"])

    def write_rows(self, put_rows: Callable, state, rows, chunk_state):
        """Device path: the zoo's state with `rows` set from the chunk (`put_rows` donates it)."""
        opt_states = dict(state["opt_state"])
        params, opt_states[self.spec.optimizer] = put_rows(
            (state["params"], state["opt_state"][self.spec.optimizer]),
            rows,
            (chunk_state["params"], chunk_state["opt_state"]),
        )
        return {"params": params, "opt_state": opt_states}

    def eval_state(self, chunk_state):
        """Only the params: groups that share an evaluation differ in their optimizer state."""
        return {"params": chunk_state["params"]}

    def add_shapes(self, shapes: dict, chunk_shapes) -> dict:
        """The zoo's state shapes with this group's parts added."""
        shapes.setdefault("params", chunk_shapes["params"])
        shapes.setdefault("opt_state", {}).setdefault(self.spec.optimizer, chunk_shapes["opt_state"])
        shapes["opt_state"] = dict(sorted(shapes["opt_state"].items()))
        return shapes


@dataclasses.dataclass(frozen=True)
class ResNetGroup:
    """A ResNet-18 zoo: one group, whose state (params, BatchNorm statistics, SGD state) is the
    zoo's. Its steps are Python loops around compiled parts, compiled on first use."""

    members: np.ndarray
    fns: StepFunctions
    chunks: list[tuple[np.ndarray, int]]
    compiled_ahead = False

    def own_state(self, state, take: Callable):
        return take(state)

    def put_state(self, state, indices: np.ndarray, values) -> None:
        tree_put(state, indices, values)

    def write_rows(self, put_rows: Callable, state, rows, chunk_state):
        return put_rows(state, rows, chunk_state)

    def eval_state(self, chunk_state):
        return chunk_state

    def add_shapes(self, shapes: dict, chunk_shapes) -> dict:
        return chunk_shapes


Group = CnnGroup | ResNetGroup


def group_spec(
    config: ml_collections.ConfigDict, static: dict[str, Any], population: Population, members: np.ndarray
) -> GroupSpec:
    """The program of models `members` with static factors `static` (`Population.groups`): which
    optimizer hyperparameters are per-model arrays (lr, weight decay, every other one the zoo
    varies), the fixed rest, the schedule's options; dropout, train subset and label noise as
    flags. A merged activation (absent from `static`): each member's of the population's set;
    merged dropout runs where any member has some."""
    pop = config.population
    entry = optimizer_entry(static["optimizer"])
    injected = tuple(name for name in entry.hyperparams if name in ("lr", "weight_decay") or values_of(pop, name))
    fixed = tuple(
        (name, float(fixed_value(pop, name, static["optimizer"]))) for name in entry.hyperparams if name not in injected
    )
    schedule = static["schedule"]
    options = schedule_options(schedule, to_plain(config.training.get("schedule_options")).get(schedule))
    if "activation" in static:
        activations = (static["activation"],)
    else:  # the population's activations, indexed as activation_index; those of other groups None
        present = {population.activations[i] for i in population.arrays["activation_index"][members]}
        activations = tuple(name if name in present else None for name in population.activations)
    use_dropout = static["dropout"] if "dropout" in static else bool((population.arrays["dropout"][members] > 0).any())
    return GroupSpec(
        activations,
        static["optimizer"],
        injected,
        fixed,
        schedule,
        tuple(sorted(options.items())),
        use_dropout,
        static["train_fraction"],
        static["label_noise"],
    )


class ZooRun:
    """One training run of a zoo: holds the data on device and each group's compiled functions."""

    unit = "model-sample"  # what the progress bar counts: models x train images

    @property
    def population_size(self) -> int:
        return self.population.size

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
        self.setup = StepSetup(
            dataset.image_shape,
            self.num_train,
            batch,
            config.training.num_epochs,
            dataset.num_classes,
            dataset.mean,
            dataset.std,
            compute_dtype=config.training.compute_dtype,
            donate_state=self.donate_state,
        )
        fractions = np.array([model_value(row, "train_fraction", config.population) for row in population.table])
        self.train_examples = np.maximum(1, np.round(fractions * self.num_train)).astype(np.int32)
        if self.is_resnet:
            self.plan = resnet_plan(config, population.size, self.num_train)
            fns = make_resnet_step_functions(
                self.setup,
                self.mesh,
                config.training.augmentation,
                config.training.scheduler,
                config.population.momentum,
            )
            members = np.arange(population.size)
            self.groups: list[Group] = [ResNetGroup(members, fns, group_chunks(members, self.plan.chunk_size))]
            self.group_plan: GroupPlan | None = None  # one group of its own kind
            self.last_batch_size = self.num_train % batch
        else:
            # A custom module's memory is estimated as an MLP's (its activations are unknown here).
            shape_of = {"arch": "mlp"} if is_custom(config.model) else config.model
            arch = arch_spec(shape_of, dataset.image_shape[0], dataset.image_shape[-1], dataset.num_classes)
            self.plan = plan_run(config, population.size, arch, dataset.image_shape, self.num_train)
            self.group_plan = self.plan_groups(None if is_custom(config.model) else arch)
            # The CPU kernel computes in float32 only: other compute dtypes take XLA's convolutions.
            conv = "xla" if config.training.compute_dtype != "float32" else cpu_conv.resolve(config.runtime.conv)
            self.groups, shared = [], {}
            for static, members in population.groups(self.group_plan.merged):
                spec = group_spec(config, static, population, members)
                fns = self.group_functions(spec, members, conv, shared)
                chunks = group_chunks(members, self.plan.chunk_size, MIN_MODELS_PER_DEVICE)
                self.groups.append(CnnGroup(spec, members, fns, chunks))
            self.last_batch_size = 0
        self.train_images = jax.device_put(dataset.train[0], replicated)
        self.train_labels = jax.device_put(dataset.train[1], replicated)
        eb = self.plan.eval_batch_size
        self.eval_splits = {  # Tiny-ImageNet has no val split: its val metrics are NaN
            split: jax.device_put(eval_batches(*getattr(dataset, split), eb), replicated)
            for split in ("train", "val", "test")
            if len(getattr(dataset, split)[1])
        }
        # The state is split over the devices when the population divides over them.
        self.state_sharding = self.models if population.size % jax.local_device_count() == 0 else replicated
        self.on_device = self.state_on_device(config.runtime.get("state_placement", "auto"))
        self.take_rows = jax.jit(lambda tree, rows: jax.tree.map(lambda a: a[rows], tree), out_shardings=self.models)
        self.put_rows = jax.jit(
            lambda tree, rows, values: jax.tree.map(lambda a, v: a.at[rows].set(v, mode="drop"), tree, values),
            out_shardings=self.state_sharding,
            donate_argnums=(0,),
        )
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

    def plan_groups(self, arch) -> GroupPlan:
        """Which static factors one program computes per model (a subclass may keep them apart)."""
        return plan_groups(self.config, self.population, arch, self.dataset.image_shape[-1], self.num_train)

    def group_functions(self, spec: GroupSpec, members: np.ndarray, conv: str, shared: dict) -> StepFunctions:
        """The compiled functions of one group (a subclass may train another objective)."""
        config, dataset = self.config, self.dataset
        model = build_model(
            config.model, spec.activations, spec.use_dropout, conv, dataset.image_shape, dataset.num_classes
        )
        setup = dataclasses.replace(self.setup, max_train_examples=int(self.train_examples[members].max()))
        return make_step_functions(model, spec, setup, self.population.inits, self.mesh, shared)

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
            group.put_state(state, indices[:real], tree_take(jax.device_get(chunk_state), np.arange(real)))
            return state
        return group.write_rows(self.put_rows, state, self.chunk_rows(indices, real)[1], chunk_state)

    def group_state(self, group: Group, state, indices: np.ndarray | None):
        """The rows `indices` (None: all) of the zoo's state as the group's program takes them."""
        return group.own_state(
            state, (lambda tree: tree) if indices is None else (lambda tree: tree_take(tree, indices))
        )

    def abstract_state(self):
        """Shapes of the whole population's state [M, ...] (traced on one chunk per group: the
        population axis of a compiled call must divide over the devices, M need not)."""
        whole = lambda tree: jax.tree.map(
            lambda a: jax.ShapeDtypeStruct((self.population.size, *a.shape[1:]), a.dtype), tree
        )
        shapes: dict = {}
        for group in self.groups:
            self.chunk_factors(group.chunks[0][0])  # placed outside the trace (they are cached)
            shapes = group.add_shapes(shapes, whole(self.init_shapes(group, group.chunks[0][0])))
        return shapes

    def compile(self, max_workers: int = COMPILE_THREADS) -> int:
        """Compiles every group's init, training and evaluation programs ahead of the first
        epoch, several at once (XLA compiles in parallel threads; a population of many groups
        would otherwise wait for each in turn). Returns the number of programs compiled."""
        tasks = {}
        pop_axis = NamedSharding(self.mesh, PartitionSpec(POPULATION_AXIS))
        steps_axis = NamedSharding(self.mesh, PartitionSpec(None, POPULATION_AXIS))
        step_number = jax.ShapeDtypeStruct((), jnp.int32, sharding=NamedSharding(self.mesh, PartitionSpec()))
        on = lambda tree, sharding: jax.tree.map(
            lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=sharding), tree
        )
        for group in self.groups:
            if not group.compiled_ahead:
                continue
            fns, steps_per_call = group.fns, min(self.plan.steps_per_call, group.fns.steps_per_epoch)
            for indices in {len(indices): indices for indices, _ in group.chunks}.values():
                factors = self.chunk_factors(indices)  # placed outside the trace (they are cached)
                state = on(self.init_shapes(group, indices), pop_axis)
                tasks[(id(fns.init), len(indices))] = lambda g=group, i=indices: self.init_chunk(g, i)
                params = {"params": state["params"]}
                for x, y, mask in {a[0].shape: a for a in self.eval_splits.values()}.values():
                    tasks[(id(fns.evaluate), len(indices), x.shape)] = functools.partial(
                        fns.evaluate.lower, params, factors, x, y, mask
                    )
                for first, last, _ in epoch_calls(fns.steps_per_epoch, steps_per_call):
                    b = self.config.training.batch_size
                    x = jax.ShapeDtypeStruct(
                        (last - first, len(indices), b, *self.dataset.image_shape), jnp.float32, sharding=steps_axis
                    )
                    y = jax.ShapeDtypeStruct((last - first, len(indices), b), jnp.int32, sharding=steps_axis)
                    mask = jax.ShapeDtypeStruct((last - first, len(indices), b), jnp.float32, sharding=steps_axis)
                    tasks[(id(fns.train), len(indices), last - first)] = functools.partial(
                        fns.train.lower, state, factors, x, y, mask, step_number, step_number
                    )

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
                group.put_state(state, indices[:real], tree_take(fresh, np.arange(real)))
        return state

    def init_chunk(self, group: Group, indices: np.ndarray):
        """Fresh state of the models `indices` (padded chunk), on device."""
        return group.fns.init(self.chunk_factors(indices))

    def init_shapes(self, group: Group, indices: np.ndarray):
        """The shapes and dtypes `init_chunk(group, indices)` returns, without running it."""
        return group.fns.init.eval_shape(self.chunk_factors(indices))

    def evaluate(
        self, group: Group, state, factors, splits: tuple[str, ...], real: int, epoch: int
    ) -> dict[str, np.ndarray]:
        """Eval-mode loss and accuracy per split of the first `real` models of a chunk, after `epoch`."""
        metrics = {}
        for split in splits:
            if split not in self.eval_splits:
                metrics[f"{split}_loss"] = metrics[f"{split}_acc"] = np.full(real, np.nan)
                continue
            x, y, mask = self.eval_splits[split]
            loss_sum, correct = group.fns.evaluate(group.eval_state(state), factors, x, y, mask)
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

                def show(first, last, call_metrics, real=real):
                    batch = self.config.training.batch_size
                    calls.add(
                        call_metrics["loss_sum"],
                        real * (min(last * batch, self.num_train) - min(first * batch, self.num_train)),
                    )

                chunk_state, totals = train_chunk_epoch(
                    group.fns,
                    chunk_state,
                    factors,
                    self.train_images,
                    self.train_labels,
                    epoch,
                    steps_per_call,
                    show if calls is not None else None,
                    self.last_batch_size,
                    self.ints,
                )
                evaluation = self.evaluate(group, chunk_state, factors, ("val", "test"), real, epoch)
                state = self.store_chunk(group, state, indices, real, chunk_state)
                seen = np.minimum(self.train_examples[indices[:real]], self.num_train)
                part = {
                    "train_loss": np.asarray(totals["loss_sum"])[:real] / seen,
                    "train_acc": np.asarray(totals["correct"])[:real] / seen,
                }
                put_metrics(metrics, indices[:real], {**part, **evaluation}, self.population.size)
        if calls is not None:
            calls.finish()
        return state, with_divergence(state, metrics)


def put_metrics(metrics: dict[str, np.ndarray], indices: np.ndarray, part: dict[str, np.ndarray], size: int) -> None:
    """metrics[name][indices] = part[name], creating [size] arrays as needed."""
    for name, values in part.items():
        values = np.asarray(values)
        metrics.setdefault(name, np.full(size, np.nan, values.dtype))[indices] = values
