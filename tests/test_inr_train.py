"""INR zoos: SIREN numerics, coordinate conventions, exact early stop, invariance, resume, CLI."""

import importlib.util
import json
import math
import pathlib
import shutil
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import inr_zoo_config, tiny_zoo_config

from jaxzoo.config import ConfigError
from jaxzoo.inr import siren
from jaxzoo.inr.config import base_inr_config, validate_inr
from jaxzoo.inr.zoo import read_inr_zoo
from jaxzoo.train import train_and_evaluate

CONFIGS = pathlib.Path(__file__).resolve().parents[1] / "configs"


def load_preset(name):
    spec = importlib.util.spec_from_file_location(name, CONFIGS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config()


def test_presets_validate_and_follow_their_sources():
    dws = load_preset("inr_dwsnets_mnist")
    nfn = {name: load_preset(f"inr_nfn_{name}") for name in ("mnist", "fashion", "cifar10")}
    for config in (dws, load_preset("inr_dwsnets_fmnist"), *nfn.values(), load_preset("inr_quickstart")):
        validate_inr(config)
        assert config.notes
    assert (dws.model.coordinates, dws.model.output_offset, dws.model.first_init, dws.model.bias_init) == (
        "xy",
        0.5,
        "sine",
        "zero",
    )
    assert (dws.training.lr, dws.training.num_steps, dws.training.target_psnr) == (5e-4, 1000, 40.0)
    for config in nfn.values():
        assert (config.model.coordinates, config.model.target_range, config.model.output_offset) == (
            "ij",
            "symmetric",
            0.0,
        )
    assert nfn["cifar10"].data.image_size == 32 and nfn["mnist"].images.count == 60000


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("model.arch", "mlp", "unknown model.arch"),
        ("training.steps_per_epoch", 7, "does not divide training.num_steps"),
        ("model.coordinates", "yx", "unknown model.coordinates"),
        ("images.splits", ("val",), "images.splits"),
        ("training.optimizer", "nosuch", "training.optimizer"),
        ("runtime.steps_per_call", 3, "does not divide training.steps_per_epoch"),
    ],
)
def test_bad_values_name_the_field(field, value, message):
    config = base_inr_config()
    section, name = field.split(".")
    config[section][name] = value
    with pytest.raises(ConfigError, match=message):
        validate_inr(config)


def test_polynomial_sine_and_its_derivative_match_jnp():
    z = jnp.linspace(-400.0, 400.0, 200_001, dtype=jnp.float32)
    assert float(jnp.max(jnp.abs(siren.fast_sin(z) - jnp.sin(z)))) < 5e-7
    grad = jax.vmap(jax.grad(siren.fast_sin))(z)
    assert float(jnp.max(jnp.abs(grad - jnp.cos(z)))) < 5e-7


def test_coordinate_conventions_on_a_non_square_grid():
    rows, cols = np.linspace(-1, 1, 3), np.linspace(-1, 1, 5)
    xy, ij = siren.coordinates(3, 5, "xy"), siren.coordinates(3, 5, "ij")
    for r in range(3):
        for c in range(5):
            assert np.allclose(xy[r * 5 + c], (cols[c], rows[r]))
            assert np.allclose(ij[r * 5 + c], (rows[r], cols[c]))
    # DWSNets builds its inputs as np.stack(np.meshgrid(x, y)) row-major: the same as 'xy'
    grid = np.stack(np.meshgrid(np.linspace(-1, 1, 5), np.linspace(-1, 1, 3)), axis=-1).reshape(-1, 2)
    assert np.allclose(grid, xy)


def numpy_reconstruction(params, index, height, width, convention, offset):
    """A SIREN drawn from its description with numpy (float64), on the convention's inputs."""
    lin_r, lin_c = np.linspace(-1, 1, height), np.linspace(-1, 1, width)
    r, c = np.meshgrid(lin_r, lin_c, indexing="ij")
    x = np.stack([c.ravel(), r.ravel()] if convention == "xy" else [r.ravel(), c.ravel()], -1)
    layers = sorted(params, key=lambda name: int(name[5:]))
    for name in layers[:-1]:
        x = np.sin(30.0 * (x @ params[name]["kernel"][index] + params[name]["bias"][index]))
    last = params[layers[-1]]
    return (x @ last["kernel"][index] + last["bias"][index] + offset).reshape(height, width, -1)


@pytest.mark.parametrize("fixture", ["inr_zoo", "inr_zoo_nfn"])
def test_asymmetric_digits_are_drawn_unflipped_and_untransposed(fixture, request):
    """Digits are asymmetric: the drawing matches the image, not its transpose or mirror."""
    zoo = read_inr_zoo(request.getfixturevalue(fixture))
    params, metrics = zoo.params(), zoo.metrics()
    peak = 1.0 if zoo.config.model.target_range == "unit" else 2.0
    for index in range(0, len(zoo.table), 7):
        image = zoo.target_images(np.array([index]))[0]
        drawn = numpy_reconstruction(
            params, index, 28, 28, zoo.config.model.coordinates, zoo.config.model.output_offset
        )
        psnr = lambda target: 10 * math.log10(peak**2 / np.mean((drawn - target) ** 2))
        assert psnr(image) == pytest.approx(metrics["psnr"][index], abs=0.01)
        for wrong in (image.transpose(1, 0, 2), image[::-1], image[:, ::-1]):
            assert psnr(wrong) < psnr(image) - 3.0


def test_early_stop_freezes_weights_and_optimizer_state_exactly(inr_zoo):
    zoo = read_inr_zoo(inr_zoo)
    per_epoch = zoo.config.training.steps_per_epoch
    epochs = zoo.epochs()
    states = {epoch: zoo.checkpoints.state(epoch)[1] for epoch in epochs}
    stopped_at = states[epochs[-1]]["stopped_at"]
    assert (stopped_at >= 0).any() and (stopped_at <= per_epoch * (len(epochs) - 2)).any()
    target = zoo.config.training.target_psnr
    for model in np.flatnonzero(stopped_at >= 0):
        first = math.ceil(stopped_at[model] / per_epoch)  # the first checkpoint after the stop
        weights = lambda state: {"params": state["params"], "opt_state": state["opt_state"]}
        frozen = jax.tree.map(lambda a: a[model], weights(states[first]))
        for epoch in epochs[first:]:
            later = jax.tree.map(lambda a: a[model], weights(states[epoch]))
            jax.tree.map(np.testing.assert_array_equal, later, frozen)
        assert zoo.metrics(epochs[-1])["psnr"][model] >= target
        assert zoo.metrics(epochs[-1])["steps_to_target"][model] == stopped_at[model]
        if first >= 1 and stopped_at[model] > per_epoch * (first - 1):  # it stopped after that epoch's start
            assert zoo.metrics(first - 1)["psnr"][model] < target
    running = np.flatnonzero(stopped_at < 0)
    assert all(
        not np.array_equal(
            states[epochs[-2]]["params"]["layer0"]["kernel"][m], states[epochs[-1]]["params"]["layer0"]["kernel"][m]
        )
        for m in running
    )


def test_a_model_does_not_depend_on_its_population(inr_zoo, tmp_path):
    """Images 4..7 alone, in chunks of 2 and 10 steps per call, fit as in the 24-image zoo."""
    config = inr_zoo_config("dwsnets")
    config.images.first, config.images.count = 4, 4
    config.runtime.chunk_size, config.runtime.steps_per_call = 2, 10
    train_and_evaluate(config, tmp_path / "part")
    part, whole = read_inr_zoo(tmp_path / "part"), read_inr_zoo(inr_zoo)
    rows = [row["model_id"] for row in whole.table if 4 <= row["image"] < 8]
    assert [row["image"] for row in part.table] == [whole.table[r]["image"] for r in rows]
    for epoch in part.epochs():
        a, b = part.params(epoch), jax.tree.map(lambda x: x[rows], whole.params(epoch))
        jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=0, atol=1e-6), a, b)
    # the seed-1 copy of an image starts elsewhere; with shared_init one seed starts all images alike
    fresh = whole.params(0)["layer0"]["kernel"]
    assert not np.allclose(fresh[0], fresh[24]) and not np.allclose(fresh[0], fresh[1])


def test_shared_init_starts_every_image_of_a_seed_alike(tmp_path):
    config = inr_zoo_config("nfn")
    config.images.count, config.population.shared_init = 3, True
    config.training.num_steps, config.training.steps_per_epoch = 20, 20
    train_and_evaluate(config, tmp_path / "shared")
    fresh = read_inr_zoo(tmp_path / "shared").params(0)
    for leaf in jax.tree.leaves(fresh):
        np.testing.assert_array_equal(leaf[0], leaf[1])
        assert not np.array_equal(leaf[0], leaf[3])  # seed 1


def test_resume_after_a_lost_epoch_equals_the_uninterrupted_run(inr_zoo, tmp_path):
    workdir = tmp_path / "zoo"
    shutil.copytree(inr_zoo, workdir)
    for epoch in ("2", "3"):
        shutil.rmtree(workdir / "checkpoints" / epoch)
    result = train_and_evaluate(inr_zoo_config("dwsnets"), workdir)
    resumed, whole = read_inr_zoo(workdir), read_inr_zoo(inr_zoo)
    assert resumed.epochs() == whole.epochs()
    jax.tree.map(np.testing.assert_array_equal, resumed.checkpoints.state(3)[1], whole.checkpoints.state(3)[1])
    np.testing.assert_array_equal(result["metrics"]["psnr"], whole.metrics(3)["psnr"])
    lines = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    assert len(lines) == 4 * len(whole.table) and {"psnr", "steps_to_target", "reached"} <= set(lines[-1])


def test_diverged_models_are_flagged(inr_zoo):
    from jaxzoo.inr.train import InrRun

    zoo = read_inr_zoo(inr_zoo)
    run = InrRun(zoo.config, zoo.table, zoo.images)
    state = zoo.checkpoints.state(1)[1]
    state["params"]["layer1"]["kernel"][5, 0, 0] = np.nan
    metrics = run.metrics(state, 1)
    assert metrics["diverged"][5] and metrics["diverged"].sum() == 1


def test_quickstart_recipe_reaches_its_target_on_most_images(tmp_path):
    config = load_preset("inr_quickstart")
    config.images.count = 64
    config.runtime.progress = False
    result = train_and_evaluate(config, tmp_path / "quick")
    metrics = result["metrics"]
    assert metrics["reached"].mean() >= 0.9
    assert np.nanmedian(metrics["steps_to_target"]) < config.training.num_steps


def test_cli_refuses_bad_input_in_one_line_and_writes_nothing(tmp_path, inr_zoo):
    workdir = tmp_path / "never"
    for override, message in (
        ("--config.training.steps_per_epoch=7", "does not divide"),
        ("--config.images.first=99999", "images.first=99999"),
    ):
        run = subprocess.run(
            [
                sys.executable,
                "-m",
                "jaxzoo.train",
                "--config",
                str(CONFIGS / "inr_quickstart.py"),
                "--workdir",
                str(workdir),
                override,
            ],
            capture_output=True,
            text=True,
        )
        assert run.returncode == 2, run.stderr
        assert len(run.stderr.strip().splitlines()) == 1 and message in run.stderr
        assert not workdir.exists()
    # a workdir holding another zoo (another target) is refused before anything changes
    before = (inr_zoo / "config.json").read_text()
    config = inr_zoo_config("dwsnets")
    config.training.target_psnr = 30.0
    with pytest.raises(Exception, match="holds another zoo"):
        train_and_evaluate(config, inr_zoo)
    assert (inr_zoo / "config.json").read_text() == before
    with pytest.raises(Exception, match="holds an INR zoo and the config describes a classification zoo"):
        train_and_evaluate(tiny_zoo_config(), inr_zoo)


def test_job_array_shards_fit_the_same_zoo_and_merge_into_it(inr_zoo, tmp_path):
    """The 48-SIREN zoo as two job-array shards of 24, merged: every epoch's params, optimizer
    state and metrics as in the zoo fitted in one run, and the merged blocks are the shards'."""
    from jaxzoo.merge import merge

    for index in range(2):
        config = inr_zoo_config("dwsnets")
        config.num_shards, config.shard_index = 2, index
        train_and_evaluate(config, tmp_path / "zoo")
    assert merge(tmp_path / "zoo", log=None)["models"] == 48
    merged, whole = read_inr_zoo(tmp_path / "zoo"), read_inr_zoo(inr_zoo)
    assert merged.table == whole.table and merged.epochs() == whole.epochs()
    for epoch in whole.epochs():
        assert merged.checkpoints.stored_blocks(epoch) == [(0, 24), (24, 48)]
        jax.tree.map(
            lambda a, b: np.testing.assert_allclose(a, b, rtol=0, atol=1e-6),
            merged.checkpoints.state(epoch)[1],
            whole.checkpoints.state(epoch)[1],
        )
        np.testing.assert_allclose(merged.metrics(epoch)["psnr"], whole.metrics(epoch)["psnr"], rtol=1e-5)


@pytest.mark.slow
def test_two_processes_fit_one_inr_zoo(inr_zoo, tmp_path):
    """`--distributed` with two local processes, each fitting 24 of the 48 SIRENs into one workdir."""
    import socket

    config_file = tmp_path / "inr.py"
    config_file.write_text(
        f"import sys\nsys.path.insert(0, {str(pathlib.Path(__file__).resolve().parent)!r})\n"
        "from conftest import inr_zoo_config\n\ndef get_config():\n    return inr_zoo_config('dwsnets')\n"
    )
    with socket.socket() as s:
        s.bind(("localhost", 0))
        port = s.getsockname()[1]
    common = [f"--config={config_file}", "--workdir", str(tmp_path / "zoo"), "--distributed", "--num_processes=2"]
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "jaxzoo.train",
                *common,
                f"--coordinator_address=localhost:{port}",
                f"--process_id={i}",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    errors = [p.communicate(timeout=600)[1] for p in procs]
    assert all(p.returncode == 0 for p in procs), errors[0][-1500:] + errors[1][-1500:]
    assert "(process 1 of 2: 24)" in errors[1]
    fitted, whole = read_inr_zoo(tmp_path / "zoo"), read_inr_zoo(inr_zoo)
    assert fitted.checkpoints.stored_blocks(3) == [(0, 24), (24, 48)]
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=0, atol=1e-6), fitted.params(3), whole.params(3))
