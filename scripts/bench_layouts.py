"""Does a zoo depend on the machine layout? The quickstart zoo trained under several layouts,
each compared model by model with the one-device run: params, optimizer state and metrics rows
bitwise equal, and the training rate of each layout.

  python scripts/bench_layouts.py                       # 5 epochs, every layout (~6 minutes on 2 cores)
  python scripts/bench_layouts.py --epochs 2 --layouts devices_2,processes_2

Layouts: 1 device (the reference), 2 and 3 CPU devices, chunks of 4 and 16 models, 35 steps
per call, the state kept on the device, 2 processes (`--distributed` on localhost, one device
each), and 2 job-array shards merged. Every run is a `python -m jaxzoo.train` child; rates are
the mean model-samples/s of epochs 2.. as the log prints them.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time

import jax
import numpy as np

from jaxzoo.zoo import checkpoint

REPO = pathlib.Path(__file__).resolve().parents[1]
BASE = ["--config", str(REPO / "configs" / "quickstart.py"), "--config.runtime.progress=False"]
LAYOUTS = {
    "devices_1": ["--cpu_devices=1"],
    "devices_2": ["--cpu_devices=2"],
    "devices_3": ["--cpu_devices=3"],
    "chunk_4": ["--cpu_devices=1", "--config.runtime.chunk_size=4"],
    "chunk_16": ["--cpu_devices=1", "--config.runtime.chunk_size=16"],
    "steps_35": ["--cpu_devices=1", "--config.runtime.steps_per_call=35"],
    "state_on_device": ["--cpu_devices=2", "--config.runtime.state_placement=device"],
    "processes_2": [],  # two `--distributed` processes, one device each
    "shards_2": [],  # two job-array shards, merged
}
EPOCH_RATE = re.compile(r"epoch (?:[2-9]|\d\d+)/\d+: .*; ([\d.]+) model-samples/s")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def train(args: list[str], count: int = 1) -> tuple[float, list[str]]:
    """`count` train processes with `args` (each given its process id) -> (seconds, stderr texts)."""
    start = time.time()
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "jaxzoo.train", *[a.format(k=k) for a in args]],
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for k in range(count)
    ]
    errors = [p.communicate()[1] for p in procs]
    for p, err in zip(procs, errors):
        if p.returncode:
            sys.exit(f"train failed: {' '.join(args)}\n{err[-3000:]}")
    return time.time() - start, errors


def run_layout(name: str, workdir: pathlib.Path, epochs: int, extra: list[str]) -> tuple[float, float]:
    """Trains the zoo under layout `name` into `workdir` -> (seconds, model-samples/s)."""
    common = [*BASE, *extra, f"--config.training.num_epochs={epochs}", "--workdir", str(workdir)]
    if name == "processes_2":
        port = free_port()
        flags = ["--cpu_devices=1", "--distributed", f"--coordinator_address=localhost:{port}", "--num_processes=2"]
        seconds, logs = train([*common, *flags, "--process_id={k}"], count=2)
    elif name == "shards_2":
        seconds, logs = 0.0, []
        for k in range(2):
            took, log = train([*common, "--cpu_devices=1", f"--config.shard_index={k}", "--config.num_shards=2"])
            seconds, logs = seconds + took, logs + log
        subprocess.run([sys.executable, "-m", "jaxzoo.merge", "--workdir", str(workdir)], cwd=REPO, check=True)
    else:
        seconds, logs = train([*common, *LAYOUTS[name]])
    # The zoo's rate as process 0 logs it; each shard logs its own half's.
    rated = logs if name == "shards_2" else logs[:1]
    rates = [float(r) for log in rated for r in EPOCH_RATE.findall(log)]
    return seconds, float(np.mean(rates)) if rates else float("nan")


def compare(reference: pathlib.Path, other: pathlib.Path) -> tuple[int, int, int, float]:
    """-> (models, models whose state is bitwise equal, metrics rows equal, max relative L2 of params)."""
    epoch, want = checkpoint.load_state(reference)
    other_epoch, got = checkpoint.load_state(other)
    assert other_epoch == epoch, (other_epoch, epoch)
    models = jax.tree.leaves(want)[0].shape[0]
    equal = np.ones(models, bool)
    for a, b in zip(jax.tree.leaves(want), jax.tree.leaves(got)):
        a, b = np.asarray(a).reshape(models, -1), np.asarray(b).reshape(models, -1)
        equal &= (a.view(np.uint8).reshape(models, -1) == b.view(np.uint8).reshape(models, -1)).all(axis=1)
    flat = lambda state: np.concatenate(
        [np.asarray(a).reshape(models, -1) for a in jax.tree.leaves(state["params"])], 1
    )
    pa, pb = flat(want), flat(got)
    relative = float((np.linalg.norm(pa - pb, axis=1) / np.linalg.norm(pa, axis=1)).max())
    rows = sum(a == b for a, b in zip(checkpoint.read_metrics(reference), checkpoint.read_metrics(other)))
    return models, int(equal.sum()), rows, relative


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--layouts", default=",".join(name for name in LAYOUTS if name != "devices_1"))
    parser.add_argument("--keep", help="folder to keep the workdirs in (default: a temporary one)")
    parser.add_argument(
        "--set", action="append", default=[], help="a config override for every run (FIELD=VALUE, repeatable)"
    )
    args = parser.parse_args()
    root = pathlib.Path(args.keep or tempfile.mkdtemp(prefix="jaxzoo-layouts-"))
    root.mkdir(parents=True, exist_ok=True)
    names = ["devices_1", *[n for n in args.layouts.split(",") if n and n != "devices_1"]]
    unknown = [n for n in names if n not in LAYOUTS]
    if unknown:
        sys.exit(f"unknown layouts {unknown}: choose from {', '.join(LAYOUTS)}")
    print(f"quickstart zoo, {args.epochs} epochs, jax {jax.__version__}, {os.cpu_count()} cores {args.set or ''}")
    print(
        f"{'layout':<16} {'seconds':>8} {'samples/s':>10} {'state equal':>12} {'metrics equal':>14} {'max rel L2':>11}"
    )
    for name in names:
        workdir = root / name
        shutil.rmtree(workdir, ignore_errors=True)
        seconds, rate = run_layout(name, workdir, args.epochs, [f"--config.{item}" for item in args.set])
        models, equal, rows, relative = compare(root / "devices_1", workdir)
        total = models * (args.epochs + 1)
        print(
            f"{name:<16} {seconds:>8.1f} {rate:>10.0f} {f'{equal}/{models}':>12} {f'{rows}/{total}':>14} {relative:>11.1e}"
        )
    if not args.keep:
        shutil.rmtree(root)


if __name__ == "__main__":
    main()
