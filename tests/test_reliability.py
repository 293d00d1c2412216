"""Damaged and edited workdirs, failed saves, model counts that do not divide the devices."""

import errno
import json
import os
import pathlib
import shutil
import subprocess
import sys

import jax
import numpy as np
import pytest
from conftest import array_files
from conftest import tiny_zoo_config as tiny_config

from jaxzoo.export import ExportError, export, read_zoo
from jaxzoo.train import train_and_evaluate
from jaxzoo.zoo import blocks, checkpoint

REPO = pathlib.Path(__file__).resolve().parents[1]


def copy_of(workdir: pathlib.Path, tmp_path: pathlib.Path) -> pathlib.Path:
    target = tmp_path / "copy"
    shutil.copytree(workdir, target)
    return target


def final_params(workdir):
    return checkpoint.load_state(workdir)[1]["params"]


def assert_same_tree(a, b, atol=0.0):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_allclose(x, y, rtol=0, atol=atol)


def test_damaged_newest_checkpoint_is_set_aside_and_retrained(tiny_zoo, tmp_path, caplog):
    """Zeroed array files of the newest epoch (every kind of damage at every epoch, by every
    command: tests/bad_inputs.py --survey): refused by export, set aside and retrained by train,
    bitwise as before."""
    workdir = copy_of(tiny_zoo, tmp_path)
    epoch_dir = workdir / "checkpoints" / "2"
    for path in array_files(epoch_dir):
        path.write_bytes(b"\0" * 16)
    damaged_bytes = {p.relative_to(epoch_dir): p.read_bytes() for p in epoch_dir.rglob("*") if p.is_file()}

    with pytest.raises(ExportError, match="damaged checkpoints .*epoch 2"):  # the seal shows zeroed arrays too
        export(workdir, tmp_path / "export", log=None)
    assert not (tmp_path / "export" / "test_zoo" / "vectors").exists()

    caplog.set_level("INFO", logger="jaxzoo")
    train_and_evaluate(tiny_config(), workdir)
    assert "checkpoint of epoch 2 is damaged" in caplog.text and "resuming after epoch 1" in caplog.text
    kept = workdir / "damaged" / "2"
    assert {p.relative_to(kept): p.read_bytes() for p in kept.rglob("*") if p.is_file()} == damaged_bytes
    assert_same_tree(final_params(workdir), final_params(tiny_zoo), atol=1e-6)
    assert len(checkpoint.read_metrics(workdir)) == len(checkpoint.read_metrics(tiny_zoo))
    export(workdir, tmp_path / "export2", formats="vectors", log=None)  # whole again


LAYOUT1_ZOO = pathlib.Path(__file__).resolve().parent / "fixtures" / "f4818c0" / "quickstart"
LAYOUT1_FLAGS = json.loads((LAYOUT1_ZOO.parent / "manifest.json").read_text())["zoos"]["quickstart"]["train"]


def test_damaged_middle_epoch_of_an_unsealed_zoo_sets_aside_it_and_every_later_one(tmp_path):
    """A zoo as older jaxzoo wrote it (layout 1, no seals: the f4818c0 fixture) with epoch 1's
    array file torn: train restores every unsealed epoch, seals epoch 0, retrains 1 and 2 (in
    blocks) as they were, to the ulps by which today's arithmetic differs from f4818c0's (Adam's
    bias correction, the activations' gradients: 3.7e-9 at most, measured). Sealed epochs
    damaged anywhere: tests/test_bad_inputs.py; the newest epoch: above."""
    workdir = shutil.copytree(LAYOUT1_ZOO, tmp_path / "zoo")
    before = checkpoint.ZooCheckpoints(LAYOUT1_ZOO).params(2)
    largest = max(array_files(workdir / "checkpoints" / "1"), key=lambda p: p.stat().st_size)
    largest.write_bytes(largest.read_bytes()[: largest.stat().st_size // 2])
    result = run_train(*LAYOUT1_FLAGS, "--workdir", str(workdir))
    assert result.returncode == 0, result.stderr[-2000:]
    assert all(checkpoint.is_sealed(workdir / "checkpoints" / str(epoch)) for epoch in range(3))
    assert sorted(p.name for p in (workdir / "damaged").iterdir()) == ["1", "2"]
    reader = checkpoint.ZooCheckpoints(workdir)
    assert [reader.layout(epoch) for epoch in reader.epochs()] == [1, 2, 2]
    assert_same_tree(reader.params(2), before, atol=1e-7)


def test_edited_config_json_is_refused_where_a_workdir_is_read(tiny_zoo, tmp_path):
    workdir = copy_of(tiny_zoo, tmp_path)
    path = workdir / "config.json"
    document = json.loads(path.read_text())
    document["config"]["data"]["name"] = "mnist"
    path.write_text(json.dumps(document))
    for read in (
        read_zoo,
        lambda w: export(w, tmp_path / "out", log=None),
        lambda w: train_and_evaluate(tiny_config(), w),
    ):
        with pytest.raises(
            checkpoint.WorkdirError, match=r"was edited after training \(data.name: 'mnist_5k' -> 'mnist'\)"
        ):
            read(workdir)
    document["identity"]["data"]["name"] = "mnist"  # identity edited too: its hash no longer matches
    path.write_text(json.dumps(document))
    with pytest.raises(checkpoint.WorkdirError, match="was edited after training"):
        read_zoo(workdir)
    assert not (tmp_path / "out").exists()


def run_train(*args, env=None, cwd=REPO):
    return subprocess.run(
        [sys.executable, "-m", "jaxzoo.train", *args], cwd=cwd, capture_output=True, text=True, timeout=600, env=env
    )


def test_failed_save_stops_at_that_epoch_and_metrics_match_the_checkpoints(tmp_path, monkeypatch):
    """A disk that fills up while epoch 1's blocks are written in the writer's thread."""
    real_write, calls = blocks.write_block, []

    def full_disk(epoch_dir, block, tree):
        calls.append(epoch_dir)
        if len(calls) == 2:  # epochs 0 and 1 write one block each
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(epoch_dir, block, tree)

    monkeypatch.setattr(blocks, "write_block", full_disk)
    workdir = tmp_path / "zoo"
    with pytest.raises(
        checkpoint.WorkdirError,
        match=r"saving the checkpoint of epoch 1 .* failed \(No space left on device\): free space",
    ):
        train_and_evaluate(tiny_config(), workdir)
    assert {row["epoch"] for row in checkpoint.read_metrics(workdir)} == {0}
    assert checkpoint.saved_epochs(workdir / "checkpoints") == [0]

    # Space freed: the same command resumes after epoch 0 (a new process, as a user reruns it),
    # and removes the half-written epoch 1.
    assert (workdir / "checkpoints" / f"{checkpoint.PARTIAL_PREFIX}1").is_dir()
    config_file = tmp_path / "tiny.py"
    config_file.write_text(
        f"import sys\nsys.path.insert(0, {str(REPO / 'tests')!r})\nfrom conftest import tiny_zoo_config as get_config\n"
    )
    rerun = run_train(f"--config={config_file}", "--config.runtime.progress=False", "--workdir", str(workdir))
    assert rerun.returncode == 0 and "resuming after epoch 0" in rerun.stderr, rerun.stderr[-2000:]
    assert [row["epoch"] for row in checkpoint.read_metrics(workdir)] == [0] * 4 + [1] * 4 + [2] * 4


TINY_CLI = [
    f"--config={REPO / 'configs' / 'quickstart.py'}",
    "--config.data.max_examples_per_split=60",
    "--config.training.num_epochs=1",
    "--config.runtime.progress=False",
]


@pytest.mark.slow
def test_model_counts_that_do_not_divide_the_devices(tmp_path):
    """5 models on 3 devices, and a job-array shard of 1 model on 3 devices, equal 1 device."""
    five = run_train(
        *TINY_CLI, "--config.population.max_models=5", "--cpu_devices=3", "--workdir", str(tmp_path / "five")
    )
    assert five.returncode == 0, five.stderr[-2000:]
    assert "5 models" in five.stderr and "on 3 device(s)" in five.stderr
    shard = run_train(
        *TINY_CLI,
        "--config.num_shards=64",
        "--config.shard_index=3",
        "--cpu_devices=3",
        "--workdir",
        str(tmp_path / "shards"),
    )
    assert shard.returncode == 0, shard.stderr[-2000:]
    assert "python -m jaxzoo.merge --workdir" in shard.stderr

    config = tiny_config(num_epochs=1)  # the same 5 models in the test process (1 device)
    for field in ("activation", "init", "optimizer", "lr", "weight_decay", "dropout", "num_seeds"):
        config.population[field] = {
            "activation": ("tanh", "relu", "sigmoid", "gelu"),
            "init": ("kaiming_uniform", "kaiming_normal"),
            "optimizer": ("adam", "sgd"),
            "lr": (1e-3,),
            "weight_decay": (1e-4,),
            "dropout": (0.0,),
            "num_seeds": 4,
        }[field]
    config.name = "quickstart"
    config.population.max_models = 5
    train_and_evaluate(config, tmp_path / "one")
    flat = lambda params: np.stack(
        [
            np.concatenate([np.ravel(a[i]) for a in jax.tree.leaves(params)])
            for i in range(len(jax.tree.leaves(params)[0]))
        ]
    )
    want = flat(final_params(tmp_path / "one"))
    got = flat(final_params(tmp_path / "five"))
    relative = np.linalg.norm(got - want, axis=1) / np.linalg.norm(want, axis=1)
    assert got.shape[0] == 5 and relative.max() < 1e-3, relative
    one = flat(final_params(tmp_path / "shards" / "shards" / "3-of-64"))
    assert one.shape[0] == 1 and np.linalg.norm(one[0] - want[3]) / np.linalg.norm(want[3]) < 1e-3


@pytest.mark.slow
def test_default_workdir_and_closing_lines(tmp_path):
    result = run_train(*TINY_CLI, "--config.population.max_models=2", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    workdir = tmp_path / "runs" / "quickstart"
    assert (workdir / "metrics.jsonl").exists()
    lines = result.stderr.strip().splitlines()
    assert f"writing to {workdir}" in result.stderr
    assert lines[-3].endswith(f"zoo ready in {workdir}; next:")
    assert lines[-2].endswith(f"python -m jaxzoo.analyze --workdir {workdir}")
    assert lines[-1].endswith(f"python -m jaxzoo.export --workdir {workdir} --out exports")


@pytest.mark.slow
def test_a_process_waiting_for_missing_peers_says_so_and_gives_up(tmp_path):
    import socket
    import time

    with socket.socket() as s:
        s.bind(("localhost", 0))
        port = s.getsockname()[1]
    start = time.time()
    result = run_train(
        *TINY_CLI,
        "--workdir",
        str(tmp_path / "zoo"),
        "--distributed",
        f"--coordinator_address=localhost:{port}",
        "--num_processes=2",
        "--process_id=0",
        "--distributed_timeout=3",
    )
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 2, result.stderr[-2000:]
    assert f"waiting up to 3 s for 2 processes at localhost:{port} (this is process 0" in lines[0]
    assert lines[1].startswith("jaxzoo: error: --distributed: not every process joined within 3 s")
    assert time.time() - start < 60 and not (tmp_path / "zoo").exists()
