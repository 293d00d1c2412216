"""Training-loop throughput of jaxzoo at several population sizes (model-samples/s).

Runs the real trainer path (per-model data order, gather, compiled steps, evaluation) on the
embedded MNIST subset, CNN-s, batch 10, Adam, and prints one table with the figures side by
side, plus JSON with --json. Compile time is measured separately and excluded from the rates.

  python scripts/bench_train.py                    # sizes 1,16,64,256
  python scripts/bench_train.py --sizes 64 --arch cnn_m
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import time

import jax
import numpy as np

from jaxzoo.config import base_config
from jaxzoo.data import DATASETS, load_dataset
from jaxzoo.population import build_population, expand_grid
from jaxzoo.train import ZooRun


def bench_size(size: int, arch: str, min_seconds: float) -> dict:
    config = base_config()
    config.model.arch = arch
    config.population.num_seeds = size
    config.population.lr = (1e-3,)
    config.population.init = ("kaiming_uniform",)
    config.runtime.chunk_size = size
    if arch == "cnn_m":  # 32x32x3 inputs: the embedded digits, padded and repeated to RGB
        dataset = load_dataset("mnist_5k", 28)
        pad = lambda x: np.repeat(np.pad(x, ((0, 0), (2, 2), (2, 2), (0, 0))), 3, axis=-1)
        dataset = dataclasses.replace(
            dataset, name="mnist_5k_rgb32", mean=(0.5,) * 3, std=(0.5,) * 3,
            train=(pad(dataset.train[0]), dataset.train[1]), val=(pad(dataset.val[0]), dataset.val[1]),
            test=(pad(dataset.test[0]), dataset.test[1]),
        )
        config.data.image_size = 32  # bypasses validation: this is a synthetic benchmark input
    else:
        dataset = load_dataset("mnist_5k", 28)
    population = build_population(expand_grid(config.population, config.seed))
    run = ZooRun(config, population, dataset)
    fns, (indices, _) = run.fns, run.chunks[0]
    factors = run.chunk_factors(indices)
    state = jax.device_put(run.init_state(), run.models)
    order, mask = fns.order(factors["seed"], 1)
    steps = run.plan.steps_per_call

    def call(first, state):
        first %= run.steps_per_epoch - steps + 1
        x, y, m = fns.gather(run.train_images, run.train_labels, order[:, first : first + steps], mask[:, first : first + steps])
        state, loss, _ = fns.train(state, factors, x, y, m, 1, first)
        jax.block_until_ready(loss)
        return state

    start = time.perf_counter()
    state = call(0, state)
    compile_seconds = time.perf_counter() - start
    calls, start = 0, time.perf_counter()
    while time.perf_counter() - start < min_seconds or calls < 2:
        state = call(calls * steps, state)
        calls += 1
    train_seconds = time.perf_counter() - start
    samples = calls * steps * config.training.batch_size * size
    rate = samples / train_seconds

    x, y, m = run.eval_splits["test"]
    jax.block_until_ready(fns.evaluate(state["params"], factors["activation_index"], x, y, m))
    start = time.perf_counter()
    jax.block_until_ready(fns.evaluate(state["params"], factors["activation_index"], x, y, m))
    eval_rate = size * len(dataset.test[1]) / (time.perf_counter() - start)

    # Per-epoch evaluation share on the real dataset of the zoos (val + test of every model).
    info = DATASETS["mnist"] if arch == "cnn_s" else DATASETS["cifar10"]
    epoch_train = info.split_sizes[0] * size / rate
    epoch_eval = (info.split_sizes[1] + info.split_sizes[2]) * size / eval_rate
    return {
        "population": size,
        "model_samples_per_s": rate,
        "eval_model_images_per_s": eval_rate,
        "compile_s": compile_seconds,
        "steps_per_call": steps,
        "eval_share_of_epoch": epoch_eval / (epoch_train + epoch_eval),
        "model_epochs_per_hour_full_dataset": 3600 * rate / info.split_sizes[0],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1,16,64,256")
    parser.add_argument("--arch", default="cnn_s", choices=("cnn_s", "cnn_m"))
    parser.add_argument("--seconds", type=float, default=5.0, help="timed seconds per size")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()
    device = jax.devices()[0]
    print(f"jaxzoo training throughput: {args.arch}, batch 10/model, per-model data order, Adam")
    print(f"device: {device.platform} {device.device_kind}, {jax.device_count()} device(s); host: {platform.processor() or platform.machine()}")
    rows = [bench_size(int(s), args.arch, args.seconds) for s in args.sizes.split(",")]
    base = rows[0]["model_samples_per_s"]
    print(f"| models | model-samples/s | x size {rows[0]['population']} | model-epochs/h (full train split) | eval share | compile s |")
    print("|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['population']} | {r['model_samples_per_s']:,.0f} | {r['model_samples_per_s'] / base:.2f} | "
            f"{r['model_epochs_per_hour_full_dataset']:,.1f} | {100 * r['eval_share_of_epoch']:.1f}% | {r['compile_s']:.1f} |"
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"arch": args.arch, "device": str(device), "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
