"""Peak resident memory and time of every jaxzoo command as a zoo grows.

  python scripts/bench_scale.py --zoos cnn_s_1k,cnn_s_16k --scratch /tmp/scale
  python scripts/bench_scale.py --zoos cnn_s_128k,resnet18_190 --scratch /big/disk --agreement_images 100
  python scripts/bench_scale.py --zoos cnn_s_1k --train        # also one real epoch of training

Each zoo is synthetic (no model is trained): the state tree of a real run of its config (its
abstract state: nothing is initialised), filled block by block with noise, random metrics,
epochs 0..1, written as two job-array shards by jaxzoo's own checkpoint code. The commands then
run as child processes, one at a time, each measured by its wall time and peak RSS (its own VmHWM):
merge (the shards into the zoo), export (trials, vectors, parquet; each removed once measured,
so the disk holds one at a time), ingest (of the trials export), analyze and the Table 3
benchmark; and, in this process, the time to read one model's params at one epoch. `--train`
adds `python -m jaxzoo.train` of the same models for one epoch on 120 images per split.

Zoos: cnn_s_<N> (CNN-s, Adam state), mlp1024_<N> (MLPs with two 1024-wide layers, 1.86M
parameters, Adam state: the card's weight matching of wide layers) and resnet18_<N> (ResNet-18,
plain SGD: params and BatchNorm statistics, 45 MB per model: 190 models make an epoch of
8 GiB), N a count or 16k.
All on the embedded MNIST (mnist_5k; ResNet-18 at 8x8, as the tests). Runs at commit 13083a5 too, whose
checkpoints hold each epoch whole, for the before figures (`PYTHONPATH=<13083a5 checkout>`).
"""

from __future__ import annotations

import argparse
import os
import pathlib
import shutil
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
from jaxzoo.zoo.shards import shard_workdir

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from bench_zoo_tools import timed_child  # noqa: E402  (a child's wall time and peak RSS)

EPOCHS = 1  # epochs 0..1
SHARDS = 2
BUILD_BLOCK_BYTES = 256 * 2**20  # noise written per call while building a shard


def zoo_config(name: str):
    """The config of a zoo name: cnn_s_<N>, mlp1024_<N> or resnet18_<N> (N a count, or 16k for 16,000)."""
    kind, count = name.rsplit("_", 1)
    models = int(count[:-1]) * 1000 if count.endswith("k") else int(count)
    config = base_config()
    config.name = f"scale_{name}"
    config.population.num_seeds = models
    config.population.init = ("kaiming_uniform",)
    config.training.num_epochs = EPOCHS
    config.data.max_examples_per_split = 120
    config.runtime.progress = False
    if kind == "resnet18":
        config.model.arch = "resnet18"
        config.data.image_size = 8  # mnist_5k comes at 8 or 28; the parameter count does not depend on it
        config.population.activation = ("relu",)
        config.population.optimizer = ("sgd",)
        config.population.dropout = (0.0,)
    elif kind == "mlp1024":  # the wide zoo: two 1024-wide layers, 1.86M parameters
        config.model.arch = "mlp"
        config.model.widths = (1024, 1024)
    elif kind != "cnn_s":
        raise SystemExit(f"unknown zoo {name!r}: cnn_s_<N>, mlp1024_<N> or resnet18_<N>")
    return config


def noise_block(abstract, rows: int, rng: np.random.Generator):
    """`rows` models shaped as a run's abstract state: noise in float leaves, zeros elsewhere."""

    def leaf(a):
        shape = (rows, *a.shape[1:])
        if np.issubdtype(a.dtype, np.floating):
            return (rng.standard_normal(shape, np.float32) * 0.05).astype(a.dtype)
        return np.zeros(shape, a.dtype)

    return jax.tree.map(leaf, abstract)


def write_shard(config, root: pathlib.Path, index: int, dataset, rng) -> int:
    """Shard `index` of SHARDS of the zoo, epochs 0..EPOCHS of noise; returns bytes per model."""
    config.num_shards, config.shard_index = SHARDS, index
    table = expand_grid(config.population, config.seed)
    size = len(table)
    table = table[index * size // SHARDS : (index + 1) * size // SHARDS]
    zoo_identity = identity(config)
    zoo_identity["dataset"] = {"source": dataset.source, "fingerprint": dataset.fingerprint}
    zoo_identity["shard"] = [index, SHARDS]
    path = pathlib.Path(shard_workdir(root, index, SHARDS))
    checkpoint.prepare_workdir(path, zoo_identity, to_json_dict(config), table)
    abstract = ZooRun(config, build_population(table[:1], config.population), dataset).abstract_state()
    model_bytes = sum(int(np.prod(a.shape[1:])) * np.dtype(a.dtype).itemsize for a in jax.tree.leaves(abstract))
    rows = max(1, BUILD_BLOCK_BYTES // model_bytes)
    model_ids = np.array([row["model_id"] for row in table])
    lines = []
    layout2 = hasattr(checkpoint, "open_writer")
    writer = checkpoint.open_writer(path, False) if layout2 else checkpoint.open_manager(path, False)
    for epoch in range(EPOCHS + 1):
        metrics = {name: rng.uniform(0, 1, len(table)).astype(np.float32) for name in checkpoint.METRIC_NAMES}
        metrics["diverged"] = np.zeros(len(table), bool)
        if layout2:  # block by block: the builder's memory is one block
            writer.begin(epoch, metrics)
            for start in range(0, len(table), rows):
                writer.write_models(epoch, start, noise_block(abstract, min(rows, len(table) - start), rng))
            writer.wait(epoch)
        else:  # layout 1: the whole epoch at once
            checkpoint.save_epoch(writer, epoch, noise_block(abstract, len(table), rng), metrics)
        lines += checkpoint.metrics_lines(epoch, model_ids, metrics)
    writer.close()
    checkpoint.rewrite_metrics_file(path, lines)
    return model_bytes


def read_one_model(workdir: pathlib.Path, models: int) -> float:
    """Median seconds to read one model's params at epoch 1, a fresh reader each time."""
    times = []
    for index in np.random.default_rng(1).integers(0, models, 5):
        start = time.perf_counter()
        reader = checkpoint.ZooCheckpoints(workdir)
        try:
            params = reader.params(EPOCHS, models=(int(index), int(index) + 1))
        except TypeError:  # before layout 2: the whole epoch's params
            params = jax.tree.map(lambda a, i=int(index): a[i : i + 1], reader.params(EPOCHS))
        assert jax.tree.leaves(params)[0].shape[0] == 1
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def size_of(path: pathlib.Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def bench_zoo(name: str, scratch: pathlib.Path, skip: set[str], train: bool, agreement_images: int = 0) -> None:
    config = zoo_config(name)
    models = config.population.num_seeds
    root = scratch / name
    shutil.rmtree(root, ignore_errors=True)
    dataset = load_dataset("mnist_5k", config.data.image_size, max_examples_per_split=120)
    rng = np.random.default_rng(0)
    start = time.perf_counter()
    model_bytes = [write_shard(zoo_config(name), root, index, dataset, rng) for index in range(SHARDS)][0]
    built = time.perf_counter() - start
    row = f"| {name} | {models:,} | {models * model_bytes / 2**30:.2f}"

    def report(command: str, seconds: float, peak: float | None) -> None:
        peak_text = f"{peak:.2f}" if peak is not None else "-"
        print(f"{row} | {on_disk} | {command} | {seconds:.3g} | {peak_text} |", flush=True)

    on_disk = "-"
    report("build shards (this process)", built, None)
    merge = timed_child(["jaxzoo.merge", "--workdir", str(root)])
    on_disk = f"{size_of(root / 'checkpoints' / str(EPOCHS)) / 2**30:.2f}"
    report("merge", *merge)
    shutil.rmtree(root / "shards")
    report("read one model's params", read_one_model(root, models), None)
    out = scratch / f"{name}_out"
    for fmt in ("vectors", "parquet", "trials"):
        if fmt in skip:
            continue
        shutil.rmtree(out, ignore_errors=True)
        report(
            f"export {fmt}", *timed_child(["jaxzoo.export", "--workdir", str(root), "--out", str(out), "--format", fmt])
        )
        if fmt == "trials" and "ingest" not in skip:
            ingested = scratch / f"{name}_ingested"
            shutil.rmtree(ingested, ignore_errors=True)
            source = out / config.name / "trials"
            report(
                "ingest trials", *timed_child(["jaxzoo.ingest", "--source", str(source), "--workdir", str(ingested)])
            )
            shutil.rmtree(ingested, ignore_errors=True)
    shutil.rmtree(out, ignore_errors=True)
    if "analyze" not in skip:
        images = ["--agreement_images", str(agreement_images)] if agreement_images else []
        report("analyze", *timed_child(["jaxzoo.analyze", "--workdir", str(root), *images]))
    if "benchmark" not in skip:
        report("benchmark", *timed_child(["jaxzoo.benchmark", "--workdir", str(root), "--out", str(scratch / "t3.md")]))
    if train:
        config_file = scratch / f"{name}_config.py"
        config_file.write_text(
            "import sys\n"
            f"sys.path.insert(0, {str(pathlib.Path(__file__).resolve().parent)!r})\n"
            "from bench_scale import zoo_config\n"
            f"def get_config():\n    return zoo_config({name!r})\n"
        )
        trained = scratch / f"{name}_trained"
        shutil.rmtree(trained, ignore_errors=True)
        report("train 1 epoch", *timed_child(["jaxzoo.train", f"--config={config_file}", "--workdir", str(trained)]))
        shutil.rmtree(trained, ignore_errors=True)
    shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--zoos", default="cnn_s_1k,cnn_s_16k", help="zoo names, comma-separated")
    parser.add_argument("--scratch", default="", help="a folder on a disk with room for two epochs of each zoo")
    parser.add_argument(
        "--skip", default="", help="commands to leave out: trials,vectors,parquet,ingest,analyze,benchmark"
    )
    parser.add_argument("--train", action="store_true", help="also time one real epoch of training")
    parser.add_argument(
        "--agreement_images", type=int, default=0, help="analyze's --agreement_images (0: every test image)"
    )
    args = parser.parse_args()
    scratch = pathlib.Path(args.scratch or tempfile.mkdtemp(prefix="jaxzoo-bench-scale-"))
    scratch.mkdir(parents=True, exist_ok=True)
    print(f"jax {jax.__version__}, {os.cpu_count()} cores; scratch {scratch}\n")
    print("| zoo | models | state per epoch GiB | epoch on disk GiB | command | seconds | peak RSS GiB |")
    print("|---|---:|---:|---:|---|---:|---:|")
    for name in args.zoos.split(","):
        bench_zoo(name, scratch, set(filter(None, args.skip.split(","))), args.train, args.agreement_images)


if __name__ == "__main__":
    main()
