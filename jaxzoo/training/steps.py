"""Pure, compiled functions that init, train and evaluate a chunk of models at once.

Every function maps over a leading population axis M with `jax.vmap`; nothing mixes models,
and a population is compiled per group of models that share their static factors
(`GroupSpec`), so a model's numbers depend only on its own factors and seed. Randomness comes from the
model seed alone: `key(seed)` folded with a stream id (init, data order, dropout), then with
epoch and step. Resuming at an epoch therefore needs no RNG state beyond the epoch number.

Shapes: images [N, H, W, C] uint8 (normalised here, on the device), labels [N] int32; a training call takes S steps of
per-model batches x [S, M, B, H, W, C], y [S, M, B], mask [S, M, B] (0 marks the padding of
the last partial batch, so the loss is the mean over the real samples, as PyTorch's).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import traverse_util
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from jaxzoo.data import normalise as normalise_uint8
from jaxzoo.models.cnn import init_params
from jaxzoo.training.optimizers import init_state, make_transform, set_learning_rate
from jaxzoo.training.precision import cast_for_compute, with_precision
from jaxzoo.training.schedules import scheduled_lr

# Random streams of a model: key(seed) folded with the stream id (3: the twins' weight noise).
INIT_STREAM, ORDER_STREAM, DROPOUT_STREAM, ARD_NOISE_STREAM, SUBSET_STREAM, LABEL_STREAM = 0, 1, 2, 3, 4, 5


def model_key(seed: jax.Array, stream: int) -> jax.Array:
    return jax.random.fold_in(jax.random.key(seed), stream)


def epoch_order(seed: jax.Array, epoch: jax.Array, num_train: int, batch_size: int):
    """One model's data order for an epoch -> (indices [steps, B] int32, mask [steps, B] f32).

    A fresh permutation per epoch from (seed, epoch), cut into consecutive batches; the last
    batch is partial when B does not divide N (FastTensorDataLoader semantics).
    """
    steps = -(-num_train // batch_size)
    perm = jax.random.permutation(jax.random.fold_in(model_key(seed, ORDER_STREAM), epoch), num_train)
    pad = steps * batch_size - num_train
    indices = jnp.concatenate([perm, jnp.zeros((pad,), perm.dtype)]).reshape(steps, batch_size)
    mask = (jnp.arange(steps * batch_size) < num_train).astype(jnp.float32)
    return indices.astype(jnp.int32), mask.reshape(steps, batch_size)


def pairwise_sum(values: jax.Array) -> jax.Array:
    """values [n] -> their sum, halves added to halves (zero-padded to a power of two): an order
    of additions that XLA keeps whatever the arrays around it. Its `jnp.sum` of a batch's losses
    rounded with the population axis's size (measured: evaluation losses of 16 models per device
    against 8). Its gradient is exactly that of any sum (ones)."""
    size = 1 << max(values.shape[-1] - 1, 0).bit_length()
    values = jnp.pad(values, [(0, 0)] * (values.ndim - 1) + [(0, size - values.shape[-1])])
    while values.shape[-1] > 1:
        half = values.shape[-1] // 2
        values = values[..., :half] + values[..., half:]
    return values[..., 0]


def nll_and_correct(logits: jax.Array, labels: jax.Array, mask: jax.Array):
    """-> (sum of NLL of log_softmax over the masked samples, number correct), per batch
    (`pairwise_sum`: the same numbers in any layout)."""
    logp = jax.nn.log_softmax(logits)
    nll = -jnp.take_along_axis(logp, labels[:, None], axis=-1)[:, 0]
    correct = (jnp.argmax(logits, axis=-1) == labels).astype(jnp.float32)
    return pairwise_sum(nll * mask), pairwise_sum(correct * mask)


def lookup_normaliser(mean: tuple[float, ...], std: tuple[float, ...]) -> Callable[[jax.Array], jax.Array]:
    """uint8 [..., C] -> float32 [..., C]: ToTensor + Normalize as a [256, C] lookup table.

    Bit-identical to numpy's (x / 255 - mean) / std whatever XLA fuses, so sharding cannot
    change the inputs.
    """
    lookup = normalise_uint8(np.arange(256, dtype=np.uint8)[:, None], mean, std)
    channels = np.arange(len(mean))
    return lambda images: jnp.asarray(lookup)[images.astype(jnp.int32), channels]


def per_device(fn: Callable, mesh: Mesh, in_specs, out_specs, donate_argnums: tuple[int, ...] = ()) -> Callable:
    """jit(shard_map(fn)): axis 'pop' of `mesh` splits the models; each device computes its own.

    The outputs are pinned to `out_specs` (a one-device mesh would otherwise drop the axis), so
    a state that comes back in feeds the next call without a recompile. `donate_argnums`: inputs
    whose buffers the outputs reuse (the caller must not touch them again).
    """
    named = lambda spec: NamedSharding(mesh, spec)
    out_shardings = tuple(map(named, out_specs)) if isinstance(out_specs, tuple) else named(out_specs)
    # check_vma off: every value is per model (varying over 'pop') or replicated data.
    return jax.jit(
        jax.shard_map(fn, mesh=mesh, in_specs=in_specs, out_specs=out_specs, check_vma=False),
        out_shardings=out_shardings,
        donate_argnums=donate_argnums,
    )


@dataclasses.dataclass(frozen=True)
class GroupSpec:
    """What one group of a population shares, i.e. what its compiled program is made of.

    `activations`: the activation of the group, or the population's sorted set when the
    activation is merged (`jaxzoo.training.plan.plan_groups`): each model applies its own
    (`activation_index`), the others computed and discarded. `use_dropout`: dropout runs (at
    each model's rate; rate 0 leaves a model's numbers bitwise as without dropout).

    `injected`: optimizer hyperparameters (factor names) that are per-model arrays; the others
    are the fixed floats `fixed`. `subset`: the models train on a part of the train split
    (`train_examples` per model); `label_noise`: some of their train labels are flipped.
    """

    activations: tuple[str, ...]  # one, or the population's set (each model picks its own)
    optimizer: str
    injected: tuple[str, ...] = ("lr", "weight_decay")
    fixed: tuple[tuple[str, float], ...] = ()
    schedule: str = "constant"
    schedule_options: tuple[tuple[str, Any], ...] = ()
    use_dropout: bool = False
    subset: bool = False
    label_noise: bool = False


@dataclasses.dataclass(frozen=True)
class StepSetup:
    """What every group of a zoo shares: the data, the run's length and its arithmetic.

    `max_train_examples`: the largest train subset of a subset group (None: the whole split);
    `compute_dtype` (`jaxzoo.training.precision`): the arithmetic of the network's passes;
    `donate_state`: `train` donates the state it is given (accelerators).
    """

    image_shape: tuple[int, int, int]
    num_train: int
    batch_size: int
    num_epochs: int
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    max_train_examples: int | None = None
    compute_dtype: str = "float32"
    donate_state: bool = False


@dataclasses.dataclass(frozen=True)
class Objective:
    """What a group minimises, per model and batch.

    `loss(params, x [B, ...], y [B], mask [B], key, factors_one, epoch) -> (loss, metrics)`:
    the scalar the optimizer follows and the batch's `{"loss_sum", "correct"}` (sums over the
    masked samples). `params` and `x` arrive already cast to the compute dtype. `stream`: the
    model's random stream whose per-step key `key` is (dropout, the twins' weight noise).
    `uses_dropout`: whether the group's dropout factor reaches the loss (if not, groups that
    differ only there share one program).
    """

    loss: Callable[..., tuple[jax.Array, dict[str, jax.Array]]]
    stream: int
    uses_dropout: bool = True


def cross_entropy(model) -> Objective:
    """The zoos' objective: NLL of log_softmax over the real samples of the batch (PyTorch's
    mean), the model in train mode with the model's own dropout rate."""

    def loss(params, x, y, mask, key, factors_one, epoch):
        logits = model.apply(
            {"params": params},
            x,
            factors_one["activation_index"],
            factors_one["dropout"],
            train=True,
            rngs={"dropout": key},
        ).astype(jnp.float32)
        loss_sum, correct = nll_and_correct(logits, y, mask)
        return loss_sum / jnp.maximum(jnp.sum(mask), 1.0), {"loss_sum": loss_sum, "correct": correct}

    return Objective(loss, DROPOUT_STREAM)


@dataclasses.dataclass(frozen=True)
class StepFunctions:
    """Compiled functions for one group of a population (one model, optimizer and schedule).

    `train(state, factors, x, y, mask, epoch, first_step) -> (state, metrics)` where metrics
    holds each step's sums over its batch, [M, S] each (`loss_sum`, `correct`): the epoch's
    totals are added up step by step across calls (`epoch_totals`), so they do not depend on
    how the steps are cut into calls.
    """

    init: Callable[..., Any]
    order: Callable[..., Any]
    gather: Callable[..., Any]
    train: Callable[..., Any]
    evaluate: Callable[..., Any]
    model: Any
    transform: Any
    steps_per_epoch: int  # compiled steps per epoch (a subset group: of its largest subset)


def subset_order(seed, epoch, num_train: int, num_examples, steps: int, batch_size: int):
    """One model's epoch order over its own subset of `num_examples` train images (drawn once
    from the seed, a fresh order each epoch) -> (indices [steps, B] int32, mask [steps, B])."""
    subset = jax.random.permutation(model_key(seed, SUBSET_STREAM), num_train)
    draw = jax.random.uniform(jax.random.fold_in(model_key(seed, ORDER_STREAM), epoch), (num_train,))
    member = jnp.arange(num_train) < num_examples
    order = subset[jnp.argsort(jnp.where(member, draw, 2.0))]  # members first, shuffled
    size = steps * batch_size
    order = jnp.concatenate([order, jnp.zeros((max(size - num_train, 0),), order.dtype)])[:size]
    mask = (jnp.arange(size) < num_examples).astype(jnp.float32)
    return order.reshape(steps, batch_size).astype(jnp.int32), mask.reshape(steps, batch_size)


def noisy_labels(labels, indices, seed, rate, num_classes: int):
    """labels [..] of train images `indices` [..], each replaced with probability `rate` by
    another class, the same draw every epoch (keyed by model seed and image index)."""
    key = model_key(seed, LABEL_STREAM)
    keys = jax.vmap(lambda i: jax.random.fold_in(key, i))(indices.reshape(-1))
    flip = jax.vmap(lambda k: jax.random.uniform(jax.random.fold_in(k, 0)))(keys) < rate
    shift = jax.vmap(lambda k: jax.random.randint(jax.random.fold_in(k, 1), (), 1, num_classes))(keys)
    flat = labels.reshape(-1)
    return jnp.where(flip, (flat + shift) % num_classes, flat).reshape(labels.shape)


def make_step_functions(
    model,
    group: GroupSpec,
    setup: StepSetup,
    inits: tuple[str, ...],
    mesh: Mesh | None = None,
    shared: dict | None = None,
    objective: Objective | None = None,
) -> StepFunctions:
    """Builds the jitted functions of one group (see each inner function for shapes).

    `model` (`jaxzoo.models.registry.build_model`) is called as model.apply(variables, x,
    activation_index, dropout_rate, train): `activation_index` is the model's factor (an index
    into the population's activations), which a model of one activation ignores. `objective`
    (default `cross_entropy(model)`) is the loss the training step follows; every objective
    gets the same scan over steps, vmap over models, per-model keys, subset masks, schedules
    and compute dtype. With a `mesh`, each function runs under `shard_map`: axis 'pop' splits
    the models over the devices (nothing crosses devices). A subset group compiles
    `ceil(setup.max_train_examples / B)` steps per epoch; each model skips the steps past its
    own subset, so it takes ceil(train_examples / B) updates per epoch, as alone. `shared`
    (one dict per population) lets groups reuse the functions that do not depend on what sets
    them apart (init per optimizer, data order per data options, evaluation per activation,
    training where the objective ignores dropout), so each compiles once.
    """
    objective = objective or cross_entropy(model)
    image_shape, num_train, batch_size = setup.image_shape, setup.num_train, setup.batch_size
    num_epochs, num_classes, compute_dtype = setup.num_epochs, setup.num_classes, setup.compute_dtype
    normalise = lookup_normaliser(setup.mean, setup.std)
    fixed = dict(group.fixed)
    transform = make_transform(group.optimizer, group.injected, fixed)
    options = dict(group.schedule_options)
    full_steps = -(-num_train // batch_size)
    steps_per_epoch = -(-(setup.max_train_examples or num_train) // batch_size) if group.subset else full_steps
    template = jax.eval_shape(
        lambda: model.init(jax.random.key(0), jnp.zeros((1, *image_shape)), 0, 0.0, train=False)["params"]
    )

    paths = traverse_util.flatten_dict(template)
    needs_own = any(path[-1] not in ("kernel", "bias") for path in paths)

    def init_one(seed, init_index, values):
        key = model_key(seed, INIT_STREAM)
        own = model.init(key, jnp.zeros((1, *image_shape)), 0, 0.0, train=False)["params"] if needs_own else None
        params = init_params(template, key, init_index, inits, own)
        return {"params": params, "opt_state": init_state(transform, params, values)}

    def hyperparams(factors):
        return {name: factors[name] for name in group.injected}

    def init(factors):
        """factors (arrays [M]) -> state {'params', 'opt_state'} with leading axis M."""
        return jax.vmap(init_one)(factors["seed"], factors["init_index"], hyperparams(factors))

    def order(factors, epoch):
        """factors [M] -> (indices [M, steps, B], mask [M, steps, B]) for this epoch."""
        if group.subset:
            one = lambda s, n: subset_order(s, epoch, num_train, n, steps_per_epoch, batch_size)
            return jax.vmap(one)(factors["seed"], factors["train_examples"])
        return jax.vmap(lambda s: epoch_order(s, epoch, num_train, batch_size))(factors["seed"])

    def gather(images, labels, indices, mask, factors):
        """Per-model batches of S steps, indices [M, S, B] -> x [S, M, B, ...], y, mask [S, M, B]."""
        y = labels[indices]
        if group.label_noise:
            y = jax.vmap(lambda yy, ii, s, r: noisy_labels(yy, ii, s, r, num_classes))(
                y, indices, factors["seed"], factors["label_noise"]
            )
        indices = jnp.swapaxes(indices, 0, 1)
        return normalise(images[indices]), jnp.swapaxes(y, 0, 1), jnp.swapaxes(mask, 0, 1)

    def learning_rate(factors_one, epoch, step):
        """The model's learning rate at this step (its own updates per epoch and in all)."""
        own_steps = -(-factors_one["train_examples"] // batch_size) if group.subset else steps_per_epoch
        t = (epoch - 1) * own_steps + step
        return scheduled_lr(group.schedule, t, num_epochs * own_steps, own_steps, factors_one["lr"], options)

    def train_one_step(params, opt_state, factors_one, x, y, mask, key, epoch, step):
        def loss_fn(p):
            return objective.loss(
                cast_for_compute(p, compute_dtype), cast_for_compute(x, compute_dtype), y, mask, key, factors_one, epoch
            )

        grads, metrics = jax.grad(loss_fn, has_aux=True)(params)
        if group.schedule != "constant":
            opt_state = set_learning_rate(opt_state, learning_rate(factors_one, epoch, step))
        updates, new_state = transform.update(grads, opt_state, params)
        new_params = optax.apply_updates(params, updates)
        if group.subset:  # a step past the model's subset is no step at all
            active = jnp.sum(mask) > 0
            new_params, new_state = jax.tree.map(
                lambda new, old: jnp.where(active, new, old), (new_params, new_state), (params, opt_state)
            )
        return new_params, new_state, metrics

    def train(state, factors, x, y, mask, epoch, first_step):
        """S steps for M models -> (state, {"loss_sum", "correct"} [M, S]: each step's sums)."""
        chex.assert_equal_shape([y, mask])
        chex.assert_equal_shape_prefix([x, y], 3)
        chex.assert_axis_dimension(x, 1, factors["seed"].shape[0])

        def body(carry, batch):
            params, opt_state, step = carry
            xb, yb, mb = batch
            keys = jax.vmap(
                lambda s: jax.random.fold_in(jax.random.fold_in(model_key(s, objective.stream), epoch), step)
            )(factors["seed"])
            one = lambda p, o, f, xx, yy, mm, k: train_one_step(p, o, f, xx, yy, mm, k, epoch, step)
            params, opt_state, metrics = jax.vmap(one)(params, opt_state, factors, xb, yb, mb, keys)
            return (params, opt_state, step + 1), metrics

        carry = (state["params"], state["opt_state"], first_step)
        (params, opt_state, _), metrics = jax.lax.scan(body, carry, (x, y, mask))
        return {"params": params, "opt_state": opt_state}, jax.tree.map(lambda m: m.T, metrics)

    def forward_eval(params, activation_index, x):
        logits = model.apply(
            {"params": cast_for_compute(params, compute_dtype)},
            cast_for_compute(x, compute_dtype),
            activation_index,
            0.0,
            train=False,
        )
        return logits.astype(jnp.float32)

    def evaluate(state, factors, x, y, mask):
        """Eval mode on shared data x [nb, eb, ...] -> (loss sum [M], correct [M]) over all batches."""
        params = state["params"]

        def body(totals, batch):
            xb, yb, mb = batch
            logits = jax.vmap(forward_eval, in_axes=(0, 0, None))(params, factors["activation_index"], normalise(xb))
            loss_sum, correct = jax.vmap(nll_and_correct, in_axes=(0, None, None))(logits, yb, mb)
            return (totals[0] + loss_sum, totals[1] + correct), None

        m = factors["seed"].shape[0]
        zeros = (jnp.zeros((m,), jnp.float32), jnp.zeros((m,), jnp.float32))
        totals, _ = jax.lax.scan(body, zeros, (x, y, mask))
        return totals

    def compiled(key, fn, in_specs, out_specs, donate_argnums=()):
        if shared is not None and key is not None and key in shared:
            return shared[key]
        fn = with_precision(fn, compute_dtype)
        if mesh is None:
            out = jax.jit(fn, donate_argnums=donate_argnums)
        else:
            out = per_device(fn, mesh, in_specs, out_specs, donate_argnums)
        if shared is not None and key is not None:
            shared[key] = out
        return out

    pop, steps_pop, rep = PartitionSpec("pop"), PartitionSpec(None, "pop"), PartitionSpec()
    shapes = tuple((path, leaf.shape) for path, leaf in paths.items())
    data_key = (group.subset, group.label_noise, steps_per_epoch)
    # Objectives that ignore dropout share training across groups that differ only there.
    train_key = (
        None
        if objective.uses_dropout
        else ("train", objective, dataclasses.replace(group, use_dropout=False), steps_per_epoch)
    )
    return StepFunctions(
        init=compiled(("init", group.optimizer, group.injected, group.fixed, shapes), init, (pop,), pop),
        order=compiled(("order", *data_key), order, (pop, rep), (pop, pop)),
        gather=compiled(("gather", *data_key), gather, (rep, rep, pop, pop, pop), (steps_pop,) * 3),
        train=compiled(
            train_key,
            train,
            (pop, pop, steps_pop, steps_pop, steps_pop, rep, rep),
            (pop, pop),
            donate_argnums=(0,) if setup.donate_state else (),
        ),
        evaluate=compiled(
            ("evaluate", group.activations, compute_dtype), evaluate, (pop, pop, rep, rep, rep), (pop, pop)
        ),
        model=model,
        transform=transform,
        steps_per_epoch=steps_per_epoch,
    )


def eval_batches(images: np.ndarray, labels: np.ndarray, batch_size: int):
    """Pads a split to whole batches -> x [nb, eb, ...], y [nb, eb], mask [nb, eb] (numpy)."""
    n = len(labels)
    batch_size = min(batch_size, n)
    nb = -(-n // batch_size)
    pad = nb * batch_size - n
    x = np.concatenate([images, np.zeros((pad, *images.shape[1:]), images.dtype)])
    y = np.concatenate([labels, np.zeros((pad,), labels.dtype)])
    mask = (np.arange(nb * batch_size) < n).astype(np.float32)
    return (
        x.reshape(nb, batch_size, *images.shape[1:]),
        y.reshape(nb, batch_size),
        mask.reshape(nb, batch_size),
    )
