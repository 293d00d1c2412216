"""Training-loop throughput of jaxzoo at several population sizes (model-samples/s).

Runs the real trainer path (per-model data order, gather, compiled steps, evaluation) on the
embedded MNIST subset, CNN-s, batch 10, Adam, and prints one table with the figures side by
side, plus JSON with --json. Compile time is measured separately and excluded from the rates.

  python scripts/bench_train.py --torch            # sizes 1..1024, with the PyTorch references
  python scripts/bench_train.py --sizes 64 --arch cnn_m --conv xla
  python scripts/bench_train.py --shapes 256       # Seed- vs Hyp-shaped populations, whole epochs

`--shapes N` trains N models of each population shape for whole epochs through
`ZooRun.train_epoch` (groups, chunks, per-epoch evaluation): `seed` (one activation, one
optimizer), `hyp` (4 activations x 2 optimizers x 2 inits, the Hyp zoos' static factors) and
`hyp_dropout` (the same with dropout 0 / 0.5), and prints their rates side by side.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import subprocess
import sys
import time

import jax
import numpy as np

from jaxzoo.cli import use_cpu_cores
from jaxzoo.config import base_config
from jaxzoo.data import DATASETS, load_dataset, normalise
from jaxzoo.models import cpu_conv
from jaxzoo.models.cnn import ARCHS
from jaxzoo.training.population import build_population, expand_grid
from jaxzoo.training.run import ZooRun


def bench_size(size: int, arch: str, min_seconds: float, conv: str = "auto") -> dict:
    config = base_config()
    config.model.arch = arch
    config.runtime.conv = conv
    config.population.num_seeds = size
    config.population.lr = (1e-3,)
    config.population.init = ("kaiming_uniform",)
    config.runtime.chunk_size = size
    if arch == "cnn_m":  # 32x32x3 inputs: the embedded digits, padded and repeated to RGB
        dataset = load_dataset("mnist_5k", 28)
        pad = lambda x: np.repeat(np.pad(x, ((0, 0), (2, 2), (2, 2), (0, 0))), 3, axis=-1)
        dataset = dataclasses.replace(
            dataset,
            name="mnist_5k_rgb32",
            mean=(0.5,) * 3,
            std=(0.5,) * 3,
            train=(pad(dataset.train[0]), dataset.train[1]),
            val=(pad(dataset.val[0]), dataset.val[1]),
            test=(pad(dataset.test[0]), dataset.test[1]),
        )
        config.data.image_size = 32  # bypasses validation: this is a synthetic benchmark input
    else:
        dataset = load_dataset("mnist_5k", 28)
    population = build_population(expand_grid(config.population, config.seed), config.population)
    run = ZooRun(config, population, dataset)
    group = run.groups[0]
    fns, (indices, _) = group.fns, group.chunks[0]
    factors = run.chunk_factors(indices)
    state = jax.device_put(run.group_state(group, run.init_state(), indices), run.models)  # padded to the devices
    order, mask = fns.order(factors, 1)
    steps = run.plan.steps_per_call

    def call(first, state):
        first %= run.steps_per_epoch - steps + 1
        x, y, m = fns.gather(
            run.train_images, run.train_labels, order[:, first : first + steps], mask[:, first : first + steps], factors
        )
        state, metrics = fns.train(state, factors, x, y, m, 1, first)
        jax.block_until_ready(metrics)
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
    params = {"params": state["params"]}
    jax.block_until_ready(fns.evaluate(params, factors, x, y, m))
    evals, start = 0, time.perf_counter()
    while time.perf_counter() - start < min_seconds / 2 or evals < 2:  # one pass can take only ~10 ms
        jax.block_until_ready(fns.evaluate(params, factors, x, y, m))
        evals += 1
    eval_rate = evals * size * len(dataset.test[1]) / (time.perf_counter() - start)

    # Per-epoch evaluation share on the real dataset of the zoos (val + test of every model).
    info = DATASETS["mnist"] if arch == "cnn_s" else DATASETS["cifar10"]
    epoch_train = info.split_sizes[0] * size / rate
    epoch_eval = (info.split_sizes[1] + info.split_sizes[2]) * size / eval_rate
    return {
        "population": size,
        "conv": cpu_conv.resolve(conv),
        "model_samples_per_s": rate,
        "eval_model_images_per_s": eval_rate,
        "compile_s": compile_seconds,
        "steps_per_call": steps,
        "eval_share_of_epoch": epoch_eval / (epoch_train + epoch_eval),
        "model_epochs_per_hour_full_dataset": 3600 * rate / info.split_sizes[0],
    }


POPULATION_SHAPES = {
    "seed": {"activation": ("tanh",), "init": ("uniform",), "optimizer": ("adam",), "dropout": (0.0,)},
    "hyp": {
        "activation": ("tanh", "relu", "sigmoid", "gelu"),
        "init": ("uniform", "kaiming_uniform"),
        "optimizer": ("adam", "sgd"),
        "dropout": (0.0,),
    },
    "hyp_dropout": {
        "activation": ("tanh", "relu", "sigmoid", "gelu"),
        "init": ("uniform",),
        "optimizer": ("adam", "sgd"),
        "dropout": (0.0, 0.5),
    },
}


def bench_shape(shape: str, size: int, epochs: int) -> dict:
    """Whole training epochs of `size` CNN-s models of a population shape -> rates and compile time."""
    config = base_config()
    pop = config.population
    for name, values in POPULATION_SHAPES[shape].items():
        pop[name] = values
    grid = int(np.prod([len(v) for v in POPULATION_SHAPES[shape].values()]))
    pop.num_seeds, pop.lr, pop.weight_decay = size // grid, (1e-3,), (1e-4,)
    config.training.num_epochs = epochs + 1
    dataset = load_dataset("mnist_5k", 28)
    population = build_population(expand_grid(pop, config.seed), pop)
    run = ZooRun(config, population, dataset)
    start = time.perf_counter()
    run.compile()
    state = run.init_state()
    state, _ = run.train_epoch(state, 1, None)  # anything left to compile compiles here
    compile_seconds = time.perf_counter() - start
    start = time.perf_counter()
    for epoch in range(2, epochs + 2):
        state, _ = run.train_epoch(state, epoch, None)
    seconds = time.perf_counter() - start
    return {
        "shape": shape,
        "models": population.size,
        "groups": len(run.groups),
        "model_samples_per_s": epochs * population.size * len(dataset.train[1]) / seconds,
        "compile_and_first_epoch_s": compile_seconds,
    }


def macs_per_image(arch_name: str, channels: int) -> int:
    """Multiply-accumulates of one forward pass (convs as patches @ kernel, then the linears)."""
    arch = ARCHS[arch_name]
    size, total = arch.image_size, 0
    for conv in arch.convs:
        out = size - conv.kernel + 1
        total += out * out * conv.kernel**2 * channels * conv.features
        size, channels = (out // 2 if conv.pool else out), conv.features
    widths = (arch.flat_features, *arch.hidden, arch.num_classes)
    return total + sum(a * b for a, b in zip(widths[:-1], widths[1:]))


def matmul_flops(n: int = 2048, repeats: int = 5, dtype=np.float32) -> float:
    """Dense matmul FLOP/s (inputs in `dtype`) through jax.jit on this machine (the practical ceiling)."""
    a = jax.random.normal(jax.random.key(0), (n, n)).astype(dtype)
    dot = jax.jit(lambda x: x @ x)
    dot(a).block_until_ready()
    start = time.perf_counter()
    for _ in range(repeats):
        dot(a).block_until_ready()
    return 2 * n**3 * repeats / (time.perf_counter() - start)


def run_one_in_subprocess(size: int, arch: str, seconds: float, cpu_devices: int, conv: str) -> dict:
    """Each population size in a fresh process, so its peak memory is its own."""
    out = subprocess.run(
        [
            sys.executable,
            __file__,
            "--one",
            str(size),
            "--arch",
            arch,
            "--seconds",
            str(seconds),
            "--cpu-devices",
            str(cpu_devices),
            "--conv",
            conv,
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1,16,64,256,1024")
    parser.add_argument("--arch", default="cnn_s", choices=("cnn_s", "cnn_m"))
    parser.add_argument("--seconds", type=float, default=5.0, help="timed seconds per size")
    parser.add_argument("--torch", action="store_true", help="also run the PyTorch references (needs torch)")
    parser.add_argument("--json", help="write the results here")
    parser.add_argument(
        "--cpu-devices",
        type=int,
        default=0,
        help="XLA CPU devices for jaxzoo (0: one per core, as `python -m jaxzoo.train`)",
    )
    parser.add_argument(
        "--conv",
        default="auto,xla",
        help="comma-separated runtime.conv values to compare (auto: the trainer's default)",
    )
    parser.add_argument(
        "--shapes", type=int, default=0, help="models per population shape: Seed- vs Hyp-shaped rates over whole epochs"
    )
    parser.add_argument("--epochs", type=int, default=2, help="timed epochs per shape (with --shapes)")
    parser.add_argument("--one", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.shapes:
        use_cpu_cores(args.cpu_devices)
        rows = [bench_shape(shape, args.shapes, args.epochs) for shape in POPULATION_SHAPES]
        seed_rate = rows[0]["model_samples_per_s"]
        print(
            f"population shapes: CNN-s on mnist_5k (3500 train images), batch 10, {jax.device_count()} device(s), "
            f"{os.cpu_count()} cores; {args.epochs} timed epochs each (evaluation included)"
        )
        print("| shape | models | groups | model-samples/s | x seed | compile + first epoch s |")
        print("|---|---:|---:|---:|---:|---:|")
        for r in rows:
            print(
                f"| {r['shape']} | {r['models']} | {r['groups']} | {r['model_samples_per_s']:,.0f} | "
                f"{r['model_samples_per_s'] / seed_rate:.2f} | {r['compile_and_first_epoch_s']:.1f} |"
            )
        if args.json:
            with open(args.json, "w") as f:
                json.dump(rows, f, indent=1)
        return
    if args.one:
        use_cpu_cores(args.cpu_devices)
        result = bench_size(args.one, args.arch, args.seconds, args.conv)
        result["devices"] = jax.device_count()
        result["peak_rss_gib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
        print(json.dumps(result))
        return
    device = jax.devices()[0]
    channels = 1 if args.arch == "cnn_s" else 3
    flop_per_sample = 3 * 2 * macs_per_image(args.arch, channels)  # forward + 2x backward
    ceiling = matmul_flops()
    print(f"jaxzoo training throughput: {args.arch}, batch 10/model, per-model data order, Adam")
    print(
        f"device: {device.platform} {device.device_kind}, {jax.device_count()} device(s), {os.cpu_count()} cores; "
        f"dense matmul ceiling {ceiling / 1e9:.0f} GFLOP/s; {flop_per_sample / 1e6:.2f} MFLOP per model-sample"
    )
    rows = [
        run_one_in_subprocess(int(s), args.arch, args.seconds, args.cpu_devices, conv)
        for conv in args.conv.split(",")
        for s in args.sizes.split(",")
    ]
    print(f"jaxzoo ran on {rows[0]['devices']} XLA device(s) (--cpu-devices; the population sharded over them)")
    baseline = None
    if args.torch:
        import torch_baselines

        dataset = load_dataset("mnist_5k", 28)
        x = normalise(dataset.train[0], dataset.mean, dataset.std).transpose(0, 3, 1, 2).copy()
        if args.arch == "cnn_s":
            baseline = torch_baselines.original(x, dataset.train[1], args.seconds)
            ensemble = {
                size: torch_baselines.ensemble(x, dataset.train[1], size, args.seconds)
                for size in sorted({r["population"] for r in rows})
            }
            for r in rows:
                r["torch_func_ensemble"] = ensemble[r["population"]]
    for r in rows:
        r["achieved_flops_share"] = r["model_samples_per_s"] * flop_per_sample / ceiling
    if baseline:
        print(
            f"PyTorch as the original (1 model per process, {os.cpu_count()} processes): {baseline:,.0f} model-samples/s"
        )
    print(
        "| models | conv | jaxzoo model-samples/s | x PyTorch original | torch.func ensemble | x ensemble | model-epochs/h | % matmul FLOP/s | compile s | peak RSS GiB | eval share |"
    )
    print("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        rate, ens = r["model_samples_per_s"], r.get("torch_func_ensemble")
        print(
            f"| {r['population']} | {r['conv']} | {rate:,.0f} | {rate / baseline if baseline else float('nan'):.2f} | "
            f"{ens if ens else float('nan'):,.0f} | {rate / ens if ens else float('nan'):.2f} | "
            f"{r['model_epochs_per_hour_full_dataset']:,.0f} | {100 * r['achieved_flops_share']:.1f}% | "
            f"{r['compile_s']:.1f} | {r['peak_rss_gib']:.2f} | {100 * r['eval_share_of_epoch']:.1f}% |"
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {
                    "arch": args.arch,
                    "device": str(device),
                    "matmul_flops": ceiling,
                    "torch_original": baseline,
                    "rows": rows,
                },
                f,
                indent=1,
            )


if __name__ == "__main__":
    main()
