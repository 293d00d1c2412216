"""The CPU population convolution kernel against XLA's im2col, per layer of CNN-s and CNN-m.

For 16 models (one device) x 10 images, each conv layer of the zoos' CNNs with its max-pool
(where the architecture has one): the forward pass, and forward + both gradients, with the
bias, in ms and GFLOP/s (conv multiply-adds only), side by side in one run.

  python scripts/bench_conv.py [--models 16 --batch 10 --repeats 200]
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

from jaxzoo.models import cpu_conv
from jaxzoo.models.cnn import ARCHS, extract_patches, max_pool_2x2


def layers():
    """(name, image size, in channels, kernel, features, pool) of every conv of CNN-s and CNN-m."""
    for arch_name, channels in (("cnn_s", 1), ("cnn_m", 3)):
        arch = ARCHS[arch_name]
        size = arch.image_size
        for i, conv in enumerate(arch.convs):
            yield f"{arch_name}.conv{i}", size, channels, conv.kernel, conv.features, conv.pool
            size = size - conv.kernel + 1
            size, channels = (size // 2 if conv.pool else size), conv.features


def xla_conv(pool):
    def conv(x, kernel, bias):
        out = extract_patches(x, kernel.shape[0]) @ kernel.reshape(-1, kernel.shape[-1]) + bias
        return max_pool_2x2(out) if pool else out

    return conv


def seconds_per_call(fn, args, repeats: int) -> float:
    jax.block_until_ready(fn(*args))
    start = time.perf_counter()
    for _ in range(repeats):
        out = fn(*args)
    jax.block_until_ready(out)
    return (time.perf_counter() - start) / repeats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=16)
    parser.add_argument("--batch", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=200)
    args = parser.parse_args()
    cpu_conv.resolve("cpu_kernel")
    rng = np.random.default_rng(0)
    print(
        f"{args.models} models x {args.batch} images, one {jax.devices()[0].platform} device; "
        "fwd+grads = forward, input gradient (not for the first layer) and kernel + bias gradients"
    )
    print("| layer | pool | impl | forward ms | forward GFLOP/s | fwd+grads ms | fwd+grads GFLOP/s |")
    print("|---|---|---|---:|---:|---:|---:|")
    for name, size, channels, k, features, pool in layers():
        x = jnp.asarray(rng.normal(size=(args.models, args.batch, size, size, channels)), jnp.float32)
        w = jnp.asarray(rng.normal(size=(args.models, k, k, channels, features)), jnp.float32)
        b = jnp.asarray(rng.normal(size=(args.models, features)), jnp.float32)
        out = size - k + 1
        macs = args.models * args.batch * out * out * k * k * channels * features
        passes = 2 if channels in (1, 3) and name.endswith("conv0") else 3  # no input gradient of data
        kernel_conv = cpu_conv.population_conv_pool if pool else cpu_conv.population_conv
        for impl, conv in (("cpu_kernel", kernel_conv), ("xla", xla_conv(pool))):
            population = jax.vmap(conv)
            forward = jax.jit(population)
            wrt = (1, 2) if passes == 2 else (0, 1, 2)
            grads = jax.jit(jax.grad(lambda *a: jnp.sum(jnp.tanh(population(*a))), argnums=wrt))
            f = seconds_per_call(forward, (x, w, b), args.repeats)
            g = seconds_per_call(grads, (x, w, b), args.repeats)
            print(
                f"| {name} | {'yes' if pool else 'no'} | {impl} | {f * 1e3:.3f} | {2 * macs / f / 1e9:.1f} | "
                f"{g * 1e3:.3f} | {2 * macs * passes / g / 1e9:.1f} |"
            )


if __name__ == "__main__":
    main()
