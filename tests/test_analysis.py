"""Table 2 metrics on constructed populations, viability filtering, figures and the zoo card."""

import json
import math
import pathlib
import subprocess
import sys
import tracemalloc

import jax
import numpy as np
import pytest
from PIL import Image

from jaxzoo.analysis import plots
from jaxzoo.analysis import table2 as analysis
from jaxzoo.analysis.card import paper_cell, table2_section
from jaxzoo.analyze import analyze
from jaxzoo.zoo import checkpoint


def random_orthogonal(rng, d):
    q, _ = np.linalg.qr(rng.normal(size=(d, d)))
    return q


def test_identical_models_agree_fully():
    rng = np.random.default_rng(0)
    predictions = np.tile(rng.integers(0, 10, 200), (4, 1))
    features = np.tile(rng.normal(size=(1, 50, 12)), (4, 1, 1))
    weights = np.tile(rng.normal(size=(1, 30)), (4, 1))
    np.testing.assert_allclose(analysis.agreement_matrix(predictions, 10), 1.0)
    np.testing.assert_allclose(analysis.linear_cka_matrix(features), 1.0, atol=1e-6)
    l2, cosine = analysis.distance_matrices(weights)
    np.testing.assert_allclose(l2, 0.0, atol=1e-6)
    np.testing.assert_allclose(cosine, 0.0, atol=1e-12)


def test_cka_invariances():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(50, 8))
    rotated = 3.7 * x @ random_orthogonal(rng, 8)
    mixed = x @ (np.eye(8) + np.diag(np.linspace(0, 9, 8)) + 0.5 * rng.normal(size=(8, 8)))
    cka = analysis.linear_cka_matrix(np.stack([x, rotated, mixed]))
    assert cka[0, 1] == pytest.approx(1.0, abs=1e-5)  # Gram matrices in float32
    assert cka[0, 2] < 0.97
    unrelated = rng.normal(size=(50, 8))
    assert analysis.linear_cka_matrix(np.stack([x, unrelated]))[0, 1] < 0.5
    # matches the textbook formula ||Y^T X||_F^2 / (||X^T X||_F ||Y^T Y||_F) on centred data
    xc, mc = x - x.mean(0), mixed - mixed.mean(0)
    textbook = np.linalg.norm(mc.T @ xc) ** 2 / (np.linalg.norm(xc.T @ xc) * np.linalg.norm(mc.T @ mc))
    assert cka[0, 2] == pytest.approx(textbook, rel=1e-5)


def test_hand_computed_distances_and_agreement():
    w = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    l2, cosine = analysis.distance_matrices(w)
    assert l2[0, 1] == pytest.approx(math.sqrt(2)) and l2[0, 2] == pytest.approx(1.0)
    assert cosine[0, 1] == pytest.approx(1.0) and cosine[0, 2] == pytest.approx(1 - 1 / math.sqrt(2))
    assert analysis.pair_values(l2).tolist() == pytest.approx([math.sqrt(2), 1.0, 1.0])
    predictions = np.array([[0, 1, 2, 3], [0, 1, 0, 0], [3, 3, 3, 3]])
    agree = analysis.agreement_matrix(predictions, 4)
    assert agree[0, 1] == 0.5 and agree[0, 2] == 0.25 and agree[1, 2] == 0.0


def test_viability_filter_and_table2_row():
    rng = np.random.default_rng(2)
    weights = rng.normal(0, 0.1, size=(5, 20))
    weights[1, 3] = np.nan
    weights[3, 0] = 7.5
    acc = np.array([0.9, 0.1, 0.8, 0.2, 0.7])
    predictions = rng.integers(0, 10, size=(5, 30))
    features = [rng.normal(size=(5, 50, 6)), rng.normal(size=(5, 50, 10))]
    row = analysis.table2_row(acc, predictions, features, weights, 10, threshold=5.0)
    assert (row["viable"], row["removed_non_finite"], row["removed_over_threshold"]) == (3, 1, 1)
    assert row["accuracy"]["mean"] == pytest.approx(0.8) and row["accuracy"]["std"] == pytest.approx(
        np.std([0.9, 0.8, 0.7])
    )
    kept = weights[[0, 2, 4]]
    assert row["weights"]["mean"] == pytest.approx(kept.mean())
    assert len(row["cka_per_layer"]) == 2
    assert row["cka"]["mean"] == pytest.approx(np.mean(row["cka_per_layer"]))


def unblocked_table2(test_acc, predictions, layer_features, weights, num_classes, threshold=5.0):
    """Table 2 by the textbook formulas on whole [M, M] matrices (the implementation before blocking)."""
    keep = analysis.viability(weights, threshold).keep
    m = int(keep.sum())
    pairs = lambda matrix: matrix[np.triu_indices(m, k=1)]
    stats = lambda values: {"mean": float(np.mean(values)), "std": float(np.std(values))}
    predictions, weights = predictions[keep], weights[keep].astype(np.float64)
    agree = (
        sum((predictions == c).astype(np.float64) @ (predictions == c).astype(np.float64).T for c in range(num_classes))
        / predictions.shape[1]
    )
    per_layer = []
    for features in layer_features:
        x = features[keep].reshape(m, features.shape[1], -1).astype(np.float32)
        x = x - x.mean(axis=1, keepdims=True)
        grams = (x @ np.swapaxes(x, 1, 2)).astype(np.float64).reshape(m, -1)
        unit = grams / np.linalg.norm(grams, axis=1, keepdims=True)
        per_layer.append(unit @ unit.T)
    sq = (weights * weights).sum(axis=1)
    dot = weights @ weights.T
    l2 = np.sqrt(np.maximum(sq[:, None] + sq[None, :] - 2 * dot, 0.0))
    cosine = 1 - dot / np.sqrt(sq[:, None] * sq[None, :])
    return {
        "viable": m,
        "accuracy": stats(test_acc[keep]),
        "agreement": stats(pairs(agree)),
        "cka": stats(pairs(np.mean(per_layer, axis=0))),
        "cka_per_layer": [stats(pairs(c))["mean"] for c in per_layer],
        "weights": stats(weights),
        "l2_distance": stats(pairs(l2)),
        "cosine_distance": stats(pairs(cosine)),
    }


@pytest.mark.parametrize("block", [1, 7, 16, 64])
def test_blocked_table2_equals_the_whole_matrix_formulas(block):
    rng = np.random.default_rng(3)
    m = 45  # not a multiple of the blocks; two non-viable models make the kept indices non-contiguous
    weights = rng.normal(0, 0.5, size=(m, 33)).astype(np.float32)
    weights[4, 0], weights[30, 2] = np.inf, 9.0
    predictions = rng.integers(0, 4, size=(m, 60)).astype(np.uint8)
    shared = rng.normal(size=(1, 50, 9))
    features = [(shared + rng.normal(0, 0.5, size=(m, 50, 9))).astype(np.float32), rng.normal(size=(m, 50, 3, 4))]
    acc = rng.uniform(size=m)
    row = analysis.table2_row(acc, predictions, features, weights, 4, block=block)
    expected = unblocked_table2(acc, predictions, features, weights, 4)
    assert row["viable"] == expected["viable"] == m - 2
    for key, value in expected.items():
        if isinstance(value, dict):
            for stat in ("mean", "std"):
                assert row[key][stat] == pytest.approx(value[stat], rel=1e-9, abs=1e-15), (key, stat)
    assert row["cka_per_layer"] == pytest.approx(expected["cka_per_layer"], rel=1e-9)
    assert 0.3 < row["cka_per_layer"][0] < 0.99 and row["cka_per_layer"][1] < row["cka_per_layer"][0]


def test_paper_units_divide_the_l2_distance_by_the_mean_norm_of_the_viable_models():
    """table2's "paper" block: every column x100, l2 over the zoo's mean l2 norm, by direct formulas."""
    w = np.array(
        [
            [3.0, 4.0, 0.0, 0.0],
            [0.0, 1.0, 2.0, 2.0],
            [1.0, 0.0, 0.0, 0.0],
            [0.5, -0.5, 0.5, -0.5],
            [2.0, 2.0, 1.0, 0.0],
            [0.0, 7.0, 0.0, 0.0],
        ]
    )  # the last model is not viable: |w| > 5
    acc = np.array([0.9, 0.8, 0.75, 0.6, 0.5, 0.1])
    predictions = np.array(
        [[0, 1, 2, 0], [0, 1, 1, 0], [2, 2, 2, 2], [0, 1, 2, 1], [1, 1, 2, 0], [0, 0, 0, 0]], np.uint8
    )
    kept = w[:5]
    pairs = [(i, j) for i in range(5) for j in range(i + 1, 5)]
    l2 = np.array([np.linalg.norm(kept[i] - kept[j]) for i, j in pairs])
    cosine = np.array([1 - kept[i] @ kept[j] / (np.linalg.norm(kept[i]) * np.linalg.norm(kept[j])) for i, j in pairs])
    agree = np.array([(predictions[i] == predictions[j]).mean() for i, j in pairs])
    mean_norm = np.linalg.norm(kept, axis=1).mean()
    expected = {
        "accuracy": 100 * acc[:5],
        "agreement": 100 * agree,
        "weights": 100 * kept,
        "l2_distance": 100 * l2 / mean_norm,
        "cosine_distance": 100 * cosine,
    }
    for block in (1, 2, 6):  # the pairs streamed through tiles of 1, 2 and all models
        row = analysis.table2(acc, predictions, [], w, 3, block=block)
        assert (row["viable"], row["mean_l2_norm"]) == (5, pytest.approx(mean_norm, rel=1e-12))
        assert row["l2_distance"]["mean"] == pytest.approx(l2.mean(), rel=1e-12)  # raw values kept
        assert row["cka"] is None and row["paper"]["cka"] is None  # no layers: left out
        for column, values in expected.items():
            assert row["paper"][column]["mean"] == pytest.approx(values.mean(), rel=1e-12), column
            assert row["paper"][column]["std"] == pytest.approx(values.std(), rel=1e-9), column
    # The card prints the row as the paper: "mean (std)", one decimal, n/a for a column left out.
    section = table2_section("hand_made", row).splitlines()
    cell = lambda values: f"{values.mean():.1f} ({values.std():.1f})"
    assert section[2] == "| Zoo | Acc | Agreement κ_aggr | CKA κ_cka | w | ‖w_k − w_l‖₂ | cos(w_k, w_l) |"
    cells = (
        [cell(expected[key]) for key in ("accuracy", "agreement")]
        + ["n/a"]
        + [cell(expected[key]) for key in ("weights", "l2_distance", "cosine_distance")]
    )
    assert section[4] == f"| hand_made | {' | '.join(cells)} |"
    assert section[6].startswith("All columns in percent, mean (std)")
    assert f"divided by the zoo's mean l2 norm ‖w_n‖₂ = {mean_norm:.4g}" in section[6]
    assert paper_cell({"mean": 124.06, "std": 4.94}) == "124.1 (4.9)"  # the paper's MNIST Seed l2 cell


def test_moments_merge_like_one_pass():
    values = np.random.default_rng(4).normal(5.0, 0.01, size=1001)
    merged = sum((analysis.Moments.of(part) for part in np.split(values, [1, 2, 500, 1000])), analysis.Moments())
    assert merged.count == 1001
    assert merged.summary()["mean"] == pytest.approx(values.mean(), rel=1e-14)
    assert merged.summary()["std"] == pytest.approx(values.std(), rel=1e-9)
    assert math.isnan(analysis.mean_std(np.array([]))["std"])


def test_pair_statistics_never_build_an_m_by_m_matrix():
    rng = np.random.default_rng(5)
    m, block = 3000, 128
    weights = rng.normal(size=(m, 6)).astype(np.float32)
    predictions = rng.integers(0, 3, size=(m, 8)).astype(np.uint8)
    grams = [analysis.packed_grams(rng.normal(size=(m, 4, 2)))]
    tracemalloc.start()
    try:
        row = analysis.table2(np.zeros(m), predictions, grams, weights, 3, block=block)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert row["viable"] == m and 0 < row["agreement"]["mean"] < 1
    assert peak < m * m * 8 / 20, f"{peak / 2**20:.1f} MiB traced; [M, M] float64 is {m * m * 8 / 2**20:.0f} MiB"


def test_spilled_rows_give_exactly_the_in_memory_table2():
    rng = np.random.default_rng(6)
    m = 37
    weights = rng.normal(0, 0.5, size=(m, 21)).astype(np.float32)
    weights[5, 1] = np.nan
    predictions = rng.integers(0, 3, size=(m, 40)).astype(np.uint8)
    grams = [analysis.packed_grams(rng.normal(size=(m, 6, 4))), analysis.packed_grams(rng.normal(size=(m, 6, 2)))]
    acc = rng.uniform(size=m)
    arrays = {"predictions": predictions, "weights": weights, "gram0": grams[0], "gram1": grams[1]}
    with analysis.ModelRows.of(1, **arrays) as rows:  # a 1-byte budget: every array in a file
        assert sorted(rows.spilled) == sorted(arrays)
        assert np.array_equal(rows.read("weights", np.array([0, 5, 36])), weights[[0, 5, 36]], equal_nan=True)
        spilled, _ = analysis.table2_of_rows(acc, rows, 2, 3, block=8)
        folder = str(rows._folder.name)
        with open("/proc/self/maps") as maps:  # files are mapped only during a read or write
            assert folder not in maps.read()
    assert not pathlib.Path(folder).exists()
    assert spilled == analysis.table2(acc, predictions, grams, weights, 3, block=8)
    assert spilled["viable"] == m - 1
    tiny_budget = analysis.table2(acc, predictions, grams, weights, 3, budget=20_000)  # blocks from the budget
    assert analysis.pair_block(1000, 12, 20_000) < m
    for key in ("agreement", "cka", "weights", "l2_distance", "cosine_distance"):
        assert tiny_budget[key]["mean"] == pytest.approx(spilled[key]["mean"], rel=1e-12), key
        assert tiny_budget[key]["std"] == pytest.approx(spilled[key]["std"], rel=1e-9), key


def test_pair_block_fits_the_budget():
    for row_bytes, matrices, budget in ((70_000, 22, 256 * 2**20), (10, 12, 10**9), (10**6, 12, 1000)):
        b = analysis.pair_block(row_bytes, matrices, budget)
        assert b == 1 or 8 * matrices * b * b + 2 * row_bytes * b <= budget < 8 * matrices * (
            b + 1
        ) ** 2 + 2 * row_bytes * (b + 1)


def test_params_restore_reads_only_params_and_blocks_equal_the_full_restore(tiny_zoo):
    from jaxzoo.analysis.forward import dot_products, flat_parts, model_chunks, weight_facts
    from jaxzoo.export import read_zoo

    zoo = read_zoo(tiny_zoo)
    full = checkpoint.load_state(tiny_zoo, 2)[1]["params"]
    reader = checkpoint.ZooCheckpoints(tiny_zoo)
    params = reader.params(2)
    assert jax.tree.structure(params) == jax.tree.structure(full)
    assert jax.tree.all(jax.tree.map(np.array_equal, params, full))
    paths = reader.param_paths(2)
    assert ("conv0", "kernel") in paths and len(paths) == len(jax.tree.leaves(full))
    assert list(reader.params(2, [("fc1", "bias")])) == ["fc1"]
    models = np.array([0, 2, 3, len(zoo.table) - 1])  # chunks of 3: a ragged last chunk
    chunks = list(model_chunks(zoo, 2, models, 3))
    assert [list(positions) for positions, _ in chunks] == [[0, 1, 2], [3]]
    for positions, block in chunks:
        assert jax.tree.all(jax.tree.map(lambda a, b: np.array_equal(a, b[models[positions]]), block, full))
    # dot products by groups of one model (every group pair read) equal the flat vectors' own
    vectors = zoo.flat_vectors({"params": full}).astype(np.float64)
    np.testing.assert_allclose(
        dot_products(zoo, 2, models, group_bytes=1), vectors[models] @ vectors[models].T, rtol=1e-12
    )
    assert np.allclose(flat_parts(full) @ flat_parts(full).T, vectors @ vectors.T)
    facts = weight_facts(zoo, 2)
    np.testing.assert_allclose(facts.norms(np.arange(len(zoo.table))), np.linalg.norm(vectors, axis=1), rtol=1e-12)


def test_paired_models_are_a_seeded_sample_beyond_the_limit():
    from jaxzoo.analysis.card import paired_models

    viable = np.arange(0, 300, 3)
    assert paired_models(viable, limit=100) is viable
    sample = paired_models(viable, limit=10)
    assert len(set(sample)) == 10 and set(sample) <= set(viable) and list(sample) == sorted(sample)
    assert list(sample) == list(paired_models(viable, limit=10)) and list(sample) != list(viable[:10])


@pytest.mark.parametrize("shape", [(300, 40), (30, 200), (2, 5)])
def test_pca_equals_the_svd_projections_up_to_sign(shape):
    rng = np.random.default_rng(7)
    weights = (rng.normal(size=shape) * np.linspace(3, 0.1, shape[1]) + 5).astype(np.float32)
    centred = weights.astype(np.float64) - weights.astype(np.float64).mean(axis=0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    expected = centred @ vt[:2].T
    points = plots.pca(weights, 2)
    signs = np.sign((points * expected).sum(axis=0))
    np.testing.assert_allclose(points * signs, expected, atol=1e-9 * np.abs(expected).max())


@pytest.fixture(scope="module")
def analysed_zoo(small_zoo):
    card = analyze(small_zoo, log=None)
    return small_zoo, card


def test_card_numbers_equal_the_metrics(analysed_zoo):
    workdir, card = analysed_zoo
    table2 = json.loads((workdir / "card" / "table2.json").read_text())
    assert json.loads((workdir / "card" / "zoo_card.json").read_text())["table2"] == table2 == card["table2"]
    rows = [r for r in checkpoint.read_metrics(workdir) if r["epoch"] == 2]
    _, state = checkpoint.load_state(workdir)
    from jaxzoo.models.cnn import ARCHS
    from jaxzoo.models.torch_layout import flat_vectors

    keep = analysis.viability(flat_vectors(state["params"], ARCHS["cnn_s"])).keep
    accs = np.array([r["test_acc"] for r in rows], np.float64)[keep]
    assert table2["accuracy"]["mean"] == pytest.approx(accs.mean(), abs=1e-7)
    readme = (workdir / "card" / "README.md").read_text()
    paper = table2["paper"]
    assert paper["accuracy"]["mean"] == pytest.approx(100 * table2["accuracy"]["mean"])
    cells = " | ".join(f"{paper[k]['mean']:.1f} ({paper[k]['std']:.1f})" for k in ("accuracy", "agreement", "cka"))
    assert f"| test_zoo | {cells} | " in readme and "CC-BY 4.0" in readme
    assert card["model_states"] == 32 * 3 and 0 < table2["agreement"]["mean"] <= 1 and 0 < table2["cka"]["mean"] <= 1


def test_card_reports_the_distances_after_weight_matching(analysed_zoo):
    """The symmetry section: raw distances equal numpy over the same models' pairs; aligned ones
    are smaller, and an aligned vector holds the same numbers (a permutation of the raw one)."""
    from jaxzoo.export import read_zoo
    from jaxzoo.weights.symmetry import align_vectors

    workdir, card = analysed_zoo
    section = card["symmetry"]
    zoo = read_zoo(workdir)
    viable = np.flatnonzero(analysis.viability(zoo.params_vectors(zoo.checkpoints.params(2))).keep)
    rows = viable[np.linspace(0, len(viable) - 1, section["models"]).round().astype(int)]
    vectors = zoo.params_vectors(jax.tree.map(lambda a: a[rows], zoo.checkpoints.params(2))).astype(np.float64)
    pairs = [np.linalg.norm(vectors[i] - vectors[j]) for i in range(len(rows)) for j in range(i)]
    assert section["pairs"] == len(pairs) == 120
    assert section["raw"]["l2"][0] == pytest.approx(np.mean(pairs), rel=1e-9)
    assert section["aligned"]["cosine"][0] < section["raw"]["cosine"][0]
    assert section["aligned"]["l2"][0] < section["raw"]["l2"][0]
    other = next(j for j, r in enumerate(rows) if zoo.table[r]["seed"] != zoo.table[rows[0]]["seed"])
    aligned = align_vectors(vectors[other], vectors[0], zoo.vector_layout())
    assert np.linalg.norm(aligned - vectors[0]) < np.linalg.norm(vectors[other] - vectors[0])
    np.testing.assert_array_equal(np.sort(aligned), np.sort(vectors[other]))
    assert "## Weight-space symmetry" in (workdir / "card" / "README.md").read_text()


def test_figures_exist_and_are_not_blank(analysed_zoo):
    workdir, card = analysed_zoo
    pngs = [p for p in card["figures"] if p.endswith(".png")]
    assert {p.rsplit("/", 1)[1] for p in pngs} == {
        "accuracy_over_epochs.png",
        "final_accuracy.png",
        "weights_embedding.png",
    }
    for path in card["figures"]:
        assert (workdir / "card" / path.rsplit("/", 1)[1]).stat().st_size > 5000
    for path in pngs:
        pixels = np.asarray(Image.open(path).convert("L"), np.float32)
        assert pixels.shape[0] > 200 and pixels.std() > 10  # drawn content, not a blank canvas


def test_analyze_cli_errors(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "jaxzoo.analyze", "--workdir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2 and "is not a jaxzoo workdir" in result.stderr


def test_weight_matching_and_embedding_keep_to_their_budgets(tiny_zoo, monkeypatch):
    from jaxzoo.analysis import card
    from jaxzoo.export import read_zoo

    zoo = read_zoo(tiny_zoo)
    keep = np.ones(len(zoo.table), bool)
    full = card.aligned_distances(zoo, keep)
    assert (full["models"], full["pairs"], full["budget"]) == (4, 6, None)
    cut = card.aligned_distances(zoo, keep, seconds=0.0)  # one pair is over budget: 2 models
    assert (cut["models"], cut["pairs"]) == (2, 1) and cut["budget"].startswith("2 of 4 models: one pair took")
    assert "within its time budget: 2 of 4 models" in card.symmetry_section(cut)
    assert cut["raw"] != full["raw"]
    monkeypatch.setattr(card, "EMBEDDING_BYTES", 3 * zoo.checkpoints.model_bytes(2, "params"))
    assert card.embedding_limit(zoo, 5000) == 3 and card.embedding_limit(zoo, 2) == 2
    weights, epochs, models = card.embedding_rows(zoo, keep, 3)
    assert weights.shape == (3, zoo.flat_vectors({"params": zoo.checkpoints.params(2)}).shape[1])
    for row, epoch, model in zip(weights, epochs, models):
        np.testing.assert_array_equal(row, zoo.flat_vectors({"params": zoo.checkpoints.params(epoch)})[model])
