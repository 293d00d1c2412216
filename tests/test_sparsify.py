"""Variational Dropout twins: the ARD math, the population run, resume, export to PyTorch."""

import json
import math
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import small_zoo_config

from jaxzoo import export
from jaxzoo.data import load_dataset, normalise
from jaxzoo.models import ard
from jaxzoo.models.cnn import ARCHS, CNN, init_params
from jaxzoo.sparsify import SparsifyError, TwinRun, sparsify
from jaxzoo.train import train_and_evaluate
from jaxzoo.training.population import build_population, expand_grid
from jaxzoo.training.run import ZooRun, train_chunk_epoch
from jaxzoo.training.schedules import schedule_options, scheduled_lr
from jaxzoo.zoo import checkpoint


def cnn_params(seed=0):
    model = CNN(ARCHS["cnn_s"], ("tanh",), use_dropout=False)
    template = model.init(jax.random.key(0), jnp.zeros((1, 28, 28, 1)), 0, 0.0, train=False)["params"]
    return init_params(template, jax.random.key(seed), 0, ("kaiming_uniform",))


def test_log_alpha_and_kl_against_hand_computed_values():
    w = jnp.array([0.5, 1e-3, 2.0])
    la = ard.log_alpha(jnp.full(3, -10.0), w, "conv")
    expected = [-10 - 2 * math.log(0.5), -10 - 2 * math.log(1e-3), -10 - 2 * math.log(2.0)]
    np.testing.assert_allclose(la, np.clip(expected, -8, 8), rtol=1e-6)  # -8.61 clamps to -8 for conv
    assert float(ard.log_alpha(jnp.array([-10.0]), jnp.array([2.0]), "fc")[0]) == pytest.approx(-10.0)  # fc clamp
    kl = ard.kl_approximation(jnp.array([0.0, 2.0]))
    k1, k2, k3 = 0.63576, 1.8732, 1.48695
    hand = -sum(k1 / (1 + math.exp(-(k2 + k3 * a))) - 0.5 * math.log1p(math.exp(-a)) - k1 for a in (0.0, 2.0))
    assert float(kl) == pytest.approx(hand, rel=1e-6)
    assert float(ard.kl_weight(-1, 25)) == pytest.approx(-0.0004) and float(ard.kl_weight(24, 25)) == pytest.approx(
        0.0096
    )
    assert float(ard.kl_weight(2, 3)) == pytest.approx(0.02 / 3) and float(ard.kl_weight(500, 3)) == 1.0


def test_stochastic_forward_at_init_matches_deterministic():
    params = ard.from_source(cnn_params())
    x = np.random.default_rng(0).normal(size=(8, 28, 28, 1)).astype(np.float32)
    deterministic = CNN(ARCHS["cnn_s"], ("tanh",), use_dropout=False).apply(
        {"params": ard.masked_params(params)}, x, 0, 0.0, train=False
    )
    model = ard.StochasticCNN(ARCHS["cnn_s"], ("tanh",))
    draws = jnp.stack([model.apply({}, params, x, 0, rngs={"noise": jax.random.key(k)}) for k in range(32)])
    rms = lambda a: float(jnp.sqrt(jnp.mean(a**2)))
    # sigma^2 = e^-10 per weight: each draw is close, and the draws average to the deterministic net
    assert rms(draws[0] - deterministic) < 0.1 * rms(deterministic)
    assert rms(draws.mean(0) - deterministic) < 0.03 * rms(deterministic)
    assert float((draws[0].argmax(-1) == deterministic.argmax(-1)).mean()) >= 0.75
    noisier = jax.tree.map(lambda a: a, params)
    noisier["fc0"]["log_sigma2"] = jnp.zeros_like(noisier["fc0"]["log_sigma2"])
    noisy = model.apply({}, noisier, x, 0, rngs={"noise": jax.random.key(1)})
    assert rms(noisy - deterministic) > 3 * rms(draws[0] - deterministic)  # the noise follows sigma


def test_mask_removes_exactly_the_weights_over_threshold():
    params = ard.from_source(cnn_params(1))
    rng = np.random.default_rng(2)
    for name in params:
        params[name]["log_sigma2"] = jnp.asarray(rng.uniform(-12, 6, params[name]["kernel"].shape), jnp.float32)
    masked = ard.masked_params(params)
    total = dropped = 0
    for name, layer in params.items():
        kind = "conv" if name.startswith("conv") else "fc"
        over = np.asarray(ard.log_alpha(layer["log_sigma2"], layer["kernel"], kind)) >= 3
        np.testing.assert_array_equal(
            np.asarray(masked[name]["kernel"]) == 0, over | (np.asarray(layer["kernel"]) == 0)
        )
        np.testing.assert_array_equal(np.asarray(masked[name]["kernel"])[~over], np.asarray(layer["kernel"])[~over])
        total, dropped = total + over.size, dropped + over.sum()
    np.testing.assert_array_equal(masked["fc1"]["bias"], params["fc1"]["bias"])  # linear bias never masked
    assert total == 2416 and float(ard.sparsity(params)) == pytest.approx(dropped / 2416)
    assert 0 < dropped < total


@pytest.fixture(scope="module")
def twin(tmp_path_factory):
    """4 CNN-s models (2 seeds x Adam/SGD, tanh: two static groups to compile) trained 2 epochs on
    mnist_5k, then 3 epochs of VD."""
    root = tmp_path_factory.mktemp("twin")
    config = small_zoo_config(num_seeds=2, activation=("tanh",), dropout=(0.0,), init=("kaiming_uniform",))
    config.data.max_examples_per_split = 0
    train_and_evaluate(config, root / "source")
    sparsify(root / "source", root / "twin", epochs=3)
    return root / "source", root / "twin"


def test_sparsity_rises_and_accuracy_stays_near_the_source(twin):
    source, twin_dir = twin
    rows = checkpoint.read_metrics(twin_dir)
    by_epoch = {e: [r for r in rows if r["epoch"] == e] for e in range(4)}
    sparsity = [np.mean([r["sparsity"] for r in by_epoch[e]]) for e in range(4)]
    assert sparsity[3] > sparsity[0] + 0.05 and sparsity[3] > sparsity[1]
    source_acc = np.mean([r["test_acc"] for r in checkpoint.read_metrics(source) if r["epoch"] == 2])
    assert np.mean([r["test_acc"] for r in by_epoch[3]]) > source_acc - 0.05  # no collapse while sparsifying
    table = json.loads((twin_dir / "models.json").read_text())
    assert all(row["source_check"]["ok"] for row in table)
    assert all(row["source_check"]["test_loss_rel_gap"] < 0.01 for row in table)
    assert all(r["test_nll"] is not None for r in by_epoch[0])
    # The logged loss carries min(1, 0.01 * (epoch - 1) / n) * KL with n = this run's 3 epochs.
    for epoch in (0, 2):
        _, state = checkpoint.load_state(twin_dir, epoch)
        kl = np.asarray(jax.vmap(ard.kl_total)(state["params"]))
        logged = sorted(by_epoch[epoch], key=lambda r: r["model_id"])
        gap = np.array([r["test_loss"] - r["test_nll"] for r in logged])
        np.testing.assert_allclose(gap, 0.01 * (epoch - 1) / 3 * kl, rtol=2e-3)
    _, state = checkpoint.load_state(twin_dir)
    assert set(state["params"]["conv0"]) == {"kernel", "bias", "log_sigma2", "log_sigma2_bias"}


def test_twin_resumes_and_refuses_bad_sources(twin):
    source, twin_dir = twin
    sparsify(source, twin_dir, epochs=4)  # extends the finished twin by one epoch
    assert checkpoint.ZooCheckpoints(twin_dir).epochs() == [0, 1, 2, 3, 4]
    assert len(checkpoint.read_metrics(twin_dir)) == 4 * 5
    assert "source_check" in json.loads((twin_dir / "models.json").read_text())[0]
    with pytest.raises(SparsifyError, match="already a sparsified twin"):
        sparsify(twin_dir, twin_dir.parent / "twin_of_twin", epochs=1)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "jaxzoo.sparsify",
            "--workdir",
            str(twin_dir.parent / "nope"),
            "--out",
            str(twin_dir.parent / "x"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2 and "is not a jaxzoo workdir" in result.stderr


def test_twin_export_loads_into_pytorch_ard(twin, tmp_path):
    torch = pytest.importorskip("torch")
    from jaxzoo.torch import build_model

    _, twin_dir = twin
    report = export.export(twin_dir, tmp_path, log=None)
    target = tmp_path / report["out"].rsplit("/", 1)[1]
    trial = sorted((target / "trials").iterdir())[0]
    params_json = json.loads((trial / "params.json").read_text())
    assert params_json["model::type"] == "CNN_ARD"
    last = max(int(p.name.split("_")[1]) for p in trial.glob("checkpoint_*"))
    state = torch.load(trial / f"checkpoint_{last:06d}" / "checkpoints")
    assert {k.rsplit(".", 1)[1] for k in state} == {"weight", "bias", "log_sigma2", "log_sigma2_bias"}
    assert sorted({int(k.split(".")[1]) for k in state}) == [0, 3, 6, 9, 11]
    model = build_model(params_json).eval()
    model.load_state_dict(state, strict=True)
    ds = load_dataset("mnist_5k", 28, max_examples_per_split=50)
    x = normalise(ds.test[0], ds.mean, ds.std)
    _, jax_state = checkpoint.load_state(twin_dir, last)
    index = params_json["jaxzoo::model_id"]
    params = jax.tree.map(lambda a: jnp.asarray(a[index]), jax_state["params"])
    expected = CNN(ARCHS["cnn_s"], (params_json["model::nlin"],), use_dropout=False).apply(
        {"params": ard.masked_params(params)}, x, 0, 0.0, train=False
    )
    with torch.no_grad():
        got = model(torch.from_numpy(x.transpose(0, 3, 1, 2).copy())).numpy()
    assert np.abs(got - np.asarray(expected)).max() <= 1e-5
    # result.json carries the original's sparsity_ratio in every line.
    lines = [json.loads(line) for line in (trial / "result.json").read_text().splitlines()]
    logged = {r["epoch"]: r["sparsity"] for r in checkpoint.read_metrics(twin_dir) if r["model_id"] == index}
    assert [line["sparsity_ratio"] for line in lines] == pytest.approx([logged[e] for e in range(len(lines))])
    # Flat vectors: the raw ARD weights by default (as the original), masked on request.
    raw = export.load_vectors(target)["train"]
    masked_report = export.export(twin_dir, tmp_path / "masked", formats="vectors", twin_weights="masked", log=None)
    masked = export.load_vectors(masked_report["out"])["train"]
    assert "raw weights" in (target / "readme.md").read_text() and masked_report["vectors"]["twin_weights"] == "masked"
    np.testing.assert_array_equal(masked.properties["model_id"], raw.properties["model_id"])
    np.testing.assert_allclose(raw.properties["sparsity_ratio"], masked.properties["sparsity_ratio"])
    assert (masked.weights == 0).mean() > 0.01 and (raw.weights == 0).mean() < 1e-4
    model_id, epoch = int(raw.properties["model_id"][0]), int(raw.properties["epoch"][0])
    source = next(
        t
        for t in (target / "trials").iterdir()
        if json.loads((t / "params.json").read_text())["jaxzoo::model_id"] == model_id
    )
    state = torch.load(source / f"checkpoint_{epoch:06d}" / "checkpoints")
    weights = np.concatenate(
        [state[f"module_list.{i}.{p}"].numpy().reshape(-1) for i in (0, 3, 6, 9, 11) for p in ("weight", "bias")]
    )
    np.testing.assert_array_equal(raw.weights[0], weights)


def twin_run(dataset, schedule: str, compute_dtype: str = "float32"):
    """A TwinRun of 2 fresh SGD models (tanh) on `dataset`, 2 epochs, with `schedule`."""
    config = small_zoo_config(
        num_seeds=2,
        activation=("tanh",),
        dropout=(0.0,),
        init=("kaiming_uniform",),
        optimizer=("sgd",),
        schedule=(schedule,),
    )
    config.training.compute_dtype = compute_dtype
    population = build_population(expand_grid(config.population, config.seed), config.population)
    source = ZooRun(config, population, dataset).init_state()["params"]
    return TwinRun(config, population, dataset, source)


def test_twin_follows_the_zoos_learning_rate_schedule(mnist_small):
    """Twins train through the one step builder: a cosine zoo's twins anneal their learning rate
    (the copied twin step kept it constant)."""
    run = twin_run(mnist_small, "cosine")
    group = run.groups[0]
    indices, _ = group.chunks[0]
    factors = run.chunk_factors(indices)
    state, totals = train_chunk_epoch(
        group.fns,
        run.init_chunk(group, indices),
        factors,
        run.train_images,
        run.train_labels,
        1,
        run.plan.steps_per_call,
    )
    steps = group.fns.steps_per_epoch
    expected = scheduled_lr("cosine", steps - 1, 2 * steps, steps, 1e-3, schedule_options("cosine", None))
    learning_rate = np.asarray(state["opt_state"].hyperparams["learning_rate"])
    np.testing.assert_allclose(learning_rate, float(expected), rtol=1e-6)
    assert learning_rate.max() < 1e-3 and np.isfinite(np.asarray(totals["loss_sum"])).all()


def test_bfloat16_twin_computes_in_bfloat16(mnist_small):
    for dtype, has_bf16 in (("bfloat16", True), ("float32", False)):
        run = twin_run(mnist_small, "constant", dtype)
        group = run.groups[0]
        indices, _ = group.chunks[0]
        factors = run.chunk_factors(indices)
        order, mask = group.fns.order(factors, 1)
        x, y, m = group.fns.gather(run.train_images, run.train_labels, order[:, :1], mask[:, :1], factors)
        text = group.fns.train.lower(run.init_chunk(group, indices), factors, x, y, m, 1, 0).as_text()
        assert ("bf16" in text) == has_bf16, dtype
