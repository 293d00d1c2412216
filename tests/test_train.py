"""End-to-end training on the embedded data: invariance, divergence, resume, workdir safety."""

import json
import pathlib
import signal
import subprocess
import sys

import jax
import numpy as np
import pytest
from conftest import small_zoo_config

from jaxzoo.config import ConfigError
from jaxzoo.train import train_and_evaluate
from jaxzoo.zoo import checkpoint

REPO = pathlib.Path(__file__).resolve().parents[1]
# The model followed alone and inside populations (model 27 of small_zoo_config's table).
FOLLOWED = dict(activation=("relu",), init=("xavier_normal",), optimizer=("sgd",), dropout=(0.5,))


def params_of(workdir, model_index, epoch=None):
    _, state = checkpoint.load_state(workdir, epoch)
    return jax.tree.map(lambda a: np.asarray(a)[model_index], state["params"])


def metrics_rows(workdir):
    return checkpoint.read_metrics(workdir)


@pytest.fixture(scope="module")
def population_run(tmp_path_factory):
    """32 mixed models (activations, inits, optimizers, dropout, seeds) in chunks of 8."""
    workdir = tmp_path_factory.mktemp("population")
    config = small_zoo_config()
    config.runtime.chunk_size = 8
    train_and_evaluate(config, workdir)
    return workdir, json.loads((workdir / "models.json").read_text())


def followed_index(table):
    want = {"activation": "relu", "init": "xavier_normal", "optimizer": "sgd", "dropout": 0.5, "seed": 2}
    return next(i for i, row in enumerate(table) if all(row[k] == v for k, v in want.items()))


def test_workdir_layout_and_metrics(population_run):
    workdir, table = population_run
    assert len(table) == 32
    rows = metrics_rows(workdir)
    assert len(rows) == 32 * 3  # epochs 0, 1, 2
    assert {r["epoch"] for r in rows} == {0, 1, 2}
    keys = {"train_loss", "train_acc", "val_loss", "val_acc", "test_loss", "test_acc", "diverged"}
    assert keys <= set(rows[0])
    epoch0 = [r for r in rows if r["epoch"] == 0]
    assert all(0.0 <= r["test_acc"] <= 1.0 for r in epoch0)
    final = [r for r in rows if r["epoch"] == 2 and not r["diverged"]]
    assert np.mean([r["train_acc"] for r in final]) > np.mean([r["train_acc"] for r in epoch0])
    config = json.loads((workdir / "config.json").read_text())
    assert config["config"]["population"]["activation"] == ["tanh", "relu"]
    assert sorted(p.name for p in (workdir / "checkpoints").iterdir() if p.name.isdigit()) == ["0", "1", "2"]


def test_population_invariance_and_divergence_isolation(population_run, tmp_path):
    workdir, table = population_run
    index = followed_index(table)
    in_population = params_of(workdir, index)

    alone_config = small_zoo_config(**FOLLOWED, num_seeds=1, first_seed=2)
    train_and_evaluate(alone_config, tmp_path / "alone")
    alone = params_of(tmp_path / "alone", 0)

    # The same model next to one that blows up (lr 9.9): it must not notice.
    pair_factors = {**FOLLOWED, "init": ("uniform", "xavier_normal")}
    pair_config = small_zoo_config(**pair_factors, num_seeds=1, first_seed=2, lr=(1e-3, 9.9))
    train_and_evaluate(pair_config, tmp_path / "pair")
    pair_table = json.loads((tmp_path / "pair" / "models.json").read_text())
    healthy = next(i for i, r in enumerate(pair_table) if r["lr"] == 1e-3 and r["init"] == "xavier_normal")
    next_to_divergent = params_of(tmp_path / "pair", healthy)

    for a, b, c in zip(jax.tree.leaves(alone), jax.tree.leaves(in_population), jax.tree.leaves(next_to_divergent)):
        np.testing.assert_array_equal(b, a)  # bitwise: a model's numbers are its own
        np.testing.assert_array_equal(c, a)
    initial = params_of(tmp_path / "alone", 0, epoch=0)
    assert np.abs(alone["conv0"]["kernel"] - initial["conv0"]["kernel"]).max() > 1e-3  # it trained

    rows = [r for r in metrics_rows(tmp_path / "pair") if r["epoch"] == 2]
    flagged = {pair_table[r["model_id"]]["lr"] for r in rows if r["diverged"]}
    assert flagged == {9.9}
    assert all(r["test_acc"] is not None and r["train_loss"] is not None for r in rows if not r["diverged"])


def run_cli(*args, **kwargs):
    return subprocess.run(
        [sys.executable, "-m", "jaxzoo.train", *args], cwd=REPO, capture_output=True, text=True, timeout=600, **kwargs
    )


CLI_ZOO = [
    "--config",
    "configs/quickstart.py",
    "--config.data.max_examples_per_split=200",
    "--config.training.num_epochs=3",
    "--config.population.num_seeds=2",
    "--config.population.activation=('tanh','relu')",
    "--config.runtime.progress=False",
]


@pytest.fixture(scope="module")
def cli_full_run(tmp_path_factory):
    """The CLI zoo trained uninterrupted on one device."""
    workdir = tmp_path_factory.mktemp("cli") / "full"
    result = run_cli(*CLI_ZOO, "--workdir", str(workdir))
    assert result.returncode == 0, result.stderr[-2000:]
    return workdir


# Runs the train CLI and SIGKILLs it at a fixed point: right after epoch 1's checkpoint is
# committed (before its metrics rows are written), or in the middle of epoch 3's training.
KILLED_RUN = """
import os, signal, sys
from absl import app
from jaxzoo import train
from jaxzoo.training import run
from jaxzoo.zoo import checkpoint

point = sys.argv.pop(1)
wait_for_save, train_chunk_epoch = checkpoint.wait_for_save, run.train_chunk_epoch

def commit_then_die(manager, epoch):
    wait_for_save(manager, epoch)
    if point == "after_commit" and epoch == 1:
        os.kill(os.getpid(), signal.SIGKILL)

def train_then_die(fns, state, factors, images, labels, epoch, *args, **kwargs):
    result = train_chunk_epoch(fns, state, factors, images, labels, epoch, *args, **kwargs)
    if point == "mid_epoch" and epoch == 3:
        os.kill(os.getpid(), signal.SIGKILL)
    return result

checkpoint.wait_for_save, run.train_chunk_epoch = commit_then_die, train_then_die
app.run(train.main, flags_parser=train.parse_flags)
"""


@pytest.mark.slow
@pytest.mark.parametrize("point", ["after_commit", "mid_epoch"])
def test_sigkill_then_resume_equals_uninterrupted(cli_full_run, tmp_path, point):
    killed = tmp_path / "killed"
    proc = subprocess.run(
        [sys.executable, "-c", KILLED_RUN, point, *CLI_ZOO, "--workdir", str(killed)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    saved = checkpoint.saved_epochs(killed / "checkpoints")
    # An epoch's checkpoint is written while the next one trains, and recorded once committed:
    # killed in epoch 3, epoch 2's checkpoint may or may not be complete, its rows are not there.
    assert saved == [0, 1] if point == "after_commit" else saved in ([0, 1], [0, 1, 2])
    assert {row["epoch"] for row in metrics_rows(killed)} == ({0} if point == "after_commit" else {0, 1})

    resumed = run_cli(*CLI_ZOO, "--workdir", str(killed))
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"resuming after epoch {saved[-1]}" in resumed.stderr
    for i in range(16):
        for a, b in zip(jax.tree.leaves(params_of(cli_full_run, i)), jax.tree.leaves(params_of(killed, i))):
            np.testing.assert_array_equal(b, a)
    full_rows, resumed_rows = metrics_rows(cli_full_run), metrics_rows(killed)
    assert len(resumed_rows) == len(full_rows) == 16 * 4
    assert resumed_rows == full_rows

    again = run_cli(*CLI_ZOO, "--workdir", str(killed))  # complete: nothing more to do
    assert again.returncode == 0 and metrics_rows(killed) == full_rows


@pytest.mark.slow
def test_any_layout_gives_bitwise_the_same_models(cli_full_run, tmp_path):
    """3 (fake CPU) devices, 6 models and 7 steps per call, the state kept on the devices and
    every static factor compiled apart: bitwise the params, Adam and SGD states and metrics of
    the default run (one device per core, merged programs, the planner's chunks).

    Before, Adam models drifted with the device count (XLA turned Adam's bias-correction
    division into a reciprocal multiplication on one device and not on two), train metrics with
    the steps per call and evaluation metrics with the chunk size.
    """
    result = run_cli(
        *CLI_ZOO,
        "--cpu_devices=3",
        "--config.runtime.chunk_size=6",
        "--config.runtime.steps_per_call=7",
        "--config.runtime.state_placement=device",
        "--config.runtime.group_programs=split",
        "--workdir",
        str(tmp_path / "other"),
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "on 3 device(s)" in result.stderr and "4 group(s) compiled apart, 4 chunk(s) of up to 6" in result.stderr
    for epoch in range(4):
        want, got = (checkpoint.load_state(workdir, epoch)[1] for workdir in (cli_full_run, tmp_path / "other"))
        assert jax.tree.structure(want) == jax.tree.structure(got)
        for a, b in zip(jax.tree.leaves(want), jax.tree.leaves(got)):
            assert a.dtype == b.dtype and np.array_equal(a, b, equal_nan=True), epoch
    assert metrics_rows(tmp_path / "other") == metrics_rows(cli_full_run)
    table = json.loads((cli_full_run / "models.json").read_text())
    adam = next(i for i, row in enumerate(table) if row["optimizer"] == "adam")
    moved = params_of(cli_full_run, adam)["conv0"]["kernel"] - params_of(cli_full_run, adam, epoch=0)["conv0"]["kernel"]
    assert np.abs(moved).max() > 1e-4  # Adam models trained (they are the ones that drifted)


def test_other_zoo_in_workdir_is_refused_and_untouched(population_run):
    workdir, _ = population_run
    before = {p: p.stat().st_mtime_ns for p in workdir.rglob("*") if p.is_file()}
    other = small_zoo_config(lr=(1e-2,))
    with pytest.raises(checkpoint.WorkdirError, match=r"holds another zoo \(population.lr: \[0.001\] -> \[0.01\]\)"):
        train_and_evaluate(other, workdir)
    after = {p: p.stat().st_mtime_ns for p in workdir.rglob("*") if p.is_file()}
    assert before == after


def test_invalid_config_raises_before_writing(tmp_path):
    config = small_zoo_config(lr=(-1.0,))
    with pytest.raises(ConfigError):
        train_and_evaluate(config, tmp_path / "never")
    assert not (tmp_path / "never").exists()


def test_other_data_in_workdir_is_refused(population_run, monkeypatch):
    """Same config, but the data differs (another source or other files): refused."""
    import dataclasses

    from jaxzoo.training import trainer

    workdir, _ = population_run
    real_load = trainer.load_config_dataset
    monkeypatch.setattr(
        trainer,
        "load_config_dataset",
        lambda *a, **k: dataclasses.replace(real_load(*a, **k), source="raw", fingerprint="0123"),
    )
    with pytest.raises(checkpoint.WorkdirError, match=r"holds another zoo \(dataset.fingerprint: .* -> '0123'\)"):
        train_and_evaluate(small_zoo_config(), workdir)
