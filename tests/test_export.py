"""Export to the original trial folders and the flat-vector dataset; PyTorch equality."""

import dataclasses
import hashlib
import json
import pathlib
import runpy
import shutil
import types

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

torch = pytest.importorskip("torch")

from jaxzoo import export  # noqa: E402
from jaxzoo.data import load_dataset, normalise  # noqa: E402
from jaxzoo.export import __main__ as export_cli  # noqa: E402
from jaxzoo.export import writer  # noqa: E402
from jaxzoo.export.rows import split_plan, trial_name  # noqa: E402
from jaxzoo.models.cnn import ACTIVATIONS, ARCHS, CNN, init_params  # noqa: E402
from jaxzoo.models.registry import arch_spec  # noqa: E402
from jaxzoo.models.torch_layout import flat_vectors, index_dict, module_indices, torch_tensors  # noqa: E402
from jaxzoo.torch import ZooCNN, ZooVectorDataset, build_model  # noqa: E402
from jaxzoo.training.optimizers import init_state, make_transform  # noqa: E402
from jaxzoo.weights import symmetry  # noqa: E402
from jaxzoo.zoo import checkpoint


@pytest.fixture(scope="module")
def real_images():
    ds = load_dataset("mnist_5k", 28, max_examples_per_split=64)
    return normalise(ds.test[0], ds.mean, ds.std), ds.test[1]


def images_for(arch, channels, real_images):
    x = real_images[0]
    if channels == 3:
        x = np.repeat(x, 3, axis=-1)
    if ARCHS[arch].image_size == 32:
        x = np.pad(x, ((0, 0), (2, 2), (2, 2), (0, 0)), constant_values=float(x.min()))
    return x


@pytest.mark.parametrize("arch,channels", [("cnn_s", 1), ("cnn_s", 3), ("cnn_m", 3)])
@pytest.mark.parametrize("dropout", [0.0, 0.5])
def test_pytorch_logits_equal_jax_for_every_activation(arch, channels, dropout, real_images):
    x = images_for(arch, channels, real_images)
    for activation in ACTIVATIONS:
        model = CNN(ARCHS[arch], (activation,), use_dropout=dropout > 0)
        template = model.init(jax.random.key(0), jnp.zeros((1, *x.shape[1:])), 0, 0.0, train=False)["params"]
        params = init_params(template, jax.random.key(7), 0, ("kaiming_uniform",))
        jax_logits = np.asarray(model.apply({"params": params}, x, 0, dropout, train=False))
        torch_model = ZooCNN(arch, activation, dropout, channels).eval()
        state = {k: torch.from_numpy(np.array(v)) for k, v in torch_tensors(params, ARCHS[arch], dropout)}
        torch_model.load_state_dict(state, strict=True)
        with torch.no_grad():
            torch_logits = torch_model(torch.from_numpy(x.transpose(0, 3, 1, 2).copy())).numpy()
        assert np.abs(torch_logits - jax_logits).max() <= 1e-5, (arch, activation, dropout)


@pytest.mark.parametrize(
    "model",
    [
        {"arch": "mlp", "convs": [], "widths": [24, 16]},
        {"arch": "cnn", "convs": [[5, 3, True], [7, 4, False]], "widths": [10]},
    ],
)
@pytest.mark.parametrize("dropout", [0.0, 0.5])
def test_registry_models_rebuild_in_pytorch_from_their_params_json(model, dropout, real_images):
    """The registry's `mlp` and `cnn` families: a trial's params.json (model::type jaxzoo:<arch>,
    model::convs, model::widths, model::image_size) rebuilds the network; keys strict, logits equal."""
    x = real_images[0]
    arch = arch_spec(model, 28, 1, 10)
    flax_model = CNN(arch, ("gelu",), use_dropout=dropout > 0)
    template = flax_model.init(jax.random.key(0), jnp.zeros((1, *x.shape[1:])), 0, 0.0, train=False)["params"]
    params = init_params(template, jax.random.key(7), 0, ("xavier_uniform",))
    params_json = {
        "model::type": f"jaxzoo:{model['arch']}",
        "model::convs": model["convs"],
        "model::widths": model["widths"],
        "model::image_size": 28,
        "model::channels_in": 1,
        "model::o_dim": 10,
        "model::nlin": "gelu",
        "model::dropout": dropout,
    }
    torch_model = build_model(params_json).eval()
    torch_model.load_state_dict(
        {k: torch.from_numpy(np.array(v)) for k, v in torch_tensors(params, arch, dropout)}, strict=True
    )
    with torch.no_grad():
        got = torch_model(torch.from_numpy(x.transpose(0, 3, 1, 2).copy())).numpy()
    np.testing.assert_allclose(
        got, np.asarray(flax_model.apply({"params": params}, x, 0, 0.0, train=False)), atol=1e-5, rtol=1e-5
    )


def test_module_indices_match_the_original():
    assert module_indices(ARCHS["cnn_s"], 0.0) == [0, 3, 6, 9, 11]
    assert module_indices(ARCHS["cnn_s"], 0.5) == [0, 4, 8, 11, 14]
    assert module_indices(ARCHS["cnn_m"], 0.0) == [0, 4, 8, 13, 16]
    layout = index_dict(ARCHS["cnn_s"], 1)
    assert layout["idx_start"] == [0, 208, 1414, 1514, 2254]
    assert layout["kernel_size"] == [25, 25, 4, 1, 1]


@pytest.fixture(scope="module")
def exported(small_zoo, tmp_path_factory):
    """The shared mixed zoo (dropout 0/0.5, Adam/SGD, tanh/relu; 32 models, 2 epochs), exported."""
    root = tmp_path_factory.mktemp("export")
    report = export.export(small_zoo, root / "out", log=None)
    return small_zoo, root / "out" / "test_zoo", report


def trial_dirs(folder):
    return sorted(p for p in (folder / "trials").iterdir() if p.name.startswith("NN_tune_trainable_"))


def strict_json(constant):
    raise ValueError(f"{constant} is not JSON")


def test_trial_folders_follow_the_original_layout(exported, real_images):
    workdir, out, _ = exported
    trials = trial_dirs(out)
    assert len(trials) == 32
    for name in ("config.json", "index_dict.json", "readme.md", "dataset.json", "export.json", "model.py"):
        assert (out / name).exists()
    # The original loader takes every subfolder of the experiment folder for a model.
    assert sorted(p.name for p in (out / "trials").iterdir()) == [t.name for t in trials]
    ds = load_dataset("mnist_5k", 28, max_examples_per_split=120)
    test_x = torch.from_numpy(normalise(ds.test[0], ds.mean, ds.std).transpose(0, 3, 1, 2).copy())
    for trial in trials[:6]:
        params = json.loads((trial / "params.json").read_text())
        lines = [
            json.loads(line, parse_constant=strict_json) for line in (trial / "result.json").read_text().splitlines()
        ]
        assert [line["training_iteration"] for line in lines] == [0, 1, 2]
        model = build_model(params).eval()
        for epoch, line in enumerate(lines):
            state = torch.load(trial / f"checkpoint_{epoch:06d}" / "checkpoints")
            model.load_state_dict(state, strict=True)
            with torch.no_grad():
                logits = model(test_x)
            accuracy = (logits.argmax(1).numpy() == ds.test[1]).mean()
            assert accuracy == pytest.approx(line["test_acc"], abs=1e-6)  # line e is checkpoint e
        assert (trial / "checkpoint_000002" / "optimizer").exists()
        assert not (trial / "checkpoint_000001" / "optimizer").exists()
        expected_keys = {
            f"module_list.{i}.{p}"
            for i in module_indices(ARCHS["cnn_s"], params["model::dropout"])
            for p in ("weight", "bias")
        }
        assert set(state) == expected_keys


def test_exported_optimizer_continues_training_like_jax(exported, real_images):
    workdir, out, _ = exported
    _, final = checkpoint.load_state(workdir)
    table = json.loads((workdir / "models.json").read_text())
    x, y = real_images[0][:10], real_images[1][:10]
    for optimizer_name in ("adam", "sgd"):
        index = next(i for i, r in enumerate(table) if r["optimizer"] == optimizer_name)
        row = table[index]
        trial = out / "trials" / trial_name(row)
        params_json = json.loads((trial / "params.json").read_text())
        model = build_model(params_json).eval()
        model.load_state_dict(torch.load(trial / "checkpoint_000002" / "checkpoints"), strict=True)
        opt = (
            torch.optim.Adam(model.parameters(), lr=row["lr"], weight_decay=row["weight_decay"])
            if optimizer_name == "adam"
            else torch.optim.SGD(model.parameters(), lr=row["lr"], momentum=0.9, weight_decay=row["weight_decay"])
        )
        opt.load_state_dict(torch.load(trial / "checkpoint_000002" / "optimizer"))
        loss = torch.nn.functional.nll_loss(
            torch.log_softmax(model(torch.from_numpy(x.transpose(0, 3, 1, 2).copy())), 1), torch.from_numpy(y).long()
        )
        opt.zero_grad()
        loss.backward()
        opt.step()

        jax_model = CNN(ARCHS["cnn_s"], (row["activation"],), use_dropout=False)
        params = jax.tree.map(lambda a: jnp.asarray(a[index]), final["params"])
        grads = jax.grad(
            lambda p: (
                -jnp.mean(
                    jnp.take_along_axis(
                        jax.nn.log_softmax(jax_model.apply({"params": p}, x, 0, 0.0, train=False)), y[:, None], 1
                    )
                )
            )
        )(params)
        transform = make_transform(optimizer_name, ("lr", "weight_decay"), {"momentum": 0.9})
        opt_state = jax.tree.map(lambda a: jnp.asarray(a[index]), final["opt_state"][optimizer_name])
        template = init_state(transform, params, {"lr": row["lr"], "weight_decay": row["weight_decay"]})
        opt_state = jax.tree.unflatten(jax.tree.structure(template), jax.tree.leaves(opt_state))
        updates, _ = transform.update(grads, opt_state, params)
        new_params = optax.apply_updates(params, updates)
        expected = dict(torch_tensors(jax.tree.map(np.asarray, new_params), ARCHS["cnn_s"], row["dropout"]))
        for key, value in model.state_dict().items():
            np.testing.assert_allclose(value.numpy(), expected[key], rtol=0, atol=2e-6)


def test_vectors_round_trip_and_filters(exported):
    workdir, out, report = exported
    splits = export.load_vectors(out)
    assert {k: len(v.weights) for k, v in splits.items()} == {"train": 22 * 3, "val": 4 * 3, "test": 6 * 3}
    assert report["vectors"]["splits"]["train"]["dropped_nan"] == 0
    train = splits["train"]
    row = 5
    model_id, epoch = int(train.properties["model_id"][row]), int(train.properties["epoch"][row])
    trial = out / "trials" / trial_name(json.loads((workdir / "models.json").read_text())[model_id])
    state = torch.load(trial / f"checkpoint_{epoch:06d}" / "checkpoints")
    from_state = np.concatenate(
        [
            state[f"module_list.{i}.{p}"].numpy().reshape(-1)
            for i in module_indices(ARCHS["cnn_s"], float(train.properties["dropout"][row]))
            for p in ("weight", "bias")
        ]
    )
    np.testing.assert_array_equal(train.weights[row], from_state)
    # and back: the index map cuts the vector into the state_dict's tensors
    layout = train.index_dict
    start = layout["idx_start"][1]
    n = layout["kernel_no"][1] * layout["channels_in"][1] * layout["kernel_size"][1]
    conv1 = [k for k in state if k.endswith(".weight")][1]
    np.testing.assert_array_equal(
        train.weights[row][start : start + n].reshape(state[conv1].shape), state[conv1].numpy()
    )
    assert train.properties["ggap"][row] == pytest.approx(
        train.properties["train_acc"][row] - train.properties["test_acc"][row]
    )
    dataset = ZooVectorDataset(out / "vectors", "val", epochs=[2])
    assert len(dataset) == 4 and dataset[0][0].shape == (2464,) and dataset[0][1]["epoch"] == 2
    assert set(dataset.properties["activation"]) <= {"tanh", "relu"}
    assert torch.load(out / "vectors" / "dataset.pt")["test"]["weights"].shape == (18, 2464)


def test_threshold_filter_counts(exported, tmp_path):
    workdir, _, _ = exported
    report = export.export(workdir, tmp_path / "strict", formats="vectors", epochs=[2], threshold=0.05, log=None)
    counts = report["vectors"]["splits"]
    assert sum(c["dropped_threshold"] for c in counts.values()) > 0
    assert sum(c["rows"] + c["dropped_threshold"] + c["dropped_nan"] for c in counts.values()) == 32


def test_thousand_models_split_700_150_150():
    zoo = types.SimpleNamespace(table=[{"model_id": i, "seed": i + 1} for i in range(1000)])
    splits = export.model_splits(zoo)
    assert [len(splits[k]) for k in ("train", "val", "test")] == [700, 150, 150]
    assert sorted(sum(splits.values(), [])) == list(range(1000))
    assert export.model_splits(zoo) == splits


def test_refusals_and_interrupted_rerun(exported, tmp_path, monkeypatch):
    workdir, out, _ = exported
    with pytest.raises(export.ExportError, match="already holds an export: pass --overwrite"):
        export.export(workdir, out.parent, log=None)
    # An interrupted export: manifest incomplete, one trial missing, one half-written.
    copy = tmp_path / "out"
    shutil.copytree(out.parent, copy)
    target = copy / "test_zoo"
    manifest = json.loads((target / "export.json").read_text())
    (target / "export.json").write_text(json.dumps({**manifest, "complete": False}))
    victim = trial_dirs(target)[3]
    shutil.rmtree(victim)
    (target / "trials" / f".{victim.name}.partial").mkdir()
    report = export.export(workdir, copy, log=None)
    assert report["trials_written"] == 1 and len(trial_dirs(target)) == 32
    assert not list((target / "trials").glob(".*partial"))

    monkeypatch.setitem(__import__("sys").modules, "torch", None)
    with pytest.raises(export.ExportError, match="needs torch: pip install"):
        export.export(workdir, tmp_path / "no-torch", formats="trials", log=None)


def test_incomplete_or_damaged_workdir_is_refused(exported, tmp_path):
    workdir, _, _ = exported
    broken = tmp_path / "zoo"
    shutil.copytree(workdir, broken)
    shutil.rmtree(broken / "checkpoints" / "1")
    with pytest.raises(export.ExportError, match=r"lacks epochs \[1\] of 0..2: finish training"):
        export.export(broken, tmp_path / "o", log=None)
    damaged = tmp_path / "zoo2"
    shutil.copytree(workdir, damaged)
    for p in (damaged / "checkpoints" / "2" / "blocks").rglob("*"):
        if p.is_file() and p.stat().st_size > 100:
            p.write_bytes(b"\0" * 16)
    with pytest.raises(
        export.ExportError, match=r"damaged checkpoints \(epochs \[2\]; epoch 2: blocks/0-\d+/_CHECKPOINT"
    ):
        export.export(damaged, tmp_path / "o2", log=None)
    assert not (tmp_path / "o2").exists()


def test_cli_exit_codes(exported, tmp_path):
    import subprocess
    import sys

    workdir, out, _ = exported
    result = subprocess.run(
        [sys.executable, "-m", "jaxzoo.export", "--workdir", str(workdir), "--out", str(out.parent)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2 and "already holds an export" in result.stderr
    result = subprocess.run(
        [sys.executable, "-m", "jaxzoo.export", "--workdir", str(tmp_path / "nothing"), "--out", str(tmp_path / "o")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2 and "is not a jaxzoo workdir" in result.stderr
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "jaxzoo.export",
            "--workdir",
            str(workdir),
            "--out",
            str(tmp_path / "v"),
            "--format",
            "vectors",
            "--epochs",
            "0,2",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-1500:]
    assert len(export.load_vectors(tmp_path / "v" / "test_zoo")["train"].weights) == 22 * 2


def test_flat_vectors_order_is_the_originals():
    model = CNN(ARCHS["cnn_s"], ("tanh",), use_dropout=False)
    template = model.init(jax.random.key(0), jnp.zeros((1, 28, 28, 1)), 0, 0.0, train=False)["params"]
    params = jax.tree.map(lambda a: np.asarray(a)[None], init_params(template, jax.random.key(1), 0, ("normal",)))
    vector = flat_vectors(params, ARCHS["cnn_s"])[0]
    conv0 = np.asarray(params["conv0"]["kernel"][0]).transpose(3, 2, 0, 1).reshape(-1)
    np.testing.assert_array_equal(vector[:200], conv0)
    np.testing.assert_array_equal(vector[200:208], params["conv0"]["bias"][0])
    fc1 = np.asarray(params["fc1"]["kernel"][0]).T.reshape(-1)
    np.testing.assert_array_equal(vector[2254:2454], fc1)
    assert vector.shape == (2464,)


def test_vectors_without_torch_say_why_dataset_pt_is_missing(exported, tmp_path, monkeypatch):
    workdir, _, _ = exported
    monkeypatch.setitem(__import__("sys").modules, "torch", None)
    lines = []
    report = export.export(workdir, tmp_path, formats="vectors", epochs=[2], log=lines.append)
    vectors = tmp_path / report["out"].rsplit("/", 1)[1] / "vectors"
    assert (vectors / "train.safetensors").exists() and not (vectors / "dataset.pt").exists()
    assert any("dataset.pt skipped: torch is not installed" in line for line in lines)


def test_original_loader_sees_only_models_and_splits_them_as_the_vectors(exported):
    """The original ModelDatasetBase: every subfolder of the experiment folder is a model; the list
    is shuffled with random.seed(42) and cut 70/15/15. Its listing order is the file system's;
    sorted, it gives the vectors' split."""
    import random

    _, out, _ = exported
    folders = sorted((out / "trials").iterdir())
    random.seed(42)
    random.shuffle(folders)
    n = len(folders)
    cut = {
        "train": folders[: int(0.7 * n)],
        "val": folders[int(0.7 * n) : int(0.7 * n) + int(0.15 * n)],
        "test": folders[int(0.7 * n) + int(0.15 * n) :],
    }
    splits = export.load_vectors(out)
    for split, members in cut.items():
        ids = {json.loads((f / "params.json").read_text())["jaxzoo::model_id"] for f in members}
        assert ids == set(splits[split].properties["model_id"].tolist())


def test_vector_dataset_is_a_drop_in_for_the_original_notebooks(exported):
    _, out, _ = exported
    dataset = ZooVectorDataset(out / "vectors", "train")
    weights = dataset.__get_weights__()
    assert isinstance(weights, torch.Tensor) and weights.shape == (len(dataset), 2464)
    assert torch.equal(weights[3], dataset[3][0])
    props = dataset.properties
    for key in (
        "test_acc",
        "train_acc",
        "training_iteration",
        "ggap",
        "model::nlin",
        "model::init_type",
        "optim::optimizer",
        "model::dropout",
        "optim::lr",
        "optim::wd",
    ):
        assert len(props[key]) == len(dataset), key
    assert props["training_iteration"] == props["epoch"] and props["model::nlin"] == props["activation"]
    assert props["optim::wd"] == props["weight_decay"] and props["model::dropout"] == props["dropout"]
    assert props["ggap"] == pytest.approx([a - b for a, b in zip(props["train_acc"], props["test_acc"])], abs=1e-6)


def test_optimizer_state_of_every_epoch_on_request(tiny_zoo, tmp_path):
    """--optimizer_state all writes each epoch's state (the original code); the default, last, only
    the final one (test_trial_folders_follow_the_original_layout)."""
    export.export(tiny_zoo, tmp_path / "all", formats="trials", optimizer_state="all", log=None)
    trial = trial_dirs(tmp_path / "all" / "test_zoo")[0]
    steps = {}
    for epoch in (0, 1, 2):
        state = torch.load(trial / f"checkpoint_{epoch:06d}" / "optimizer")["state"]
        steps[epoch] = float(state[0]["step"]) if "step" in state.get(0, {}) else None
    assert steps[1] == 6 and steps[2] == 12  # 60 examples, batch 10: 6 steps per epoch
    zoo = export.read_zoo(tiny_zoo)
    row = next(r for r in zoo.table if trial_name(r) == trial.name)
    for epoch in (1, 2):  # each epoch's file is that epoch's state, converted
        want = writer.torch_optimizer_state(zoo, row, zoo.table.index(row), zoo.state(epoch), torch)
        got = torch.load(trial / f"checkpoint_{epoch:06d}" / "optimizer")
        assert torch.equal(got["state"][0]["exp_avg"], want["state"][0]["exp_avg"])


def test_result_lines_are_json_and_omit_a_missing_val_split(tiny_zoo):
    zoo = export.read_zoo(tiny_zoo)
    metrics = {
        e: {
            **m,
            "val_loss": m["val_loss"] * np.nan,
            "val_acc": m["val_acc"] * np.nan,
            "test_loss": np.where(np.arange(4) == 1, np.inf, m["test_loss"]),
        }
        for e, m in zoo.metrics.items()
    }
    no_val = dataclasses.replace(zoo, metrics=metrics)
    params = writer.original_params(no_val, no_val.table[1])
    lines = [json.loads(line, parse_constant=strict_json) for line in writer.result_lines(no_val, 1, params)]
    assert all("val_acc" not in line and "val_loss" not in line for line in lines)
    assert lines[0]["test_loss"] is None and lines[0]["test_acc"] == pytest.approx(float(zoo.metrics[0]["test_acc"][1]))
    assert "val_acc" in json.loads(writer.result_lines(zoo, 1, params)[0])


def test_params_json_follows_the_original_script_of_each_paper_zoo():
    base = {"model::o_dim": 10, "model::use_bias": True, "model::dropout": 0.0, "optim::wd": 0.0}
    seed = writer.recorded_params("tune_zoo_mnist_uniform", base)
    assert seed["model::o_dim"] == 4 and seed["model::use_bias"] is False and seed["training::start_epoch"] == 1
    assert "model::use_bias" not in writer.recorded_params("tune_zoo_mnist_hyperparameter_10_fixed_seeds", base)
    cifar = writer.recorded_params("tune_zoo_cifar10_small_hyperparameter_10_random_seeds", base)
    assert json.dumps(cifar["model::dropout"]) == "0" and json.dumps(seed["model::dropout"]) == "0.0"
    assert json.dumps(writer.recorded_params("tune_zoo_svhn_hyperparameter_10_fixed_seeds", base)["optim::wd"]) == "0"
    resnet = writer.recorded_params("tune_zoo_tinyimagenet_resnet18_kaiming_uniform", {**base, "model::o_dim": 200})
    assert resnet["model::o_dim"] == 200 and resnet["testloader::workers"] == 3
    assert writer.recorded_params("my_own_zoo", base) == base


def test_vectors_past_the_dataset_pt_limit_say_why_it_is_missing(exported, tmp_path, monkeypatch):
    from jaxzoo.export import writer

    workdir, _, _ = exported
    monkeypatch.setattr(writer, "VECTORS_PT_BYTES", 1000)
    lines = []
    report = export.export(workdir, tmp_path, formats="vectors", epochs=[2], log=lines.append)
    vectors = tmp_path / report["out"].rsplit("/", 1)[1] / "vectors"
    assert (vectors / "train.safetensors").exists() and not (vectors / "dataset.pt").exists()
    assert any("dataset.pt skipped: its 0.0 GiB would be held in memory" in line for line in lines)


# --- the layout in the Parquet files, the split rules (issue #29) -----------------------------


def parquet_rows(path):
    """(metadata, rows) of a Parquet file read with pyarrow alone: the schema metadata `jaxzoo`
    as JSON and the columns as Python lists (weights as float32 arrays)."""
    pq = pytest.importorskip("pyarrow.parquet")
    table = pq.read_table(path)
    metadata = json.loads(table.schema.metadata[b"jaxzoo"])
    size = table.schema.field("weights").type.list_size
    columns = {name: table.column(name).to_pylist() for name in table.column_names if name != "weights"}
    columns["weights"] = list(table.column("weights").combine_chunks().flatten().to_numpy().reshape(-1, size))
    return metadata, columns


def test_parquet_rows_unflatten_into_their_trials_state_dicts(exported):
    """The schema metadata alone cuts a row's `weights` into its state_dict tensors (keys,
    offsets, shapes, the dropout keys), and `trial` names the folder whose checkpoint holds them."""
    _, out, _ = exported
    for split, name in (("train", "train"), ("val", "validation"), ("test", "test")):
        metadata, rows = parquet_rows(out / "parquet" / f"{split}.parquet")
        assert metadata["splits"][name] == f"parquet/{split}.parquet" and metadata["key"] == ["model_id", "epoch"]
        dropouts = set()
        for row in range(0, len(rows["trial"]), 5):
            model_id, seed, epoch = rows["model_id"][row], rows["seed"][row], rows["epoch"][row]
            assert rows["trial"][row] == metadata["trial_folder"].format(model_id=model_id, seed=seed)
            state = torch.load(out / "trials" / rows["trial"][row] / f"checkpoint_{epoch:06d}" / "checkpoints")
            with_dropout = rows["model::dropout"][row] > 0
            dropouts.add(with_dropout)
            tensors = {}
            for tensor in metadata["weights"]["tensors"]:
                key = tensor["key_dropout"] if with_dropout else tensor["key"]
                values = rows["weights"][row][tensor["offset"] : tensor["offset"] + int(np.prod(tensor["shape"]))]
                tensors[key] = values.reshape(tensor["shape"])
            assert set(tensors) == set(state)
            for key, values in tensors.items():
                np.testing.assert_array_equal(values, state[key].numpy())
        assert metadata["weights"]["size"] == len(rows["weights"][0])
    assert dropouts == {False, True}


def epoch0_starts(splits):
    """{split: {model_id: bytes of its epoch-0 vector}} from exported vector splits."""
    return {
        split: {
            int(m): data.weights[row].tobytes()
            for row, (m, e) in enumerate(zip(data.properties["model_id"], data.properties["epoch"]))
            if e == 0
        }
        for split, data in splits.items()
    }


def test_default_split_reports_the_models_that_share_a_start_with_train(exported):
    """Split by model (the original): the readme, card, export.json and Parquet metadata count
    the val and test models whose epoch-0 vector is a train model's, counted here from the vectors."""
    _, out, report = exported
    starts = epoch0_starts(export.load_vectors(out))
    train = set(starts["train"].values())
    shared = {split: sum(v in train for v in starts[split].values()) for split in ("val", "test")}
    assert shared["val"] + shared["test"] > 0  # 2 seeds x 2 inits: 8 models start alike
    models = {split: len(starts[split]) for split in starts}
    assert report["split"] == {"split_by": "model", "groups": 32, "models": models, "shared_start": shared}
    manifest = json.loads((out / "export.json").read_text())
    assert manifest["split_by"] == "model" and manifest["report"]["split"]["shared_start"] == shared
    sentence = (
        f"Shared starts: {shared['val']} of the {models['val']} val and {shared['test']} of the "
        f"{models['test']} test models start from the same initial weights"
    )
    assert sentence in (out / "readme.md").read_text() and sentence in (out / "README.md").read_text()
    metadata, _ = parquet_rows(out / "parquet" / "val.parquet")
    assert metadata["split"]["shared_start"] == shared


@pytest.fixture(scope="module")
def split_by_init(small_zoo, tmp_path_factory):
    """The shared zoo exported as vectors and as parquet with --split_by init."""
    root = tmp_path_factory.mktemp("split_init")
    vectors = export.export(small_zoo, root / "v", formats="vectors", split_by="init", log=None)
    parquet = export.export(small_zoo, root / "p", formats="parquet", split_by="init", log=None)
    return root / "v" / "test_zoo", root / "p" / "test_zoo", vectors, parquet


def test_split_by_init_shares_no_start_across_splits(split_by_init):
    pq = pytest.importorskip("pyarrow.parquet")
    vectors, parquet, report, _ = split_by_init
    starts = epoch0_starts(export.load_vectors(vectors))
    assert all(starts.values())  # every split holds models
    for a, b in (("train", "val"), ("train", "test"), ("val", "test")):
        assert not set(starts[a].values()) & set(starts[b].values())
    # 2 seeds x 2 inits: 4 groups of 8 identical starts, as near 70/15/15 as one group per split allows
    assert {split: len(ids) for split, ids in starts.items()} == {"train": 16, "val": 8, "test": 8}
    assert report["split"]["shared_start"] == {"val": 0, "test": 0} and report["split"]["groups"] == 4
    for split, ids in starts.items():  # the Parquet files split alike
        assert set(pq.read_table(parquet / "parquet" / f"{split}.parquet").column("model_id").to_pylist()) == set(ids)
    rule = "Split rule: by init (--split_by init: models with identical initial weights stay in one split"
    assert rule in (parquet / "README.md").read_text() and rule in (vectors / "readme.md").read_text()
    assert "split about 70/15/15 by init" in (vectors / "readme.md").read_text()
    assert json.loads((vectors / "export.json").read_text())["split_by"] == "init"


def test_split_by_seed_or_factor_keeps_each_value_in_one_split(small_zoo):
    """On the shared zoo's models given 5 seeds: each seed's models in one split, each split a seed
    or more; a factor's values alike; model is the original rule (sorted names, seed-42 shuffle)."""
    zoo = export.read_zoo(small_zoo)
    five = dataclasses.replace(zoo, table=[{**row, "seed": row["model_id"] % 5} for row in zoo.table])
    plan = split_plan(five, "seed")
    seeds = {split: {five.table[i]["seed"] for i in models} for split, models in plan["splits"].items()}
    assert all(seeds.values()) and not (seeds["train"] & seeds["val"] or seeds["train"] & seeds["test"])
    assert not seeds["val"] & seeds["test"] and sorted(sum(plan["splits"].values(), [])) == list(range(32))
    assert plan["report"]["groups"] == 5
    three = dataclasses.replace(zoo, table=[{**row, "lr": [0.1, 0.2, 0.3][row["model_id"] % 3]} for row in zoo.table])
    for name in ("lr", "optim::lr"):
        lrs = {s: {three.table[i]["lr"] for i in m} for s, m in split_plan(three, name)["splits"].items()}
        assert sorted(len(v) for v in lrs.values()) == [1, 1, 1]
    assert split_plan(zoo, "model")["splits"] == export.model_splits(zoo)


def test_thousand_models_in_groups_split_near_70_15_15():
    zoo = types.SimpleNamespace(table=[{"model_id": i, "seed": i + 1} for i in range(1000)])
    assert export.model_splits(zoo, keys=list(range(1000))) == export.model_splits(zoo)  # one model per group
    splits = export.model_splits(zoo, keys=[i // 10 for i in range(1000)])  # 100 groups of 10
    assert [len(splits[k]) for k in ("train", "val", "test")] == [700, 150, 150]
    groups = {split: {i // 10 for i in models} for split, models in splits.items()}
    assert not (groups["train"] & groups["val"] or groups["train"] & groups["test"] or groups["val"] & groups["test"])


@pytest.mark.parametrize(
    "value,message",
    [
        ("bogus", "unknown --split_by 'bogus': choose from model, seed, init, architecture or a factor"),
        ("architecture", "--split_by architecture needs a zoo with several architectures"),
        ("seed", "--split_by seed makes 2 group(s) of models in this zoo"),
        ("schedule", "unknown --split_by 'schedule'"),  # a factor this zoo's grid does not vary
    ],
)
def test_bad_split_by_is_one_line_and_writes_nothing(exported, tmp_path, capsys, value, message):
    workdir, _, _ = exported
    code = export_cli.main(["--workdir", str(workdir), "--out", str(tmp_path / "o"), "--split_by", value])
    err = capsys.readouterr().err
    assert code == 2 and message in err and err.count("\n") == 1, err
    assert not (tmp_path / "o").exists()


def test_default_vector_bytes_are_those_of_commit_f4818c0(tmp_path):
    """The default split (by model) writes the vectors f4818c0 wrote for its quickstart fixture
    (tests/fixtures/f4818c0: sha256 of each file)."""
    fixture = pathlib.Path(__file__).parent / "fixtures" / "f4818c0"
    manifest = json.loads((fixture / "manifest.json").read_text())["exports"]["quickstart-vectors"]
    shutil.copytree(fixture / "quickstart", tmp_path / "zoo")
    export.export(tmp_path / "zoo", tmp_path / "out", formats="vectors", log=None)
    wanted = {rel: digest for rel, digest in manifest["files"].items() if "/vectors/" in rel}
    assert len(wanted) >= 7
    for rel, digest in wanted.items():
        assert hashlib.sha256((tmp_path / "out" / rel).read_bytes()).hexdigest() == digest, rel


EXAMPLE = runpy.run_path(str(pathlib.Path(__file__).resolve().parents[1] / "examples" / "predict_accuracy.py"))


def test_example_predicts_accuracy_from_a_leak_free_export(small_zoo, tmp_path):
    """examples/predict_accuracy.py in a reduced form (100 steps on the small zoo): the export it
    makes keeps identical starts apart, the predictor learns (train R² > 0.5, test R² finite),
    and its prediction does not change when every row's hidden units are permuted."""
    results = EXAMPLE["run"](small_zoo, str(tmp_path / "export"), steps=100, batch_size=32)
    assert results["shared_start"] == {"val": 0, "test": 0}
    assert min(results["rows"].values()) > 0
    assert results["train"]["r2"] > 0.5 and np.isfinite(results["test"]["r2"]), results

    splits = export.load_vectors(next((tmp_path / "export").glob("*/vectors")))
    test = splits["test"]
    statistics = EXAMPLE["layer_statistics"](splits["train"])
    model = EXAMPLE["InvariantPredictor"]()
    inputs = EXAMPLE["nfn_inputs"](test.weights, test.index_dict, statistics)
    params = model.init(jax.random.key(1), *inputs)
    permuted = symmetry.permute_vectors(test.weights, test.index_dict, np.random.default_rng(0))
    assert not np.array_equal(permuted, test.weights)
    np.testing.assert_allclose(
        model.apply(params, *EXAMPLE["nfn_inputs"](permuted, test.index_dict, statistics)),
        model.apply(params, *inputs),
        rtol=1e-4,
        atol=1e-5,
    )
