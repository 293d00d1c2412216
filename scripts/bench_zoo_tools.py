"""Export and analysis time, and export size on disk, for a realistic zoo: 1,000 CNN-s x 51 epochs.

Builds a synthetic workdir with the trainer's own init, checkpointing and metrics code
(weights of epoch e = init + small noise per epoch, random metrics; no training) on mnist_5k,
then times `python -m jaxzoo.export` per format (with the size and peak resident memory of each,
and the Parquet export against the safetensors vectors: time and peak memory ratios) and
`python -m jaxzoo.analyze` (Table 2, figures, card; PCA unless umap-learn is installed) with
its peak resident memory. Several model counts run side by side, one workdir each:

  python scripts/bench_zoo_tools.py [--models 1000] [--epochs 50] [--scratch DIR]
  python scripts/bench_zoo_tools.py --models 200 --epochs 10 --formats vectors,parquet --skip_analysis
  python scripts/bench_zoo_tools.py --models 1024,8192,16384 --epochs 2 --analyze_only --scratch /tmp/zoos

(the last two counts also give the per-model slope of the analysis's peak memory and time).
"""

from __future__ import annotations

import argparse
import os
import pathlib
import subprocess
import sys
import tempfile
import time

import jax
import numpy as np

from jaxzoo.config import base_config, identity, to_json_dict
from jaxzoo.data import load_dataset
from jaxzoo.training.population import build_population, expand_grid
from jaxzoo.training.run import ZooRun
from jaxzoo.zoo import checkpoint


def synthetic_workdir(path: pathlib.Path, models: int, epochs: int) -> None:
    config = base_config()
    config.name = "bench_export"
    config.population.num_seeds = models
    config.population.init = ("kaiming_uniform",)
    config.training.num_epochs = epochs
    table = expand_grid(config.population, config.seed)
    population = build_population(table, config.population)
    dataset = load_dataset("mnist_5k", 28)
    zoo_identity = identity(config)
    zoo_identity["dataset"] = {"source": dataset.source, "fingerprint": dataset.fingerprint}
    checkpoint.prepare_workdir(path, zoo_identity, to_json_dict(config), table)
    run = ZooRun(config, population, dataset)
    state = run.init_state()
    rng = np.random.default_rng(0)
    writer = checkpoint.open_writer(path, async_save=True)
    lines = []
    for epoch in range(epochs + 1):
        state = jax.tree.map(
            lambda a: a + rng.normal(0, 1e-3, a.shape).astype(a.dtype) if a.dtype == np.float32 else a, state
        )
        metrics = {name: rng.uniform(0, 1, models).astype(np.float32) for name in checkpoint.METRIC_NAMES}
        metrics["diverged"] = np.zeros(models, bool)
        checkpoint.save_epoch(writer, epoch, state, metrics)
        lines += checkpoint.metrics_lines(epoch, population.arrays["model_id"], metrics)
    writer.close()
    checkpoint.rewrite_metrics_file(path, lines)


def size_of(path: pathlib.Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


# Runs `python -m <module> <args>` and, at exit, writes its VmHWM (peak resident KiB) to the file
# JAXZOO_BENCH_PEAK names. wait4's ru_maxrss is no measure of the child: Linux keeps the parent's
# peak across fork and exec, so a bench that built a 128,000-model zoo reported its own peak.
_PEAK_OF_MODULE = """
import atexit, os, runpy, sys
def record_peak():
    with open("/proc/self/status") as status:
        kib = next(int(line.split()[1]) for line in status if line.startswith("VmHWM"))
    with open(os.environ["JAXZOO_BENCH_PEAK"], "w") as out:
        out.write(str(kib))
atexit.register(record_peak)
sys.argv = sys.argv[1:]
runpy.run_module(sys.argv[0], run_name="__main__", alter_sys=True)
"""


def timed_child(command: list[str]) -> tuple[float, float]:
    """Runs a Python module as a child process -> (wall seconds, its own peak resident memory in
    GiB: VmHWM, read by the child as it exits)."""
    with tempfile.TemporaryFile() as stderr, tempfile.NamedTemporaryFile(suffix=".peak") as peak:
        start = time.perf_counter()
        environment = dict(os.environ, JAXZOO_BENCH_PEAK=peak.name)
        child = subprocess.run(
            [sys.executable, "-c", _PEAK_OF_MODULE, *command], stdout=subprocess.DEVNULL, stderr=stderr, env=environment
        )
        seconds = time.perf_counter() - start
        if child.returncode:
            stderr.seek(0)
            sys.exit(f"{' '.join(command)} failed ({child.returncode}):\n{stderr.read().decode()[-4000:]}")
        return seconds, int(pathlib.Path(peak.name).read_text()) / 2**20  # KiB -> GiB


def bench_exports(scratch: pathlib.Path, workdir: pathlib.Path, formats: list[str]) -> None:
    print("| format | export s | peak RSS GiB | size on disk |")
    print("|---|---:|---:|---:|")
    runs = {}
    for fmt in formats:
        out = scratch / f"out_{fmt}"
        seconds, peak = timed_child(
            ["jaxzoo.export", "--workdir", str(workdir), "--out", str(out), "--format", fmt, "--overwrite"]
        )
        runs[fmt] = seconds, peak
        print(f"| {fmt} | {seconds:.1f} | {peak:.2f} | {size_of(out) / 2**20:.0f} MiB |", flush=True)
    if "vectors" in runs and "parquet" in runs:  # the Parquet files against the safetensors files of the same rows
        (vs, vp), (ps, pp) = runs["vectors"], runs["parquet"]
        print(
            f"\nparquet vs vectors (safetensors): {ps:.1f} s vs {vs:.1f} s ({ps / vs:.2f}x time), "
            f"peak RSS {pp:.2f} vs {vp:.2f} GiB ({pp / vp:.2f}x memory)",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="1000", help="model counts, comma-separated: one workdir each")
    parser.add_argument("--epochs", type=int, default=50)
    parser.add_argument("--agreement_images", type=int, default=0, help="passed to the analysis (0: all test images)")
    parser.add_argument("--analyze_only", action="store_true", help="skip the exports")
    parser.add_argument("--skip_analysis", action="store_true", help="only the exports")
    parser.add_argument("--formats", default="vectors,parquet,trials,all", help="export formats, comma-separated")
    parser.add_argument("--scratch", default="")
    args = parser.parse_args()
    scratch = pathlib.Path(args.scratch or tempfile.mkdtemp(prefix="jaxzoo-bench-export-"))
    analyses = []
    for models in [int(m) for m in args.models.split(",")]:
        workdir = scratch / f"zoo_{models}"
        if not (workdir / "metrics.jsonl").exists():
            start = time.perf_counter()
            synthetic_workdir(workdir, models, args.epochs)
            print(
                f"synthetic workdir: {models} models x {args.epochs + 1} epochs in {time.perf_counter() - start:.1f} s, "
                f"{size_of(workdir / 'checkpoints') / 2**20:.0f} MiB of Orbax checkpoints",
                flush=True,
            )
        if not args.analyze_only:
            bench_exports(scratch / f"exports_{models}", workdir, args.formats.split(","))
        if args.skip_analysis:
            continue
        seconds, peak = timed_child(
            ["jaxzoo.analyze", "--workdir", str(workdir), "--agreement_images", str(args.agreement_images)]
        )
        analyses.append((models, seconds, peak))
        print(
            f"analysis of {models} models (Table 2, 3 figures, card): {seconds:.1f} s, peak RSS {peak:.2f} GiB",
            flush=True,
        )
    if not analyses:
        return
    print("\n| models | epochs | analyze s | analyze peak RSS GiB |\n|---:|---:|---:|---:|")
    for models, seconds, peak in analyses:
        print(f"| {models} | {args.epochs + 1} | {seconds:.1f} | {peak:.2f} |")
    if len(analyses) > 1:
        (m0, s0, p0), (m1, s1, p1) = analyses[-2:]
        print(
            f"\nfrom {m0} to {m1} models: peak RSS {(p1 - p0) * 2**30 / (m1 - m0) / 1000:+.1f} KB per model, "
            f"{(s1 - s0) / (m1 - m0) * 1000:.1f} ms per model"
        )


if __name__ == "__main__":
    main()
