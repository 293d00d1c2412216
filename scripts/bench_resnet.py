"""ResNet-18 training throughput (images/s per device), jaxzoo beside PyTorch, and zoo hours.

Runs the real ResNet trainer path (per-model data order, on-device crop + flip, BatchNorm,
OneCycle SGD, one compiled call per `steps` steps) on CIFAR-shaped random uint8 images, in
float32 and bfloat16, then PyTorch's ResNet-18 (the same network, `jaxzoo.torch.ResNet18Cifar`)
with the same batch, and projects the hours of a 1,000-seed CIFAR-10 zoo (50 epochs x 40,000
images, plus evaluation, which adds ~1/3 of a forward per val/test image).

  python scripts/bench_resnet.py                     # CPU: batch 32, a few steps
  python scripts/bench_resnet.py --batch 256 --steps 20 --torch   # GPU
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import jax
import numpy as np

from jaxzoo.config.paper_zoos import resnet_zoo
from jaxzoo.data import load_dataset
from jaxzoo.training.population import build_population, expand_grid
from jaxzoo.training.run import ZooRun

ZOO_IMAGES = 1000 * 50 * 40_000  # 1,000 seeds x 50 epochs x 40k train images (CIFAR-10 zoo)
ZOO_EVAL_IMAGES = 1000 * 50 * 20_000  # val + test every epoch


def cifar_like(num_train: int):
    """The embedded digits' Dataset with CIFAR-10-shaped random uint8 images (32x32x3)."""
    base = load_dataset("mnist_5k", 28)
    rng = np.random.default_rng(0)
    images = lambda n: rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
    labels = lambda n: rng.integers(0, 10, n).astype(base.train[1].dtype)
    return dataclasses.replace(
        base,
        name="cifar_like",
        mean=(0.49, 0.48, 0.45),
        std=(0.25, 0.24, 0.26),
        train=(images(num_train), labels(num_train)),
        val=(images(256), labels(256)),
        test=(images(256), labels(256)),
    )


def bench_jax(batch: int, steps: int, dtype: str, repeats: int) -> dict:
    config = resnet_zoo("cifar10_resnet18_seed")
    config.training.batch_size = batch
    config.training.compute_dtype = dtype
    config.population.num_seeds = jax.local_device_count()  # one model per device
    config.runtime.steps_per_call = steps
    dataset = cifar_like(batch * steps)
    population = build_population(expand_grid(config.population, config.seed), config.population)
    run = ZooRun(config, population, dataset)
    fns = run.groups[0].fns  # a ResNet zoo is one group
    indices, _ = run.chunks[0]
    factors = run.chunk_factors(indices)
    state = jax.device_put(run.init_state(), run.models)
    order, mask = fns.order(factors, 1)
    x, y, m = fns.gather(run.train_images, run.train_labels, order[:, :steps], mask[:, :steps], factors)
    start = time.perf_counter()
    state, metrics = fns.train(state, factors, x, y, m, 1, 0)
    jax.block_until_ready(metrics)
    compile_s = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(repeats):
        state, metrics = fns.train(state, factors, x, y, m, 1, 0)
    jax.block_until_ready(metrics)
    seconds = time.perf_counter() - start
    per_device = repeats * steps * batch / seconds
    ex, ey, em = run.eval_splits["test"]
    jax.block_until_ready(fns.evaluate(state, factors, ex, ey, em))
    start = time.perf_counter()
    jax.block_until_ready(fns.evaluate(state, factors, ex, ey, em))
    eval_per_device = ex.shape[0] * ex.shape[1] / (time.perf_counter() - start)
    return {
        "images_per_s_per_device": per_device,
        "eval_images_per_s_per_device": eval_per_device,
        "compile_s": compile_s,
    }


def bench_torch(batch: int, steps: int, repeats: int, device: str) -> float:
    import torch

    from jaxzoo.torch import ResNet18Cifar

    model = ResNet18Cifar(10).to(device).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    x = torch.randn(batch, 3, 32, 32, device=device)
    y = torch.randint(0, 10, (batch,), device=device)

    def step():
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()

    step()
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats * steps):
        step()
    if device == "cuda":
        torch.cuda.synchronize()
    return repeats * steps * batch / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=1, help="steps per compiled call")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dtypes", default="float32,bfloat16")
    parser.add_argument("--torch", action="store_true", help="also time PyTorch's ResNet-18 (needs torch)")
    args = parser.parse_args()
    device = jax.devices()[0]
    print(
        f"ResNet-18 (CIFAR stem), 32x32x3, batch {args.batch}, SGD+OneCycle, crop+flip on device; "
        f"{jax.local_device_count()} x {device.platform} {device.device_kind}"
    )
    print(
        "| implementation | train images/s per device | eval images/s | compile s | 1,000-seed CIFAR-10 zoo, device-hours |"
    )
    print("|---|---:|---:|---:|---:|")
    for dtype in args.dtypes.split(","):
        r = bench_jax(args.batch, args.steps, dtype, args.repeats)
        hours = (ZOO_IMAGES / r["images_per_s_per_device"] + ZOO_EVAL_IMAGES / r["eval_images_per_s_per_device"]) / 3600
        print(
            f"| jaxzoo {dtype} | {r['images_per_s_per_device']:,.1f} | {r['eval_images_per_s_per_device']:,.1f} | "
            f"{r['compile_s']:.1f} | {hours:,.0f} |"
        )
    if args.torch:
        torch_device = "cuda" if device.platform == "gpu" else "cpu"
        rate = bench_torch(args.batch, args.steps, args.repeats, torch_device)
        print(f"| PyTorch float32 ({torch_device}) | {rate:,.1f} | | | {ZOO_IMAGES / rate / 3600:,.0f} (train only) |")


if __name__ == "__main__":
    main()
