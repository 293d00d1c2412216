"""Export and analysis time, and export size on disk, for a realistic zoo: 1,000 CNN-s x 51 epochs.

Builds a synthetic workdir with the trainer's own init, checkpointing and metrics code
(weights of epoch e = init + small noise per epoch, random metrics; no training) on mnist_5k,
then times `python -m jaxzoo.export` per format (with the size of each) and
`python -m jaxzoo.analyze` (Table 2, figures, card; PCA unless umap-learn is installed).

  python scripts/bench_zoo_tools.py [--models 1000] [--epochs 50] [--scratch DIR]
"""

from __future__ import annotations

import argparse
import pathlib
import subprocess
import sys
import tempfile
import time

import jax
import numpy as np

from jaxzoo import checkpoint
from jaxzoo.config import base_config, identity, to_json_dict
from jaxzoo.data import load_dataset
from jaxzoo.population import build_population, expand_grid
from jaxzoo.train import ZooRun


def synthetic_workdir(path: pathlib.Path, models: int, epochs: int) -> None:
    config = base_config()
    config.name = "bench_export"
    config.population.num_seeds = models
    config.population.init = ("kaiming_uniform",)
    config.training.num_epochs = epochs
    table = expand_grid(config.population, config.seed)
    population = build_population(table)
    dataset = load_dataset("mnist_5k", 28)
    zoo_identity = identity(config)
    zoo_identity["dataset"] = {"source": dataset.source, "fingerprint": dataset.fingerprint}
    checkpoint.prepare_workdir(path, zoo_identity, to_json_dict(config), table)
    run = ZooRun(config, population, dataset)
    state = run.init_state()
    rng = np.random.default_rng(0)
    manager = checkpoint.open_manager(path, async_save=True)
    lines = []
    for epoch in range(epochs + 1):
        state = jax.tree.map(lambda a: a + rng.normal(0, 1e-3, a.shape).astype(a.dtype) if a.dtype == np.float32 else a, state)
        metrics = {name: rng.uniform(0, 1, models).astype(np.float32) for name in checkpoint.METRIC_NAMES}
        metrics["diverged"] = np.zeros(models, bool)
        checkpoint.save_epoch(manager, epoch, state, metrics)
        lines += checkpoint.metrics_lines(epoch, population.arrays["model_id"], metrics)
    manager.wait_until_finished()
    manager.close()
    checkpoint.rewrite_metrics_file(path, lines)


def size_of(path: pathlib.Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=50)
    parser.add_argument("--scratch", default="")
    args = parser.parse_args()
    scratch = pathlib.Path(args.scratch or tempfile.mkdtemp(prefix="jaxzoo-bench-export-"))
    workdir = scratch / "zoo"
    start = time.perf_counter()
    synthetic_workdir(workdir, args.models, args.epochs)
    print(f"synthetic workdir: {args.models} models x {args.epochs + 1} epochs in {time.perf_counter() - start:.1f} s, "
          f"{size_of(workdir / 'checkpoints') / 2**20:.0f} MiB of Orbax checkpoints")
    print("| format | export s | size on disk |")
    print("|---|---:|---:|")
    for fmt in ("vectors", "trials", "all"):
        out = scratch / f"out_{fmt}"
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "jaxzoo.export", "--workdir", str(workdir), "--out", str(out), "--format", fmt],
                       check=True, capture_output=True)
        seconds = time.perf_counter() - start
        print(f"| {fmt} | {seconds:.1f} | {size_of(out) / 2**20:.0f} MiB |", flush=True)
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "jaxzoo.analyze", "--workdir", str(workdir)], check=True, capture_output=True)
    print(f"analysis (Table 2 on 750 test images, 3 figures, card): {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
