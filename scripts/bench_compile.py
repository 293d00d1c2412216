"""What compiling costs a run, and what the persistent cache and the planner give back.

  python scripts/bench_compile.py                      # both tables (~12 minutes on 2 cores)
  python scripts/bench_compile.py --only quickstart    # the quickstart's runs alone
  python scripts/bench_compile.py --only shapes --sizes 256 --epochs 2

Quickstart: `python -m jaxzoo.train --config configs/quickstart.py` end to end (process start to
exit) with an empty compile cache (a fresh install), the same command again (the zoo is
complete), the zoo again into a new workdir (warm cache), and a resume (3 of 5 epochs trained,
then the 5-epoch command).

Shapes: N CNN-s models of each population shape on mnist_5k, `--epochs` epochs, end to end with
the compile cache off: `seed` (one activation and optimizer), `hyp` (4 activations x 2 inits x
2 optimizers) and `hyp_dropout` (4 activations x 2 optimizers x dropout 0 / 0.5), each Hyp shape
with `runtime.group_programs` split, merged and auto (the planner's choice). Every run is a
child process; compile seconds and programs are the log's.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
QUICKSTART = ["--config", str(REPO / "configs" / "quickstart.py"), "--config.runtime.progress=False"]
SHAPES = {
    "seed": {"activation": "('tanh',)", "init": "('uniform',)", "optimizer": "('adam',)", "dropout": "(0.0,)"},
    "hyp": {
        "activation": "('tanh','relu','sigmoid','gelu')",
        "init": "('uniform','kaiming_uniform')",
        "optimizer": "('adam','sgd')",
        "dropout": "(0.0,)",
    },
    "hyp_dropout": {
        "activation": "('tanh','relu','sigmoid','gelu')",
        "init": "('uniform',)",
        "optimizer": "('adam','sgd')",
        "dropout": "(0.0,0.5)",
    },
}
GRID = {"seed": 1, "hyp": 16, "hyp_dropout": 16}
COMPILED = re.compile(r"compiled (\d+) program\(s\) in ([\d.]+) s")
PLAN = re.compile(r"programs: (.*?) \((auto|split|merged)\)")


def train(args: list[str], cache: str) -> tuple[float, str]:
    """One `python -m jaxzoo.train` child -> (wall seconds, its stderr)."""
    env = {k: v for k, v in os.environ.items() if k != "JAX_COMPILATION_CACHE_DIR"}
    start = time.time()
    result = subprocess.run(
        [sys.executable, "-m", "jaxzoo.train", *args, f"--compile_cache={cache}"],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    seconds = time.time() - start
    if result.returncode:
        sys.exit(f"train failed: {' '.join(args)}\n{result.stderr[-3000:]}")
    return seconds, result.stderr


def compiled(log: str) -> str:
    found = COMPILED.search(log)
    return f"{found.group(1)} in {float(found.group(2)):.1f} s" if found else "none"


def bench_quickstart(root: pathlib.Path) -> None:
    cache = str(root / "cache")
    rows = []
    seconds, log = train([*QUICKSTART, "--workdir", str(root / "qs")], cache)
    rows.append(("fresh install (empty cache)", seconds, log))
    seconds, log = train([*QUICKSTART, "--workdir", str(root / "qs")], cache)
    rows.append(("the same command again (zoo complete)", seconds, log))
    seconds, log = train([*QUICKSTART, "--workdir", str(root / "qs2")], cache)
    rows.append(("again into a new workdir (warm cache)", seconds, log))
    train([*QUICKSTART, "--config.training.num_epochs=3", "--workdir", str(root / "qs3")], cache)
    seconds, log = train([*QUICKSTART, "--workdir", str(root / "qs3")], cache)
    rows.append(("resume after epoch 3 of 5 (warm cache)", seconds, log))
    print("\nquickstart zoo (64 models, 5 epochs), end to end")
    print("| run | wall s | programs compiled (from the cache) |")
    print("|---|---:|---|")
    for name, seconds, log in rows:
        cached = re.search(r"\((\d+) of (\d+) from the compile cache\)", log)
        note = compiled(log) + (f" ({cached.group(1)} of {cached.group(2)} cached)" if cached else "")
        print(f"| {name} | {seconds:.1f} | {note} |")


def bench_shapes(root: pathlib.Path, sizes: list[int], epochs: int) -> None:
    print(f"\npopulation shapes: CNN-s on mnist_5k, {epochs} epochs, end to end, compile cache off")
    print("| models | shape | programs | plan | wall s | compile | x seed |")
    print("|---:|---|---|---|---:|---|---:|")
    for size in sizes:
        seed_seconds = None
        for shape, factors in SHAPES.items():
            modes = ("split",) if shape == "seed" else ("split", "merged", "auto")
            for mode in modes:
                args = [
                    *QUICKSTART,
                    f"--config.training.num_epochs={epochs}",
                    f"--config.population.num_seeds={size // GRID[shape]}",
                    f"--config.runtime.group_programs={mode}",
                    *[f"--config.population.{name}={value}" for name, value in factors.items()],
                    "--workdir",
                    str(root / f"{shape}-{mode}-{size}"),
                ]
                seconds, log = train(args, "off")
                seed_seconds = seed_seconds or seconds
                plan = PLAN.search(log)
                chosen = plan.group(1) if plan else "one group"
                print(
                    f"| {size} | {shape} | {mode} | {chosen} | {seconds:.1f} | {compiled(log)} | "
                    f"{seconds / seed_seconds:.2f} |"
                )
                shutil.rmtree(root / f"{shape}-{mode}-{size}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=("quickstart", "shapes"))
    parser.add_argument("--sizes", default="128,256", help="models per shape (multiples of 16)")
    parser.add_argument("--epochs", type=int, default=2, help="epochs of each shape's run")
    args = parser.parse_args()
    root = pathlib.Path(tempfile.mkdtemp(prefix="jaxzoo-compile-"))
    print(f"jaxzoo compile benchmark, {os.cpu_count()} cores")
    try:
        if args.only in (None, "quickstart"):
            bench_quickstart(root)
        if args.only in (None, "shapes"):
            bench_shapes(root, [int(s) for s in args.sizes.split(",")], args.epochs)
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
