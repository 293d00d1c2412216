"""The Parquet export and its Hugging Face dataset card, read back by pyarrow, datasets, pandas, polars."""

import builtins
import json
import shutil

import numpy as np
import pytest

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

from jaxzoo import export  # noqa: E402
from jaxzoo.errors import UserError  # noqa: E402
from jaxzoo.export import __main__ as export_cli
from jaxzoo.export import parquet  # noqa: E402
from jaxzoo.zoo import checkpoint

SPLITS = ("train", "val", "test")


@pytest.fixture(scope="module")
def exported(small_zoo, tmp_path_factory):
    """The shared 32-model, 2-epoch zoo exported once as parquet, and once as vectors whose folder
    is copied next to it (as in an `all` export: `datasets` must read only the Parquet files)."""
    root = tmp_path_factory.mktemp("parquet")
    target = root / "out" / "test_zoo"
    report = export.export(small_zoo, root / "out", formats="parquet", log=None)
    export.export(small_zoo, root / "vectors", formats="vectors", log=None)
    shutil.copytree(root / "vectors" / "test_zoo" / "vectors", target / "vectors")
    return small_zoo, target, report, export.load_vectors(target)


def row_keys(properties):
    return list(zip(np.asarray(properties["model_id"]).tolist(), np.asarray(properties["epoch"]).tolist()))


def test_columns_rows_and_values_match_the_vectors_and_metrics(exported):
    workdir, target, report, vectors = exported
    metrics = {(line["model_id"], line["epoch"]): line for line in checkpoint.read_metrics(workdir)}
    size = vectors["train"].weights.shape[1]
    assert report["parquet"]["weights_size"] == size
    assert sorted(p.name for p in (target / "parquet").iterdir()) == [f"{s}.parquet" for s in ("test", "train", "val")]
    rows = 0
    for split in SPLITS:
        table = pq.read_table(target / "parquet" / f"{split}.parquet")
        expected = vectors[split]
        assert table.schema.field("weights").type == pa.list_(pa.float32(), size)
        assert table.schema.field("model_id").type == pa.int64() and table.schema.field("epoch").type == pa.int64()
        assert table.schema.field("test_acc").type == pa.float32() and table.schema.field("lr").type == pa.float64()
        assert table.schema.field("activation").type == pa.string()
        assert table.schema.field("model::nlin").type == pa.string()
        assert set(table.column_names) == {"weights", "trial", *expected.properties}  # the vectors' names, and trial
        assert table.num_rows == len(expected.weights) == report["parquet"]["splits"][split]["rows"]
        rows += table.num_rows
        # Same rows as the vectors, joined on (model_id, epoch): the vectors by model (split order),
        # then epoch; the Parquet files by epoch, then model in the same order (as the card says).
        keys = row_keys({name: table.column(name).to_numpy() for name in ("model_id", "epoch")})
        order = {key: i for i, key in enumerate(row_keys(expected.properties))}
        assert sorted(keys) == sorted(order) and len(set(keys)) == len(keys)
        models = list(dict.fromkeys(m for m, _ in order))
        assert list(order) == sorted(order, key=lambda key: (models.index(key[0]), key[1]))
        assert keys == sorted(keys, key=lambda key: (key[1], models.index(key[0])))
        seeds = table.column("seed").to_pylist()
        assert table.column("trial").to_pylist() == [
            f"NN_tune_trainable_{m:05d}_seed={seed}" for (m, _), seed in zip(keys, seeds)
        ]
        index = np.array([order[key] for key in keys])
        weights = table.column("weights").combine_chunks().flatten().to_numpy().reshape(-1, size)
        np.testing.assert_array_equal(weights, expected.weights[index])
        for name, values in expected.properties.items():
            column = table.column(name).to_pylist()
            wanted = [values[i] for i in index]
            assert column == (wanted if isinstance(values, list) else np.asarray(wanted).tolist()), name
        for (model_id, epoch), acc, loss in zip(
            keys, table.column("test_acc").to_pylist(), table.column("train_loss").to_pylist()
        ):
            assert acc == pytest.approx(metrics[model_id, epoch]["test_acc"], rel=1e-6)
            assert loss == pytest.approx(metrics[model_id, epoch]["train_loss"], rel=1e-6)
    assert rows == report["parquet"]["rows"]
    assert json.loads((target / "export.json").read_text())["complete"]


def test_datasets_pandas_and_polars_read_the_export(exported, tmp_path, monkeypatch):
    datasets = pytest.importorskip("datasets")
    pd = pytest.importorskip("pandas")
    pl = pytest.importorskip("polars")
    _, target, report, vectors = exported
    card = (target / "README.md").read_text()
    assert card.startswith("---\n") and 'license: "cc-by-4.0"' in card and "weight-space-learning" in card
    assert (target / "readme.md").read_text() in card  # the original readme stays, and is in the card
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    loaded = datasets.load_dataset(str(target), cache_dir=str(tmp_path / "cache"))
    assert set(loaded) == {"train", "validation", "test"}
    for split, name in (("train", "train"), ("val", "validation"), ("test", "test")):
        assert loaded[name].num_rows == len(vectors[split].weights)
        frame = pd.read_parquet(target / "parquet" / f"{split}.parquet")
        polars_frame = pl.read_parquet(target / "parquet" / f"{split}.parquet")
        assert len(frame) == polars_frame.height == loaded[name].num_rows
        first = loaded[name].with_format("numpy")[0]
        np.testing.assert_array_equal(first["weights"], np.asarray(frame["weights"].iloc[0], np.float32))
        np.testing.assert_array_equal(polars_frame["weights"][0].to_numpy(), first["weights"])
        assert first["model_id"] == frame["model_id"].iloc[0] == polars_frame["model_id"][0]


def test_without_pyarrow_the_export_fails_in_one_line_and_writes_nothing(exported, tmp_path, monkeypatch):
    workdir = exported[0]
    real_import = builtins.__import__

    def no_pyarrow(name, *args, **kwargs):
        if name == "pyarrow" or name.startswith("pyarrow."):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_pyarrow)
    for fmt in ("parquet", "all"):
        with pytest.raises(UserError) as error:
            export.export(workdir, tmp_path / "out", formats=fmt, log=None)
        assert "pip install pyarrow" in str(error.value) and "\n" not in str(error.value)
    assert not (tmp_path / "out").exists()
    assert export_cli.main(["--workdir", str(workdir), "--out", str(tmp_path / "out"), "--format", "parquet"]) != 0
    assert not (tmp_path / "out").exists()


def test_row_groups_are_bounded_and_size_categories(tmp_path, monkeypatch):
    monkeypatch.setattr(parquet, "ROW_GROUP_BYTES", 4 * 10 * 25)  # 25 rows of 10 weights
    properties = {"model_id": np.arange(60), "activation": ["relu"] * 60}
    table_schema = parquet.schema(pa, 10, properties)
    writer = parquet.SplitWriter(pa, tmp_path, "train", table_schema, 10)
    for start in range(0, 60, 7):
        block = slice(start, start + 7)
        writer.append(
            np.ones((len(properties["model_id"][block]), 10), np.float32),
            {"model_id": properties["model_id"][block], "activation": properties["activation"][block]},
        )
    writer.close()
    metadata = pq.ParquetFile(tmp_path / "train.parquet").metadata
    assert metadata.num_rows == 60 and [metadata.row_group(i).num_rows for i in range(metadata.num_row_groups)] == [
        28,
        28,
        4,
    ]
    assert not (tmp_path / ".train.parquet.partial").exists()
    assert parquet.size_category(96) == "n<1K" and parquet.size_category(51_000) == "10K<n<100K"
    card = parquet.dataset_card(96, "# zoo\n")
    front = pytest.importorskip("yaml").safe_load(card.split("---\n")[1])
    assert front["configs"] == [
        {
            "config_name": "default",
            "data_files": [
                {"split": "train", "path": "parquet/train.parquet"},
                {"split": "validation", "path": "parquet/val.parquet"},
                {"split": "test", "path": "parquet/test.parquet"},
            ],
        }
    ]
    assert front["license"] == "cc-by-4.0" and front["size_categories"] == ["n<1K"] and "jaxzoo" in front["tags"]


def test_card_states_the_split_alias_row_orders_and_layout(exported):
    """The card's body: validation is val.parquet, the row orders and key, the trial folder rule,
    a row of the tensor table, and the same JSON as the files' schema metadata."""
    _, target, _, _ = exported
    card = (target / "README.md").read_text()
    assert "The split `validation` is the file `parquet/val.parquet`, which `vectors/` and jaxzoo call `val`" in card
    assert "Rows of `parquet/` are ordered by epoch, then by model in split order" in card
    assert "The key (model_id, epoch) joins them" in card and "`NN_tune_trainable_{model_id:05d}_seed={seed}`" in card
    assert "| `module_list.0.weight` | 0 | [8, 1, 5, 5] | `module_list.0.weight` |" in card
    assert "| `module_list.4.weight` | 208 | [6, 8, 5, 5] |" not in card  # dropout's key is in the last column
    assert "| `module_list.3.weight` | 208 | [6, 8, 5, 5] | `module_list.4.weight` |" in card
    block = json.loads(card.split("```json\n")[1].split("\n```")[0])
    for split in SPLITS:
        assert json.loads(pq.read_schema(target / "parquet" / f"{split}.parquet").metadata[b"jaxzoo"]) == block
    assert block["splits"]["validation"] == "parquet/val.parquet" and block["split"]["split_by"] == "model"
