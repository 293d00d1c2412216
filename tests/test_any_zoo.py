"""A zoo made from one config file outside the package (tests/any_zoo_config.py): the user's
own Flax MLP, AdamW and RMSprop, cosine schedules, train subsets and label noise. It trains,
exports to PyTorch (strict keys, equal logits, optimizer state that continues training), gets
a card and a Table 3, and each model trains the same alone or in any population."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

torch = pytest.importorskip("torch")

import any_zoo_config  # noqa: E402

from jaxzoo import (  # noqa: E402
    analyze,
    export,  # noqa: E402
)
from jaxzoo.analysis import table3  # noqa: E402
from jaxzoo.data import load_dataset, normalise  # noqa: E402
from jaxzoo.export.rows import trial_name  # noqa: E402
from jaxzoo.models.registry import build_model  # noqa: E402
from jaxzoo.train import train_and_evaluate  # noqa: E402
from jaxzoo.training.optimizers import optimizer_entry  # noqa: E402
from jaxzoo.training.population import build_population, expand_grid  # noqa: E402
from jaxzoo.training.run import ZooRun  # noqa: E402
from jaxzoo.training.steps import noisy_labels, subset_order  # noqa: E402
from jaxzoo.zoo import checkpoint


class TorchTinyMLP(torch.nn.Module):
    """The PyTorch twin of any_zoo_config.TinyMLP, written from its description."""

    def __init__(self, pixels: int, hidden: int, activation: str, classes: int = 10):
        super().__init__()
        self.hidden = torch.nn.Linear(pixels, hidden)
        self.out = torch.nn.Linear(hidden, classes)
        self.act = {"relu": torch.nn.ReLU(), "tanh": torch.nn.Tanh()}[activation]

    def forward(self, x):  # x [B, C, H, W]; the Flax module flattens NHWC
        return self.out(self.act(self.hidden(x.permute(0, 2, 3, 1).flatten(1))))


@pytest.fixture(scope="module")
def any_zoo(tmp_path_factory):
    root = tmp_path_factory.mktemp("any_zoo")
    config = any_zoo_config.get_config()
    train_and_evaluate(config, root / "zoo")
    export.export(root / "zoo", root / "out", log=None)
    return config, root / "zoo", root / "out" / "any_zoo"


@pytest.fixture(scope="module")
def images():
    data = load_dataset("mnist_5k", 28, max_examples_per_split=100)
    return normalise(data.test[0][:20], data.mean, data.std), data.test[1][:20]


def test_model_table_carries_the_new_factors(any_zoo):
    config, workdir, _ = any_zoo
    table = json.loads((workdir / "models.json").read_text())
    assert len(table) == 32
    assert {r["schedule"] for r in table} == {"cosine"}
    assert {(r["train_fraction"], r["label_noise"]) for r in table} == {
        (0.6, 0.0),
        (0.6, 0.25),
        (1.0, 0.0),
        (1.0, 0.25),
    }
    metrics = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    assert all(np.isfinite(m["test_acc"]) for m in metrics)


def exported_trial(workdir, out, **factors):
    """(model table, final state, index, trial folder, params.json, the PyTorch twin with the
    trial's last checkpoint loaded with strict keys) of the first model with `factors`."""
    table = json.loads((workdir / "models.json").read_text())
    _, final = checkpoint.load_state(workdir)
    index = next(i for i, r in enumerate(table) if all(r[k] == v for k, v in factors.items()))
    trial = out / "trials" / trial_name(table[index])
    params_json = json.loads((trial / "params.json").read_text())
    model = TorchTinyMLP(28 * 28, 12, params_json["model::nlin"])
    model.load_state_dict(torch.load(trial / "checkpoint_000002" / "checkpoints"), strict=True)
    return table, final, index, trial, params_json, model


def test_export_loads_in_pytorch_with_strict_keys_and_equal_logits(any_zoo, images):
    config, workdir, out = any_zoo
    x, _ = images
    for optimizer in ("adamw", "rmsprop"):
        for activation in ("relu", "tanh"):
            _, final, index, _, params_json, model = exported_trial(
                workdir, out, optimizer=optimizer, activation=activation
            )
            assert params_json["model::type"] == "jaxzoo:custom"
            assert params_json["model::module"] == "any_zoo_config:TinyMLP"
            got = model.eval()(torch.from_numpy(x.transpose(0, 3, 1, 2).copy())).detach().numpy()
            flax_model = build_model(config.model, activation, False, "xla", (28, 28, 1), 10)
            params = jax.tree.map(lambda a: jnp.asarray(a[index]), final["params"])
            want = np.asarray(flax_model.apply({"params": params}, jnp.asarray(x), 0, 0.0, train=False))
            np.testing.assert_allclose(got, want, atol=1e-5, rtol=1e-5)


def test_exported_optimizer_state_continues_training_in_pytorch(any_zoo, images):
    """One more step in PyTorch from the exported state equals one more optax step."""
    config, workdir, out = any_zoo
    x, y = images
    for optimizer_name in ("adamw", "rmsprop"):
        table, final, index, trial, params_json, model = exported_trial(workdir, out, optimizer=optimizer_name)
        row = table[index]
        assert (
            params_json["optim::torch_optimizer"] == f"torch.optim.{optimizer_entry(optimizer_name).torch.class_name}"
        )
        saved = torch.load(trial / "checkpoint_000002" / "optimizer")
        group = saved["param_groups"][0]
        assert group["initial_lr"] == pytest.approx(row["lr"]) and group["lr"] < row["lr"]  # cosine's last step
        torch_optimizer = getattr(torch.optim, optimizer_entry(optimizer_name).torch.class_name)(
            model.parameters(), lr=group["lr"]
        )
        torch_optimizer.load_state_dict(saved)
        loss = torch.nn.functional.cross_entropy(
            model(torch.from_numpy(x.transpose(0, 3, 1, 2).copy())), torch.from_numpy(y).long()
        )
        torch_optimizer.zero_grad()
        loss.backward()
        torch_optimizer.step()

        flax_model = build_model(config.model, row["activation"], False, "xla", (28, 28, 1), 10)
        params = jax.tree.map(lambda a: jnp.asarray(a[index]), final["params"])
        run = zoo_run(config, table[index : index + 1])
        transform = run.groups[0].fns.transform
        template = jax.eval_shape(lambda: run.groups[0].fns.init(run.chunk_factors(np.array([0])))["opt_state"])
        state = jax.tree.unflatten(
            jax.tree.structure(template),
            [jnp.asarray(np.asarray(a)[index]) for a in jax.tree.leaves(final["opt_state"][optimizer_name])],
        )
        grads = jax.grad(
            lambda p: (
                -jnp.mean(
                    jnp.take_along_axis(
                        jax.nn.log_softmax(flax_model.apply({"params": p}, jnp.asarray(x), 0, 0.0, train=False)),
                        jnp.asarray(y)[:, None],
                        1,
                    )
                )
            )
        )(params)
        updates, _ = transform.update(grads, state, params)
        new_params = optax.apply_updates(params, updates)
        expected = {
            "hidden.weight": new_params["hidden"]["kernel"].T,
            "hidden.bias": new_params["hidden"]["bias"],
            "out.weight": new_params["out"]["kernel"].T,
            "out.bias": new_params["out"]["bias"],
        }
        for key, value in model.state_dict().items():
            np.testing.assert_allclose(value.numpy(), np.asarray(expected[key]), atol=1e-5, rtol=1e-5)


def test_card_and_table3_run_on_the_zoo(any_zoo):
    _, workdir, out = any_zoo
    card = analyze.analyze(workdir, log=None)
    assert card["models"] == 32 and card["architecture"] == "any_zoo_config:TinyMLP"
    assert card["generating_factors"]["train_fraction"] == [0.6, 1.0]
    assert 0 <= card["table2"]["accuracy"]["mean"] <= 1
    results = table3.table3(export.load_vectors(out))["table"]
    for target in ("optimizer", "activation", "train_fraction", "label_noise", "test_acc"):
        assert set(results[target]) == {"w", "s(w)"}
    assert "b1" not in results and results["init"] == "n/a"


def zoo_run(config, rows, chunk_size: int = 0):
    config = config.copy_and_resolve_references()
    config.runtime.chunk_size = chunk_size
    dataset = load_dataset("mnist_5k", 28, max_examples_per_split=config.data.max_examples_per_split)
    return ZooRun(config, build_population(list(rows), config.population), dataset)


def trained_state(run, epochs: int = 2) -> dict:
    state = run.init_state()
    for epoch in range(1, epochs + 1):
        state, _ = run.train_epoch(state, epoch, None)
    return state


def test_a_model_trains_the_same_alone_in_any_population_and_chunk_size():
    """The subset, noise, schedule and optimizer of a model come from its own factors only: alone
    (a population of one, chunks of one) it trains bitwise as inside the whole zoo in chunks of
    four: params and optimizer state."""
    config = any_zoo_config.get_config()
    table = expand_grid(config.population, config.seed)
    chosen = [1, 29]  # an adamw and an rmsprop model, both with a train subset and label noise
    assert {table[i]["optimizer"] for i in chosen} == {"adamw", "rmsprop"}
    assert all(table[i]["train_fraction"] < 1 and table[i]["label_noise"] > 0 for i in chosen)
    whole = trained_state(zoo_run(config, table, chunk_size=4))
    for i in chosen:
        alone = trained_state(zoo_run(config, [table[i]], chunk_size=1))
        optimizer = table[i]["optimizer"]
        pairs = [(alone["params"], whole["params"]), (alone["opt_state"][optimizer], whole["opt_state"][optimizer])]
        for got_tree, want_tree in pairs:
            for got, want in zip(jax.tree.leaves(got_tree), jax.tree.leaves(want_tree)):
                np.testing.assert_array_equal(got[0], want[i])


def test_subsets_are_fixed_per_model_and_noise_flips_the_share_asked():
    seed, n, keep = jnp.uint32(7), 50, 30
    first, mask1 = subset_order(seed, 1, n, keep, 4, 10)
    second, _ = subset_order(seed, 2, n, keep, 4, 10)
    real = np.asarray(mask1).reshape(-1) > 0
    a, b = np.asarray(first).reshape(-1)[real], np.asarray(second).reshape(-1)[real]
    assert len(a) == keep and len(set(a.tolist())) == keep and set(a.tolist()) == set(b.tolist())
    assert a.tolist() != b.tolist()  # a fresh order each epoch
    other, _ = subset_order(jnp.uint32(8), 1, n, keep, 4, 10)
    assert set(np.asarray(other).reshape(-1)[real].tolist()) != set(a.tolist())
    labels = jnp.asarray(np.arange(4000) % 10, jnp.int32)
    indices = jnp.arange(4000)
    noisy = np.asarray(noisy_labels(labels, indices, seed, 0.25, 10))
    flipped = noisy != np.asarray(labels)
    assert 0.22 < flipped.mean() < 0.28 and ((noisy >= 0) & (noisy < 10)).all()
    assert (noisy == np.asarray(noisy_labels(labels, indices, seed, 0.25, 10))).all()  # the same every epoch
    assert not (np.asarray(noisy_labels(labels, indices, seed, 0.0, 10)) != np.asarray(labels)).any()


def test_public_api_names_the_registries_and_entry_points():
    import jaxzoo
    from jaxzoo import train
    from jaxzoo.training import optimizers as optim

    assert jaxzoo.train_and_evaluate is train.train_and_evaluate and jaxzoo.OPTIMIZERS is optim.OPTIMIZERS
    assert {"adam", "sgd", "adamw", "rmsprop", "adagrad", "lion", "nadam"} <= set(jaxzoo.OPTIMIZERS)
    assert {"constant", "cosine", "step", "warmup_cosine", "one_cycle"} == set(jaxzoo.SCHEDULES)
    assert {"cnn_s", "cnn_m", "cnn", "mlp", "resnet18"} == set(jaxzoo.MODEL_ARCHS)
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        jaxzoo.nope
