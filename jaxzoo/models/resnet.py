"""ResNet-18 (CIFAR variant) in Flax, exact to the original zoos' torchvision model.

Architecture: torchvision `ResNet(BasicBlock, [2, 2, 2, 2], num_classes)` with `conv1` a
3x3 / stride 1 / padding 1 conv without bias and `maxpool = Identity`; stages of widths
64/128/256/512 and strides 1/2/2/2; a 1x1-conv + BN downsample shortcut in layer2.0,
layer3.0 and layer4.0; global average pool; fc 512 -> num_classes. Images enter NHWC.

Init (the original's, overriding torchvision's): every conv and linear weight is
`kaiming_uniform_` with PyTorch defaults, U(-b, b) with b = sqrt(6 / fan_in) (fan_in =
in_channels*kh*kw, or in_features); fc bias 0.01; BN scale 1, bias 0; running mean 0,
running var 1, count 0.

BatchNorm has PyTorch semantics (momentum 0.1, eps 1e-5): in train mode it normalises with
the batch mean and the *biased* batch variance over (N, H, W) and updates
`mean <- 0.9 mean + 0.1 batch_mean`, `var <- 0.9 var + 0.1 * n/(n-1) * biased_var`
(n = N*H*W, PyTorch's unbiased running variance; flax's nn.BatchNorm would use the biased
one), `count <- count + 1`. Eval mode normalises with the running statistics.

Variable tree (flax names -> torchvision keys, '_' -> '.'):
  params:      conv1/kernel [3,3,C,64] HWIO       -> conv1.weight [64,C,3,3] (OIHW)
               bn1/{scale, bias} [64]             -> bn1.{weight, bias}
               layer{s}_{b}/{conv1, conv2}/kernel -> layer{s}.{b}.{conv1, conv2}.weight
               layer{s}_{b}/{bn1, bn2}/...        -> layer{s}.{b}.{bn1, bn2}.*
               layer{s}_0/downsample_0/kernel     -> layer{s}.0.downsample.0.weight (s = 2, 3, 4)
               layer{s}_0/downsample_1/...        -> layer{s}.0.downsample.1.*
               fc/kernel [512, K], fc/bias [K]    -> fc.weight [K, 512], fc.bias [K]
  batch_stats: every BN module as above, with mean [c] float32 -> running_mean,
               var [c] float32 -> running_var, count [] int32 -> num_batches_tracked (int64
               on export).

Flat vectors (`flat_vectors`, `index_map`) hold the trainable parameters only, i.e. PyTorch's
`model.parameters()`: every conv weight, BN weight/bias and the fc weight/bias, in
torchvision state_dict order, each flattened row-major in PyTorch layout. BN running
statistics and num_batches_tracked are excluded, so the length is the parameter count
(11,173,962 for 10 classes with 3 input channels).

With `dtype=jnp.bfloat16`, convolutions and the fc matmul run in bfloat16; parameters, BN
statistics, the BN arithmetic, the pooling and the returned logits stay float32.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from jaxzoo.models.torch_layout import TorchInverse

STAGES = ((64, 1), (128, 2), (256, 2), (512, 2))  # (width, stride) of layer1..layer4
BLOCKS_PER_STAGE = 2
MOMENTUM = 0.1
EPSILON = 1e-5
FC_BIAS_INIT = 0.01

# PyTorch kaiming_uniform_(a=0, mode='fan_in', nonlinearity='leaky_relu'): bound sqrt(6/fan_in).
# Flax's fan_in of an HWIO kernel is kh*kw*in, of an [in, out] dense kernel in.
kaiming_uniform = nn.initializers.variance_scaling(2.0, "fan_in", "uniform")


class BatchNorm(nn.Module):
    """BatchNorm2d with PyTorch semantics over NHWC input [B, H, W, C] -> same shape, `dtype`.

    params: scale [C], bias [C]; batch_stats: mean [C], var [C] (float32), count [] int32.
    """

    dtype: Any = jnp.float32
    momentum: float = MOMENTUM
    epsilon: float = EPSILON

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        channels = x.shape[-1]
        scale = self.param("scale", nn.initializers.ones, (channels,), jnp.float32)
        bias = self.param("bias", nn.initializers.zeros, (channels,), jnp.float32)
        running_mean = self.variable("batch_stats", "mean", lambda: jnp.zeros((channels,), jnp.float32))
        running_var = self.variable("batch_stats", "var", lambda: jnp.ones((channels,), jnp.float32))
        count = self.variable("batch_stats", "count", lambda: jnp.zeros((), jnp.int32))
        x = x.astype(jnp.float32)
        if train:
            n = x.size // channels
            if n < 2:
                raise ValueError(f"BatchNorm in train mode needs more than 1 value per channel, got {x.shape}")
            mean = jnp.mean(x, axis=(0, 1, 2))
            var = jnp.mean(jnp.square(x - mean), axis=(0, 1, 2))  # biased, two-pass
            if not self.is_initializing():
                running_mean.value = (1 - self.momentum) * running_mean.value + self.momentum * mean
                running_var.value = (1 - self.momentum) * running_var.value + self.momentum * var * (n / (n - 1))
                count.value = count.value + 1
        else:
            mean, var = running_mean.value, running_var.value
        mul = scale * jax.lax.rsqrt(var + self.epsilon)
        return ((x - mean) * mul + bias).astype(self.dtype)


class BasicBlock(nn.Module):
    """torchvision BasicBlock: [B, H, W, Cin] -> [B, ceil(H/s), ceil(W/s), features]."""

    features: int
    strides: int = 1
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        conv = functools.partial(
            nn.Conv, use_bias=False, dtype=self.dtype, param_dtype=jnp.float32, kernel_init=kaiming_uniform
        )
        norm = functools.partial(BatchNorm, dtype=self.dtype)
        stride = (self.strides, self.strides)
        y = conv(self.features, (3, 3), stride, padding=((1, 1), (1, 1)), name="conv1")(x)
        y = nn.relu(norm(name="bn1")(y, train))
        y = conv(self.features, (3, 3), padding=((1, 1), (1, 1)), name="conv2")(y)
        y = norm(name="bn2")(y, train)
        if self.strides != 1 or x.shape[-1] != self.features:
            x = conv(self.features, (1, 1), stride, padding="VALID", name="downsample_0")(x)
            x = norm(name="downsample_1")(x, train)
        return nn.relu(y + x)


class ResNet18(nn.Module):
    """ResNet-18, CIFAR variant. x [B, H, W, C] (NHWC) -> logits [B, num_classes] float32.

    Train mode uses batch statistics and updates 'batch_stats' (apply with
    `mutable=['batch_stats']`); eval mode uses the running statistics.
    """

    num_classes: int
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        x = x.astype(self.dtype)
        x = nn.Conv(
            64,
            (3, 3),
            padding=((1, 1), (1, 1)),
            use_bias=False,
            dtype=self.dtype,
            param_dtype=jnp.float32,
            kernel_init=kaiming_uniform,
            name="conv1",
        )(x)
        x = nn.relu(BatchNorm(dtype=self.dtype, name="bn1")(x, train))
        for stage, (width, stride) in enumerate(STAGES, start=1):
            for block in range(BLOCKS_PER_STAGE):
                x = BasicBlock(width, stride if block == 0 else 1, dtype=self.dtype, name=f"layer{stage}_{block}")(
                    x, train
                )
        x = jnp.mean(x.astype(jnp.float32), axis=(1, 2)).astype(self.dtype)
        x = nn.Dense(
            self.num_classes,
            dtype=self.dtype,
            param_dtype=jnp.float32,
            kernel_init=kaiming_uniform,
            bias_init=nn.initializers.constant(FC_BIAS_INIT),
            name="fc",
        )(x)
        return x.astype(jnp.float32)


def init_resnet(key: jax.Array, num_classes: int, image_shape: tuple[int, int, int]) -> dict:
    """{'params', 'batch_stats'} of one ResNet18 for images [H, W, C]; deterministic in `key`.

    Pure JAX (jit/vmap-friendly); the variables do not depend on H and W, only on C.
    """
    model = ResNet18(num_classes)
    variables = model.init(key, jnp.zeros((1, *image_shape), jnp.float32), train=False)
    return {"params": variables["params"], "batch_stats": variables["batch_stats"]}


def _modules() -> Iterator[tuple[tuple[str, ...], str, str]]:
    """(flax module path, torchvision prefix, kind 'conv' | 'bn' | 'fc') in state_dict order."""
    yield ("conv1",), "conv1", "conv"
    yield ("bn1",), "bn1", "bn"
    for stage, (_, stride) in enumerate(STAGES, start=1):
        for block in range(BLOCKS_PER_STAGE):
            name = f"layer{stage}_{block}"
            for sub, kind in (("conv1", "conv"), ("bn1", "bn"), ("conv2", "conv"), ("bn2", "bn")):
                yield (name, sub), f"layer{stage}.{block}.{sub}", kind
            if block == 0 and stride != 1:  # layer1 keeps 64 channels: no downsample
                yield (name, "downsample_0"), f"layer{stage}.{block}.downsample.0", "conv"
                yield (name, "downsample_1"), f"layer{stage}.{block}.downsample.1", "bn"
    yield ("fc",), "fc", "fc"


def _get(tree: dict, path: tuple[str, ...]) -> dict:
    for name in path:
        tree = tree[name]
    return tree


def _to_torch_layout(kernel: np.ndarray, kind: str) -> np.ndarray:
    """HWIO conv kernel -> OIHW, [in, out] dense kernel -> [out, in]; leading axes kept."""
    lead = kernel.ndim - (4 if kind == "conv" else 2)
    axes = tuple(range(lead))
    order = axes + ((lead + 3, lead + 2, lead, lead + 1) if kind == "conv" else (lead + 1, lead))
    return kernel.transpose(order)


def torch_parameters(params: dict) -> Iterator[tuple[str, np.ndarray]]:
    """(state_dict key, array in PyTorch layout) of the trainable parameters, in order."""
    for path, prefix, kind in _modules():
        layer = _get(params, path)
        if kind == "bn":
            yield f"{prefix}.weight", np.asarray(layer["scale"])
            yield f"{prefix}.bias", np.asarray(layer["bias"])
        else:
            yield f"{prefix}.weight", _to_torch_layout(np.asarray(layer["kernel"]), kind)
            if kind == "fc":
                yield f"{prefix}.bias", np.asarray(layer["bias"])


def torch_state_dict(variables: dict) -> dict[str, np.ndarray]:
    """{'params', 'batch_stats'} -> torchvision state_dict (key -> numpy array), in its order.

    Conv kernels become OIHW, the fc kernel [out, in], counts int64. A leading population
    axis M on every leaf stays leading on every value (e.g. conv1.weight [M, 64, C, 3, 3]).
    """
    params, stats = variables["params"], variables["batch_stats"]
    weights = dict(torch_parameters(params))
    out: dict[str, np.ndarray] = {}
    for path, prefix, kind in _modules():
        out[f"{prefix}.weight"] = weights[f"{prefix}.weight"]
        if kind != "conv":
            out[f"{prefix}.bias"] = weights[f"{prefix}.bias"]
        if kind == "bn":
            layer = _get(stats, path)
            out[f"{prefix}.running_mean"] = np.asarray(layer["mean"], np.float32)
            out[f"{prefix}.running_var"] = np.asarray(layer["var"], np.float32)
            out[f"{prefix}.num_batches_tracked"] = np.asarray(layer["count"]).astype(np.int64)
    return out


def flat_vectors(params: dict) -> np.ndarray:
    """Population params (leading axis M; or variables holding 'params') -> [M, P] float32.

    Trainable parameters only, in `index_map` order (see the module docstring).
    """
    if "params" in params:
        params = params["params"]
    parts = [np.ascontiguousarray(a).reshape(a.shape[0], -1) for _, a in torch_parameters(params)]
    return np.concatenate(parts, axis=1).astype(np.float32)


def _param_shapes(num_classes: int, channels_in: int) -> Iterator[tuple[str, tuple[int, ...]]]:
    """(state_dict key, PyTorch shape) of the trainable parameters, in order."""
    cin = channels_in
    for _, prefix, kind in _modules():
        if kind == "conv":
            if prefix == "conv1":
                cout, k = 64, 3
            else:
                stage = int(prefix[5])
                cout = STAGES[stage - 1][0]
                k = 1 if "downsample" in prefix else 3
                if "downsample" in prefix:
                    cin = STAGES[stage - 2][0]  # the block's input width
            yield f"{prefix}.weight", (cout, cin, k, k)
            cin = cout
        elif kind == "bn":
            yield f"{prefix}.weight", (cin,)
            yield f"{prefix}.bias", (cin,)
        else:
            yield f"{prefix}.weight", (num_classes, STAGES[-1][0])
            yield f"{prefix}.bias", (num_classes,)


def index_map(num_classes: int, channels_in: int) -> list[dict]:
    """Per tensor of a flat vector: {'key', 'offset', 'shape'} (PyTorch shape), in order."""
    out, offset = [], 0
    for key, shape in _param_shapes(num_classes, channels_in):
        out.append({"key": key, "offset": offset, "shape": list(shape)})
        offset += int(np.prod(shape))
    return out


def param_count(num_classes: int, channels_in: int = 3) -> int:
    """Trainable parameter count (11,173,962 for 10 classes, 3 channels)."""
    return sum(int(np.prod(shape)) for _, shape in _param_shapes(num_classes, channels_in))


def torch_inverse(num_classes: int, channels_in: int):
    """The inverse of `torch_state_dict` (a `layout.TorchInverse` whose leaf paths start with
    'params' or 'batch_stats'): a torchvision state_dict, BatchNorm statistics included, back
    to {'params', 'batch_stats'} (conv OIHW -> HWIO, fc [out, in] -> [in, out], counts int32)."""
    shapes = jax.eval_shape(lambda: init_resnet(jax.random.key(0), num_classes, (8, 8, channels_in)))
    leaves = {path: (leaf.shape, leaf.dtype) for path, leaf in traverse_util.flatten_dict(shapes).items()}
    # Statistics first: their numbers stay small, and torch_state_dict casts them to float32.
    leaves = dict(sorted(leaves.items(), key=lambda item: item[0][0] != "batch_stats"))
    return TorchInverse(torch_state_dict, leaves)
