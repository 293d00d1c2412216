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

from jaxzoo.errors import UserError  # noqa: E402
from jaxzoo.export import export, read_zoo  # noqa: E402
from jaxzoo.ingest import ingest  # noqa: E402
from jaxzoo.ingest.__main__ import main  # noqa: E402
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


def zip_folder(folder: pathlib.Path, target: pathlib.Path) -> pathlib.Path:
    with zipfile.ZipFile(target, "w") as archive:
        for path in sorted(folder.rglob("*")):
            archive.write(path, path.relative_to(folder.parent).as_posix())
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
    assert ingested.table == original.table
    locations = {k: "" for k in ("raw_dir", "tfds_dir", "cache_dir")}
    assert ingested.config["data"] == {**original.config["data"], **locations}
    for epoch in original.epochs:
        np.testing.assert_array_equal(
            ingested.flat_vectors(ingested.state(epoch)), original.flat_vectors(original.state(epoch))
        )
    first = analyze(tiny_copy, log=None)["table2"]
    second = analyze(tmp_path / "ingested", log=None)["table2"]

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


def write_small_cnn_zoo(folder: pathlib.Path) -> tuple[np.ndarray, list]:
    """4 models x 9 checkpoints (and a 5th model missing one, to be left out) -> (weights, rows)."""
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
            modeldir = f"zoo/mnist/unit_{m:05d}"
            rows.append(
                {
                    "": f"{modeldir}/permanent_ckpt-{step}",
                    "config.activation": activation,
                    "config.b_init": "zeros",
                    "config.dataset": "mnist",
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
    assert any("left out 1 of 5 models" in m for m in messages)
    zoo = read_zoo(tmp_path / "w")
    assert [row["init"] for row in zoo.table] == [c[1] for c in UZ_CONFIGS]
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
    # A missing checkpoint epoch.
    shutil.rmtree(trial / "checkpoint_000002")
    fails(tmp_path, experiment, f"{trial.name}/checkpoint_000002/checkpoints is missing")
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
