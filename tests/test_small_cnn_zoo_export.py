"""The Small CNN Zoo format as an export (`jaxzoo.export.small_cnn_zoo`) and the presets of its
published zoos (configs/small_cnn_zoo_*.py).

The written files are read here with numpy, csv and gzip from the format's description (the
Small CNN Zoo's README: weights.npy [rows, 4970], metrics.csv.gz with the checkpoint path in an
unnamed first column and the `config.*`, `modeldir`, `step` and metric columns, layout.csv
mapping columns to TensorFlow variables, bias before kernel per layer), never by jaxzoo's
ingest; then the folder is ingested and its weights compared exactly with the workdir's.
"""

import csv
import gzip
import hashlib
import importlib.util
import json
import pathlib
import re
import shutil

import numpy as np
import pytest
from conftest import small_zoo_config
from small_cnn_zoo_format import UZ_LAYOUT

from jaxzoo.config import validate
from jaxzoo.data import DATASETS
from jaxzoo.errors import UserError
from jaxzoo.export import read_zoo
from jaxzoo.export.small_cnn_zoo import write_small_cnn_zoo
from jaxzoo.ingest import ingest
from jaxzoo.train import train_and_evaluate
from jaxzoo.training.population import expand_grid
from jaxzoo.zoo import blocks

CONFIGS = pathlib.Path(__file__).resolve().parents[1] / "configs"
PRESETS = {
    "small_cnn_zoo_mnist": ("mnist", 28),
    "small_cnn_zoo_fashion_mnist": ("fashion_mnist", 28),
    "small_cnn_zoo_cifar10_gs": ("cifar10_gs", 32),  # one channel, the mean of R, G, B, as the original
    "small_cnn_zoo_svhn_gs": ("svhn_gs", 32),
}
# The published metrics.csv columns, in order, after the unnamed checkpoint-path column.
PUBLISHED_COLUMNS = [
    "config.activation",
    "config.b_init",
    "config.dataset",
    "config.dnn_architecture",
    "config.dropout",
    "config.epochs",
    "config.epochs_between_checkpoints",
    "config.init_std",
    "config.l2reg",
    "config.learning_rate",
    "config.num_layers",
    "config.num_units",
    "config.optimizer",
    "config.random_seed",
    "config.train_fraction",
    "config.w_init",
    "modeldir",
    "step",
    "test_accuracy",
    "test_loss",
    "train_accuracy",
    "train_loss",
]
OUR_LAYERS = {"conv2d": "conv0", "conv2d_1": "conv1", "conv2d_2": "conv2", "dense": "dense"}


def load_preset(name: str):
    spec = importlib.util.spec_from_file_location(f"preset_{name}", CONFIGS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config()


@pytest.fixture(scope="module")
def uz_zoo(tmp_path_factory):
    """4 small_cnn_zoo models (relu, adam x lr {1e-3, 3e-3} x seeds {1, 2}), 2 epochs, 60 examples."""
    config = small_zoo_config(
        activation=("relu",), init=("kaiming_uniform",), optimizer=("adam",), lr=(1e-3, 3e-3), dropout=(0.0,)
    )
    config.name = "uz_test"
    config.model.module = "small_cnn_zoo"
    config.data.max_examples_per_split = 60
    workdir = tmp_path_factory.mktemp("uz") / "zoo"
    train_and_evaluate(config, workdir)
    return workdir


def read_published(folder: pathlib.Path):
    """-> (weights [rows, P], header, metrics rows, layout rows) read as the format describes."""
    weights = np.load(folder / "weights.npy")
    with gzip.open(folder / "metrics.csv.gz", "rt", newline="") as f:
        reader = csv.reader(f)
        header = next(reader)
        rows = list(reader)
    with open(folder / "layout.csv", newline="") as f:
        layout = list(csv.DictReader(f))
    return weights, header, rows, layout


def test_written_in_the_published_format_and_ingested_back(uz_zoo, tmp_path, monkeypatch):
    """Files as published (read with numpy/csv), checksums valid, and ingest gives back the weights bit for bit.
    Written and ingested 3 models at a time (a ragged last block)."""
    zoo = read_zoo(uz_zoo)
    width = 4970
    monkeypatch.setattr(blocks, "READ_BYTES", 3 * 3 * 4 * width)  # 3 epochs of 3 models
    assert zoo.model_blocks(epochs=3, collection="params") == [(0, 3), (3, 4)]
    report = write_small_cnn_zoo(uz_zoo, tmp_path / "uz")
    report_files = report["files"]
    folder = tmp_path / "uz"
    assert report["rows"] == 4 * 3 and report["width"] == width and report["steps"] == [0, 1, 2]
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        ["weights.npy", "metrics.csv.gz", "layout.csv", "readme.md", "checksums.sha256"]
    )
    weights, header, rows, layout = read_published(folder)
    assert weights.dtype == np.float32 and weights.shape == (12, width)
    # layout.csv: the published variables, shapes and offsets (bias before kernel per layer).
    offset = 0
    assert [(e["varname"], tuple(int(n) for n in re.findall(r"\d+", e["shape"]))) for e in layout] == UZ_LAYOUT
    for entry, (_, shape) in zip(layout, UZ_LAYOUT):
        size = int(np.prod(shape))
        assert (int(entry["start_idx"]), int(entry["end_idx"]), int(entry["size"])) == (offset, offset + size, size)
        offset += size
    assert offset == width
    # metrics.csv.gz: the published columns; row r = model r // 3, epoch r % 3.
    assert header == ["", *PUBLISHED_COLUMNS]
    assert len(rows) == 12 and all(len(r) == len(header) for r in rows)
    column = {name: i for i, name in enumerate(header)}
    for r, row in enumerate(rows):
        model, epoch = divmod(r, 3)
        factors = zoo.table[model]
        assert row[column["step"]] == str(epoch)
        assert row[0] == f"{row[column['modeldir']]}/permanent_ckpt-{epoch}"
        assert row[column["config.activation"]] == factors["activation"]
        assert row[column["config.optimizer"]] == factors["optimizer"]
        assert float(row[column["config.learning_rate"]]) == factors["lr"]
        assert float(row[column["config.l2reg"]]) == factors["weight_decay"] / 2  # Keras's c: gradient 2c * w
        assert float(row[column["config.train_fraction"]]) == factors.get("train_fraction", 1.0)
        assert int(row[column["config.random_seed"]]) == factors["seed"]
        assert row[column["config.num_units"]] == "16" and row[column["config.num_layers"]] == "3"
        assert float(row[column["test_accuracy"]]) == zoo.metrics[epoch]["test_acc"][model]
        assert float(row[column["train_loss"]]) == zoo.metrics[epoch]["train_loss"][model]
        # The row is the model's params at that epoch, each tensor at its layout offsets (TF layouts).
        params = zoo.checkpoints.params(epoch)
        for entry in layout:
            layer, leaf = entry["varname"].split("/")[1], entry["varname"].split("/")[2][:-2]
            got = weights[r, int(entry["start_idx"]) : int(entry["end_idx"])]
            np.testing.assert_array_equal(got, params[OUR_LAYERS[layer]][leaf][model].reshape(-1))
    assert len({r[column["modeldir"]] for r in rows}) == 4
    # checksums.sha256: sha256sum lines of the four other files.
    lines = (folder / "checksums.sha256").read_text().splitlines()
    assert len(lines) == 4
    for line in lines:
        digest, name = line.split("  ")
        assert hashlib.sha256((folder / name).read_bytes()).hexdigest() == digest
    readme = (folder / "readme.md").read_text()
    assert "`weight_decay / 2`" in readme and "Every generating factor of this zoo has a column" in readme
    # Ingested back: the same weights, factors and metrics.
    report = ingest(folder, tmp_path / "back", dataset="mnist_5k", log=lambda message: None)
    assert report["models"] == 4 and report["epochs"] == 3
    back = read_zoo(tmp_path / "back")
    for epoch in zoo.epochs:
        ours, theirs = zoo.checkpoints.params(epoch), back.checkpoints.params(epoch)
        for layer in ours:
            for leaf in ours[layer]:
                np.testing.assert_array_equal(theirs[layer][leaf], ours[layer][leaf])
        np.testing.assert_array_equal(back.metrics[epoch]["test_acc"], zoo.metrics[epoch]["test_acc"])
    for ours, theirs in zip(zoo.table, back.table):
        for name in ("activation", "optimizer", "lr", "dropout", "init", "seed"):
            assert theirs[name] == ours[name], name
        assert theirs.get("l2reg", theirs["weight_decay"]) == ours["weight_decay"] / 2
    # Written again from the ingested zoo: the same files, byte for byte (modeldir, steps and l2reg
    # kept; the gzip header without a time).
    again = write_small_cnn_zoo(tmp_path / "back", tmp_path / "again", log=None)
    for name in ("weights.npy", "layout.csv", "metrics.csv.gz"):
        assert (tmp_path / "again" / name).read_bytes() == (folder / name).read_bytes(), name
        assert again["files"][name] == report_files[name]


def test_chosen_epochs_and_refusals(uz_zoo, tiny_zoo, tmp_path):
    """A subset of epochs; another architecture, unknown epochs and a full folder are refused
    before anything is written."""
    report = write_small_cnn_zoo(uz_zoo, tmp_path / "last", epochs=[0, 2])
    weights, _, rows, _ = read_published(tmp_path / "last")
    assert weights.shape == (8, 4970) and [r[18] for r in rows[:2]] == ["0", "2"] and report["steps"] == [0, 2]
    with pytest.raises(UserError, match="not the Small CNN Zoo's CNN"):
        write_small_cnn_zoo(tiny_zoo, tmp_path / "a" / "b")
    assert not (tmp_path / "a").exists()
    with pytest.raises(UserError, match=r"epochs \[5\] are not in the zoo"):
        write_small_cnn_zoo(uz_zoo, tmp_path / "c", epochs=[0, 5])
    with pytest.raises(UserError, match="exists and is not empty"):
        write_small_cnn_zoo(uz_zoo, tmp_path / "last")
    assert not (tmp_path / "c").exists()
    write_small_cnn_zoo(uz_zoo, tmp_path / "last", epochs=[1], overwrite=True)
    assert np.load(tmp_path / "last" / "weights.npy").shape == (4, 4970)
    assert not list(tmp_path.glob(".*partial"))


def test_a_failed_write_leaves_nothing(uz_zoo, tmp_path, monkeypatch):
    """A damaged checkpoint found while writing: the folder and its new parents are removed."""
    copy = tmp_path / "zoo"
    shutil.copytree(uz_zoo, copy)
    zoo = read_zoo(copy)
    monkeypatch.setattr(
        type(zoo.checkpoints), "params", lambda *args, **kwargs: (_ for _ in ()).throw(UserError("damaged"))
    )
    with pytest.raises(UserError, match="damaged"):
        write_small_cnn_zoo(zoo, tmp_path / "new" / "uz")
    assert not (tmp_path / "new").exists()


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets_validate_and_expand(name):
    config = load_preset(name)
    validate(config)
    table = expand_grid(config.population, config.seed)
    assert len(table) == 28_800 and len({row["seed"] for row in table}) > 20_000
    assert [row["model_id"] for row in table] == list(range(len(table)))
    dataset, size = PRESETS[name]
    assert (config.data.name, config.data.image_size) == (dataset, size)
    assert config.model.module == "small_cnn_zoo" and config.training.num_epochs == 86
    assert config.training.batch_size == 512 and config.population.momentum == 0.0
    assert set(config.population.optimizer) == {"adam", "rmsprop", "sgd"}
    assert min(config.population.lr) == 5e-4 and max(config.population.lr) == 5e-2
    assert set(config.population.train_fraction) == {0.1, 0.25, 0.5, 1.0}
    assert "Unterthiner" in config.notes and json.dumps(config.to_dict())
    assert config.name == name and DATASETS[dataset].channels == 1  # 4,970 weights, as published


def test_mnist_preset_trains_and_writes(tmp_path):
    """The MNIST preset's first 8 models (4 train fractions x 2 L2 values) on 60 mnist_5k examples
    per split (batch 6), 1 epoch, written in the published format."""
    config = load_preset("small_cnn_zoo_mnist")
    config.data.name, config.data.max_examples_per_split = "mnist_5k", 60
    config.training.batch_size = 6  # at most the smallest train subset (0.1 x 60)
    config.population.max_models, config.training.num_epochs = 8, 1
    config.runtime.progress = False
    train_and_evaluate(config, tmp_path / "zoo")
    zoo = read_zoo(tmp_path / "zoo")
    assert sorted({row["train_fraction"] for row in zoo.table}) == [0.1, 0.25, 0.5, 1.0]
    report = write_small_cnn_zoo(zoo, tmp_path / "uz")
    weights, header, rows, _ = read_published(tmp_path / "uz")
    assert weights.shape == (16, 4970) and np.isfinite(weights).all()
    assert all(not np.array_equal(weights[2 * m], weights[2 * m + 1]) for m in range(8))  # epoch 1 trained
    l2 = {float(r[header.index("config.l2reg")]) for r in rows}
    assert l2 == {row["weight_decay"] / 2 for row in zoo.table} and l2 <= {1e-8, 1e-6, 1e-4, 1e-2}
    assert report["steps"] == [0, 1] and {r[header.index("config.epochs")] for r in rows} == {"1"}


def test_each_model_trains_at_its_own_dropout_rate(uz_zoo, tmp_path):
    """population.dropout reaches the small_cnn_zoo module per model (its `dropout_rate`): in a
    zoo of rates {0, 0.5}, a rate-0 model trains as the same model in the zoo without dropout,
    a rate-0.5 model otherwise, and the published `config.dropout` column holds each rate. A
    module whose __call__ takes no dropout_rate is refused a dropout factor in one line."""
    config = small_zoo_config(
        activation=("relu",), init=("kaiming_uniform",), optimizer=("adam",), lr=(1e-3, 3e-3), dropout=(0.0, 0.5)
    )
    config.name = "uz_dropout"
    config.model.module = "small_cnn_zoo"
    config.data.max_examples_per_split = 60
    config.training.num_epochs = 1
    train_and_evaluate(config, tmp_path / "zoo")
    zoo, plain = read_zoo(tmp_path / "zoo"), read_zoo(uz_zoo)
    ours, theirs = zoo.checkpoints.params(1), plain.checkpoints.params(1)
    index = {(row["seed"], row["lr"]): i for i, row in enumerate(plain.table)}
    kernel = ("conv1", "kernel")
    for i, row in enumerate(zoo.table):
        same = index[(row["seed"], row["lr"])]
        mine, other = ours[kernel[0]][kernel[1]][i], theirs[kernel[0]][kernel[1]][same]
        if row["dropout"] == 0:
            np.testing.assert_allclose(mine, other, rtol=1e-6, atol=1e-7)
        else:
            assert np.abs(mine - other).max() > 1e-4, "a rate-0.5 model trained as without dropout"
    write_small_cnn_zoo(zoo, tmp_path / "uz")
    _, header, rows, _ = read_published(tmp_path / "uz")
    assert {float(r[header.index("config.dropout")]) for r in rows} == {0.0, 0.5}

    config.model.module = "zoo_modules:ThreeLogits"
    with pytest.raises(UserError, match="dropout_rate"):
        validate(config)
