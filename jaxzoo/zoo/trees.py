"""Numpy pytree helpers for populations: every leaf has the models on its leading axis."""

from __future__ import annotations

import jax
import numpy as np


def tree_take(tree, indices: np.ndarray):
    """The rows `indices` of every leaf, as numpy arrays."""
    return jax.tree.map(lambda a: np.asarray(a)[indices], tree)


def tree_concat(trees: list):
    """Leaves joined along the model axis (shards of one zoo, in order)."""
    return jax.tree.map(lambda *parts: np.concatenate(parts), *trees)


def tree_put(tree, indices: np.ndarray, values) -> None:
    """tree[indices] = values, leaf by leaf, in place (numpy leaves)."""
    jax.tree.map(lambda leaf, value: leaf.__setitem__(indices, value), tree, values)
