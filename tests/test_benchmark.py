"""Table 3 machinery: ridge, penalty selection, s(w), the linear probe, and the CLI on a zoo."""

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from jaxzoo.analysis import table3
from jaxzoo.export import VectorSplit

TINY_LAYOUT = {"layer": [0, 3], "idx_start": [0, 6], "kernel_no": [2, 1], "kernel_size": [1, 1], "channels_in": [2, 2]}


def test_ridge_matches_a_direct_solve():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(40, 6)), rng.normal(size=40)
    coefficients = table3.ridge_fit(x, y, 0.3)
    x1 = np.hstack([x, np.ones((40, 1))])
    expected = np.linalg.inv(x1.T @ x1 + 0.3 * np.eye(7)) @ x1.T @ y
    np.testing.assert_allclose(coefficients, expected, rtol=1e-10)
    assert table3.r2(y, table3.ridge_predict(x, coefficients)) > 0


def test_penalty_selection_picks_the_known_best():
    rng = np.random.default_rng(1)
    beta = rng.normal(size=5)
    x = [rng.normal(size=(60, 5)) for _ in range(3)]
    exact = table3.ridge_select(*[(xi, xi @ beta + 2.0) for xi in x])
    assert exact["penalty"] == min(table3.LAMBDAS) and exact["test"] == pytest.approx(1.0, abs=1e-6)
    # Validation targets made by the ridge model of one penalty: that penalty is the best.
    x_train, y_train = rng.normal(size=(30, 20)), rng.normal(size=30)
    for known in (3.0, 1e2):
        x_val = rng.normal(size=(30, 20))
        y_val = table3.ridge_predict(x_val, table3.ridge_fit(x_train, y_train, known))
        chosen = table3.ridge_select((x_train, y_train), (x_val, y_val), (x_val, y_val))
        assert chosen["penalty"] == known and chosen["val"] == pytest.approx(1.0)


def test_layer_statistics_hand_computed():
    w = np.array([[1.0, 2.0, 3.0, 4.0, 10.0, 20.0, 5.0, 6.0, 7.0]])  # layer 0: 4 weights, 2 biases
    stats = table3.layer_statistics(w, TINY_LAYOUT)
    assert stats.shape == (1, 28)
    np.testing.assert_allclose(stats[0, :7], [2.5, 1.25, 1.03, 1.75, 2.5, 3.25, 3.97])
    np.testing.assert_allclose(stats[0, 7:9], [15.0, 25.0])
    np.testing.assert_allclose(stats[0, 14:16], [5.5, 0.25])  # layer 1 weights (5, 6)
    np.testing.assert_allclose(stats[0, 21], 7.0)  # layer 1 bias mean


def constructed_splits(rng, shuffle=False):
    """Accuracy is a linear function of layer 0's weight mean; everything else is noise."""
    splits = {}
    for name, n in (("train", 300), ("val", 80), ("test", 80)):
        w = rng.normal(0, 1, size=(n, 9))
        acc = 0.5 + 0.1 * w[:, :4].mean(axis=1)
        if shuffle:
            acc = rng.permutation(acc)
        props = {
            "test_acc": acc,
            "ggap": np.zeros(n),
            "epoch": np.ones(n),
            "lr": np.ones(n),
            "weight_decay": np.zeros(n),
            "dropout": np.zeros(n),
            "optimizer": ["adam"] * n,
            "init": ["uniform"] * n,
            "activation": ["tanh"] * n,
        }
        splits[name] = VectorSplit(w.astype(np.float32), props, TINY_LAYOUT)
    return splits


def test_statistics_recover_a_linear_property_and_not_a_shuffled_one():
    rng = np.random.default_rng(2)
    table = table3.table3(constructed_splits(rng))["table"]
    assert table["test_acc"]["s(w)"] > 99.0
    assert table["ggap"] == "n/a" and table["activation"] == "n/a" and table["lr"] == "n/a"
    shuffled = table3.table3(constructed_splits(rng, shuffle=True))["table"]
    assert shuffled["test_acc"]["s(w)"] < 5.0


def test_linear_probe_learns_separable_classes():
    rng = np.random.default_rng(3)
    centres = rng.normal(0, 3, size=(3, 8))
    labels = rng.integers(0, 3, 3300)
    x = centres[labels] + rng.normal(0, 0.5, size=(3300, 8))
    # lr 1e-4 (the original's) needs thousands of steps: 20 epochs of 300 batches here
    accuracy = table3.linear_classifier((x[:3000], labels[:3000]), (x[3000:], labels[3000:]), 3, epochs=20)
    assert accuracy > 0.95
    shuffled = table3.linear_classifier(
        (x[:3000], rng.permutation(labels[:3000])), (x[3000:], labels[3000:]), 3, epochs=20
    )
    assert shuffled < 0.6


def test_zoo_benchmark_cli_writes_table_and_card(small_zoo, tmp_path):
    workdir = shutil.copytree(small_zoo, tmp_path / "zoo", ignore=shutil.ignore_patterns("card"))
    (workdir / "card").mkdir()
    (workdir / "card" / "README.md").write_text("# Zoo card\n")
    result = subprocess.run(
        [sys.executable, "-m", "jaxzoo.benchmark", "--workdir", str(workdir), "--out", str(tmp_path / "t3.md")],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    table3 = json.loads((workdir / "card" / "table3.json").read_text())
    assert table3["epochs"] == [1, 2] and table3["table"]["lr"] == "n/a"
    for target in ("test_acc", "epoch", "dropout", "optimizer", "init", "activation"):
        assert set(table3["table"][target]) == {"w", "s(w)"}
    row = (tmp_path / "t3.md").read_text().splitlines()[2]
    assert row.startswith("| test_zoo | ") and "n/a" in row
    assert "## Table 3" in (workdir / "card" / "README.md").read_text()
    bad = subprocess.run([sys.executable, "-m", "jaxzoo.benchmark"], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "nothing to benchmark" in bad.stderr


def test_zoos_past_the_w_budget_get_s_w_by_blocks_equal_to_the_in_memory_rows(small_zoo, tmp_path, monkeypatch):
    """Past `W_FEATURE_BYTES` Table 3 streams s(w) by blocks (stored blocks of 3 models here, a
    ragged last one): the same rows and features as from the flat vectors held in memory."""
    from jaxzoo.export import read_zoo
    from jaxzoo.export.rows import vector_splits

    workdir = shutil.copytree(small_zoo, tmp_path / "zoo")
    zoo = read_zoo(workdir)
    held, counts = vector_splits(zoo, [1, 2], table3.DEFAULT_THRESHOLD)
    expected = table3.feature_sets(held)["s(w)"]
    monkeypatch.setattr(zoo.checkpoints, "stored_blocks", lambda epoch: [(s, min(s + 3, 32)) for s in range(0, 32, 3)])
    streamed, streamed_counts = table3.statistics_splits(zoo, [1, 2], table3.DEFAULT_THRESHOLD)
    assert streamed_counts == counts
    for split, features in expected.items():
        np.testing.assert_array_equal(streamed[split].weights, features)
        np.testing.assert_array_equal(streamed[split].properties["test_acc"], held[split].properties["test_acc"])
    seen = []
    monkeypatch.setattr(table3, "table3", lambda splits, features=None: seen.append(features) or {"table": {}})
    monkeypatch.setattr(table3, "W_FEATURE_BYTES", 1)
    result = table3.benchmark_workdir(workdir, [1, 2])
    assert list(seen[0]) == ["s(w)"] and result["note"].startswith("w is n/a for this zoo")


@pytest.fixture(scope="module")
def exported_vectors(small_zoo, tmp_path_factory):
    """The small zoo's export (vectors only, epochs 0..2, threshold 5): its experiment folder."""
    from jaxzoo.export import export

    root = tmp_path_factory.mktemp("bench_vectors")
    export(small_zoo, root, "vectors", log=None)
    return root / "test_zoo"


def test_vectors_select_the_rows_of_the_workdir(small_zoo, exported_vectors, tmp_path, monkeypatch, capsys):
    """--vectors takes --workdir's default epochs (1..E here; the export holds 0..E) and honours
    --epochs and --threshold: the same rows reach the fit, the same line is printed and recorded,
    and the same R^2 comes out."""
    from jaxzoo import benchmark

    workdir = shutil.copytree(small_zoo, tmp_path / "zoo", ignore=shutil.ignore_patterns("card"))
    seen = []
    monkeypatch.setattr(table3, "table3", lambda splits, features=None: seen.append(splits) or {"table": {}})
    for flag, source in (("--workdir", workdir), ("--vectors", exported_vectors)):
        assert benchmark.main([flag, str(source)]) == 0
    by_workdir, by_vectors = seen
    for split in ("train", "val", "test"):
        np.testing.assert_array_equal(by_vectors[split].weights, by_workdir[split].weights)
        assert set(by_vectors[split].properties["epoch"].tolist()) == {1, 2}
        for name, values in by_workdir[split].properties.items():
            np.testing.assert_array_equal(np.asarray(by_vectors[split].properties[name]), np.asarray(values), name)
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("Table 3 of")]
    assert (
        lines[0]
        == "Table 3 of test_zoo: epochs [1, 2], train/val/test 44/8/12 rows; dropped 0 with NaN/inf, 0 with |w| > 5"
    )
    assert lines[1] == lines[0] + " (the export dropped 0 rows over its epochs [0, 1, 2])"
    monkeypatch.undo()
    # --epochs 2 --threshold 0.7 (drops some rows): the same rows and R^2 (ridge targets; the
    # classifier's inputs are the same rows)
    monkeypatch.setattr(table3, "CATEGORICAL_TARGETS", {})
    for flag, source in (("--workdir", workdir), ("--vectors", exported_vectors)):
        assert benchmark.main([flag, str(source), "--epochs", "2", "--threshold", "0.7"]) == 0
    recorded = [
        json.loads((workdir / "card" / "table3.json").read_text()),
        json.loads((exported_vectors / "vectors" / "table3.json").read_text()),
    ]
    for result in recorded:
        assert result["epochs"] == [2] and result["threshold"] == 0.7
    assert recorded[0]["rows"] == recorded[1]["rows"]
    assert 0 < sum(c["dropped_threshold"] for c in recorded[0]["rows"].values()) < 32
    assert recorded[1]["exported"]["epochs"] == [0, 1, 2]
    assert recorded[0]["table"] == recorded[1]["table"] and recorded[0]["table"]["test_acc"] != "n/a"
    assert benchmark.main(["--vectors", str(exported_vectors), "--epochs", "2,7"]) == 2
    assert "epochs [7] are not in" in capsys.readouterr().err
