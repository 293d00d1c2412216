"""Compile once, reproduce anywhere: the persistent compile cache, the planner's choice of
programs, and merged programs that train bitwise the models of split ones."""

import json
import os
import pathlib
import subprocess
import sys

import jax
import numpy as np
import pytest
from conftest import small_zoo_config

from jaxzoo import compile_cache
from jaxzoo.config import base_config
from jaxzoo.config.paper_zoos import paper_zoo
from jaxzoo.data import load_dataset
from jaxzoo.models.cnn import ARCHS
from jaxzoo.training.plan import plan_groups
from jaxzoo.training.population import build_population, expand_grid
from jaxzoo.training.run import ZooRun

REPO = pathlib.Path(__file__).resolve().parents[1]

# Prints what `compile_cache.enable(argv[1] or None)` set, as JSON (a process of its own: the
# settings are process-wide).
ENABLE = """
import json, sys, jax
from jaxzoo import compile_cache
try:
    folder = compile_cache.enable(sys.argv[1] if len(sys.argv) > 1 else None)
except compile_cache.CompileCacheError as error:
    print(json.dumps({"error": str(error)}))
else:
    print(json.dumps({
        "folder": None if folder is None else str(folder),
        "jax_dir": jax.config.jax_compilation_cache_dir,
        "max_size": jax.config.jax_compilation_cache_max_size,
        "min_seconds": jax.config.jax_persistent_cache_min_compile_time_secs,
        "name": compile_cache.folder_name(),
    }))
"""


def enable_in_child(tmp_path, *args, **env) -> dict:
    clean = {k: v for k, v in os.environ.items() if k not in ("JAX_COMPILATION_CACHE_DIR", compile_cache.ENV)}
    clean.update({"XDG_CACHE_HOME": str(tmp_path / "xdg"), **env})
    out = subprocess.run(
        [sys.executable, "-c", ENABLE, *args], env=clean, capture_output=True, text=True, check=True, cwd=REPO
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_cache_settings_default_flag_environment_and_off(tmp_path):
    default = enable_in_child(tmp_path)
    name = default["name"]
    assert default["folder"] == str(tmp_path / "xdg" / "jaxzoo" / "compile" / name) == default["jax_dir"]
    assert name.startswith(f"jax{jax.__version__}-") and "-cpu-cpu-" in name  # versions, platform, device kind
    assert default["max_size"] == 4 << 30 and default["min_seconds"] == 0.0
    assert not (tmp_path / "xdg").exists()  # nothing is written before the first compilation
    assert enable_in_child(tmp_path, str(tmp_path / "mine"))["folder"] == str(tmp_path / "mine" / name)
    from_env = enable_in_child(tmp_path, **{compile_cache.ENV: str(tmp_path / "env")})
    assert from_env["folder"] == str(tmp_path / "env" / name)
    assert enable_in_child(tmp_path, "off")["folder"] is None
    assert enable_in_child(tmp_path, **{compile_cache.ENV: "off"})["jax_dir"] is None
    assert enable_in_child(tmp_path, **{compile_cache.SIZE_ENV: "0.5"})["max_size"] == 1 << 29
    own = enable_in_child(tmp_path, "off", JAX_COMPILATION_CACHE_DIR=str(tmp_path / "jax"))  # the user's JAX setting
    assert own["folder"] == own["jax_dir"] == str(tmp_path / "jax")
    (tmp_path / "a_file").write_text("")
    refused = enable_in_child(tmp_path, str(tmp_path / "a_file" / "cache"))["error"]
    assert "cannot be written" in refused and "--compile_cache" in refused
    assert "is not a size" in enable_in_child(tmp_path, **{compile_cache.SIZE_ENV: "lots"})["error"]
    (tmp_path / "ro").mkdir(mode=0o500)
    if not os.access(tmp_path / "ro", os.W_OK):  # root writes anywhere: no read-only folder to test there
        assert enable_in_child(tmp_path, XDG_CACHE_HOME=str(tmp_path / "ro"))["folder"] is None  # default: off


def test_another_cpu_kind_gets_another_folder(monkeypatch):
    here = compile_cache.folder_name()
    monkeypatch.setattr(compile_cache, "cpu_features", lambda: "fpu sse2")  # a CPU without AVX
    assert compile_cache.folder_name() != here
    assert compile_cache.folder_name().rsplit("-", 1)[0] == here.rsplit("-", 1)[0]


def run_train(workdir, cache, *extra):
    env = {k: v for k, v in os.environ.items() if k != "JAX_COMPILATION_CACHE_DIR"}
    args = [
        "--config=configs/quickstart.py",
        "--config.data.max_examples_per_split=60",
        "--config.training.num_epochs=1",
        "--config.population.num_seeds=1",
        "--config.population.activation=('tanh','relu')",
        "--config.runtime.progress=False",
        f"--compile_cache={cache}",
        f"--workdir={workdir}",
        *extra,
    ]
    return subprocess.Popen(
        [sys.executable, "-m", "jaxzoo.train", *args], cwd=REPO, env=env, stderr=subprocess.PIPE, text=True
    )


def cache_note(stderr: str) -> tuple[int, int]:
    """'(hits of requests from the compile cache)' of the log -> (hits, requests)."""
    line = next(line for line in stderr.splitlines() if "from the compile cache" in line)
    hits, requests = line.rsplit("(", 1)[1].split(" from")[0].split(" of ")
    return int(hits), int(requests)


@pytest.mark.slow
def test_concurrent_runs_share_the_cache_and_a_second_run_compiles_nothing(tmp_path):
    cache = tmp_path / "cache"
    first = [run_train(tmp_path / f"zoo{i}", cache) for i in range(2)]  # two job-array tasks at once
    errors = [p.communicate(timeout=600)[1] for p in first]
    assert all(p.returncode == 0 for p in first), errors[0][-2000:]
    hits, requests = cache_note(errors[0])
    assert requests > 0 and hits < requests
    folders = list(cache.iterdir())
    assert [f.name for f in folders] == [compile_cache.folder_name()] and any(folders[0].iterdir())
    again = run_train(tmp_path / "zoo2", cache)  # a new workdir: every program comes from the cache
    err = again.communicate(timeout=600)[1]
    assert again.returncode == 0, err[-2000:]
    assert cache_note(err) == (requests, requests)
    off = run_train(tmp_path / "zoo3", "off")
    err = off.communicate(timeout=600)[1]
    assert off.returncode == 0 and "from the compile cache" not in err
    rows = lambda workdir: (workdir / "metrics.jsonl").read_text()
    assert rows(tmp_path / "zoo0") == rows(tmp_path / "zoo2") == rows(tmp_path / "zoo3")


def hyp_population(config):
    return build_population(expand_grid(config.population, config.seed), config.population)


def test_the_planner_merges_for_small_zoos_and_splits_large_ones():
    small = small_zoo_config()  # 32 models, 120 images, 2 epochs, tanh/relu, dropout 0/0.5
    population = hyp_population(small)
    plan = plan_groups(small, population, ARCHS["cnn_s"], 1, 120)
    assert plan.merged == ("activation", "dropout")
    programs, compile_s, train_s = plan.estimates[plan.merged]
    assert programs < plan.estimates[()][0] and compile_s + train_s < sum(plan.estimates[()][1:])
    assert "activation+dropout computed per model (auto)" in plan.describe()

    large = paper_zoo("mnist_hyp10_fix")  # 2,560 models, 50 epochs on 50,000 images
    population = hyp_population(large)
    plan = plan_groups(large, population, ARCHS["cnn_s"], 1, 50_000)
    assert plan.merged == () and "every static factor compiled apart (auto)" in plan.describe()
    assert set(plan.estimates) == {(), ("activation",), ("dropout",), ("activation", "dropout")}

    large.runtime.group_programs = "merged"
    assert plan_groups(large, population, ARCHS["cnn_s"], 1, 50_000).merged == ("activation", "dropout")
    small.runtime.group_programs = "split"
    assert plan_groups(small, hyp_population(small), ARCHS["cnn_s"], 1, 120).merged == ()
    small.runtime.group_programs = "auto"
    assert plan_groups(small, hyp_population(small), None, 1, 120).merged == ()  # a custom module: one activation each
    seed = base_config()  # one activation, no dropout: nothing to merge
    assert plan_groups(seed, hyp_population(seed), ARCHS["cnn_s"], 1, 120).merged == ()


def train_run(config, group_programs: str, chunk_size: int) -> tuple[ZooRun, list, list]:
    config = config.copy_and_resolve_references()
    config.runtime.group_programs, config.runtime.chunk_size = group_programs, chunk_size
    dataset = load_dataset("mnist_5k", 28, max_examples_per_split=config.data.max_examples_per_split)
    run = ZooRun(config, hyp_population(config), dataset)
    state = run.init_state()
    states, metrics = [], [run.initial_epoch(state)]
    for epoch in (1, 2):
        state, epoch_metrics = run.train_epoch(state, epoch, None)
        states.append(jax.tree.map(np.asarray, state))
        metrics.append(epoch_metrics)
    return run, states, metrics


def test_merged_programs_train_bitwise_the_models_of_split_ones():
    """ReLU, leaky ReLU, sigmoid and GELU, Adam and AdamW, dropout 0 and 0.5: per optimizer one
    program for the first three and one for GELU (merged, 5 models per call) against one per
    activation, optimizer and dropout (split)."""
    config = small_zoo_config(
        activation=("relu", "leakyrelu", "sigmoid", "gelu"),
        optimizer=("adam", "adamw"),
        init=("kaiming_uniform",),
        num_seeds=1,
    )
    config.data.max_examples_per_split = 60
    merged_run, merged, merged_metrics = train_run(config, "merged", 5)
    split_run, split, split_metrics = train_run(config, "split", 0)
    assert (len(merged_run.groups), len(split_run.groups)) == (4, 16)
    assert {group.spec.activations for group in merged_run.groups} == {
        ("gelu",),
        (None, "leakyrelu", "relu", "sigmoid"),
    }
    for got, want in zip(merged, split):
        assert jax.tree.structure(got) == jax.tree.structure(want)
        for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
            np.testing.assert_array_equal(a, b)
    for got, want in zip(merged_metrics, split_metrics):
        assert got.keys() == want.keys()
        for name in want:
            np.testing.assert_array_equal(got[name], want[name])
    dropped = merged_run.population.arrays["dropout"] > 0
    assert dropped.any() and not dropped.all()
