"""Variational Dropout (sparse VD, Molchanov et al. 2017) for CNN-s, as the original's CNN_ARD.

Each conv / linear layer carries `log_sigma2` (shape of its kernel; conv layers also a
`log_sigma2_bias`). log alpha = clamp(log sigma^2 - 2 log(|w| + 1e-15)), clamped to [-8, 8] for
conv and [-10, 10] for linear layers.

- Training forward, local reparameterisation: conv: conv(x, W) + b + sqrt(1e-15 +
  conv(x^2, e^{log alpha} W^2) + e^{log alpha_b} b^2) * eps; linear: x W + sqrt(x^2 (e^{log
  alpha} W^2) + 1e-15) * eps + b.
- Evaluation: weights with log alpha >= 3 are zero; conv biases by their own log alpha_b;
  linear biases are never masked (the original allocates but never uses their log sigma^2).
- KL ~ -sum(k1 sigmoid(k2 + k3 log alpha) - 0.5 log1p(e^{-log alpha}) - k1) over conv weights
  and biases and linear weights; loss = cross-entropy + kl_weight * KL.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxzoo.models.cnn import ArchSpec, extract_patches, max_pool_2x2, select_activation

CLAMP = {"conv": (-8.0, 8.0), "fc": (-10.0, 10.0)}
THRESHOLD = 3.0
LOG_SIGMA2_INIT = -10.0
K1, K2, K3 = 0.63576, 1.8732, 1.48695


def log_alpha(log_sigma2: jax.Array, w: jax.Array, kind: str) -> jax.Array:
    return jnp.clip(log_sigma2 - 2.0 * jnp.log(jnp.abs(w) + 1e-15), *CLAMP[kind])


def kl_approximation(log_alpha_value: jax.Array) -> jax.Array:
    """Molchanov et al. (2017) approximation of KL(q || log-uniform prior), summed."""
    la = log_alpha_value
    return -jnp.sum(K1 * jax.nn.sigmoid(K2 + K3 * la) - 0.5 * jnp.log1p(jnp.exp(-la)) - K1)


def kl_weight(epoch_index: int | jax.Array, num_epochs: int) -> jax.Array:
    """The original's schedule min(1, 0.01 * epoch / n), n the twin run's number of epochs (25 in
    the original scripts); training epochs use 0..n-1, the initial evaluation -1 (so its logged
    loss has a weight of -0.01 / n)."""
    return jnp.minimum(1.0, 0.01 * epoch_index / num_epochs)


def layer_kinds(params) -> dict[str, str]:
    return {name: ("conv" if name.startswith("conv") else "fc") for name in params}


def masks(params) -> dict[str, dict[str, jax.Array]]:
    """Per layer: 'kernel' and 'bias' keep-masks (1 = kept) for evaluation."""
    out = {}
    for name, kind in layer_kinds(params).items():
        layer = params[name]
        kernel_keep = log_alpha(layer["log_sigma2"], layer["kernel"], kind) < THRESHOLD
        if kind == "conv":
            bias_keep = log_alpha(layer["log_sigma2_bias"], layer["bias"], kind) < THRESHOLD
        else:
            bias_keep = jnp.ones_like(layer["bias"], bool)
        out[name] = {"kernel": kernel_keep, "bias": bias_keep}
    return out


def masked_params(params):
    """Plain CNN params (kernel, bias) with the evaluation mask applied."""
    keep = masks(params)
    return {
        name: {
            "kernel": jnp.where(keep[name]["kernel"], layer["kernel"], 0.0),
            "bias": jnp.where(keep[name]["bias"], layer["bias"], 0.0),
        }
        for name, layer in params.items()
    }


def sparsity(params) -> jax.Array:
    """Share of conv and linear weights (biases excluded) with log alpha >= 3."""
    keep = masks(params)
    dropped = sum(jnp.sum(~m["kernel"]) for m in keep.values())
    total = sum(m["kernel"].size for m in keep.values())
    return dropped / total


def kl_total(params) -> jax.Array:
    """KL over conv weights and biases and linear weights (the original's sum)."""
    total = 0.0
    for name, kind in layer_kinds(params).items():
        layer = params[name]
        total += kl_approximation(log_alpha(layer["log_sigma2"], layer["kernel"], kind))
        if kind == "conv":
            total += kl_approximation(log_alpha(layer["log_sigma2_bias"], layer["bias"], kind))
    return total


def from_source(params) -> dict:
    """ARD params from trained CNN params: weights copied, log sigma^2 = -10 (linear bias: 0, unused)."""
    out = {}
    for name, layer in params.items():
        out[name] = {
            "kernel": layer["kernel"],
            "bias": layer["bias"],
            "log_sigma2": jnp.full_like(layer["kernel"], LOG_SIGMA2_INIT),
            "log_sigma2_bias": jnp.full_like(layer["bias"], LOG_SIGMA2_INIT if name.startswith("conv") else 0.0),
        }
    return out


class StochasticCNN(nn.Module):
    """CNN-s training forward with the local reparameterisation trick; params as `from_source`."""

    arch: ArchSpec
    activations: tuple[str, ...]

    @nn.compact
    def __call__(self, params, x, activation_index):
        act = lambda y: select_activation(y, activation_index, self.activations)
        for i, spec in enumerate(self.arch.convs):
            layer = params[f"conv{i}"]
            patches = extract_patches(x, spec.kernel)
            kernel = layer["kernel"].reshape(-1, spec.features)
            la = log_alpha(layer["log_sigma2"], layer["kernel"], "conv").reshape(kernel.shape)
            la_b = log_alpha(layer["log_sigma2_bias"], layer["bias"], "conv")
            mean = patches @ kernel + layer["bias"]
            var = (patches**2) @ (jnp.exp(la) * kernel**2) + jnp.exp(la_b) * layer["bias"] ** 2
            x = mean + jnp.sqrt(1e-15 + var) * jax.random.normal(self.make_rng("noise"), mean.shape)
            if spec.pool:
                x = max_pool_2x2(x)
            x = act(x)
        x = jnp.transpose(x, (0, 3, 1, 2)).reshape(x.shape[0], -1)
        names = [f"fc{i}" for i in range(len(self.arch.hidden) + 1)]
        for j, name in enumerate(names):
            layer = params[name]
            la = log_alpha(layer["log_sigma2"], layer["kernel"], "fc")
            mean = x @ layer["kernel"]
            var = (x**2) @ (jnp.exp(la) * layer["kernel"] ** 2) + 1e-15
            x = mean + jnp.sqrt(var) * jax.random.normal(self.make_rng("noise"), mean.shape) + layer["bias"]
            if j < len(names) - 1:
                x = act(x)
        return x
