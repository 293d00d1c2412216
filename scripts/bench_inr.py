"""INRs fitted per second: jaxzoo's vmapped SIREN population against PyTorch fitting one SIREN
at a time, the same recipe, side by side in one run (needs torch).

Recipe (DWSNets' MNIST INR): 2->32->32->1 SIREN, w0 30, full 28x28 image per step, MSE,
Adam lr 5e-4, a fixed number of steps per INR (no early stop, so both sides do the same work).
- jaxzoo: `python -m jaxzoo.train`'s own path (train_and_evaluate, checkpoints included) on
  mnist_5k images, compile included and excluded.
- PyTorch: one process per core, each fitting its SIRENs one after another (torch threads 1),
  all cores busy, as scripts/torch_baselines.py runs the original CNN zoos.
Then: the sine on XLA:CPU (jnp.sin against the polynomial), the projected time of the
70,000-image MNIST INR zoo (1,000 steps) on this CPU, and from the FLOP count on one GPU.

    python scripts/bench_inr.py                 # ~3 minutes on 2 cores
    python scripts/bench_inr.py --images 256 --steps 100 --seconds 10   # smoke
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import tempfile
import time

import numpy as np

MNIST_ZOO = 70_000
ZOO_STEPS = 1_000
GPU_FP32_FLOPS = 67e12  # H100 SXM dense FP32 (no tensor cores), the datasheet's figure


def flops_per_step(pixels: int, widths=(2, 32, 32, 1)) -> float:
    """Forward matmuls 2*P*sum(in*out), backward twice that: 3x the forward."""
    return 3 * 2 * pixels * sum(a * b for a, b in zip(widths[:-1], widths[1:]))


def _torch_worker(seed: int, steps: int, seconds: float, images: np.ndarray, queue) -> None:
    import math

    import torch

    torch.set_num_threads(1)
    torch.manual_seed(seed)
    side = images.shape[1]
    lin = np.linspace(-1, 1, side, dtype=np.float32)
    x, y = np.meshgrid(lin, lin)
    coords = torch.from_numpy(np.stack([x.ravel(), y.ravel()], -1))

    class Sine(torch.nn.Module):
        def __init__(self, fan_in, fan_out):
            super().__init__()
            self.linear = torch.nn.Linear(fan_in, fan_out)
            bound = math.sqrt(6 / fan_in) / 30
            torch.nn.init.uniform_(self.linear.weight, -bound, bound)
            torch.nn.init.zeros_(self.linear.bias)

        def forward(self, h):
            return torch.sin(30 * self.linear(h))

    def fit(target):
        model = torch.nn.Sequential(Sine(2, 32), Sine(32, 32), torch.nn.Linear(32, 1))
        optimizer = torch.optim.Adam(model.parameters(), lr=5e-4)
        for _ in range(steps):
            optimizer.zero_grad()
            loss = torch.mean((model(coords) + 0.5 - target) ** 2)
            loss.backward()
            optimizer.step()

    targets = torch.from_numpy(images.reshape(len(images), -1, 1).astype(np.float32) / 255)
    fit(targets[0])  # warm-up
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        fit(targets[(seed + done) % len(targets)])
        done += 1
    queue.put(done / (time.perf_counter() - start))


def torch_inrs_per_second(images: np.ndarray, steps: int, seconds: float) -> float:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    workers = [
        ctx.Process(target=_torch_worker, args=(i, steps, seconds, images, queue)) for i in range(os.cpu_count())
    ]
    for worker in workers:
        worker.start()
    rates = [queue.get() for _ in workers]
    for worker in workers:
        worker.join()
    return sum(rates)


def jaxzoo_run(images: int, steps: int, chunk: int = 0) -> tuple[float, float]:
    """-> (seconds end to end, seconds of the epochs alone) for `images` INRs of `steps` steps."""
    import logging

    from jaxzoo.inr.config import base_inr_config
    from jaxzoo.train import train_and_evaluate

    config = base_inr_config()
    config.name = "bench_inr"
    config.images.count = images
    config.model.first_init, config.model.bias_init, config.model.last_init = "sine", "zero", "torch_default"
    config.model.output_offset, config.model.coordinates = 0.5, "xy"
    config.training.num_steps = steps
    config.training.steps_per_epoch = steps // 2
    config.training.lr = 5e-4
    config.runtime.progress = False
    config.runtime.chunk_size = chunk
    times = []

    class Clock(logging.Handler):
        def emit(self, record):
            message = record.getMessage()
            if message.startswith("fresh zoo") or message.startswith(f"epoch {2}/2"):
                times.append(time.perf_counter())

    handler = Clock()
    logger = logging.getLogger("jaxzoo")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        with tempfile.TemporaryDirectory() as folder:
            start = time.perf_counter()
            train_and_evaluate(config, os.path.join(folder, "zoo"))
            total = time.perf_counter() - start
    finally:
        logger.removeHandler(handler)
    return total, times[-1] - times[0]


def sine_rates() -> tuple[float, float]:
    import jax
    import jax.numpy as jnp

    from jaxzoo.inr.siren import fast_sin

    z = jax.random.normal(jax.random.key(0), (2_000_000,)) * 30
    rates = []
    for fn in (jnp.sin, fast_sin):
        f = jax.jit(lambda a: fn(a).sum())
        f(z).block_until_ready()
        start = time.perf_counter()
        for _ in range(10):
            f(z).block_until_ready()
        rates.append(10 * z.size / (time.perf_counter() - start))
    return rates[0], rates[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2048, help="INRs of the jaxzoo run")
    parser.add_argument("--steps", type=int, default=200, help="steps per INR (both sides)")
    parser.add_argument("--seconds", type=float, default=30.0, help="timed window of the PyTorch side")
    parser.add_argument("--chunks", default="0", help="comma-separated runtime.chunk_size values (0: default)")
    args = parser.parse_args()
    from jaxzoo.cli import quiet_libraries, use_cpu_cores
    from jaxzoo.data.embedded import load_raw

    quiet_libraries(False)
    use_cpu_cores(0)
    images = load_raw()["train"][0][:256]
    print(f"machine: {os.cpu_count()} cores; recipe 2->32->32->1, 784 px, Adam 5e-4, {args.steps} steps per INR")
    torch_rate = torch_inrs_per_second(images, args.steps, args.seconds)
    print(f"{'run':<34} {'INRs/s':>9} {'model-steps/s':>14} {'vs PyTorch':>11}")
    print(f"{'PyTorch, one SIREN per process':<34} {torch_rate:>9.2f} {torch_rate * args.steps:>14.0f} {1.0:>10.1f}x")
    best = 0.0
    for chunk in (int(c) for c in args.chunks.split(",")):
        total, epochs = jaxzoo_run(args.images, args.steps, chunk)
        for label, seconds in (
            (f"jaxzoo chunk {chunk or 'auto'}, end to end", total),
            (f"jaxzoo chunk {chunk or 'auto'}, epochs only", epochs),
        ):
            rate = args.images / seconds
            print(f"{label:<34} {rate:>9.2f} {rate * args.steps:>14.0f} {rate / torch_rate:>10.1f}x")
        best = max(best, args.images * args.steps / epochs)
    exact, polynomial = sine_rates()
    print(
        f"sine on XLA:CPU: jnp.sin {exact / 1e6:.0f} M/s, polynomial {polynomial / 1e6:.0f} M/s "
        f"({polynomial / exact:.1f}x)"
    )
    total_steps = MNIST_ZOO * ZOO_STEPS
    print(
        f"MNIST INR zoo ({MNIST_ZOO:,} x {ZOO_STEPS:,} steps, no early stop): this CPU "
        f"{total_steps / best / 3600:.1f} h (jaxzoo), {total_steps / (torch_rate * args.steps) / 3600:.1f} h "
        f"(PyTorch loop)"
    )
    flops = total_steps * flops_per_step(784)
    for share in (0.1, 0.3):
        print(
            f"  one H100 at {share:.0%} of {GPU_FP32_FLOPS / 1e12:.0f} TFLOP/s FP32 ({flops / 1e12:.0f} TFLOP of "
            f"matmuls): {flops / (share * GPU_FP32_FLOPS):.0f} s"
        )


if __name__ == "__main__":
    main()
