"""Peak memory and time of `python -m jaxzoo.ingest` on Small CNN Zoo files of growing size.

Writes synthetic files in the published Small CNN Zoo layout (weights.npy [models * 9, 4970]
float32 written through a memory map, metrics.csv.gz, layout.csv; random weights, 9 checkpoints
per model) for each model count, ingests each in a fresh process and prints, side by side, the
size of weights.npy, the ingest's peak resident memory, their ratio and the time. Streaming
means the peak stays near one epoch of the population (weights.npy / 9), not the file:

  python scripts/bench_ingest.py [--models 2000,8000] [--scratch DIR]
"""

from __future__ import annotations

import argparse
import csv
import gzip
import os
import pathlib
import subprocess
import sys
import tempfile

import numpy as np

STEPS = (0, 1, 2, 3, 20, 40, 60, 80, 86)
LAYOUT = [
    ("sequential/conv2d/bias:0", (16,)),
    ("sequential/conv2d/kernel:0", (3, 3, 1, 16)),
    ("sequential/conv2d_1/bias:0", (16,)),
    ("sequential/conv2d_1/kernel:0", (3, 3, 16, 16)),
    ("sequential/conv2d_2/bias:0", (16,)),
    ("sequential/conv2d_2/kernel:0", (3, 3, 16, 16)),
    ("sequential/dense/bias:0", (10,)),
    ("sequential/dense/kernel:0", (16, 10)),
]


def write_zoo(folder: pathlib.Path, models: int) -> int:
    """The three files of a `models`-model zoo in `folder`; returns the bytes of weights.npy."""
    folder.mkdir(parents=True)
    width = 0
    with open(folder / "layout.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["varname", "start_idx", "end_idx", "size", "shape"])
        for name, shape in LAYOUT:
            size = int(np.prod(shape))
            writer.writerow([name, width, width + size, size, str(shape)])
            width += size
    with gzip.open(folder / "metrics.csv.gz", "wt", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(
            [
                "modeldir",
                "step",
                "config.activation",
                "config.w_init",
                "config.optimizer",
                "config.learning_rate",
                "config.l2reg",
                "config.dropout",
                "config.train_fraction",
                "config.dataset",
                "test_accuracy",
                "train_accuracy",
                "test_loss",
                "train_loss",
            ]
        )
        for m in range(models):
            for step in STEPS:
                writer.writerow(
                    [
                        f"zoo/mnist/unit_{m:06d}",
                        step,
                        ("relu", "tanh")[m % 2],
                        "he_normal",
                        "adam",
                        0.001,
                        1e-5,
                        0.0,
                        1.0,
                        "mnist",
                        0.5,
                        0.5,
                        1.0,
                        1.0,
                    ]
                )
    weights = np.lib.format.open_memmap(folder / "weights.npy", "w+", np.float32, (models * len(STEPS), width))
    rng = np.random.default_rng(0)
    for start in range(0, len(weights), 4096):
        block = weights[start : start + 4096]
        block[:] = rng.normal(0, 0.1, block.shape)
    weights.flush()
    del weights
    if hasattr(os, "posix_fadvise"):  # read it back from disk, as a downloaded zoo, not from the page cache
        os.sync()
        with open(folder / "weights.npy", "rb") as f:
            os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
    return (folder / "weights.npy").stat().st_size


def ingest_peak(source: pathlib.Path, workdir: pathlib.Path) -> tuple[float, float]:
    """(peak resident MiB, seconds) of one ingest in a fresh process."""
    # VmHWM, the peak of this process's own memory; ru_maxrss would report the parent's peak at
    # fork when that is higher (Linux keeps it across exec). macOS: ru_maxrss, in bytes.
    code = (
        "import pathlib, resource, sys, time; from jaxzoo.ingest import ingest; t = time.time(); "
        f"ingest({str(source)!r}, {str(workdir)!r}, log=None); seconds = time.time() - t; "
        "status = pathlib.Path('/proc/self/status'); "
        "kib = int(next(l.split()[1] for l in status.read_text().splitlines() if l.startswith('VmHWM'))) "
        "if status.exists() else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024; "
        "print(kib, seconds)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    return float(out[-2]) / 1024, float(out[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="2000,8000")
    parser.add_argument("--scratch", default="")
    args = parser.parse_args()
    scratch = pathlib.Path(args.scratch or tempfile.mkdtemp(prefix="jaxzoo-bench-ingest-"))
    print(
        f"{'models':>8} {'weights.npy MiB':>16} {'one epoch MiB':>14} {'peak RSS MiB':>13} "
        f"{'peak / file':>12} {'seconds':>8}"
    )
    for models in (int(m) for m in args.models.split(",")):
        source = scratch / f"uz_{models}"
        size = write_zoo(source, models) / 2**20
        peak, seconds = ingest_peak(source, scratch / f"workdir_{models}")
        print(
            f"{models:>8} {size:>16.0f} {size / len(STEPS):>14.0f} {peak:>13.0f} {peak / size:>12.2f} {seconds:>8.1f}"
        )
    print(f"(files in {scratch}; peak includes the Python, JAX and Orbax imports)")


if __name__ == "__main__":
    main()
