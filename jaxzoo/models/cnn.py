"""The original zoos' small CNNs (CNN-s, CNN-m) as Flax modules, exact to the PyTorch code.

Layer order is conv -> max-pool -> activation -> dropout, as in the original ModuleList;
convolutions are stride 1, 'VALID'; the flatten is channel-major (NCHW) so the first linear
layer's weights are laid out exactly as PyTorch's. Images enter NHWC.

Convolutions are computed as patches @ kernel (im2col): under `jax.vmap` over per-model
kernels a `lax.conv` lowers to a grouped convolution that XLA:CPU runs slowly, whereas the
patches form becomes one batched matmul. On the CPU backend the trainer uses the C++ kernel
of `jaxzoo.models.cpu_conv` instead (`conv='cpu_kernel'`: conv, bias and max-pool in one pass).

Per-model factors that vary inside a compiled population (activation, dropout rate) are
arrays; the *set* of activations present is static, so a population that uses one
activation pays for one.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax import traverse_util

from jaxzoo.models.cpu_conv import layer_conv, population_conv, population_conv_pool

ACTIVATIONS = {
    "tanh": jnp.tanh,
    "sigmoid": jax.nn.sigmoid,
    "relu": jax.nn.relu,
    "gelu": lambda x: jax.nn.gelu(x, approximate=False),  # PyTorch nn.GELU() is exact erf
    "leakyrelu": lambda x: jax.nn.leaky_relu(x, 0.01),  # PyTorch default slope
    "silu": jax.nn.silu,
}
# Activations one program can compute side by side (`select_activation`) and still give each
# model bitwise the numbers of a program of its activation alone (tested). GELU is not among
# them: with the CPU convolution kernel a GELU model drifted by ulps between the two programs
# (its erf rounds with where XLA places a buffer), so it keeps a program of its own.
MERGEABLE_ACTIVATIONS = frozenset({"tanh", "sigmoid", "relu", "leakyrelu"})
INITS = ("uniform", "normal", "kaiming_uniform", "kaiming_normal", "xavier_uniform", "xavier_normal")
BIAS_INIT = 0.01


@dataclasses.dataclass(frozen=True)
class ConvSpec:
    features: int
    kernel: int
    pool: bool


@dataclasses.dataclass(frozen=True)
class ArchSpec:
    """A CNN of the original: convs, then fully connected layers (the last gives logits)."""

    name: str
    image_size: int
    convs: tuple[ConvSpec, ...]
    hidden: tuple[int, ...]
    num_classes: int
    dropout_after_last_conv: bool
    dropout_always_present: bool  # CNN-m inserts Dropout modules even when p == 0
    channels_in: int = 1  # image channels (the input width of an MLP)

    @property
    def flat_features(self) -> int:
        """Inputs of the first fully connected layer."""
        size = self.image_size
        for conv in self.convs:
            size = size - conv.kernel + 1
            if conv.pool:
                size //= 2
        return size * size * (self.convs[-1].features if self.convs else self.channels_in)


ARCHS = {
    "cnn_s": ArchSpec(
        name="cnn_s",
        image_size=28,
        convs=(ConvSpec(8, 5, True), ConvSpec(6, 5, True), ConvSpec(4, 2, False)),
        hidden=(20,),
        num_classes=10,
        dropout_after_last_conv=False,
        dropout_always_present=False,
    ),
    "cnn_m": ArchSpec(
        name="cnn_m",
        image_size=32,
        convs=(ConvSpec(16, 3, True), ConvSpec(32, 3, True), ConvSpec(15, 3, True)),
        hidden=(20,),
        num_classes=10,
        dropout_after_last_conv=True,
        dropout_always_present=True,
    ),
}


def layer_names(arch: ArchSpec) -> list[str]:
    """Parameter-holding layers in forward order: conv0.., then fc0.. ."""
    return [f"conv{i}" for i in range(len(arch.convs))] + [f"fc{i}" for i in range(len(arch.hidden) + 1)]


def extract_patches(x: jax.Array, kernel: int) -> jax.Array:
    """[B, H, W, C] -> [B, H-k+1, W-k+1, k*k*C], feature order (kh, kw, C) as an HWIO kernel."""
    h_out = x.shape[1] - kernel + 1
    w_out = x.shape[2] - kernel + 1
    slices = [x[:, i : i + h_out, j : j + w_out, :] for i in range(kernel) for j in range(kernel)]
    return jnp.concatenate(slices, axis=-1)


def max_pool_2x2(x: jax.Array) -> jax.Array:
    """MaxPool2d(2, 2) with floor, as reshape + max (faster than reduce_window's backward on CPU)."""
    b, h, w, c = x.shape
    h2, w2 = h // 2, w // 2
    x = x[:, : 2 * h2, : 2 * w2, :].reshape(b, h2, 2, w2, 2, c)
    return x.max(axis=(2, 4))


def shifted_conv(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """Conv2d 'VALID' as a sum of k*k shifted [.., C] @ [C, F] products; no patch array."""
    k = kernel.shape[0]
    h_out, w_out = x.shape[1] - k + 1, x.shape[2] - k + 1
    out = 0.0
    for i in range(k):
        for j in range(k):
            out = out + x[:, i : i + h_out, j : j + w_out, :] @ kernel[i, j]
    return out


@jax.custom_vjp
def single_channel_conv(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """[B, H, W, 1] conv [k, k, 1, F] -> [B, H-k+1, W-k+1, F], the same numbers as patches @ kernel.

    The first layer of every CNN sees one channel: im2col would copy each pixel k*k times
    (the costliest op of the step), so the forward pass sums shifted products instead and only
    the kernel gradient builds the patches, tap-major, for one matmul with a long contraction.
    """
    return shifted_conv(x, kernel)


def _single_channel_conv_fwd(x, kernel):
    return shifted_conv(x, kernel), (x, kernel)


def _single_channel_conv_bwd(residuals, grad_out):
    x, kernel = residuals
    k, features = kernel.shape[0], kernel.shape[-1]
    h_out, w_out = x.shape[1] - k + 1, x.shape[2] - k + 1
    taps = jnp.stack([x[:, i : i + h_out, j : j + w_out, 0].reshape(-1) for i in range(k) for j in range(k)])
    grad_kernel = (taps @ grad_out.reshape(-1, features)).reshape(kernel.shape)
    # The input gradient (unused in training: the input is data, so XLA drops it).
    _, input_vjp = jax.vjp(lambda v: extract_patches(v, k) @ kernel.reshape(-1, features), x)
    return input_vjp(grad_out)[0], grad_kernel


single_channel_conv.defvjp(_single_channel_conv_fwd, _single_channel_conv_bwd)


class PatchConv(nn.Module):
    """Conv2d, stride 1, no padding; kernel [kh, kw, in, out] (HWIO), bias [out].

    With `pool`, max_pool_2x2 of the conv output. `implementation` 'xla' (patches @ kernel, any
    backend) or 'cpu_kernel' (the C++ population convolution of `jaxzoo.models.cpu_conv`, which
    `cpu_conv.resolve` has built; it adds the bias after the pool, the same numbers).
    """

    features: int
    kernel: int
    pool: bool = False
    implementation: str = "xla"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        in_features = x.shape[-1]
        kernel = self.param("kernel", nn.initializers.zeros, (self.kernel, self.kernel, in_features, self.features))
        bias = self.param("bias", nn.initializers.zeros, (self.features,))
        if self.implementation == "cpu_kernel":
            return (population_conv_pool if self.pool else population_conv)(x, kernel, bias)
        if x.shape[-1] == 1:
            out = single_channel_conv(x, kernel) + bias
        else:
            out = extract_patches(x, self.kernel) @ kernel.reshape(-1, self.features) + bias
        return max_pool_2x2(out) if self.pool else out


def select_activation(x: jax.Array, activation_index: jax.Array, activations: Sequence[str | None]):
    """Applies activations[activation_index] (with one activation, that one); None entries are
    activations of the population that no model here uses (never computed). Its gradient is
    computed as `_selected_activation` says."""
    return _selected_activation(x, activation_index, tuple(activations))


def _pick(activation_index: jax.Array, values: list[jax.Array | None]) -> jax.Array:
    """values[activation_index], elementwise (None: an index no model has)."""
    present = [(i, value) for i, value in enumerate(values) if value is not None]
    out = present[0][1]
    for i, value in present[1:]:
        out = jnp.where(activation_index == i, value, out)
    return out


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _selected_activation(x: jax.Array, activation_index: jax.Array, activations: tuple[str | None, ...]) -> jax.Array:
    """Each model's activation of several (every one computed, the model's picked), with a
    gradient bitwise that of a program of the model's activation alone (`MERGEABLE_ACTIVATIONS`).

    The gradient is each activation's own VJP of the whole cotangent, then picked, computed
    between optimisation barriers, in every program (one activation or several). Autodiff of
    the pick handed each activation a masked cotangent, and XLA fused the backward passes with
    what surrounds them (the pick, dropout's masks) differently in each program: 1-ulp
    gradients that training carried to 2.7e-2 of the weights (measured).
    """
    return _pick(activation_index, [None if name is None else ACTIVATIONS[name](x) for name in activations])


def _selected_forward(x, activation_index, activations):
    return _selected_activation(x, activation_index, activations), (x, activation_index)


def _selected_backward(activations, residuals, cotangent):
    x, activation_index = residuals
    x, cotangent = jax.lax.optimization_barrier((x, cotangent))  # fused alike in every program
    grads = [None if name is None else jax.vjp(ACTIVATIONS[name], x)[1](cotangent)[0] for name in activations]
    return jax.lax.optimization_barrier(_pick(activation_index, grads)), None


_selected_activation.defvjp(_selected_forward, _selected_backward)


def dropout(x: jax.Array, rate: jax.Array, key: jax.Array) -> jax.Array:
    """Inverted dropout with a traced rate (PyTorch semantics: scale kept units by 1/(1-p))."""
    keep = jax.random.bernoulli(key, 1.0 - rate, x.shape)
    return jnp.where(keep, x / (1.0 - rate), 0.0)


class CNN(nn.Module):
    """CNN-s / CNN-m of the original. Call with x [B, H, W, C] -> logits [B, classes].

    `activation_index` picks from the static `activations`; `dropout_rate` is a scalar array;
    dropout runs only when `train` and `use_dropout` (a population without dropout skips it).
    `conv` is the convolutions' implementation, as `cpu_conv.resolve` answers: 'xla', 'cpu_kernel',
    or 'auto' (the kernel for the layers it serves, XLA for the others; see `cpu_conv.layer_conv`).
    """

    arch: ArchSpec
    activations: tuple[str | None, ...]
    use_dropout: bool
    conv: str = "xla"

    @nn.compact
    def __call__(self, x, activation_index, dropout_rate, train: bool):
        apply_dropout = self.use_dropout and train
        act = lambda y: select_activation(y, activation_index, self.activations)

        def maybe_dropout(y):
            return dropout(y, dropout_rate, self.make_rng("dropout")) if apply_dropout else y

        last = len(self.arch.convs) - 1
        for i, spec in enumerate(self.arch.convs):
            name = f"conv{i}"
            conv = layer_conv(self.conv, f"{self.arch.name}.{name}", x.shape[-1], spec.features)
            # The kernel pools in the same pass; XLA pools apart, so PatchConv's captured
            # intermediates (analysis features) stay the conv outputs.
            fuse_pool = spec.pool and conv == "cpu_kernel"
            x = PatchConv(spec.features, spec.kernel, fuse_pool, conv, name=name)(x)
            if spec.pool and not fuse_pool:
                x = max_pool_2x2(x)
            x = act(x)
            if i < last or self.arch.dropout_after_last_conv:
                x = maybe_dropout(x)
        x = jnp.transpose(x, (0, 3, 1, 2)).reshape(x.shape[0], -1)  # NCHW flatten, as torch
        for i, width in enumerate(self.arch.hidden):
            x = act(nn.Dense(width, name=f"fc{i}")(x))
            x = maybe_dropout(x)
        return nn.Dense(self.arch.num_classes, name=f"fc{len(self.arch.hidden)}")(x)


def fans(shape: tuple[int, ...]) -> tuple[int, int]:
    """PyTorch fan_in, fan_out of an HWIO conv kernel or an [in, out] dense kernel."""
    receptive = math.prod(shape[:-2])
    return shape[-2] * receptive, shape[-1] * receptive


def init_kernel(key: jax.Array, shape: tuple[int, ...], method: str) -> jax.Array:
    """One kernel drawn as the original's `initialize_weights` does (PyTorch semantics)."""
    fan_in, fan_out = fans(shape)
    if method == "uniform":
        return jax.random.uniform(key, shape)
    if method == "normal":
        return jax.random.normal(key, shape)
    if method == "kaiming_uniform":  # a=0: gain sqrt(2), bound sqrt(6 / fan_in)
        bound = math.sqrt(6.0 / fan_in)
        return jax.random.uniform(key, shape, minval=-bound, maxval=bound)
    if method == "kaiming_normal":
        return math.sqrt(2.0 / fan_in) * jax.random.normal(key, shape)
    if method == "xavier_uniform":
        bound = math.sqrt(6.0 / (fan_in + fan_out))
        return jax.random.uniform(key, shape, minval=-bound, maxval=bound)
    if method == "xavier_normal":
        return math.sqrt(2.0 / (fan_in + fan_out)) * jax.random.normal(key, shape)
    raise ValueError(f"unknown init {method!r}; choose one of {INITS}")


def init_params(params_template, key: jax.Array, init_index: jax.Array, inits: Sequence[str], own=None):
    """Fresh parameters for one model: kernels by inits[init_index], every bias 0.01.

    `params_template` fixes the structure and shapes (from the module's init). Kernels are
    numbered in sorted path order (conv0.., fc0.. for the CNNs) and each draws from its own
    fold of `key`, so a draw does not depend on the other layers' methods. Leaves that are
    neither `kernel` nor `bias` (a custom module's norm scales, say) come from `own`, the
    module's own initialisation.
    """
    flat = traverse_util.flatten_dict(params_template)
    kernels = sorted(path for path in flat if path[-1] == "kernel")
    own_flat = traverse_util.flatten_dict(own) if own is not None else {}
    out = {}
    for path, leaf in flat.items():
        if path[-1] == "kernel":
            layer_key = jax.random.fold_in(key, kernels.index(path))
            kernel = init_kernel(layer_key, leaf.shape, inits[0])
            for i, method in enumerate(inits[1:], start=1):
                kernel = jnp.where(init_index == i, init_kernel(layer_key, leaf.shape, method), kernel)
            out[path] = kernel
        elif path[-1] == "bias":
            out[path] = jnp.full(leaf.shape, BIAS_INIT)
        else:
            out[path] = own_flat[path]
    return traverse_util.unflatten_dict(out)


def param_count(params) -> int:
    return sum(x.size for x in jax.tree_util.tree_leaves(params))


# The Small CNN Zoo network (Unterthiner et al. 2020, "Predicting Neural Network Accuracy from
# Weights"): Keras Conv2D(16, 3, strides=2, padding='valid', activation) x 3 (each followed by
# Dropout when the rate is > 0), GlobalAveragePooling2D, Dense(classes) giving logits.
SMALL_CNN_ZOO_ACTIVATIONS = {**ACTIVATIONS, "selu": jax.nn.selu, "linear": lambda x: x}


class SmallCNNZoo(nn.Module):
    """The Small CNN Zoo's CNN: x [B, H, W, C] float32 -> logits [B, num_classes].

    Three 3x3 convolutions of `features` filters, stride 2, no padding (Keras 'valid': a 28 px
    image becomes 13, 6, 2 px; 32 px becomes 15, 7, 3), each followed by the activation (and
    dropout in training: at the model's `dropout_rate`, the population's dropout factor, when
    the trainer passes one, else at the zoo's `dropout` field), then the mean over H and W and
    one dense layer.
    Params (Flax layouts, which are TensorFlow's): conv{i}/kernel [3, 3, in, features] (HWIO),
    conv{i}/bias [features], dense/kernel [features, classes] ([in, out]), dense/bias [classes]:
    4,970 numbers for 1 channel and 10 classes. Registered as `model.module = "small_cnn_zoo"`
    (`jaxzoo.models.registry.NAMED_MODULES`); exported with the default custom-module keys
    (conv0.weight [16, 1, 3, 3], ..., dense.weight [10, 16]).
    """

    activation: str = "relu"
    num_classes: int = 10
    features: int = 16
    num_layers: int = 3
    kernel: int = 3
    stride: int = 2
    dropout: float = 0.0

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False, dropout_rate: jax.Array | None = None) -> jax.Array:
        act = SMALL_CNN_ZOO_ACTIVATIONS[self.activation]
        for i in range(self.num_layers):
            x = nn.Conv(
                self.features,
                (self.kernel, self.kernel),
                strides=(self.stride, self.stride),
                padding="VALID",
                name=f"conv{i}",
            )(x)
            x = act(x)
            if dropout_rate is not None:
                x = dropout(x, dropout_rate, self.make_rng("dropout")) if train else x
            elif self.dropout > 0:
                x = nn.Dropout(self.dropout, deterministic=not train)(x)
        x = jnp.mean(x, axis=(1, 2))
        return nn.Dense(self.num_classes, name="dense")(x)
