"""Per-model optimizers of the original zoos, as optax transformations.

PyTorch's Adam(lr, weight_decay) and SGD(lr, momentum, weight_decay) use *coupled* L2: the
decay is added to the gradient before the update, for every parameter (biases included).
That is `chain(add_decayed_weights(wd), adam(lr))` / `chain(add_decayed_weights(wd),
sgd(lr, momentum))`. Learning rate and decay live in the optimizer state
(`inject_hyperparams`), so under `jax.vmap` every model has its own. A population that mixes
optimizers keeps one state per optimizer present and selects each model's update by index;
the selection is exact, so a model's trajectory does not depend on its neighbours'.
"""

from __future__ import annotations

from typing import Any, Sequence

import jax
import jax.numpy as jnp
import optax

OPTIMIZERS = ("adam", "sgd")
ADAM_BETAS = (0.9, 0.999)
ADAM_EPS = 1e-8


def make_transform(name: str, momentum: float) -> optax.GradientTransformation:
    """The optimizer `name` with injectable `learning_rate` and `weight_decay`."""
    if name == "adam":
        inner = lambda lr: optax.adam(lr, b1=ADAM_BETAS[0], b2=ADAM_BETAS[1], eps=ADAM_EPS)
    elif name == "sgd":
        inner = lambda lr: optax.sgd(lr, momentum=momentum or None)
    else:
        raise ValueError(f"unknown optimizer {name!r}; choose one of {OPTIMIZERS}")

    def factory(learning_rate, weight_decay):
        return optax.chain(optax.add_decayed_weights(weight_decay), inner(learning_rate))

    return optax.inject_hyperparams(factory)(learning_rate=0.0, weight_decay=0.0)


class PopulationOptimizer:
    """Optimizer for one model (vmap it over the population) among the static `names`."""

    def __init__(self, names: Sequence[str], momentum: float):
        self.names = tuple(names)
        self.transforms = {name: make_transform(name, momentum) for name in self.names}

    def init(self, params, lr: jax.Array, weight_decay: jax.Array) -> dict[str, Any]:
        states = {}
        for name, transform in self.transforms.items():
            state = transform.init(params)
            state.hyperparams["learning_rate"] = jnp.asarray(lr, jnp.float32)
            state.hyperparams["weight_decay"] = jnp.asarray(weight_decay, jnp.float32)
            states[name] = state
        return states

    def update(self, grads, states, params, optimizer_index: jax.Array):
        """-> (new params, new states); the model's own optimizer is `names[optimizer_index]`."""
        new_params, new_states = None, {}
        for i, name in enumerate(self.names):
            updates, new_states[name] = self.transforms[name].update(grads, states[name], params)
            candidate = optax.apply_updates(params, updates)
            if new_params is None:
                new_params = candidate
            else:
                new_params = jax.tree.map(
                    lambda c, p: jnp.where(optimizer_index == i, c, p), candidate, new_params
                )
        return new_params, new_states
