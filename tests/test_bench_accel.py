"""Smoke test of scripts/bench_accel.py: the tiny mode runs end to end and writes sane figures.

It runs the script as a user would, in a subprocess on CPU. To stay short on a 2-core machine
it compiles at XLA's backend optimisation level 0 and on one CPU device (compile dominates the
tiny mode; the figures are checked for form, not for speed).
"""

import json
import math
import os
import pathlib
import subprocess
import sys

REPO = pathlib.Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "bench_accel.py"


def cpu_env() -> dict:
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    env.pop("JAX_COMPILATION_CACHE_DIR", None)  # writing each program to the session's cache costs time here
    env["XLA_FLAGS"] = f"{env.get('XLA_FLAGS', '')} --xla_backend_optimization_level=0".strip()
    return env


def test_tiny_run_writes_every_figure(tmp_path):
    out = tmp_path / "accel.json"
    result = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--tiny",
            "--sizes",
            "1",
            "--skip_resnet",
            "--skip_bfloat16",
            "--skip_hyp",
            "--cpu_devices",
            "1",
            "--json",
            str(out),
        ],
        cwd=REPO,
        env=cpu_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    data = json.loads(out.read_text())
    assert data["mode"] == "tiny" and data["platform"] == "cpu"
    rows = data["zoo_rows"]
    seen = {(r["shape"], r["compute_dtype"], r["requested_models"]) for r in rows}
    assert seen == {("seed", "float32", 1)}  # the Hyp rows compile 8 programs: run by hand (docs/benchmarks.md)
    for r in rows:
        for key in ("model_samples_per_s", "train_tflops", "eval_model_images_per_s"):
            assert math.isfinite(r[key]) and r[key] > 0, (r["shape"], r["requested_models"], key, r[key])
        assert 0 < r["percent_of_dense"] < 100, r
        assert r["peak_memory_bytes"] > 0 and r["memory_kind"] == "host RSS"
    projection = data["projection"]
    assert math.isfinite(projection["total_min"]) and projection["total_min"] > 0
    assert projection["meets_goal"] == "n/a (CPU)"
    assert data["checkpoint"]["save_s"] > 0
    assert "## Projection" in result.stdout and "projected from M=1" in result.stdout
    assert "n/a (CPU)" in result.stdout and "total wall time" in result.stdout
    assert "| seed | float32 | 1 |" in result.stdout


def test_bad_flag_is_one_line_error():
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--no_such_flag"],
        cwd=REPO,
        env=cpu_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert result.stdout == ""
    assert "unrecognized arguments: --no_such_flag" in result.stderr.strip().splitlines()[-1]
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--sizes", "1,x"],
        cwd=REPO,
        env=cpu_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0 and "--sizes" in result.stderr.strip().splitlines()[-1]
