"""Accelerator-path benchmark of jaxzoo: CNN-s zoos per compiled call, a 1,000-model zoo's
projected time, and ResNet-18 beside PyTorch, in one short run.

It prints one markdown table per part, with the figures side by side:

1. a header: device kind, platform, device count, JAX version, mode (tiny or full);
2. CNN-s training throughput of whole epochs through `ZooRun.train_epoch` with the state kept on
   the device (`runtime.state_placement='device'`), XLA convolutions (`runtime.conv='xla'`) and
   one call per group and step-chunk (`runtime.chunk_size=M`), for Seed-shaped populations (one
   static group: tanh, Adam; M = 1..4,096) and Hyp-shaped ones (4 activations x 2 optimizers =
   8 static groups, M/8 models each; M = 64, 1,024, 4,096), batch 10, on synthetic MNIST-shaped uint8 images whose splits keep
   MNIST's 5:1:1 train/val/test ratio; compile and a warm-up epoch are excluded. Each row gives
   model-samples/s, train TFLOP/s (3 x 2 x multiply-accumulates per image), the share of a dense
   matmul's FLOP/s measured in the same run, peak memory and the evaluation rate. A last row
   runs the largest M in bfloat16;
3. the projected wall time of the 1,000-model, 50-epoch MNIST Seed zoo (50,000 train images,
   10,000 val + 10,000 test evaluated every epoch, a checkpoint every epoch) from the measured
   rates, a measured checkpoint save and the measured compile time;
4. ResNet-18 images/s at batch 256 in float32, tensorfloat32 and bfloat16 (jaxzoo), and
   PyTorch's ResNet-18 on the same device;
5. the total wall time.

Mode: `--full` (population sizes 1..4096, MNIST-sized splits, shrunk for large M so that an
epoch takes ~1.5 s) is the default on a GPU/TPU, `--tiny` (a few steps per epoch; a smoke
test) on CPU.

  python scripts/bench_accel.py                        # GPU: full mode, < 6 min on one H100/H200
  python scripts/bench_accel.py --json accel.json      # also write every figure
  python scripts/bench_accel.py --tiny --skip_resnet   # CPU smoke run (~1.5 min on 2 cores, mostly compiling)
  JAX_PLATFORMS=cpu python scripts/bench_accel.py --full --sizes 1,16   # CPU, MNIST-sized
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import pathlib
import resource
import sys
import tempfile
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from bench_resnet import bench_jax, bench_torch
from bench_train import POPULATION_SHAPES, macs_per_image, matmul_flops

from jaxzoo.cli import use_cpu_cores
from jaxzoo.config import base_config
from jaxzoo.data import load_dataset
from jaxzoo.training.plan import GATHER_BYTES_PER_CALL
from jaxzoo.training.population import build_population, expand_grid
from jaxzoo.training.run import ZooRun
from jaxzoo.zoo import checkpoint

BATCH = 10  # the MNIST zoos' batch
MNIST_SPLITS = (50_000, 10_000, 10_000)  # train, val, test
ZOO_MODELS, ZOO_EPOCHS = 1000, 50  # the projected Seed zoo
GOAL_MINUTES = 5.0  # "<= 5 min on one H100/H200"
FULL_SIZES = (1, 4, 16, 64, 256, 1024, 4096)
# Hyp-shaped rows compile 8 programs each: three sizes keep the full run within its 6 minutes.
FULL_HYP_SIZES = (64, 1024, 4096)
TINY_SIZES = (1, 4)
TINY_HYP_SIZES = (8,)
TINY_TRAIN = 200  # 20 steps of 10 per epoch; val and test get a fifth each (MNIST's ratio)
FLOP_PER_SAMPLE = 3 * 2 * macs_per_image("cnn_s", 1)  # forward + 2x backward, 2 FLOP per MAC
HYP_SHAPE = {
    "activation": POPULATION_SHAPES["hyp"]["activation"],
    "optimizer": POPULATION_SHAPES["hyp"]["optimizer"],
    "init": ("uniform",),
    "dropout": (0.0,),
}  # the Hyp zoos' 8 static groups (init is not static)


def synthetic_mnist(num_train: int, seed: int = 0):
    """The embedded digits' Dataset with MNIST-shaped random uint8 images (28x28x1): `num_train`
    train images and a fifth of that each for val and test (MNIST's 50k/10k/10k ratio)."""
    base = load_dataset("mnist_5k", 28)
    rng = np.random.default_rng(seed)
    images = lambda n: rng.integers(0, 256, (n, 28, 28, 1), dtype=np.uint8)
    labels = lambda n: rng.integers(0, 10, n).astype(base.train[1].dtype)
    num_eval = max(1, num_train // 5)
    return dataclasses.replace(
        base,
        name="mnist_like",
        source="synthetic",
        fingerprint="",
        train=(images(num_train), labels(num_train)),
        val=(images(num_eval), labels(num_eval)),
        test=(images(num_eval), labels(num_eval)),
    )


def epoch_split(size: int, platform: str, est_rate: float, target_s: float) -> tuple[int, int]:
    """(train images, steps per call) for an epoch of `size` models of ~`target_s` seconds at
    `est_rate` model-samples/s: at most MNIST's 50,000 images and at least 2,000; the steps per
    call are the trainer's (gathered images within GATHER_BYTES_PER_CALL) and divide the epoch,
    so each group compiles one training program."""
    max_steps = MNIST_SPLITS[0] // BATCH
    want = int(min(max_steps, max(200, target_s * est_rate / (size * BATCH))))
    per_call = GATHER_BYTES_PER_CALL.get(platform, GATHER_BYTES_PER_CALL["gpu"]) // (size * BATCH * 28 * 28 * 4)
    per_call = max(1, min(per_call, want))
    calls = max(1, min(max_steps // per_call, round(want / per_call)))
    return calls * per_call * BATCH, per_call


def zoo_config(shape: str, size: int, dtype: str, steps_per_call: int):
    """Config of a CNN-s zoo of `size` models of a population shape on the accelerator path."""
    config = base_config()
    pop = config.population
    values = POPULATION_SHAPES["seed"] if shape == "seed" else HYP_SHAPE
    for name, value in values.items():
        pop[name] = value
    grid = int(np.prod([len(v) for v in values.values()]))
    pop.num_seeds, pop.lr, pop.weight_decay = max(1, size // grid), (1e-3,), (1e-4,)
    config.training.compute_dtype = dtype
    config.runtime.state_placement = "device"
    config.runtime.conv = "xla"
    config.runtime.chunk_size = size  # each group: one call per step-chunk
    config.runtime.steps_per_call = steps_per_call
    config.runtime.progress = False
    return config


def eval_val_test(run: ZooRun, state) -> int:
    """Evaluates every model on val and test as each epoch does -> model-images evaluated."""
    images = 0
    for group in run.groups:
        for indices, real in group.chunks:
            chunk_state = run.chunk_state(group, state, indices, real)
            run.evaluate(group, chunk_state, run.chunk_factors(indices), ("val", "test"), real, 0)
            images += real * (len(run.dataset.val[1]) + len(run.dataset.test[1]))
    return images


def peak_memory() -> tuple[int, str]:
    """(peak bytes so far, what was measured): device memory on a GPU/TPU, the host's RSS on CPU."""
    device = jax.local_devices()[0]
    stats = device.memory_stats() if device.platform != "cpu" else None
    if stats and "peak_bytes_in_use" in stats:
        return int(stats["peak_bytes_in_use"]), "device"
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, "host RSS"


def bench_zoo(
    shape: str, size: int, dtype: str, num_train: int, steps_per_call: int, min_seconds: float
) -> tuple[dict[str, Any], ZooRun, Any, dict]:
    """Whole epochs of a CNN-s zoo through `ZooRun.train_epoch` on the device path -> (row, run,
    state, last metrics). Compile, init and one warm-up epoch run before the timed epochs."""
    config = zoo_config(shape, size, dtype, steps_per_call)
    dataset = synthetic_mnist(num_train)
    population = build_population(expand_grid(config.population, config.seed), config.population)
    run = ZooRun(config, population, dataset)
    assert run.on_device
    start = time.perf_counter()
    programs = run.compile()
    compile_s = time.perf_counter() - start
    start = time.perf_counter()
    state = run.place_state(run.init_state())
    jax.block_until_ready(state)
    init_s = time.perf_counter() - start
    start = time.perf_counter()
    state, metrics = run.train_epoch(state, 1, None)  # metrics are numpy: the epoch is done
    first_epoch_s = time.perf_counter() - start
    epochs, start = 0, time.perf_counter()
    while epochs < 1 or time.perf_counter() - start < min_seconds:
        state, metrics = run.train_epoch(state, 2 + epochs, None)
        epochs += 1
    seconds = time.perf_counter() - start
    rate = epochs * population.size * num_train / seconds
    start = time.perf_counter()
    evaluated = eval_val_test(run, state)
    eval_rate = evaluated / (time.perf_counter() - start)
    memory, memory_kind = peak_memory()
    row = {
        "shape": shape,
        "requested_models": size,
        "models": population.size,
        "groups": len(run.groups),
        "models_per_call": max(real for _, real in run.chunks),
        "compute_dtype": dtype,
        "train_images": num_train,
        "val_images": len(dataset.val[1]),
        "test_images": len(dataset.test[1]),
        "steps_per_call": run.plan.steps_per_call,
        "timed_epochs": epochs,
        "timed_s": seconds,
        "model_samples_per_s": rate,
        "train_tflops": rate * FLOP_PER_SAMPLE / 1e12,
        "eval_model_images_per_s": eval_rate,
        "peak_memory_bytes": memory,
        "memory_kind": memory_kind,
        "programs": programs,
        "compile_s": compile_s,
        "init_s": init_s,
        "first_epoch_extra_s": max(0.0, first_epoch_s - seconds / epochs),
    }
    return row, run, state, metrics


def dense_flops(n: int, dtype: str) -> float:
    """Dense matmul FLOP/s through jax.jit: float32 at XLA precision HIGHEST (as compute_dtype
    float32 trains), or bfloat16 inputs."""
    if dtype == "float32":
        with jax.default_matmul_precision("highest"):  # matmul_flops traces its jit in here
            return matmul_flops(n)
    return matmul_flops(n, dtype=jnp.bfloat16)


def checkpoint_seconds(run: ZooRun, metrics: dict, models: int = ZOO_MODELS) -> dict[str, float]:
    """Seconds to save one epoch of a `models`-model state shaped as `run`'s (zeros, on the
    device) with `checkpoint.save_epoch(..., wait=True)`: the first save and a second one."""
    state = jax.tree.map(lambda a: jnp.zeros((models, *a.shape[1:]), a.dtype), run.abstract_state())
    state = jax.block_until_ready(jax.device_put(state, jax.local_devices()[0]))
    zoo_metrics = {name: np.zeros(models, np.asarray(v).dtype) for name, v in metrics.items()}
    times = []
    with tempfile.TemporaryDirectory(prefix="bench-accel-") as tmp:
        writer = checkpoint.open_writer(pathlib.Path(tmp), True)
        try:
            for epoch in (1, 2):
                start = time.perf_counter()
                checkpoint.save_epoch(writer, epoch, state, zoo_metrics, wait=True)
                times.append(time.perf_counter() - start)
        finally:
            writer.close()
    state_bytes = sum(a.size * a.dtype.itemsize for a in jax.tree.leaves(state))
    return {"first_save_s": times[0], "save_s": times[1], "state_bytes": state_bytes}


def project_zoo(row: dict, save: dict, accelerator: bool) -> dict[str, Any]:
    """Minutes of the 1,000-model 50-epoch MNIST Seed zoo from a measured row (its epochs keep
    MNIST's 5:1:1 split ratio, so its rate includes the per-epoch val+test evaluation)."""
    train, val, test = MNIST_SPLITS
    epochs_s = ZOO_EPOCHS * ZOO_MODELS * train / row["model_samples_per_s"]
    epoch0_s = ZOO_MODELS * (train + val + test) / row["eval_model_images_per_s"]  # epoch 0: eval of all splits
    saves_s = (ZOO_EPOCHS + 1) * save["save_s"]
    startup_s = row["compile_s"] + row["init_s"] + row["first_epoch_extra_s"]
    total_s = epochs_s + epoch0_s + saves_s + startup_s
    meets = ("yes" if total_s / 60 <= GOAL_MINUTES else "no") if accelerator else "n/a (CPU)"
    return {
        "from_models": row["models"],
        "train_epochs_s": epochs_s,
        "epoch0_eval_s": epoch0_s,
        "checkpoints_s": saves_s,
        "startup_s": startup_s,
        "total_min": total_s / 60,
        "meets_goal": meets,
    }


def resnet_rows(tiny: bool, platform: str) -> list[dict[str, Any]]:
    """ResNet-18 train images/s: jaxzoo in three compute dtypes, PyTorch on the same device."""
    batch, steps, repeats = (8, 1, 2) if tiny else (256, 16, 2)
    rows = []
    for dtype in ("float32", "tensorfloat32", "bfloat16"):
        row = {"implementation": "jaxzoo", "precision": dtype, "batch": batch}
        try:
            r = bench_jax(batch, steps, dtype, repeats)
            row.update(
                images_per_s=r["images_per_s_per_device"],
                eval_images_per_s=r["eval_images_per_s_per_device"],
                compile_s=r["compile_s"],
            )
        except Exception as error:  # one failing precision leaves the others' figures
            row["error"] = f"{type(error).__name__}: {error}".splitlines()[0]
        rows.append(row)
    try:
        import torch
    except ImportError:
        return rows + [
            {"implementation": "PyTorch", "precision": "float32", "batch": batch, "error": "torch is not importable"}
        ]
    device = "cuda" if platform == "gpu" and torch.cuda.is_available() else "cpu"
    settings = [("float32, TF32 off", False), ("float32, TF32 on", True)] if device == "cuda" else [("float32", None)]
    for name, tf32 in settings:
        row = {"implementation": f"PyTorch ({device})", "precision": name, "batch": batch}
        saved = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
        try:
            if tf32 is not None:
                torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = tf32
            row["images_per_s"] = bench_torch(batch, steps, repeats, device)
        except Exception as error:
            row["error"] = f"{type(error).__name__}: {error}".splitlines()[0]
        finally:
            torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved
        rows.append(row)
    return rows


def fmt(value: float | None, spec: str = ",.0f") -> str:
    return "" if value is None or not math.isfinite(value) else format(value, spec)


def print_zoo_table(rows: list[dict], ceilings: dict[str, float], tiny: bool) -> None:
    print(f"\n## CNN-s zoos, whole epochs through ZooRun.train_epoch (state on device, conv xla, batch {BATCH})\n")
    print(
        f"Synthetic MNIST-shaped uint8 images, train:val:test = 5:1:1 (val+test evaluated every epoch, "
        f"included in the rate); {'tiny splits' if tiny else 'train split shrunk for large M to keep epochs short'}. "
        f"{FLOP_PER_SAMPLE / 1e6:.3f} MFLOP per model-sample (3 x 2 x {macs_per_image('cnn_s', 1):,} MAC). "
        f"Dense ceiling: measured dense float32 matmul (precision highest) {ceilings['float32'] / 1e12:.2f} TFLOP/s, "
        f"bfloat16 {ceilings['bfloat16'] / 1e12:.2f} TFLOP/s. Peak memory is the process's peak so far "
        f"(rows run in order of M).\n"
    )
    print(
        "| shape | dtype | models | groups | models per call | train/val/test images | steps per call | "
        "model-samples/s | train TFLOP/s | % of dense FLOP/s | peak memory GiB | eval model-images/s | compile s |"
    )
    print("|---|---|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['shape']} | {r['compute_dtype']} | {r['models']} | {r['groups']} | {r['models_per_call']} | "
            f"{r['train_images']}/{r['val_images']}/{r['test_images']} | {r['steps_per_call']} | "
            f"{fmt(r['model_samples_per_s'])} | {fmt(r['train_tflops'], '.4f')} | "
            f"{fmt(r['percent_of_dense'], '.2f')}% | "
            f"{r['peak_memory_bytes'] / 2**30:.2f} ({r['memory_kind']}) | {fmt(r['eval_model_images_per_s'])} | "
            f"{r['compile_s']:.1f} |"
        )


def print_projection(p: dict, save: dict) -> None:
    print(f"\n## Projection: {ZOO_MODELS}-model {ZOO_EPOCHS}-epoch MNIST Seed zoo\n")
    print(
        f"projected from M={p['from_models']} (its epoch rate and eval rate), a measured checkpoint of a "
        f"{ZOO_MODELS}-model state ({save['state_bytes'] / 2**20:.1f} MiB, written synchronously: an upper bound, "
        f"the trainer writes it while the next epoch trains) and that row's compile time.\n"
    )
    print(
        "| train epochs (incl. val+test) min | epoch 0 eval min | checkpoints min | compile + init s | "
        "checkpoint s (first / next) | total min | goal <= 5 min on one H100/H200 |"
    )
    print("|---:|---:|---:|---:|---:|---:|---|")
    print(
        f"| {p['train_epochs_s'] / 60:.2f} | {p['epoch0_eval_s'] / 60:.2f} | {p['checkpoints_s'] / 60:.2f} | "
        f"{p['startup_s']:.1f} | {save['first_save_s']:.2f} / {save['save_s']:.2f} | {p['total_min']:.2f} | "
        f"{p['meets_goal']} |"
    )


def print_resnet(rows: list[dict]) -> None:
    print(f"\n## ResNet-18 (CIFAR stem, 32x32x3), batch {rows[0]['batch']}, one model per device\n")
    print("| implementation | precision | train images/s per device | eval images/s | compile s | note |")
    print("|---|---|---:|---:|---:|---|")
    for r in rows:
        print(
            f"| {r['implementation']} | {r['precision']} | {fmt(r.get('images_per_s'), ',.1f')} | "
            f"{fmt(r.get('eval_images_per_s'), ',.1f')} | {fmt(r.get('compile_s'), '.1f')} | {r.get('error', '')} |"
        )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--tiny", action="store_true", help="CPU smoke sizes (default on CPU)")
    mode.add_argument("--full", action="store_true", help="the full sizes (default on GPU/TPU)")
    parser.add_argument("--sizes", help="comma-separated population sizes (default: full 1..4096, tiny 1,4)")
    parser.add_argument(
        "--seconds", type=float, default=None, help="least timed seconds per row (default: full 2, tiny 0 = one epoch)"
    )
    parser.add_argument("--epoch_seconds", type=float, default=1.5, help="full mode: target seconds per epoch")
    parser.add_argument("--skip_resnet", action="store_true", help="leave out the ResNet-18 part")
    parser.add_argument("--skip_bfloat16", action="store_true", help="leave out the CNN-s bfloat16 row")
    parser.add_argument("--skip_hyp", action="store_true", help="leave out the Hyp-shaped rows (8 programs each)")
    parser.add_argument("--json", help="also write every figure here")
    parser.add_argument(
        "--cpu_devices",
        type=int,
        default=0,
        help="XLA CPU devices (0: one per core, as the trainer; no effect on GPU/TPU)",
    )
    args = parser.parse_args(argv)
    if args.sizes is not None:
        try:
            args.sizes = tuple(int(s) for s in args.sizes.split(","))
        except ValueError:
            parser.error(f"--sizes {args.sizes!r}: give comma-separated integers")
        if not args.sizes or min(args.sizes) < 1:
            parser.error("--sizes: every size must be >= 1")
    if args.seconds is not None and args.seconds < 0:
        parser.error("--seconds must be >= 0")
    if args.epoch_seconds <= 0:
        parser.error("--epoch_seconds must be > 0")
    return args


def main(argv: list[str] | None = None) -> None:
    wall = time.perf_counter()
    args = parse_args(argv)
    use_cpu_cores(args.cpu_devices)
    device = jax.local_devices()[0]
    platform = device.platform
    accelerator = platform != "cpu"
    tiny = args.tiny or (not args.full and not accelerator)
    sizes = tuple(sorted(set(args.sizes or (TINY_SIZES if tiny else FULL_SIZES))))
    if args.sizes is None:
        hyp_sizes = TINY_HYP_SIZES if tiny else FULL_HYP_SIZES
    else:
        hyp_sizes = tuple(sorted({max(8, s) for s in sizes}))
    if args.skip_hyp:
        hyp_sizes = ()
    seconds = args.seconds if args.seconds is not None else (0.0 if tiny else 2.0)
    print(
        f"# jaxzoo accelerator benchmark\n\ndevice: {device.device_kind} | platform: {platform} | "
        f"devices: {jax.device_count()} | jax {jax.__version__} | mode: {'--tiny' if tiny else 'full'}"
    )

    n = 512 if tiny else (8192 if accelerator else 2048)
    ceilings = {"float32": dense_flops(n, "float32"), "bfloat16": dense_flops(n, "bfloat16"), "n": n}

    rows, projection_row, projection_run = [], None, None
    last_rate: dict[str, tuple[int, float]] = {}  # shape -> (models, rate) of its previous row
    guess = 2e4 if accelerator else 2e3  # model-samples/s of one model before anything is measured

    def estimate(shape: str, size: int) -> float:
        if shape in last_rate:
            models, rate = last_rate[shape]
            return rate * min(2.0, size / models)  # rates grow at most ~linearly in M, mostly less
        return guess * size

    def add(shape: str, size: int, dtype: str) -> tuple[dict, ZooRun, dict]:
        if tiny:
            num_train, per_call = TINY_TRAIN, TINY_TRAIN // BATCH
        else:
            num_train, per_call = epoch_split(size, platform, estimate(shape, size), args.epoch_seconds)
        row, run, state, metrics = bench_zoo(shape, size, dtype, num_train, per_call, seconds)
        dense = ceilings["float32" if dtype != "bfloat16" else "bfloat16"]
        row["percent_of_dense"] = 100 * row["train_tflops"] * 1e12 / dense
        rows.append(row)
        if dtype == "float32":
            last_rate[shape] = (row["models"], row["model_samples_per_s"])
        print(
            f"  {shape} M={row['models']} {dtype}: {row['model_samples_per_s']:,.0f} model-samples/s "
            f"({time.perf_counter() - wall:.0f} s so far)",
            file=sys.stderr,
            flush=True,
        )
        del state
        return row, run, metrics

    projection_size = 1024 if (not tiny and 1024 in sizes) else max(sizes)
    for size in sorted(set(sizes) | set(hyp_sizes)):
        if size in sizes:
            row, run, metrics = add("seed", size, "float32")
            if size == projection_size:
                projection_row, projection_run, projection_metrics = row, run, metrics
        if size in hyp_sizes:
            last_rate.setdefault("hyp", last_rate.get("seed", (1, guess)))
            add("hyp", size, "float32")
    if not args.skip_bfloat16:
        add("seed", max(sizes), "bfloat16")
    print_zoo_table(rows, ceilings, tiny)

    save = checkpoint_seconds(projection_run, projection_metrics)
    projection = project_zoo(projection_row, save, accelerator)
    print_projection(projection, save)

    resnet = []
    if not args.skip_resnet:
        resnet = resnet_rows(tiny, platform)
        print_resnet(resnet)

    total = time.perf_counter() - wall
    print(f"\ntotal wall time: {total:.1f} s")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {
                    "device_kind": device.device_kind,
                    "platform": platform,
                    "device_count": jax.device_count(),
                    "jax_version": jax.__version__,
                    "mode": "tiny" if tiny else "full",
                    "flop_per_model_sample": FLOP_PER_SAMPLE,
                    "dense_flops": ceilings,
                    "zoo_rows": rows,
                    "checkpoint": save,
                    "projection": projection,
                    "resnet": resnet,
                    "wall_s": total,
                },
                f,
                indent=1,
            )


if __name__ == "__main__":
    main()
