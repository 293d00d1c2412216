"""Ingesting published zoos (`jaxzoo.ingest`): fixtures written in each format by the tests.

ModelZooDataset trial folders (hand-written original keys, a folder and its .zip), jaxzoo's own
export (round trip through Table 2), the Small CNN Zoo (weights.npy + metrics.csv.gz +
layout.csv in TensorFlow layouts, checked against a NumPy forward pass), and bad archives.
"""

import csv
import gzip
import json
import pathlib
import shutil
import zipfile

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from small_cnn_zoo_format import UZ_LAYOUT, UZ_STEPS  # noqa: E402

from jaxzoo.analysis.card import ingest_line, ingest_summary  # noqa: E402
from jaxzoo.errors import UserError  # noqa: E402
from jaxzoo.export import export, read_zoo  # noqa: E402
from jaxzoo.ingest import ingest  # noqa: E402
from jaxzoo.ingest.__main__ import main  # noqa: E402
from jaxzoo.ingest.small_cnn_zoo import evaluation_note  # noqa: E402
from jaxzoo.zoo import blocks  # noqa: E402

EPOCHS = 2  # trial fixtures: epochs 0..2
# CNN-s in the original ModuleList numbering: (index without dropout, with dropout, PyTorch shape)
CNN_S = [
    ("weight", 0, 0, (8, 1, 5, 5)),
    ("bias", 0, 0, (8,)),
    ("weight", 3, 4, (6, 8, 5, 5)),
    ("bias", 3, 4, (6,)),
    ("weight", 6, 8, (4, 6, 2, 2)),
    ("bias", 6, 8, (4,)),
    ("weight", 9, 11, (20, 36)),
    ("bias", 9, 11, (20,)),
    ("weight", 11, 14, (10, 20)),
    ("bias", 11, 14, (10,)),
]
FLAX_LAYERS = ["conv0", "conv0", "conv1", "conv1", "conv2", "conv2", "fc0", "fc0", "fc1", "fc1"]
DROPOUTS = (0.0, 0.5, 0.0)


def cnn_s_state_dict(rng, dropout: float) -> dict:
    """A CNN-s state_dict with the original keys (module indices depend on dropout)."""
    return {
        f"module_list.{with_dropout if dropout > 0 else plain}.{kind}": torch.from_numpy(
            rng.normal(0, 0.3, shape).astype(np.float32)
        )
        for kind, plain, with_dropout, shape in CNN_S
    }


def write_trials(root: pathlib.Path) -> dict:
    """3 CNN-s trials x epochs 0..2 as the original wrote them (one with dropout, one with an
    unpadded checkpoint_1 folder) plus a folder that is not a trial -> {trial: {epoch: state_dict}}."""
    rng = np.random.default_rng(0)
    written = {}
    for i, dropout in enumerate(DROPOUTS):
        trial = root / f"NN_tune_trainable_{i:05d}_seed={i + 1}"
        trial.mkdir(parents=True)
        params = {
            "model::type": "CNN",
            "model::channels_in": 1,
            "model::o_dim": 10,
            "model::nlin": "tanh",
            "model::init_type": "kaiming_uniform",
            "model::dropout": dropout,
            "model::use_bias": True,
            "optim::optimizer": "adam",
            "optim::lr": 1e-3 * (i + 1),
            "optim::wd": 1e-4,
            "seed": i + 1,
            "training::batchsize": 10,
            "training::epochs_train": EPOCHS,
            "dataset::dump": "zoos/data/MNIST/dataset.pt",
        }
        (trial / "params.json").write_text(json.dumps(params))
        lines = [
            {
                "train_loss": 2.0 - e / 10 - i,
                "train_acc": 0.1 * e + i / 100,
                "test_loss": 2.1 - e / 10,
                "test_acc": 0.09 * e + i / 100,
                "training_iteration": e,
                "config": params,
            }
            for e in range(EPOCHS + 1)
        ]
        (trial / "result.json").write_text("".join(json.dumps(line) + "\n" for line in lines))
        written[trial.name] = {}
        for epoch in range(EPOCHS + 1):
            folder = trial / (f"checkpoint_{epoch}" if (i, epoch) == (2, 1) else f"checkpoint_{epoch:06d}")
            folder.mkdir()
            state = cnn_s_state_dict(rng, dropout)
            torch.save(state, folder / "checkpoints")
            written[trial.name][epoch] = state
    (root / "tensorboard_logs").mkdir()
    (root / "tensorboard_logs" / "events").write_text("not a trial")
    return written


def zip_folder(folder: pathlib.Path, target: pathlib.Path, root: pathlib.Path | None = None) -> pathlib.Path:
    """A zip of `folder`, its members named relative to `root` (default: the folder's parent)."""
    with zipfile.ZipFile(target, "w") as archive:
        for path in sorted(folder.rglob("*")):
            archive.write(path, path.relative_to(root or folder.parent).as_posix())
    return target


def test_trial_folders_and_zip(tmp_path):
    experiment = tmp_path / "tune_zoo_mnist_example"
    written = write_trials(experiment)
    messages = []
    report = ingest(experiment, tmp_path / "w", log=messages.append)
    assert report["models"] == 3 and report["epochs"] == EPOCHS + 1
    assert any("skipped 1 subfolder" in m and "tensorboard_logs" in m for m in messages)
    zoo = read_zoo(tmp_path / "w")
    assert zoo.config["data"]["name"] == "mnist" and zoo.config["model"]["arch"] == "cnn_s"
    assert [row["dropout"] for row in zoo.table] == list(DROPOUTS)
    assert [row["lr"] for row in zoo.table] == pytest.approx([1e-3, 2e-3, 3e-3])
    assert [row["source_trial"] for row in zoo.table] == sorted(written)
    for epoch in range(EPOCHS + 1):
        params = zoo.checkpoints.params(epoch)
        for m, (name, states) in enumerate(sorted(written.items())):
            tensors = [t.numpy() for t in states[epoch].values()]
            for (kind, *_), layer, tensor in zip(CNN_S, FLAX_LAYERS, tensors):
                if kind == "bias":
                    np.testing.assert_array_equal(params[layer]["bias"][m], tensor)
                elif layer.startswith("conv"):  # OIHW -> HWIO
                    np.testing.assert_array_equal(params[layer]["kernel"][m], tensor.transpose(2, 3, 1, 0))
                else:  # [out, in] -> [in, out]
                    np.testing.assert_array_equal(params[layer]["kernel"][m], tensor.T)
        np.testing.assert_allclose(zoo.metrics[epoch]["test_acc"], [0.09 * epoch + m / 100 for m in range(3)])
        assert np.isnan(zoo.metrics[epoch]["val_acc"]).all()
    # The .zip of the experiment folder gives the same zoo.
    ingest(zip_folder(experiment, tmp_path / "zoo.zip"), tmp_path / "wz", log=None)
    zipped = read_zoo(tmp_path / "wz")
    assert zipped.identity_hash == zoo.identity_hash
    np.testing.assert_array_equal(zipped.flat_vectors(zipped.state(EPOCHS)), zoo.flat_vectors(zoo.state(EPOCHS)))
    # Ingesting the same zoo again is a no-op; another zoo is refused without --overwrite.
    assert ingest(experiment, tmp_path / "w", log=None)["written"] == 0


@pytest.fixture
def tiny_copy(tiny_zoo, tmp_path):
    """A copy of the session's trained zoo (its card and exports stay out of the shared workdir)."""
    return pathlib.Path(shutil.copytree(tiny_zoo, tmp_path / "zoo"))


def test_round_trip_through_export_keeps_table2(tiny_copy, tmp_path):
    from jaxzoo.analyze import analyze

    out = export(tiny_copy, tmp_path / "out", formats="trials", log=None)["out"]
    report = ingest(out, tmp_path / "ingested", log=None)
    assert report["format"] == "modelzoo_trials" and report["models"] == 4
    original, ingested = read_zoo(tiny_copy), read_zoo(tmp_path / "ingested")
    ingest(pathlib.Path(out) / "trials", tmp_path / "from_trials", log=None)  # the trials folder itself
    assert read_zoo(tmp_path / "from_trials").identity_hash == ingested.identity_hash
    assert [row.pop("source_trial") for row in ingested.table] == [
        f"trials/{path.name}" for path in sorted((pathlib.Path(out) / "trials").iterdir())
    ]
    assert ingested.table == original.table
    locations = {k: "" for k in ("raw_dir", "tfds_dir", "cache_dir")}
    assert ingested.config["data"] == {**original.config["data"], **locations}
    for epoch in original.epochs:
        np.testing.assert_array_equal(
            ingested.flat_vectors(ingested.state(epoch)), original.flat_vectors(original.state(epoch))
        )
    first_card, second_card = analyze(tiny_copy, log=None), analyze(tmp_path / "ingested", log=None)
    first, second = first_card["table2"], second_card["table2"]
    assert "ingest" not in first_card and second_card["ingest"]["left_out"] == 0
    assert "every model of the source is in the zoo" in (tmp_path / "ingested" / "card" / "README.md").read_text()

    def flat(tree, prefix=""):
        for key, value in tree.items():
            yield from (flat(value, f"{prefix}{key}.") if isinstance(value, dict) else [(prefix + key, value)])

    first, second = dict(flat(first)), dict(flat(second))
    assert first.keys() == second.keys()
    for key, value in first.items():
        assert second[key] == pytest.approx(value, abs=1e-6, nan_ok=True), key


UZ_CONFIGS = [
    ("relu", "he_normal", "adam", 0.001, 1e-5, 0.0),
    ("tanh", "glorot_normal", "sgd", 0.03, 1e-3, 0.2),
    ("relu", "RandomNormal", "rmsprop", 0.0005, 1e-6, 0.5),
    ("tanh", "orthogonal", "adam", 0.002, 0.0, 0.0),
]


def write_small_cnn_zoo(folder: pathlib.Path, dataset: str = "mnist") -> tuple[np.ndarray, list]:
    """4 models x 9 checkpoints (and a 5th model missing one, to be left out) of `config.dataset`
    `dataset` -> (weights, rows)."""
    folder.mkdir()
    offsets, start = [], 0
    for name, shape in UZ_LAYOUT:
        offsets.append((name, start, start + int(np.prod(shape)), shape))
        start += int(np.prod(shape))
    with open(folder / "layout.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["varname", "start_idx", "end_idx", "size", "shape"])
        for name, begin, end, shape in offsets:
            writer.writerow([name, begin, end, end - begin, str(shape)])
    rows = []
    for m, (activation, w_init, optimizer, lr, l2reg, dropout) in enumerate(UZ_CONFIGS + [UZ_CONFIGS[0]]):
        for step in UZ_STEPS[:-1] if m == 4 else UZ_STEPS:
            modeldir = f"zoo/{dataset}/unit_{m:05d}"
            rows.append(
                {
                    "": f"{modeldir}/permanent_ckpt-{step}",
                    "config.activation": activation,
                    "config.b_init": "zeros",
                    "config.dataset": dataset,
                    "config.dnn_architecture": "cnn",
                    "config.dropout": dropout,
                    "config.epochs": 86,
                    "config.init_std": 0.05,
                    "config.l2reg": l2reg,
                    "config.learning_rate": lr,
                    "config.num_layers": 3,
                    "config.num_units": 16,
                    "config.optimizer": optimizer,
                    "config.random_seed": 42,
                    "config.train_fraction": (1.0, 0.5, 0.25, 0.1, 1.0)[m],
                    "config.w_init": w_init,
                    "modeldir": modeldir,
                    "step": step,
                    "test_accuracy": 0.1 + step / 100 + m / 1000,
                    "test_loss": 2.3 - step / 50,
                    "train_accuracy": 0.11 + step / 100,
                    "train_loss": 2.2 - step / 50,
                }
            )
    with gzip.open(folder / "metrics.csv.gz", "wt", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    weights = np.random.default_rng(1).normal(0, 0.2, (len(rows), start)).astype(np.float32)
    np.save(folder / "weights.npy", weights)
    return weights, offsets


def numpy_forward(x: np.ndarray, weights_row: np.ndarray, offsets, activation: str) -> np.ndarray:
    """The Small CNN Zoo's Keras model in NumPy from a flat TF-layout row: 3 x (3x3 conv, stride 2,
    'valid', + bias, activation), global average pool, dense."""
    part = {"/".join(name.split("/")[1:])[:-2]: weights_row[b:e].reshape(s) for name, b, e, s in offsets}
    act = np.maximum if activation == "relu" else None
    for layer in ("conv2d", "conv2d_1", "conv2d_2"):
        kernel, bias = part[f"{layer}/kernel"], part[f"{layer}/bias"]
        size = (x.shape[1] - 3) // 2 + 1
        out = np.zeros((x.shape[0], size, size, kernel.shape[-1]))
        for i in range(size):
            for j in range(size):
                patch = x[:, 2 * i : 2 * i + 3, 2 * j : 2 * j + 3, :]  # [B, 3, 3, C]
                out[:, i, j, :] = np.tensordot(patch, kernel, axes=([1, 2, 3], [0, 1, 2])) + bias
        x = act(out, 0.0) if act else np.tanh(out)
    return x.mean(axis=(1, 2)) @ part["dense/kernel"] + part["dense/bias"]


def test_small_cnn_zoo(tmp_path, monkeypatch):
    """Read and written 3 models at a time (4 models: a ragged last block of 1)."""
    weights, offsets = write_small_cnn_zoo(tmp_path / "mnist")
    monkeypatch.setattr(blocks, "READ_BYTES", 3 * 4 * sum(int(np.prod(shape)) for *_, shape in offsets))
    messages = []
    report = ingest(tmp_path / "mnist", tmp_path / "w", dataset="mnist_5k", log=messages.append)
    assert report["format"] == "small_cnn_zoo" and report["models"] == 4 and report["epochs"] == 9
    assert any(
        "left out 1 of 5 models" in m and "zoo/mnist/unit_00004: no checkpoint at steps [86]" in m for m in messages
    )
    zoo = read_zoo(tmp_path / "w")
    assert [row["init"] for row in zoo.table] == [c[1] for c in UZ_CONFIGS]
    assert [row["modeldir"] for row in zoo.table] == [f"zoo/mnist/unit_{m:05d}" for m in range(4)]
    provenance = json.loads((tmp_path / "w" / "ingest.json").read_text())
    assert provenance["left_out"] == [{"name": "zoo/mnist/unit_00004", "reason": "no checkpoint at steps [86]"}]
    assert [row["train_fraction"] for row in zoo.table] == [1.0, 0.5, 0.25, 0.1]
    assert zoo.config["ingest"]["steps"] == list(UZ_STEPS)
    names = {"conv0": "conv2d", "conv1": "conv2d_1", "conv2": "conv2d_2", "dense": "dense"}
    for epoch, step in enumerate(UZ_STEPS):
        assert zoo.checkpoints.stored_blocks(epoch) == [(0, 3), (3, 4)]
        params = zoo.checkpoints.params(epoch)
        rows = np.arange(4) * len(UZ_STEPS) + epoch  # the models' rows at this step
        for name, begin, end, shape in offsets:
            layer = next(ours for ours, theirs in names.items() if name.split("/")[1] == theirs)
            leaf = "kernel" if "kernel" in name else "bias"
            np.testing.assert_array_equal(params[layer][leaf], weights[rows, begin:end].reshape(4, *shape))
        assert (zoo.metrics[epoch]["step"] == step).all()
        np.testing.assert_allclose(zoo.metrics[epoch]["test_acc"], 0.1 + step / 100 + np.arange(4) / 1000)
    # The registered model computes what the Keras model computed (NumPy from the TF layout).
    x = np.random.default_rng(2).normal(size=(3, 28, 28, 1)).astype(np.float32)
    state = zoo.state(len(UZ_STEPS) - 1)
    for m, row in enumerate(zoo.table):
        model = zoo.model(row["activation"])
        params = {layer: {k: v[m] for k, v in leaves.items()} for layer, leaves in state["params"].items()}
        logits = np.asarray(model.apply({"params": params}, x, 0, 0.0, train=False))
        expected = numpy_forward(
            x.astype(np.float64), weights[m * len(UZ_STEPS) + 8].astype(np.float64), offsets, row["activation"]
        )
        np.testing.assert_allclose(logits, expected, atol=1e-5, rtol=1e-5)
    # Exported like a trained zoo: the default custom-module keys, no optimizer state.
    out = pathlib.Path(export(tmp_path / "w", tmp_path / "out", formats="trials", log=None)["out"])
    trial = (
        next((out / "trials").iterdir())
        if (out / "trials").is_dir()
        else next(p for p in out.iterdir() if (p / "params.json").exists())
    )
    last = torch.load(trial / "checkpoint_000008" / "checkpoints")
    assert list(last) == [
        "conv0.weight",
        "conv0.bias",
        "conv1.weight",
        "conv1.bias",
        "conv2.weight",
        "conv2.bias",
        "dense.weight",
        "dense.bias",
    ]
    assert tuple(last["conv0.weight"].shape) == (16, 1, 3, 3)
    assert not (trial / "checkpoint_000008" / "optimizer").exists()


def fails(tmp_path, source, match: str, **kwargs) -> str:
    """Ingest must fail with one line containing `match`, leaving no workdir behind."""
    with pytest.raises(UserError) as error:
        ingest(source, tmp_path / "bad", log=None, **kwargs)
    message = str(error.value)
    assert "\n" not in message and match in message, message
    assert not (tmp_path / "bad").exists() and not (tmp_path / ".bad.ingest-partial").exists()
    return message


def test_bad_archives_name_the_file(tmp_path, capsys):
    experiment = tmp_path / "tune_zoo_bad"
    write_trials(experiment)
    trial = experiment / "NN_tune_trainable_00001_seed=2"
    # A damaged zip.
    data = zip_folder(experiment, tmp_path / "zoo.zip").read_bytes()
    (tmp_path / "damaged.zip").write_bytes(data[: len(data) // 3])
    fails(tmp_path, tmp_path / "damaged.zip", "damaged.zip")
    # Tensors that do not fit the model type (a key renamed): the last epoch fails after others were written.
    state = torch.load(trial / "checkpoint_000002" / "checkpoints")
    state["module_list.5.weight"] = state.pop("module_list.4.weight")
    torch.save(state, trial / "checkpoint_000002" / "checkpoints")
    fails(tmp_path, experiment, f"{trial.name}/checkpoint_000002/checkpoints does not fit model::type CNN")
    shutil.rmtree(trial)
    # params.json without a field; mixed architectures.
    params_path = experiment / "NN_tune_trainable_00002_seed=3" / "params.json"
    params = json.loads(params_path.read_text())
    params_path.write_text(json.dumps({k: v for k, v in params.items() if k != "optim::lr"}))
    fails(tmp_path, experiment, "NN_tune_trainable_00002_seed=3/params.json lacks 'optim::lr'")
    params_path.write_text(json.dumps({**params, "model::type": "CNN3"}))
    fails(tmp_path, experiment, "NN_tune_trainable_00002_seed=3/params.json has model::type CNN3")
    # A workdir holding another zoo is refused unless --overwrite (the CLI: one line, exit code 2).
    params_path.write_text(json.dumps(params))
    ingest(experiment, tmp_path / "w", log=None)
    weights, _ = write_small_cnn_zoo(tmp_path / "uz")
    assert main(["--source", str(tmp_path / "uz"), "--workdir", str(tmp_path / "w"), "--dataset", "mnist_5k"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "holds another zoo" in err and "--overwrite" in err
    assert read_zoo(tmp_path / "w").config["model"]["arch"] == "cnn_s"  # untouched
    assert (
        main(
            ["--source", str(tmp_path / "uz"), "--workdir", str(tmp_path / "w"), "--dataset", "mnist_5k", "--overwrite"]
        )
        == 0
    )
    assert read_zoo(tmp_path / "w").config["model"]["module"] == "small_cnn_zoo"


def test_resnet18_trial_folders_keep_every_tensor(tmp_path):
    """A ResNet-18 trial (torchvision keys, BatchNorm statistics) comes back exactly: the
    workdir's state, mapped forward again, is the source state_dict."""
    from jaxzoo.export.torch_models import ResNet18Cifar
    from jaxzoo.models.resnet import torch_state_dict

    torch.manual_seed(0)
    trial = tmp_path / "tune_zoo_cifar10_resnet18_kaiming_uniform" / "NN_tune_trainable_00000_seed=1"
    trial.mkdir(parents=True)
    params = {
        "model::type": "Resnet18",
        "model::channels_in": 3,
        "model::o_dim": 10,
        "model::nlin": "relu",
        "model::init_type": "kaiming_uniform",
        "model::dropout": 0.0,
        "optim::optimizer": "sgd",
        "optim::lr": 0.05,
        "optim::wd": 5e-4,
        "optim::momentum": 0.9,
        "seed": 1,
        "training::batchsize": 256,
        "training::epochs_train": 1,
        "dataset::dump": "zoos/data/CIFAR10/dataset.pt",
    }
    (trial / "params.json").write_text(json.dumps(params))
    lines = [
        {
            "train_loss": 2.3 - e,
            "train_acc": 0.1 + e / 2,
            "test_loss": 2.3 - e,
            "test_acc": 0.1 + e / 3,
            "val_loss": 2.3 - e,
            "val_acc": 0.1 + e / 4,
            "training_iteration": e,
        }
        for e in range(2)
    ]
    (trial / "result.json").write_text("".join(json.dumps(line) + "\n" for line in lines))
    written = {}
    for epoch in range(2):
        model = ResNet18Cifar(10, 3)
        for name, buffer in model.named_buffers():  # BatchNorm statistics other than the defaults
            buffer.copy_(torch.randint(1, 9, buffer.shape) if buffer.dtype == torch.int64 else torch.rand(buffer.shape))
        written[epoch] = model.state_dict()
        (trial / f"checkpoint_{epoch:06d}").mkdir()
        torch.save(written[epoch], trial / f"checkpoint_{epoch:06d}" / "checkpoints")
    ingest(trial.parent, tmp_path / "zoo", log=None)
    zoo = read_zoo(tmp_path / "zoo")
    assert zoo.is_resnet and zoo.config["data"]["name"] == "cifar10_resnet" and zoo.table[0]["lr"] == 0.05
    assert zoo.metrics[1]["test_acc"][0] == pytest.approx(0.1 + 1 / 3)
    for epoch in range(2):
        got = torch_state_dict(zoo.state(epoch))
        assert list(got) == list(written[epoch])
        for key, value in written[epoch].items():
            np.testing.assert_array_equal(got[key][0], value.numpy(), err_msg=key)


def test_incomplete_trials_are_left_out_and_named(tmp_path):
    """params.json missing: the config of result.json's first line (as the original loader);
    a missing checkpoint or result line: the trial is left out, named in one log line, in
    ingest.json and on the zoo card; nothing complete: refused."""
    experiment = tmp_path / "tune_zoo_mnist_incomplete"
    written = write_trials(experiment)
    names = sorted(written)
    (experiment / names[0] / "params.json").unlink()
    shutil.rmtree(experiment / names[1] / "checkpoint_000002")
    cut = experiment / "NN_tune_trainable_00003_seed=4"
    shutil.copytree(experiment / names[2], cut)
    lines = (cut / "result.json").read_text().splitlines(keepends=True)
    (cut / "result.json").write_text("".join(lines[:-1]))
    messages = []
    report = ingest(experiment, tmp_path / "w", dataset="mnist_5k", log=messages.append)
    assert report["models"] == 2
    left = [m for m in messages if m.startswith("left out")]
    assert len(left) == 1 and "2 of 4 trials" in left[0] and names[1] in left[0] and cut.name in left[0]
    provenance = json.loads((tmp_path / "w" / "ingest.json").read_text())
    assert provenance["left_out"] == [
        {"name": names[1], "reason": "no checkpoint for epochs [2]"},
        {"name": cut.name, "reason": "no result line for epochs [2]"},
    ]
    zoo = read_zoo(tmp_path / "w")
    assert [row["source_trial"] for row in zoo.table] == [names[0], names[2]]
    assert zoo.config["ingest"]["left_out"] == 2 and zoo.table[0]["lr"] == pytest.approx(1e-3)
    for epoch in range(EPOCHS + 1):  # the trial without params.json is read whole
        kernel = written[names[0]][epoch]["module_list.0.weight"].numpy()
        np.testing.assert_array_equal(zoo.checkpoints.params(epoch)["conv0"]["kernel"][0], kernel.transpose(2, 3, 1, 0))
    summary = ingest_summary(tmp_path / "w")
    assert summary["left_out"] == 2 and summary["names"] == [names[1], cut.name]
    line = ingest_line(summary)
    assert "2 incomplete models" in line and "1 x no checkpoint for epochs [2]" in line
    # Nothing complete: refused, nothing written.
    for name in names:
        shutil.rmtree(experiment / name / "checkpoint_000002", ignore_errors=True)
        shutil.rmtree(experiment / name / "checkpoint_2", ignore_errors=True)
    fails(tmp_path, experiment, "none of its 4 trials (epochs 0..2) is complete")


def test_nested_zip_is_read_like_the_folder(tmp_path):
    """A zip of <dataset>/<experiment>/<trials> (as published archives are), its unpacked root
    folder and the experiment folder give the same zoo; two experiments are refused."""
    root = tmp_path / "unpacked"
    experiment = root / "mnist" / "tune_zoo_mnist_nested"
    write_trials(experiment)
    ingest(experiment, tmp_path / "w", log=None)
    zoo = read_zoo(tmp_path / "w")
    archive = zip_folder(root / "mnist", tmp_path / "nested.zip", root)
    for source, name in ((archive, "wz"), (root, "wf")):
        ingest(source, tmp_path / name, log=None)
        other = read_zoo(tmp_path / name)
        assert other.identity_hash == zoo.identity_hash
        np.testing.assert_array_equal(other.flat_vectors(other.state(EPOCHS)), zoo.flat_vectors(zoo.state(EPOCHS)))
        assert other.table[0]["source_trial"] == f"mnist/tune_zoo_mnist_nested/{zoo.table[0]['source_trial']}"
    shutil.copytree(experiment, root / "mnist" / "tune_zoo_mnist_other")
    fails(tmp_path, zip_folder(root / "mnist", tmp_path / "two.zip", root), "holds trial folders in 2 experiments")


def ard_state_dict(rng, dropout: float) -> dict:
    """A CNN_ARD state_dict as the original's Conv2dARD / LinearARD layers hold it: weight, bias,
    log_sigma2 (the weight's shape), log_sigma2_bias (the bias's), module indices as CNN's."""
    state = {}
    for kind, plain, with_dropout, shape in CNN_S:
        index = with_dropout if dropout > 0 else plain
        value = rng.normal(0, 0.3, shape).astype(np.float32)
        noise = rng.uniform(-12.0, 2.0, shape).astype(np.float32)  # some log alpha >= 3: sparse
        state[f"module_list.{index}.{kind}"] = torch.from_numpy(value)
        state[f"module_list.{index}.{'log_sigma2' if kind == 'weight' else 'log_sigma2_bias'}"] = torch.from_numpy(
            noise
        )
    return state


def test_cnn_ard_twins_round_trip(tmp_path):
    """Published CNN_ARD trials (dropout 0 and 0.5: both module numberings) become a twin zoo whose
    params carry log sigma^2; exported again (jaxzoo's twin export) and ingested, exactly the same."""
    rng = np.random.default_rng(5)
    experiment = tmp_path / "cnn_small_mnist_ard"
    written = {}
    for i, dropout in enumerate((0.0, 0.5)):
        trial = experiment / f"NN_tune_trainable_{i:05d}_seed={i + 1}"
        trial.mkdir(parents=True)
        params = {
            "model::type": "CNN_ARD",
            "model::nlin": "tanh",
            "model::init_type": "kaiming_uniform",
            "model::dropout": dropout,
            "optim::optimizer": "adam",
            "optim::lr": 1e-3,
            "optim::wd": 0.0,
            "seed": i + 1,
            "training::batchsize": 10,
            "training::epochs_train": EPOCHS,
            "dataset::dump": "zoos/data/MNIST/dataset.pt",
        }
        (trial / "params.json").write_text(json.dumps(params))
        lines = [
            {"train_loss": 1.0, "train_acc": 0.5, "test_loss": 1.1, "test_acc": 0.4 + e / 10, "training_iteration": e}
            | ({"sparsity_ratio": 0.25 + e / 10} if i == 0 else {})
            for e in range(EPOCHS + 1)
        ]
        (trial / "result.json").write_text("".join(json.dumps(line) + "\n" for line in lines))
        written[i] = []
        for epoch in range(EPOCHS + 1):
            (trial / f"checkpoint_{epoch:06d}").mkdir()
            written[i].append(ard_state_dict(rng, dropout))
            torch.save(written[i][-1], trial / f"checkpoint_{epoch:06d}" / "checkpoints")
    ingest(experiment, tmp_path / "twin", dataset="mnist_5k", log=None)
    zoo = read_zoo(tmp_path / "twin")
    assert zoo.is_twin and zoo.config["model"]["arch"] == "cnn_s" and [r["dropout"] for r in zoo.table] == [0.0, 0.5]
    plain = [i for kind, i, _, _ in CNN_S if kind == "weight"]
    dropped = [i for kind, _, i, _ in CNN_S if kind == "weight"]
    for epoch in range(EPOCHS + 1):
        params = zoo.checkpoints.params(epoch)
        for m, indices in enumerate((plain, dropped)):
            state = {key: value.numpy() for key, value in written[m][epoch].items()}
            for layer, index in zip(("conv0", "conv1", "conv2", "fc0", "fc1"), indices):
                order = (2, 3, 1, 0) if layer.startswith("conv") else (1, 0)
                for ours, theirs in (("kernel", "weight"), ("log_sigma2", "log_sigma2")):
                    expected = state[f"module_list.{index}.{theirs}"].transpose(order)
                    np.testing.assert_array_equal(params[layer][ours][m], expected)
                for ours, theirs in (("bias", "bias"), ("log_sigma2_bias", "log_sigma2_bias")):
                    np.testing.assert_array_equal(params[layer][ours][m], state[f"module_list.{index}.{theirs}"])
            # sparsity: recorded (trial 0), else the share of weights with log alpha >= 3 (Molchanov's clamp)
            if m == 1:
                dropped_weights = total = 0
                for index, kind in zip(indices, ("conv",) * 3 + ("fc",) * 2):
                    w, s2 = state[f"module_list.{index}.weight"], state[f"module_list.{index}.log_sigma2"]
                    low, high = (-8, 8) if kind == "conv" else (-10, 10)
                    dropped_weights += (np.clip(s2 - 2 * np.log(np.abs(w) + 1e-15), low, high) >= 3).sum()
                    total += w.size
                assert zoo.metrics[epoch]["sparsity"][1] == pytest.approx(dropped_weights / total, abs=1e-6)
        assert zoo.metrics[epoch]["sparsity"][0] == pytest.approx(0.25 + epoch / 10)
    # jaxzoo's twin export (CNN_ARD, no dropout modules whatever the dropout) reads back the same.
    out = pathlib.Path(export(tmp_path / "twin", tmp_path / "out", formats="trials", log=None)["out"])
    trials = sorted((out / "trials").iterdir())
    assert [json.loads((t / "params.json").read_text())["model::type"] for t in trials] == ["CNN_ARD"] * 2
    exported = torch.load(trials[1] / "checkpoint_000002" / "checkpoints")
    for index, theirs in zip(plain, dropped):
        for key in ("weight", "bias", "log_sigma2", "log_sigma2_bias"):
            np.testing.assert_array_equal(
                exported[f"module_list.{index}.{key}"].numpy(), written[1][2][f"module_list.{theirs}.{key}"].numpy()
            )
    ingest(out, tmp_path / "again", log=None)
    again = read_zoo(tmp_path / "again")
    assert again.is_twin and again.identity_hash == zoo.identity_hash
    for epoch in range(EPOCHS + 1):
        first, second = zoo.checkpoints.params(epoch), again.checkpoints.params(epoch)
        for layer, leaves in first.items():
            for leaf, value in leaves.items():
                np.testing.assert_array_equal(second[layer][leaf], value)
        np.testing.assert_array_equal(again.metrics[epoch]["sparsity"], zoo.metrics[epoch]["sparsity"])


def test_small_cnn_zoo_records_its_data_and_l2reg(tmp_path):
    """svhn_cropped was 32 x 32 grayscale (the channel mean) in [-1, 1]: recorded so, served by
    jaxzoo's svhn_gs (the same images), while svhn (28 px crop) is said to differ; Keras's l2reg is
    kept as `l2reg`, not as weight_decay."""
    write_small_cnn_zoo(tmp_path / "svhn", dataset="svhn_cropped")
    ingest(tmp_path / "svhn", tmp_path / "w", log=None)
    zoo = read_zoo(tmp_path / "w")
    source = {"name": "svhn_cropped", "image_size": 32, "channels": 1, "grayscale": "the channel mean"}
    assert zoo.config["ingest"]["source_data"] == {**source, "value_range": [-1.0, 1.0]}
    assert (zoo.config["data"]["name"], zoo.config["data"]["image_size"]) == ("svhn_gs", 32)
    provenance = json.loads((tmp_path / "w" / "ingest.json").read_text())
    assert provenance["source_data"]["image_size"] == 32
    evaluation = provenance["evaluation"]
    assert "serves the images the zoo used (32 px" in evaluation
    cropped = evaluation_note("svhn", 28, "svhn_cropped", 32)
    assert "28 px, not 32" in cropped and "centre crop" in cropped and "accuracies differ" in cropped
    assert "serves the images the zoo used" in evaluation_note("cifar10_gs", 32, "cifar10", 32)
    assert "accuracies differ" in evaluation_note("cifar10", 32, "cifar10", 32)  # 3 channels, no mean
    assert evaluation in zoo.config["notes"]
    assert [row["l2reg"] for row in zoo.table] == [c[4] for c in UZ_CONFIGS]
    assert all(row["weight_decay"] == 0.0 for row in zoo.table) and zoo.config["population"]["weight_decay"] == [0.0]
    # Registry counterparts: fashion_mnist's [-1, 1] at 28 px is the zoo's; mnist's normalisation is not.
    assert "serves the images the zoo used" in evaluation_note("fashion_mnist", 28, "fashion_mnist", 28)
    assert "mean [0.1307]" in evaluation_note("mnist", 28, "mnist", 28)
