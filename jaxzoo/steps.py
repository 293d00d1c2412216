"""Pure, compiled functions that init, train and evaluate a chunk of models at once.

Every function maps over a leading population axis M with `jax.vmap`; nothing mixes models,
so a model's numbers depend only on its own factors and seed. Randomness comes from the
model seed alone: `key(seed)` folded with a stream id (init, data order, dropout), then with
epoch and step. Resuming at an epoch therefore needs no RNG state beyond the epoch number.

Shapes: images [N, H, W, C] uint8 (normalised here, on the device), labels [N] int32; a training call takes S steps of
per-model batches x [S, M, B, H, W, C], y [S, M, B], mask [S, M, B] (0 marks the padding of
the last partial batch, so the loss is the mean over the real samples, as PyTorch's).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import chex
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from jaxzoo.data import normalise as normalise_uint8
from jaxzoo.models import CNN, ArchSpec, init_params
from jaxzoo.optim import PopulationOptimizer

INIT_STREAM, ORDER_STREAM, DROPOUT_STREAM = 0, 1, 2


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


def nll_and_correct(logits: jax.Array, labels: jax.Array, mask: jax.Array):
    """-> (sum of NLL of log_softmax over the masked samples, number correct), per batch."""
    logp = jax.nn.log_softmax(logits)
    nll = -jnp.take_along_axis(logp, labels[:, None], axis=-1)[:, 0]
    correct = (jnp.argmax(logits, axis=-1) == labels).astype(jnp.float32)
    return jnp.sum(nll * mask), jnp.sum(correct * mask)


def lookup_normaliser(mean: tuple[float, ...], std: tuple[float, ...]) -> Callable[[jax.Array], jax.Array]:
    """uint8 [..., C] -> float32 [..., C]: ToTensor + Normalize as a [256, C] lookup table.

    Bit-identical to numpy's (x / 255 - mean) / std whatever XLA fuses, so sharding cannot
    change the inputs.
    """
    lookup = normalise_uint8(np.arange(256, dtype=np.uint8)[:, None], mean, std)
    channels = np.arange(len(mean))
    return lambda images: jnp.asarray(lookup)[images.astype(jnp.int32), channels]


def per_device(fn: Callable, mesh: Mesh, in_specs, out_specs) -> Callable:
    """jit(shard_map(fn)): axis 'pop' of `mesh` splits the models; each device computes its own.

    The outputs are pinned to `out_specs` (a one-device mesh would otherwise drop the axis), so
    a state that comes back in feeds the next call without a recompile.
    """
    named = lambda spec: NamedSharding(mesh, spec)
    out_shardings = tuple(map(named, out_specs)) if isinstance(out_specs, tuple) else named(out_specs)
    # check_vma off: every value is per model (varying over 'pop') or replicated data.
    return jax.jit(jax.shard_map(fn, mesh=mesh, in_specs=in_specs, out_specs=out_specs, check_vma=False),
                   out_shardings=out_shardings)


@dataclasses.dataclass(frozen=True)
class StepFunctions:
    """Compiled functions for one population structure (arch and static factor sets)."""

    init: Callable[..., Any]
    order: Callable[..., Any]
    gather: Callable[..., Any]
    train: Callable[..., Any]
    evaluate: Callable[..., Any]
    model: CNN
    optimizer: PopulationOptimizer


def make_step_functions(
    arch: ArchSpec,
    activations: tuple[str, ...],
    inits: tuple[str, ...],
    optimizers: tuple[str, ...],
    use_dropout: bool,
    momentum: float,
    image_shape: tuple[int, int, int],
    num_train: int,
    batch_size: int,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    mesh: Mesh | None = None,
    conv: str = "xla",
) -> StepFunctions:
    """Builds the jitted population functions (see each inner function for shapes).

    With a `mesh`, each function runs under `shard_map`: axis 'pop' splits the models over the
    devices and each device computes its own (nothing crosses devices). `conv` is the CNN's
    convolution ('auto', 'xla' or 'cpu_kernel', from `cpu_conv.resolve`; per layer see `cpu_conv.layer_conv`).
    """
    model = CNN(arch=arch, activations=activations, use_dropout=use_dropout, conv=conv)
    normalise = lookup_normaliser(mean, std)

    optimizer = PopulationOptimizer(optimizers, momentum)
    template = jax.eval_shape(
        lambda: model.init(
            jax.random.key(0), jnp.zeros((1, *image_shape)), 0, 0.0, train=False
        )["params"]
    )

    def init_one(seed, init_index, lr, weight_decay):
        params = init_params(template, model_key(seed, INIT_STREAM), init_index, inits)
        return {"params": params, "opt_state": optimizer.init(params, lr, weight_decay)}

    def init(factors):
        """factors (arrays [M]) -> state {'params', 'opt_state'} with leading axis M."""
        return jax.vmap(init_one)(
            factors["seed"], factors["init_index"], factors["lr"], factors["weight_decay"]
        )

    def order(seeds, epoch):
        """seeds [M] -> (indices [M, steps, B], mask [M, steps, B]) for this epoch."""
        return jax.vmap(lambda s: epoch_order(s, epoch, num_train, batch_size))(seeds)

    def gather(images, labels, indices, mask):
        """Per-model batches of S steps, indices [M, S, B] -> x [S, M, B, ...], y, mask [S, M, B]."""
        indices = jnp.swapaxes(indices, 0, 1)
        return normalise(images[indices]), labels[indices], jnp.swapaxes(mask, 0, 1)

    def train_one_step(params, opt_state, factors, x, y, mask, key):
        def loss_fn(p):
            logits = model.apply(
                {"params": p}, x, factors["activation_index"], factors["dropout"], train=True,
                rngs={"dropout": key},
            )
            loss_sum, correct = nll_and_correct(logits, y, mask)
            return loss_sum / jnp.maximum(jnp.sum(mask), 1.0), (loss_sum, correct)

        grads, (loss_sum, correct) = jax.grad(loss_fn, has_aux=True)(params)
        params, opt_state = optimizer.update(grads, opt_state, params, factors["optimizer_index"])
        return params, opt_state, loss_sum, correct

    def train(state, factors, x, y, mask, epoch, first_step):
        """S steps for M models -> (state, train loss sum [M], train correct [M]) of these steps."""
        chex.assert_equal_shape([y, mask])
        chex.assert_equal_shape_prefix([x, y], 3)
        chex.assert_axis_dimension(x, 1, factors["seed"].shape[0])

        def body(carry, batch):
            params, opt_state, step = carry
            xb, yb, mb = batch
            keys = jax.vmap(
                lambda s: jax.random.fold_in(
                    jax.random.fold_in(model_key(s, DROPOUT_STREAM), epoch), step
                )
            )(factors["seed"])
            params, opt_state, loss_sum, correct = jax.vmap(train_one_step)(
                params, opt_state, factors, xb, yb, mb, keys
            )
            return (params, opt_state, step + 1), (loss_sum, correct)

        carry = (state["params"], state["opt_state"], first_step)
        (params, opt_state, _), (loss_sums, corrects) = jax.lax.scan(body, carry, (x, y, mask))
        return {"params": params, "opt_state": opt_state}, loss_sums.sum(0), corrects.sum(0)

    def forward_eval(params, activation_index, x):
        return model.apply({"params": params}, x, activation_index, 0.0, train=False)

    def evaluate(state, factors, x, y, mask):
        """Eval mode on shared data x [nb, eb, ...] -> (loss sum [M], correct [M]) over all batches."""
        params, activation_index = state["params"], factors["activation_index"]

        def body(totals, batch):
            xb, yb, mb = batch
            logits = jax.vmap(forward_eval, in_axes=(0, 0, None))(params, activation_index, normalise(xb))
            loss_sum, correct = jax.vmap(nll_and_correct, in_axes=(0, None, None))(logits, yb, mb)
            return (totals[0] + loss_sum, totals[1] + correct), None

        m = activation_index.shape[0]
        zeros = (jnp.zeros((m,), jnp.float32), jnp.zeros((m,), jnp.float32))
        totals, _ = jax.lax.scan(body, zeros, (x, y, mask))
        return totals

    def compiled(fn, in_specs, out_specs):
        return jax.jit(fn) if mesh is None else per_device(fn, mesh, in_specs, out_specs)

    pop, steps_pop, rep = PartitionSpec("pop"), PartitionSpec(None, "pop"), PartitionSpec()
    return StepFunctions(
        init=compiled(init, (pop,), pop),
        order=compiled(order, (pop, rep), (pop, pop)),
        gather=compiled(gather, (rep, rep, pop, pop), (steps_pop,) * 3),
        train=compiled(train, (pop, pop, steps_pop, steps_pop, steps_pop, rep, rep), (pop, pop, pop)),
        evaluate=compiled(evaluate, (pop, pop, rep, rep, rep), (pop, pop)),
        model=model,
        optimizer=optimizer,
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
