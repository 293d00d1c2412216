"""Compiled init / train / evaluate for ResNet-18 populations, one model at a time per device.

One ResNet-18 fills a device's compute, and a `vmap` over per-model kernels would become a
grouped convolution (slow on XLA:CPU). So the population axis is split over a device mesh
with `jax.shard_map` (the successor of `pmap`), and each device runs its own models one
after another with `lax.map`: every model executes exactly the program it would run alone,
whatever the device count or the models beside it.

Per model and step: augment the uint8 batch on device (key from the model seed, epoch and
step), normalise through the lookup table, forward in train mode (BatchNorm batch statistics,
running statistics updated as PyTorch), NLL of log_softmax, SGD with coupled L2 whose lr and
momentum follow PyTorch's OneCycleLR at the global step (or stay constant without a
schedule). Shapes as in `jaxzoo.training.steps`, except that training batches arrive model-major:
x [M, S, B, H, W, C] uint8, y and mask [M, S, B].
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh, PartitionSpec

from jaxzoo.models.resnet import ResNet18, init_resnet
from jaxzoo.training.augment import AUGMENTATIONS
from jaxzoo.training.precision import compute_dtype_of, with_precision
from jaxzoo.training.schedules import make_one_cycle_sgd, one_cycle, set_hyperparams
from jaxzoo.training.steps import (
    DROPOUT_STREAM,
    INIT_STREAM,
    StepFunctions,
    StepSetup,
    epoch_order,
    lookup_normaliser,
    model_key,
    nll_and_correct,
    per_device,
)

AUGMENT_STREAM = DROPOUT_STREAM  # ResNets have no dropout: the per-step stream drives augmentation


def make_resnet_step_functions(
    setup: StepSetup,
    mesh: Mesh,
    augmentation: str,
    scheduler: str,
    momentum: float,
    unroll: bool | None = None,
) -> StepFunctions:
    """The population functions of a ResNet-18 zoo over `mesh` (axis 'pop' splits the models).

    OneCycle spans the run's optimizer steps, `setup.num_epochs` times the steps of an epoch
    (which count the last partial batch, as PyTorch's len(loader)). `unroll`: Python loops
    over models and steps (default on CPU) or lax.map / lax.scan (accelerators).
    """
    num_classes, image_shape, num_train = setup.num_classes, setup.image_shape, setup.num_train
    batch_size, compute_dtype, donate_state = setup.batch_size, setup.compute_dtype, setup.donate_state
    steps_per_epoch = -(-num_train // batch_size)
    total_steps = setup.num_epochs * steps_per_epoch
    # XLA:CPU runs a ResNet step inside lax.scan / lax.map 4x (rolled) to 40x (unroll=True, where
    # it picks slow convolutions) slower than straight-line code (measured), so on CPU the models
    # of a device and the steps of a call are Python loops at trace time.
    unroll = jax.default_backend() == "cpu" if unroll is None else unroll
    model = ResNet18(num_classes=num_classes, dtype=compute_dtype_of(compute_dtype))
    optimizer = make_one_cycle_sgd()
    augment = AUGMENTATIONS[augmentation]
    normalise = lookup_normaliser(setup.mean, setup.std)
    pop, rep = PartitionSpec("pop"), PartitionSpec()

    def hyperparams(max_lr, global_step):
        if scheduler == "one_cycle":
            return one_cycle(global_step, total_steps, max_lr)
        return max_lr, jnp.float32(momentum)

    def init_one(factors):
        variables = init_resnet(model_key(factors["seed"], INIT_STREAM), num_classes, image_shape)
        opt_state = optimizer.init(variables["params"])
        lr, mom = hyperparams(factors["lr"], 0)
        opt_state = set_hyperparams(opt_state, learning_rate=lr, momentum=mom, weight_decay=factors["weight_decay"])
        return {**variables, "opt_state": opt_state}

    def init(factors):
        """factors [M] -> state {'params', 'batch_stats', 'opt_state'} [M, ...]."""
        return jax.lax.map(init_one, factors)

    def order(factors, epoch):
        return jax.vmap(lambda s: epoch_order(s, epoch, num_train, batch_size))(factors["seed"])

    def gather(images, labels, indices, mask, factors):
        """indices [M, S, B] -> x [M, S, B, H, W, C] uint8 (augmented later, per step), y, mask."""
        return images[indices], labels[indices], mask

    def train_one_model(args, epoch, first_step):
        state, factors, x, y, mask = args

        def step(carry, batch):
            params, batch_stats, opt_state, index = carry
            xb, yb, mb = batch
            key = jax.random.fold_in(jax.random.fold_in(model_key(factors["seed"], AUGMENT_STREAM), epoch), index)
            images = normalise(augment(key, xb))

            def loss_fn(p):
                logits, updates = model.apply(
                    {"params": p, "batch_stats": batch_stats}, images, train=True, mutable=["batch_stats"]
                )
                loss_sum, correct = nll_and_correct(logits, yb, mb)
                return loss_sum / jnp.maximum(jnp.sum(mb), 1.0), (updates["batch_stats"], loss_sum, correct)

            grads, (batch_stats, loss_sum, correct) = jax.grad(loss_fn, has_aux=True)(params)
            lr, mom = hyperparams(factors["lr"], (epoch - 1) * steps_per_epoch + index)
            opt_state = set_hyperparams(opt_state, learning_rate=lr, momentum=mom)
            updates, opt_state = optimizer.update(grads, opt_state, params)
            params = optax.apply_updates(params, updates)
            return (params, batch_stats, opt_state, index + 1), (loss_sum, correct)

        carry = (state["params"], state["batch_stats"], state["opt_state"], first_step)
        if unroll:  # a Python loop: even an unrolled lax.scan ran ~40x slower here (measured)
            losses = []
            for i in range(x.shape[0]):
                carry, out = step(carry, (x[i], y[i], mask[i]))
                losses.append(out)
            loss_sums, corrects = (jnp.stack(parts) for parts in zip(*losses))
        else:
            carry, (loss_sums, corrects) = jax.lax.scan(step, carry, (x, y, mask))
        params, batch_stats, opt_state, _ = carry
        new_state = {"params": params, "batch_stats": batch_stats, "opt_state": opt_state}
        return new_state, {"loss_sum": loss_sums, "correct": corrects}

    def each_model(fn, args):
        """fn over the leading (model) axis of args: one model after another."""
        if not unroll:
            return jax.lax.map(fn, args)
        count = jax.tree.leaves(args)[0].shape[0]
        outs = [fn(jax.tree.map(lambda a, i=i: a[i], args)) for i in range(count)]
        return jax.tree.map(lambda *parts: jnp.stack(parts), *outs)

    def train_local(state, factors, x, y, mask, epoch, first_step):
        return each_model(lambda a: train_one_model(a, epoch, first_step), (state, factors, x, y, mask))

    train_run = per_device(
        with_precision(train_local, compute_dtype),
        mesh,
        (pop, pop, pop, pop, pop, rep, rep),
        (pop, pop),
        donate_argnums=(0,) if donate_state else (),
    )

    def train(state, factors, x, y, mask, epoch, first_step):
        """S steps for M models -> (state, {"loss_sum", "correct"} [M, S]: each step's sums)."""
        return train_run(state, factors, x, y, mask, jnp.int32(epoch), jnp.int32(first_step))

    def evaluate_local(params, batch_stats, xb, yb, mb):
        def one_model(variables):
            logits = model.apply(variables, normalise(xb), train=False)
            return nll_and_correct(logits, yb, mb)

        return each_model(one_model, {"params": params, "batch_stats": batch_stats})

    evaluate_batch = per_device(
        with_precision(evaluate_local, compute_dtype), mesh, (pop, pop, rep, rep, rep), (pop, pop)
    )

    def evaluate(state, factors, x, y, mask):
        """Eval mode (running statistics) on shared batches x [nb, eb, ...] -> (loss sum, correct) [M].

        One compiled call per batch: a ResNet forward is long enough to hide the dispatch.
        """
        del factors  # every ResNet of a zoo has the same structure
        loss_sum = correct = 0.0
        for i in range(x.shape[0]):
            batch_loss, batch_correct = evaluate_batch(state["params"], state["batch_stats"], x[i], y[i], mask[i])
            loss_sum, correct = loss_sum + batch_loss, correct + batch_correct
        return loss_sum, correct

    models = jax.sharding.NamedSharding(mesh, pop)
    return StepFunctions(
        init=jax.jit(init, out_shardings=models),
        order=jax.jit(order),
        gather=jax.jit(gather),
        train=train,
        evaluate=evaluate,
        model=model,
        transform=optimizer,
        steps_per_epoch=steps_per_epoch,
    )
