"""Compute precision of a zoo's forward and backward passes (`training.compute_dtype`).

Parameters, optimizer state and the loss stay float32 whatever is chosen; only the network's
arithmetic changes:

- `float32`: true float32 matmuls and convolutions (XLA precision HIGHEST). The original zoos
  were trained on CPUs, in float32, and PyTorch's own matmul default is float32 too, so this
  is what reproduces them. On GPUs JAX's default would otherwise allow TensorFloat-32 (10-bit
  mantissa inputs), which moves trajectories by ~1e-3 relative per step.
- `tensorfloat32`: float32 data, TF32 tensor-core matmuls and convolutions on GPUs that have
  them (PyTorch's cuDNN default for convolutions); exactly `float32` on CPU.
- `bfloat16`: parameters and activations cast to bfloat16 for the network's arithmetic
  (float32 accumulation on GPUs/TPUs), logits back to float32 for the loss; on GPUs and TPUs
  the fastest, on CPU slower than float32.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp

# compute_dtype -> (dtype of the network's arithmetic, XLA matmul precision)
COMPUTE_DTYPES = {
    "float32": (jnp.float32, "highest"),
    "tensorfloat32": (jnp.float32, "tensorfloat32"),
    "bfloat16": (jnp.bfloat16, "default"),
}


def compute_dtype_of(name: str):
    """The jnp dtype of the network's arithmetic for `training.compute_dtype=name`."""
    return COMPUTE_DTYPES[name][0]


def with_precision(fn: Callable, name: str) -> Callable:
    """`fn` traced under the matmul precision of compute dtype `name` (wrap before `jax.jit`)."""
    precision = COMPUTE_DTYPES[name][1]

    @functools.wraps(fn)
    def traced(*args, **kwargs):
        with jax.default_matmul_precision(precision):
            return fn(*args, **kwargs)

    return traced


def cast_for_compute(tree, name: str):
    """The float arrays of `tree` in the compute dtype of `name` (others unchanged)."""
    dtype = compute_dtype_of(name)
    if dtype == jnp.float32:
        return tree
    return jax.tree.map(lambda a: a.astype(dtype) if jnp.issubdtype(a.dtype, jnp.floating) else a, tree)
