"""SIREN: the implicit neural representation of INR zoos (coordinates in, pixel values out).

A SIREN of widths (32, 32) maps a pixel's 2-D coordinate through `Dense -> sin(w0 * .)`
layers, then one linear output layer (C channels), plus an optional constant offset. The
parameters are a pytree {'layer0': {'kernel' [in, out], 'bias' [out]}, 'layer1': ..., ...};
PyTorch's state_dicts hold the transposed kernels (weight [out, in]).

The knobs are those the published INR benchmarks differ on (their values per benchmark are in
the preset configs): w0 of the first and the hidden sine layers, the first layer's init, the
sine layers' bias init, the output layer's init, the output offset, and the coordinate
convention ('xy': input (column, row), NumPy's default meshgrid; 'ij': input (row, column)).
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np

COORDINATES = ("xy", "ij")
FIRST_INITS = ("siren", "sine")  # U(+-1/fan_in) as the SIREN paper; U(+-sqrt(6/fan_in)/w0) as the hidden
BIAS_INITS = ("torch_default", "zero")  # U(+-1/sqrt(fan_in)) as torch.nn.Linear; zeros
LAST_INITS = ("sine", "torch_default")  # U(+-sqrt(6/fan_in)/w0_hidden); torch.nn.Linear's U(+-1/sqrt(fan_in))
SINES = ("auto", "polynomial", "exact")

# 2*pi split in two floats (Cody-Waite): k * TWO_PI_HI is exact for |k| < 2**15.
_TWO_PI_HI = np.float32(6.28125)
_TWO_PI_LO = np.float32(2 * np.pi - 6.28125)
_HALF_PI = np.float32(np.pi / 2)
_PI = np.float32(np.pi)
_TAYLOR = tuple(np.float32(c) for c in (-1 / 39916800, 1 / 362880, -1 / 5040, 1 / 120, -1 / 6))


def _reduce(z: jax.Array) -> jax.Array:
    """z - 2*pi*k in [-pi, pi] (Cody-Waite: the two-part constant keeps float32 exact enough)."""
    k = jnp.round(z * np.float32(1 / (2 * np.pi)))
    return (z - k * _TWO_PI_HI) - k * _TWO_PI_LO


def _sin_reduced(r: jax.Array) -> jax.Array:
    """sin(r) for r in [-pi, pi]: folded to [-pi/2, pi/2] (sin(pi - r) = sin(r)), then the odd
    degree-11 Taylor polynomial (error below 6e-8 there)."""
    r = jnp.where(r > _HALF_PI, _PI - r, jnp.where(r < -_HALF_PI, -_PI - r, r))
    r2 = r * r
    p = _TAYLOR[0]
    for c in _TAYLOR[1:]:
        p = p * r2 + c
    return r + r * r2 * p


def polynomial_sin(z: jax.Array) -> jax.Array:
    """sin(z) in float32 without the library's sine: within 5e-7 of jnp.sin for |z| < 1e4 and
    about 4x faster on XLA:CPU, where the sine is what a SIREN step spends most of its time on
    (measured in docs/benchmarks.md)."""
    return _sin_reduced(_reduce(z))


def polynomial_cos(z: jax.Array) -> jax.Array:
    """cos(z) = sin(r + pi/2) of the reduced r (adding pi/2 before the reduction would lose
    the low bits of a large z)."""
    r = _reduce(z) + _HALF_PI
    return _sin_reduced(jnp.where(r > _PI, r - np.float32(2 * np.pi), r))


@jax.custom_jvp
def fast_sin(z: jax.Array) -> jax.Array:
    """`polynomial_sin`, differentiated as `polynomial_cos`."""
    return polynomial_sin(z)


@fast_sin.defjvp
def _fast_sin_jvp(primals, tangents):
    (z,), (dz,) = primals, tangents
    return polynomial_sin(z), polynomial_cos(z) * dz


def sine_function(sine: str):
    """The sine a SIREN uses: 'exact' (jnp.sin), 'polynomial' (`fast_sin`), or 'auto' (the
    polynomial on CPU, jnp.sin on accelerators, whose sine is fast already)."""
    if sine == "auto":
        sine = "polynomial" if jax.default_backend() == "cpu" else "exact"
    return fast_sin if sine == "polynomial" else jnp.sin


@dataclasses.dataclass(frozen=True)
class SirenSpec:
    """A SIREN's shape and init; `widths` are the hidden (sine) layers' widths."""

    in_features: int = 2
    widths: tuple[int, ...] = (32, 32)
    out_features: int = 1
    w0_first: float = 30.0
    w0_hidden: float = 30.0
    first_init: str = "siren"
    bias_init: str = "torch_default"
    last_init: str = "sine"
    output_offset: float = 0.0

    @property
    def features(self) -> tuple[int, ...]:
        """Widths of every layer's input and output: (in, hidden..., out)."""
        return (self.in_features, *self.widths, self.out_features)

    @property
    def num_layers(self) -> int:
        return len(self.widths) + 1

    @property
    def num_params(self) -> int:
        f = self.features
        return sum(f[i] * f[i + 1] + f[i + 1] for i in range(self.num_layers))

    def w0(self, layer: int) -> float:
        return self.w0_first if layer == 0 else self.w0_hidden


def spec_from_config(model_config, channels: int) -> SirenSpec:
    """The SirenSpec of a config's `model` section for images of `channels` channels."""
    return SirenSpec(
        2,
        tuple(int(w) for w in model_config.widths),
        channels,
        float(model_config.w0_first),
        float(model_config.w0_hidden),
        model_config.first_init,
        model_config.bias_init,
        model_config.last_init,
        float(model_config.output_offset),
    )


def layer_names(spec: SirenSpec) -> list[str]:
    return [f"layer{i}" for i in range(spec.num_layers)]


def init_params(spec: SirenSpec, key: jax.Array) -> dict:
    """One SIREN's parameters from `key` (float32), each layer's kernel and bias from its own key."""
    params = {}
    f = spec.features
    for i, name in enumerate(layer_names(spec)):
        fan_in, fan_out = f[i], f[i + 1]
        last = i == spec.num_layers - 1
        if i == 0 and spec.first_init == "siren":
            kernel_bound = 1.0 / fan_in
        elif last and spec.last_init == "torch_default":
            kernel_bound = 1.0 / math.sqrt(fan_in)
        else:
            kernel_bound = math.sqrt(6.0 / fan_in) / (spec.w0_hidden if last else spec.w0(i))
        bias_bound = 0.0 if (spec.bias_init == "zero" and not last) else 1.0 / math.sqrt(fan_in)
        kernel_key, bias_key = jax.random.split(jax.random.fold_in(key, i))
        params[name] = {
            "kernel": jax.random.uniform(kernel_key, (fan_in, fan_out), jnp.float32, -kernel_bound, kernel_bound),
            "bias": jax.random.uniform(bias_key, (fan_out,), jnp.float32, -bias_bound, bias_bound),
        }
    return params


NARROW = 4  # a layer with at most this many inputs or outputs is computed without a matmul


def dense(x: jax.Array, kernel: jax.Array, bias: jax.Array) -> jax.Array:
    """x [P, in] @ kernel [in, out] + bias. A narrow side (the 2 coordinates in, the 1 or 3
    channels out) is written as elementwise products and sums: as a vmapped (batched) dot,
    XLA:CPU ran a SIREN step 3x slower (measured in docs/benchmarks.md)."""
    fan_in, fan_out = kernel.shape
    if fan_in <= NARROW:
        out = sum(x[..., k : k + 1] * kernel[k] for k in range(fan_in))
    elif fan_out <= NARROW:
        out = jnp.stack([jnp.sum(x * kernel[:, c], axis=-1) for c in range(fan_out)], axis=-1)
    else:
        out = x @ kernel
    return out + bias


def apply(spec: SirenSpec, params: dict, coords: jax.Array, sin=jnp.sin) -> jax.Array:
    """One SIREN on coordinates [P, 2] -> values [P, C]."""
    h = coords
    names = layer_names(spec)
    for i, name in enumerate(names[:-1]):
        h = sin(spec.w0(i) * dense(h, params[name]["kernel"], params[name]["bias"]))
    last = params[names[-1]]
    return dense(h, last["kernel"], last["bias"]) + spec.output_offset


def coordinates(height: int, width: int, convention: str) -> np.ndarray:
    """[H * W, 2] float32 inputs of the pixels in row-major order, each axis linspace(-1, 1).

    'ij': pixel (row i, column j) -> (y_i, x_j); 'xy': -> (x_j, y_i), as np.meshgrid's default
    indexing stacks them (DWSNets).
    """
    if convention not in COORDINATES:
        raise ValueError(f"coordinate convention {convention!r}: use one of {COORDINATES}")
    rows = np.linspace(-1, 1, height, dtype=np.float32)
    cols = np.linspace(-1, 1, width, dtype=np.float32)
    r, c = np.meshgrid(rows, cols, indexing="ij")
    pair = (r, c) if convention == "ij" else (c, r)
    return np.stack([pair[0].ravel(), pair[1].ravel()], axis=-1).astype(np.float32)


def targets(images: np.ndarray, target_range: str) -> np.ndarray:
    """uint8 [N, H, W, C] -> float32 [N, H * W, C]: x / 255 ('unit', [0, 1]) or its 2x - 1
    ('symmetric', [-1, 1], as ToTensor + Normalize(0.5, 0.5))."""
    x = images.astype(np.float32) / np.float32(255.0)
    if target_range == "symmetric":
        x = (x - np.float32(0.5)) / np.float32(0.5)
    return x.reshape(len(images), -1, images.shape[-1])


TARGET_RANGES = {"unit": 1.0, "symmetric": 2.0}  # peak-to-peak: the PSNR's data range


def psnr(mse: jax.Array | np.ndarray, target_range: str):
    """PSNR in dB of a mean squared error, against the targets' peak-to-peak range."""
    peak = TARGET_RANGES[target_range]
    return 10.0 * jnp.log10(peak * peak / mse)


def torch_state_dict_order(spec: SirenSpec, params: dict) -> list[tuple[int, str, np.ndarray]]:
    """[(layer, 'weight'|'bias', array in PyTorch's orientation)] in state_dict order (numpy;
    a leading model axis, if any, kept)."""
    out = []
    for i, name in enumerate(layer_names(spec)):
        out.append((i, "weight", np.swapaxes(np.asarray(params[name]["kernel"]), -1, -2)))
        out.append((i, "bias", np.asarray(params[name]["bias"])))
    return out
