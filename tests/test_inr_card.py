"""The INR zoo card (`python -m jaxzoo.analyze` on an INR workdir): its numbers against the zoo's
metrics, the reconstructions it shows, the class-prediction baseline and the command."""

import json
import shutil

import matplotlib.image
import numpy as np
import pytest

from jaxzoo import analyze
from jaxzoo.analysis import table3
from jaxzoo.export import EXPORTS_FILE
from jaxzoo.inr import card as inr_card
from jaxzoo.inr.zoo import read_inr_zoo

FIGURES = ("psnr_hist", "steps_to_target", "psnr_over_epochs", "reconstructions")


@pytest.fixture(scope="module")
def carded(inr_zoo, tmp_path_factory):
    """A copy of the INR fixture zoo with one export listed, carded through analyze's main."""
    root = tmp_path_factory.mktemp("inr_card")
    workdir = root / "zoo"
    shutil.copytree(inr_zoo, workdir, ignore=shutil.ignore_patterns("card"))
    export = root / "export"
    export.mkdir()
    (workdir / EXPORTS_FILE).write_text(json.dumps([str(export)]))
    assert analyze.main(["--workdir", str(workdir)]) == 0
    card = json.loads((workdir / "card" / "zoo_card.json").read_text())
    return workdir, export, card


def numpy_psnr(metrics):
    psnr = metrics["psnr"][~metrics["diverged"].astype(bool)]
    return psnr, np.percentile(psnr, [5, 25, 50, 75, 95])


def test_card_psnr_and_steps_equal_numpy_over_the_metrics(carded):
    workdir, _, card = carded
    zoo = read_inr_zoo(workdir)
    metrics = zoo.metrics(zoo.last_epoch())
    psnr, quantiles = numpy_psnr(metrics)
    p = card["psnr"]
    assert card["epoch"] == zoo.last_epoch() == 3 and card["models"] == len(zoo.table) == 48
    assert p["mean"] == pytest.approx(np.mean(psnr), rel=1e-12) and p["std"] == pytest.approx(np.std(psnr), rel=1e-12)
    assert [p["quantiles"][q] for q in ("5", "25", "50", "75", "95")] == pytest.approx(quantiles, rel=1e-12)
    assert p["diverged"] == int(metrics["diverged"].sum()) and p["models"] == len(psnr)
    assert p["share_at_target"] == pytest.approx(np.mean(metrics["psnr"] >= 22.0))
    steps = metrics["steps_to_target"]
    reached = steps[np.isfinite(steps)]
    s = card["steps_to_target"]
    assert (s["reached"], s["never"]) == (len(reached), len(steps) - len(reached))
    assert s["median"] == pytest.approx(np.median(reached)) and s["mean"] == pytest.approx(np.mean(reached))
    last = card["psnr_over_epochs"][-1]
    assert [r["epoch"] for r in card["psnr_over_epochs"]] == zoo.epochs()
    assert (last["median"], last["p5"], last["p95"]) == pytest.approx((quantiles[2], *np.percentile(psnr, [5, 95])))
    readme = (workdir / "card" / "README.md").read_text()
    assert f"| {np.mean(psnr):.2f} | {np.std(psnr):.2f} | {quantiles[0]:.2f} |" in readme
    assert f"{len(reached)} models reached 22 dB, {len(steps) - len(reached)} never did" in readme
    assert card["siren"]["params"] == 2 * 32 + 32 + 32 * 32 + 32 + 32 + 1
    assert "1,185" in readme and "2 → 32 → 32 → 1" in readme


@pytest.mark.parametrize("fixture", ["inr_zoo", "inr_zoo_nfn"])
def test_statistics_count_models_that_never_reach_the_target(fixture, request):
    """The [-1, 1] zoo has models that never reach 19 dB: the counts follow steps_to_target."""
    zoo = read_inr_zoo(request.getfixturevalue(fixture))
    metrics = zoo.metrics()
    target = float(zoo.config.training.target_psnr)
    steps = inr_card.steps_statistics(metrics, target)
    never = int(np.isnan(metrics["steps_to_target"]).sum())
    assert (steps["reached"], steps["never"]) == (48 - never, never)
    if fixture == "inr_zoo_nfn":
        assert 0 < never < 48
    stats = inr_card.psnr_statistics(metrics, target)
    psnr, quantiles = numpy_psnr(metrics)
    assert stats["quantiles"]["50"] == pytest.approx(quantiles[2], rel=1e-12)
    assert stats["at_target"] == int(metrics["reached"].sum()) == 48 - never
    assert (
        inr_card.steps_statistics(metrics, 0.0) is None and inr_card.psnr_statistics(metrics, 0.0)["at_target"] is None
    )


def test_diverged_models_are_counted_not_averaged():
    metrics = {
        "psnr": np.array([20.0, 30.0, np.nan, 25.0]),
        "diverged": np.array([False, False, True, False]),
        "reached": np.array([0.0, 1.0, 0.0, 1.0]),
        "steps_to_target": np.array([np.nan, 10.0, np.nan, 30.0]),
    }
    stats = inr_card.psnr_statistics(metrics, 24.0)
    assert (stats["models"], stats["diverged"], stats["at_target"]) == (3, 1, 2)
    assert stats["mean"] == pytest.approx(25.0) and stats["quantiles"]["50"] == pytest.approx(25.0)
    assert stats["share_at_target"] == pytest.approx(0.5)
    steps = inr_card.steps_statistics(metrics, 24.0)
    assert (steps["reached"], steps["never"], steps["median"], steps["max"]) == (2, 2, 20.0, 30.0)
    usable = ~metrics["diverged"]
    table = [{"image": i, "label": label} for i, label in enumerate((1, 0, 0, 1))]
    assert inr_card.grid_rows(table, usable, 3).tolist() == [1, 0, 3]  # class 0 first, the diverged skipped


def test_reconstructions_are_the_zoos_and_labelled_with_their_psnr(carded):
    workdir, export, card = carded
    zoo = read_inr_zoo(workdir)
    grid = np.load(workdir / "card" / inr_card.GRID_FILE)
    ids = grid["model_ids"]
    assert ids.tolist() == card["reconstructions"]["model_ids"] and len(ids) == 8
    # first model per class, classes in ascending order
    labels = [row["label"] for row in zoo.table]
    first = {label: labels.index(label) for label in sorted(set(labels))}
    assert ids.tolist() == list(first.values())[:8] and grid["labels"].tolist() == list(first)[:8]
    params = {layer: {k: v[ids] for k, v in leaves.items()} for layer, leaves in zoo.params().items()}
    np.testing.assert_array_equal(grid["reconstructions"], zoo.reconstruct(params))
    np.testing.assert_array_equal(grid["originals"], zoo.target_images(ids))
    np.testing.assert_allclose(grid["psnr"], zoo.metrics()["psnr"][ids], atol=0.01)
    np.testing.assert_allclose(card["reconstructions"]["psnr"], grid["psnr"])
    readme = (workdir / "card" / "README.md").read_text()
    assert all(
        f"model {m} (image {zoo.table[m]['image']}, label {labels[m]}, {v:.2f} dB)" in readme
        for m, v in zip(ids, grid["psnr"])
    )
    for name in FIGURES:
        for folder in (workdir / "card", export / "card"):
            image = matplotlib.image.imread(folder / f"{name}.png")
            assert image.ndim == 3 and min(image.shape[:2]) > 100 and np.ptp(image) > 0
            assert f"![{name}]({name}.png)" in (folder / "README.md").read_text()
    assert json.loads((export / "card" / "zoo_card.json").read_text())["psnr"] == card["psnr"]


def test_symmetric_targets_display_as_the_images(inr_zoo_nfn):
    """[-1, 1] targets: the grid shows (x + 1) / 2, i.e. the image's pixels / 255; PSNR with peak 2."""
    zoo = read_inr_zoo(inr_zoo_nfn)
    grid = inr_card.reconstruction_grid(zoo)
    assert grid.originals.min() < -0.9  # on the targets' scale
    position = {int(i): k for k, i in enumerate(zoo.images.image_index)}
    pixels = zoo.images.pixels[[position[zoo.table[r]["image"]] for r in grid.rows]] / 255.0
    np.testing.assert_allclose(grid.display(grid.originals), pixels, atol=1e-6)
    shown = grid.display(grid.reconstructions)
    assert shown.min() >= 0.0 and shown.max() <= 1.0
    np.testing.assert_allclose(grid.psnr, zoo.metrics()["psnr"][grid.rows], atol=0.01)


def test_class_prediction_trains_and_tests_on_disjoint_images(inr_zoo, monkeypatch):
    zoo = read_inr_zoo(inr_zoo)
    test, how = inr_card.class_split(zoo.table)
    images = np.array([row["image"] for row in zoo.table])
    assert "held out" in how  # the fixture holds train-split images only
    assert set(images[test]).isdisjoint(images[~test]) and test.sum() == 12 and (~test).sum() == 36
    calls = []

    def recorder(train, test_set, num_classes, **kwargs):
        calls.append((train[0].shape, train[1], test_set[0].shape, test_set[1], num_classes))
        return 0.25

    monkeypatch.setattr(table3, "linear_classifier", recorder)
    result = inr_card.class_prediction(zoo)
    labels = np.array([row["label"] for row in zoo.table])
    assert len(calls) == 2  # w, then s(w)
    for (train_shape, y_train, test_shape, y_test, classes), width in zip(calls, (1185, 7 * 6)):
        assert train_shape == (36, width) and test_shape == (12, width) and classes == 10
        np.testing.assert_array_equal(y_train, labels[~test])
        np.testing.assert_array_equal(y_test, labels[test])
    assert (result["train_models"], result["test_models"], result["train_images"], result["test_images"]) == (
        36,
        12,
        18,
        6,
    )
    assert result["accuracy"] == {"w": 0.25, "s(w)": 0.25} and result["chance"] == 0.1
    # a zoo of both splits' images: the source split decides
    table = [{"image": i, "split": "train" if i < 3 else "test", "label": 0} for i in (0, 1, 2, 3, 4, 0, 1, 2, 3, 4)]
    test, how = inr_card.class_split(table)
    assert test.tolist() == [False] * 3 + [True] * 2 + [False] * 3 + [True] * 2 and how.startswith("source split")


def test_card_accuracies_come_from_a_fit(carded):
    c = carded[2]["class_prediction"]
    assert (c["train_models"], c["test_models"]) == (36, 12)
    for value in c["accuracy"].values():
        assert 0.0 <= value <= 1.0 and value * c["test_models"] == pytest.approx(round(value * c["test_models"]))
    assert c["chance"] == 0.1 and 0.0 <= c["majority"] <= 1.0


def test_classifier_finds_a_planted_class_signal():
    """The card's classifier on 150 train rows of 40 features, one of them shifted per class (and
    an offset on all that the standardisation takes off): far above chance (1/5); pure noise is not."""
    rng = np.random.default_rng(0)
    labels = np.arange(200) % 5
    noise = rng.normal(size=(200, 40))
    planted = noise + 5.0 * np.eye(40)[labels] + 100.0
    test = np.arange(200) >= 150
    accuracy = inr_card.class_accuracies({"planted": planted, "noise": noise}, labels, test, 5)
    assert accuracy["planted"] > 0.8
    assert accuracy["noise"] < 0.5
    # Table 3's 50 epochs for a real zoo; more for a small one (at least MIN_CLASSIFIER_STEPS steps)
    assert inr_card.classifier_epochs(60_000) == 50
    assert inr_card.classifier_epochs(150) * 15 >= inr_card.MIN_CLASSIFIER_STEPS


def test_workdir_without_checkpoints_fails_in_one_line(inr_zoo, tmp_path, capsys):
    workdir = tmp_path / "bare"
    workdir.mkdir()
    for name in ("config.json", "models.json"):
        shutil.copy(inr_zoo / name, workdir / name)
    assert analyze.main(["--workdir", str(workdir)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("jaxzoo: error:") and "train the zoo first" in err and len(err.splitlines()) == 1
    assert not (workdir / "card").exists()
