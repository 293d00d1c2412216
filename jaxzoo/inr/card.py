"""The card of an INR zoo: `python -m jaxzoo.analyze --workdir W` on a workdir whose config has
`task='inr'` (one SIREN per image).

Writes `W/card/` as the classification card does (README.md the card, zoo_card.json the same
numbers, the figures as PNG + SVG) and copies it into every export listed in W's exports file.
Sections, all at the last whole epoch unless said otherwise:

- the zoo: dataset, INRs (images x seeds), the SIREN's shape and parameter count, the recipe;
- PSNR of the models that did not diverge (mean, std, quantiles 5/25/50/75/95 %), the share at
  `training.target_psnr` and the diverged count; PSNR is 10 log10(peak^2 / MSE) with the peak the
  targets' peak-to-peak range (1 for [0, 1] targets, 2 for [-1, 1]), as in training;
- steps to the target PSNR of the models that reached it, and how many never did;
- PSNR over epochs (median and the 5-95 % band);
- reconstructions: per class its first model (then further models, up to 8), the image above
  and the SIREN's output below (shown in [0, 1]), titled with the label and the PSNR of that
  output (kept in reconstructions.npz);
- class prediction, the Table 3-style baseline the INR papers report: the image's class from
  the flat weights w and from s(w) (per tensor mean, variance and the 1/25/50/75/99 percentiles,
  `jaxzoo.benchmark`), with `jaxzoo.analysis.table3.linear_classifier` trained on the INRs of
  train-split images and tested on those of test-split images.
"""

from __future__ import annotations

import dataclasses
import math
import pathlib
import time

import numpy as np

from jaxzoo.analysis import plots, table3
from jaxzoo.analysis.card import in_card_folder, publish_card, write_card
from jaxzoo.host import folder_in_place
from jaxzoo.inr import siren
from jaxzoo.inr.zoo import InrZoo, read_inr_zoo
from jaxzoo.zoo.trees import tree_take

plt = plots.plt  # matplotlib.pyplot on the Agg backend (set by jaxzoo.analysis.plots)

QUANTILES = (5, 25, 50, 75, 95)
RECONSTRUCTIONS = 8  # images in the reconstruction grid
HOLDOUT_EVERY = 4  # a zoo of one split's images: every 4th image's INRs are the test INRs
MAX_CLASSIFIER_MODELS = 10_000  # INRs per side of the class prediction (an even subsample beyond)
GRID_FILE = "reconstructions.npz"
CLASSIFIER_EPOCHS = 50  # Table 3's linear classifier: 50 epochs of batches of 10 ...
CLASSIFIER_BATCH = 10
MIN_CLASSIFIER_STEPS = 20_000  # ... or more epochs, so that a small zoo's fit takes this many steps


# --- numbers ---------------------------------------------------------------------------------


def psnr_statistics(metrics: dict[str, np.ndarray], target_psnr: float) -> dict:
    """PSNR of the models that did not diverge: mean, std (population), min, max and the
    `QUANTILES`; the diverged count; the share (and count) of all models at the target PSNR
    (None without a target)."""
    diverged = np.asarray(metrics["diverged"], bool)
    psnr = np.asarray(metrics["psnr"], np.float64)[~diverged]
    psnr = psnr[np.isfinite(psnr)]
    out = {
        "models": int(psnr.size),
        "diverged": int(diverged.sum()),
        "mean": None,
        "std": None,
        "min": None,
        "max": None,
        "quantiles": {str(q): None for q in QUANTILES},
    }
    if psnr.size:
        out.update(
            mean=float(psnr.mean()),
            std=float(psnr.std()),
            min=float(psnr.min()),
            max=float(psnr.max()),
            quantiles={str(q): float(v) for q, v in zip(QUANTILES, np.percentile(psnr, QUANTILES))},
        )
    reached = np.asarray(metrics["reached"], np.float64) > 0
    out["at_target"] = int(reached.sum()) if target_psnr > 0 else None
    out["share_at_target"] = float(reached.mean()) if target_psnr > 0 else None
    return out


def steps_statistics(metrics: dict[str, np.ndarray], target_psnr: float) -> dict | None:
    """Steps to the target PSNR: how many models reached it (a finite `steps_to_target`) and the
    median, mean, min and max of their steps; how many never did. None without a target."""
    if target_psnr <= 0:
        return None
    steps = np.asarray(metrics["steps_to_target"], np.float64)
    hit = steps[np.isfinite(steps)]
    summary = lambda f: float(f(hit)) if hit.size else None
    return {
        "target_psnr": float(target_psnr),
        "reached": int(hit.size),
        "never": int(steps.size - hit.size),
        "median": summary(np.median),
        "mean": summary(np.mean),
        "min": summary(np.min),
        "max": summary(np.max),
    }


def psnr_over_epochs(zoo: InrZoo) -> list[dict]:
    """Per whole epoch: its step, the median and 5 / 95 % quantiles of the PSNR of the models that
    did not diverge, and how many models are at the target."""
    rows = []
    target = float(zoo.config.training.target_psnr)
    for epoch in zoo.epochs():
        metrics = zoo.metrics(epoch)
        psnr = np.asarray(metrics["psnr"], np.float64)[~np.asarray(metrics["diverged"], bool)]
        psnr = psnr[np.isfinite(psnr)]
        low, median, high = np.percentile(psnr, (5, 50, 95)) if psnr.size else (np.nan,) * 3
        rows.append(
            {
                "epoch": epoch,
                "step": epoch * int(zoo.config.training.steps_per_epoch),
                "median": _number(median),
                "p5": _number(low),
                "p95": _number(high),
                "at_target": int((np.asarray(metrics["reached"]) > 0).sum()) if target > 0 else None,
                "diverged": int(np.asarray(metrics["diverged"], bool).sum()),
            }
        )
    return rows


def _number(value) -> float | None:
    return float(value) if np.isfinite(value) else None


# --- reconstructions -------------------------------------------------------------------------


@dataclasses.dataclass
class ReconstructionGrid:
    """The models shown (`rows` into the table), their images and reconstructions [n, H, W, C] on
    the targets' scale, the same in [0, 1] for display, and the PSNR of each reconstruction."""

    rows: np.ndarray
    labels: np.ndarray
    originals: np.ndarray
    reconstructions: np.ndarray
    psnr: np.ndarray
    target_range: str

    def display(self, images: np.ndarray) -> np.ndarray:
        """Targets' scale -> [0, 1] (clipped): [-1, 1] targets map to (x + 1) / 2."""
        x = (images + 1.0) / 2.0 if self.target_range == "symmetric" else images
        return np.clip(x, 0.0, 1.0)


def grid_rows(table: list[dict], usable: np.ndarray, count: int = RECONSTRUCTIONS) -> np.ndarray:
    """The models of the grid: the first usable model of each class (classes in ascending order),
    then the next usable models of images not yet shown, up to `count` (table order)."""
    rows, images = [], set()
    for label in sorted({row["label"] for row in table}):
        first = next((i for i, row in enumerate(table) if usable[i] and row["label"] == label), None)
        if first is not None and len(rows) < count:
            rows.append(first)
            images.add(table[first]["image"])
    for i, row in enumerate(table):
        if len(rows) >= count:
            break
        if usable[i] and row["image"] not in images:
            rows.append(i)
            images.add(row["image"])
    return np.array(rows, np.int64)


def reconstruction_grid(
    zoo: InrZoo, epoch: int | None = None, count: int = RECONSTRUCTIONS, params: dict | None = None
) -> ReconstructionGrid:
    """The reconstructions of `grid_rows` (models that did not diverge) at `epoch` (default the
    last; `params` that epoch's params if already read), each with the PSNR of its output against
    its image (`siren.psnr`)."""
    epoch = zoo.last_epoch() if epoch is None else epoch
    usable = ~np.asarray(zoo.metrics(epoch)["diverged"], bool)
    rows = grid_rows(zoo.table, usable, count)
    params = tree_take(zoo.params(epoch) if params is None else params, rows)
    originals = zoo.target_images(rows)
    reconstructions = zoo.reconstruct(params) if len(rows) else np.zeros_like(originals)
    mse = np.mean(np.square(reconstructions.astype(np.float64) - originals), axis=(1, 2, 3))
    psnr = np.asarray(siren.psnr(mse, zoo.config.model.target_range), np.float64)
    labels = np.array([zoo.table[r]["label"] for r in rows], np.int64)
    return ReconstructionGrid(rows, labels, originals, reconstructions, psnr, zoo.config.model.target_range)


# --- class prediction ------------------------------------------------------------------------


def flat_weights(spec: siren.SirenSpec, params: dict) -> tuple[np.ndarray, dict]:
    """(the flat vectors [M, P] float32, per layer its weight then its bias in PyTorch's orientation,
    their layout {'tensors': [{key, offset, shape}]} for `table3.layer_statistics`)."""
    blocks, tensors, offset = [], [], 0
    for layer, kind, array in siren.torch_state_dict_order(spec, params):
        block = np.asarray(array, np.float32).reshape(len(array), -1)
        tensors.append({"key": f"layer{layer}.{kind}", "offset": offset, "shape": list(array.shape[1:])})
        offset += block.shape[1]
        blocks.append(block)
    return np.concatenate(blocks, axis=1), {"tensors": tensors}


def class_split(table: list[dict]) -> tuple[np.ndarray, str]:
    """(test [M] bool, how): the INRs of test-split images are the test INRs when the zoo holds
    both splits' images; otherwise every `HOLDOUT_EVERY`-th of its images (in image-index order)
    is held out with all its INRs. Either way no image has INRs on both sides."""
    splits = np.array([row["split"] for row in table])
    if {"train", "test"} <= set(splits.tolist()):
        return splits == "test", "source split: INRs of train-split images -> INRs of test-split images"
    images = np.array([row["image"] for row in table])
    held = np.unique(images)[HOLDOUT_EVERY - 1 :: HOLDOUT_EVERY]
    only = splits[0] if len(splits) else "no"
    return np.isin(images, held), (
        f"the zoo holds {only}-split images only: every {HOLDOUT_EVERY}th of its images "
        "(image-index order) held out with all its INRs as the test INRs"
    )


def subsample(index: np.ndarray, limit: int) -> np.ndarray:
    """At most `limit` of `index`, evenly spaced (all when fewer)."""
    if len(index) <= limit:
        return index
    return index[np.linspace(0, len(index) - 1, limit).round().astype(np.int64)]


def standardise(train: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both feature sets centred and scaled by the train rows' mean and std (std 0 -> 1)."""
    mean, std = train.mean(axis=0), train.std(axis=0)
    std = np.where(std > 0, std, 1.0)
    return (train - mean) / std, (test - mean) / std


def classifier_epochs(train_rows: int) -> int:
    """Table 3's 50 epochs of batches of `CLASSIFIER_BATCH`, or more for a few rows: at least
    `MIN_CLASSIFIER_STEPS` steps (Adam at lr 1e-4 barely leaves its init in fewer)."""
    steps_per_epoch = max(1, math.ceil(train_rows / CLASSIFIER_BATCH))
    return max(CLASSIFIER_EPOCHS, math.ceil(MIN_CLASSIFIER_STEPS / steps_per_epoch))


def class_accuracies(
    features: dict[str, np.ndarray], labels: np.ndarray, test: np.ndarray, num_classes: int
) -> dict[str, float]:
    """Test accuracy of `table3.linear_classifier` per feature set {name: [M, F]}, trained on the
    rows not in `test` [M] bool (`classifier_epochs` epochs) and tested on the rows in it, features
    standardised by the train rows."""
    test = np.asarray(test, bool)
    labels = np.asarray(labels, np.int64)
    epochs = classifier_epochs(int((~test).sum()))
    out = {}
    for name, x in features.items():
        x = np.asarray(x, np.float64)
        x_train, x_test = standardise(x[~test], x[test])
        out[name] = table3.linear_classifier(
            (x_train.astype(np.float32), labels[~test]),
            (x_test.astype(np.float32), labels[test]),
            num_classes,
            epochs=epochs,
            batch=CLASSIFIER_BATCH,
        )
    return out


def class_prediction(
    zoo: InrZoo, epoch: int | None = None, limit: int = MAX_CLASSIFIER_MODELS, params: dict | None = None
) -> dict:
    """The image's class from w and s(w) (`class_accuracies`) of the models that did not diverge at
    `epoch` (default the last; `params` its params if already read), split by `class_split`, at
    most `limit` INRs per side; with the chance level 1 / classes and the accuracy of always
    answering the most frequent train class."""
    epoch = zoo.last_epoch() if epoch is None else epoch
    num_classes = int(zoo.images.num_classes)
    test, how = class_split(zoo.table)
    usable = ~np.asarray(zoo.metrics(epoch)["diverged"], bool)
    labels = np.array([row["label"] for row in zoo.table], np.int64)
    images = np.array([row["image"] for row in zoo.table], np.int64)
    capped = max(int((usable & ~test).sum()), int((usable & test).sum())) > limit
    train_rows = subsample(np.flatnonzero(usable & ~test), limit)
    test_rows = subsample(np.flatnonzero(usable & test), limit)
    out = {
        "split": how,
        "epoch": epoch,
        "num_classes": num_classes,
        "chance": 1.0 / num_classes,
        "train_models": int(len(train_rows)),
        "test_models": int(len(test_rows)),
        "train_images": int(len(np.unique(images[train_rows]))),
        "test_images": int(len(np.unique(images[test_rows]))),
        "dropped_diverged": int((~usable).sum()),
        "epochs": classifier_epochs(len(train_rows)),
        "subsampled_to": limit if capped else None,
        "majority": None,
        "accuracy": {"w": None, "s(w)": None},
        "features": "w: the flat vector (per layer weight then bias, PyTorch order); s(w): per tensor mean, "
        "variance and the 1/25/50/75/99 percentiles; both standardised by the train INRs",
    }
    if not len(train_rows) or not len(test_rows):
        out["note"] = "n/a: no INR on one side of the split"
        return out
    rows = np.concatenate([train_rows, test_rows])
    weights, layout = flat_weights(zoo.spec, tree_take(zoo.params(epoch) if params is None else params, rows))
    is_test = np.arange(len(rows)) >= len(train_rows)
    features = {"w": weights, "s(w)": table3.layer_statistics(weights, layout)}
    out["accuracy"] = class_accuracies(features, labels[rows], is_test, num_classes)
    majority = np.bincount(labels[train_rows], minlength=num_classes).argmax()
    out["majority"] = float(np.mean(labels[test_rows] == majority))
    return out


# --- figures ---------------------------------------------------------------------------------


def psnr_histogram(psnr: np.ndarray, target_psnr: float, peak: float, folder: pathlib.Path) -> list[str]:
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.hist(psnr[np.isfinite(psnr)], bins=30, color="tab:blue")
    if target_psnr > 0:
        ax.axvline(target_psnr, color="tab:red", lw=1, label=f"target {target_psnr:g} dB")
        ax.legend()
    ax.set_xlabel(f"PSNR (dB, peak {peak:g})")
    ax.set_ylabel("models")
    ax.set_title("PSNR at the last epoch")
    return plots.save(fig, folder, "psnr_hist")


def steps_histogram(steps_to_target: np.ndarray, num_steps: int, target_psnr: float, folder: pathlib.Path) -> list[str]:
    hit = steps_to_target[np.isfinite(steps_to_target)]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.hist(hit, bins=np.linspace(0, num_steps, min(num_steps, 40) + 1), color="tab:green")
    ax.set_xlim(0, num_steps)
    ax.set_xlabel("steps to the target")
    ax.set_ylabel("models")
    ax.set_title(f"Steps to {target_psnr:g} dB ({len(hit)} reached, {len(steps_to_target) - len(hit)} never)")
    return plots.save(fig, folder, "steps_to_target")


def psnr_epochs_figure(rows: list[dict], target_psnr: float, folder: pathlib.Path) -> list[str]:
    value = lambda key: np.array([np.nan if r[key] is None else r[key] for r in rows])
    steps = value("step")
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.fill_between(steps, value("p5"), value("p95"), color="tab:blue", alpha=0.25, label="5-95 %")
    ax.plot(steps, value("median"), color="tab:blue", marker="o", label="median")
    if target_psnr > 0:
        ax.axhline(target_psnr, color="tab:red", lw=1, label=f"target {target_psnr:g} dB")
    ax.set_xlabel("step")
    ax.set_ylabel("PSNR (dB)")
    ax.set_title("PSNR over epochs")
    ax.legend()
    return plots.save(fig, folder, "psnr_over_epochs")


def reconstruction_figure(grid: ReconstructionGrid, folder: pathlib.Path) -> list[str]:
    """Top row the images, bottom row the SIRENs' outputs, in [0, 1] (`ReconstructionGrid.display`)."""
    n = max(len(grid.rows), 1)
    fig, axes = plt.subplots(2, n, figsize=(1.6 * n, 3.6), squeeze=False)
    for k in range(len(grid.rows)):
        for ax, images in zip(axes[:, k], (grid.originals, grid.reconstructions)):
            image = grid.display(images[k])
            if image.shape[-1] == 1:
                ax.imshow(image[..., 0], cmap="gray", vmin=0.0, vmax=1.0)
            else:
                ax.imshow(image)
        axes[0, k].set_title(f"label {grid.labels[k]}", fontsize=8)
        axes[1, k].set_title(f"{grid.psnr[k]:.2f} dB", fontsize=8)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0, 0].set_ylabel("image")
    axes[1, 0].set_ylabel("SIREN")
    return plots.save(fig, folder, "reconstructions")


# --- the card --------------------------------------------------------------------------------


def _cell(value, fmt: str = ".2f") -> str:
    return "n/a" if value is None else format(value, fmt)


def card_markdown(card: dict) -> str:
    s, p, recipe = card["siren"], card["psnr"], card["recipe"]
    shape = " → ".join(str(f) for f in s["features"])
    quantiles = " | ".join(_cell(p["quantiles"][str(q)]) for q in QUANTILES)
    target = recipe["target_psnr"]
    at_target = (
        f"{p['at_target']} of {card['models']} models ({100 * p['share_at_target']:.1f}%) at the target {target:g} dB; "
        if p["share_at_target"] is not None
        else "no target PSNR (no early stop); "
    )
    steps = card["steps_to_target"]
    if steps is None:
        steps_text = "No target PSNR (training.target_psnr = 0): every model took every step."
    else:
        steps_text = (
            f"{steps['reached']} models reached {target:g} dB, {steps['never']} never did. Steps to the "
            f"target of those that did: median {_cell(steps['median'], '.1f')}, mean "
            f"{_cell(steps['mean'], '.1f')}, min {_cell(steps['min'], '.0f')}, max {_cell(steps['max'], '.0f')} "
            f"(of {recipe['num_steps']})."
        )
    epochs = "\n".join(
        f"| {r['epoch']} | {r['step']} | {_cell(r['median'])} | {_cell(r['p5'])} | {_cell(r['p95'])} | "
        f"{'n/a' if r['at_target'] is None else r['at_target']} | {r['diverged']} |"
        for r in card["psnr_over_epochs"]
    )
    g = card["reconstructions"]
    shown = ", ".join(
        f"model {m} (image {i}, label {l}, {v:.2f} dB)"
        for m, i, l, v in zip(g["model_ids"], g["images"], g["labels"], g["psnr"])
    )
    c = card["class_prediction"]
    pct = lambda v: "n/a" if v is None else f"{100 * v:.1f}"
    dropped = f", {c['dropped_diverged']} diverged left out" if c["dropped_diverged"] else ""
    capped = f", at most {c['subsampled_to']} per side (evenly spaced)" if c["subsampled_to"] is not None else ""
    classification = (
        f"Split: {c['split']}; {c['train_models']} train INRs ({c['train_images']} images), {c['test_models']} test "
        f"INRs ({c['test_images']} images){dropped}{capped}.\n\n"
        f"| features | test accuracy (%) |\n|---|---:|\n| w | {pct(c['accuracy']['w'])} |\n"
        f"| s(w) | {pct(c['accuracy']['s(w)'])} |\n| chance (1/{c['num_classes']}) | {pct(c['chance'])} |\n"
        f"| most frequent train class | {pct(c['majority'])} |\n\n"
        f"The linear classifier of jaxzoo.benchmark (Table 3: one linear layer, Adam lr 1e-4, wd 1e-6, batch "
        f"{CLASSIFIER_BATCH}, seed 42), {c['epochs']} epochs (Table 3's {CLASSIFIER_EPOCHS}, or more for a small zoo: "
        f"at least {MIN_CLASSIFIER_STEPS:,} steps). Features: {c['features']}.{(' ' + c['note']) if c.get('note') else ''}"
    )
    figures = "\n".join(
        f"![{pathlib.Path(f).stem}]({pathlib.Path(f).name})" for f in card["figures"] if f.endswith(".png")
    )
    unfinished = (
        "" if card["epoch"] == card["num_epochs"] else f" (training unfinished: {card['num_epochs']} epochs planned)"
    )
    d = card["dataset"]
    size = f"{d['image_size']}×{d['image_size']}×{d['channels']}"
    per_split = card["models_per_split"]
    notes = f"Notes: {card['notes']}\n\n" if card["notes"] else ""
    mapped = ", (x + 1) / 2 of [-1, 1]" if recipe["target_range"] == "symmetric" else ""
    interval = "[0, 1]" if recipe["target_range"] == "unit" else "[-1, 1]"
    return f"""# INR zoo card: {card["name"]}

{card["models"]} SIRENs, one per (image, seed): {card["images"]} images × {card["seeds"]} seeds of {d["name"]} ({d["source"]},
{size}, {d["num_classes"]} classes), {per_split["train"]} INRs of train-split and {per_split["test"]} of test-split images.
Card at epoch {card["epoch"]} (step {card["step"]}){unfinished}.

## SIREN and recipe

| | |
|---|---|
| layers | {shape} (sine hidden layers, linear output) |
| parameters | {s["params"]:,} |
| w0 first / hidden | {s["w0_first"]:g} / {s["w0_hidden"]:g} |
| init first / sine biases / last | {s["first_init"]} / {s["bias_init"]} / {s["last_init"]} |
| output offset | {s["output_offset"]:g} |
| coordinates | {recipe["coordinates"]} (linspace(-1, 1) per axis) |
| targets | {recipe["target_range"]} ({interval}), PSNR peak {recipe["peak"]:g} |
| optimizer | {recipe["optimizer"]}, lr {recipe["lr"]:g}, full-image MSE steps |
| steps | {recipe["num_steps"]} at most, {recipe["steps_per_epoch"]} per epoch |
| target PSNR (early stop) | {"none" if not target else f"{target:g} dB"} |
| seeds | {card["seeds"]} from {recipe["first_seed"]}{", shared init per seed" if recipe["shared_init"] else ""} |

{notes}## PSNR (epoch {card["epoch"]})

{p["models"]} models that did not diverge; {at_target}{p["diverged"]} diverged. PSNR = 10 log10(peak² / MSE), peak the
targets' peak-to-peak range ({recipe["peak"]:g}).

| mean | std | 5% | 25% | 50% | 75% | 95% |
|---:|---:|---:|---:|---:|---:|---:|
| {_cell(p["mean"])} | {_cell(p["std"])} | {quantiles} |

## Steps to the target

{steps_text}

## PSNR over epochs

| epoch | step | median | 5% | 95% | at target | diverged |
|---:|---:|---:|---:|---:|---:|---:|
{epochs}

## Reconstructions

Top: the image; bottom: its SIREN's output (epoch {card["epoch"]}, shown in [0, 1]{mapped}, clipped).
Shown: {shown}. The arrays are in {GRID_FILE}.

## Class prediction from weights (Table 3 style)

{classification}

## Figures

{figures}

## Loading

`from jaxzoo.inr.zoo import read_inr_zoo; zoo = read_inr_zoo("<workdir>"); params = zoo.params({card["epoch"]})`
(numpy [M, ...] per layer 'kernel' [in, out] and 'bias'; `zoo.table` says each model's image, split and label;
`zoo.reconstruct(params)` draws the images).
"""


def inr_card(workdir, log=print) -> dict:
    """Writes the card of the INR zoo in `workdir` into `workdir/card` (and each export of the
    zoo); returns the card (what zoo_card.json holds)."""

    log = log or (lambda message: None)
    start = time.time()
    zoo = read_inr_zoo(workdir)
    config = zoo.config
    last = zoo.last_epoch()
    metrics = zoo.metrics(last)
    target = float(config.training.target_psnr)
    peak = siren.TARGET_RANGES[config.model.target_range]
    with folder_in_place(zoo.path / "card") as folder:  # a failed card leaves the old one
        log(f"reconstructions and class prediction of {len(zoo.table)} INRs (epoch {last}) ...")
        params = zoo.params(last)  # read once: the grid and the class prediction take their models
        grid = reconstruction_grid(zoo, last, params=params)
        np.savez_compressed(
            folder / GRID_FILE,
            model_ids=grid.rows,
            labels=grid.labels,
            originals=grid.originals,
            reconstructions=grid.reconstructions,
            psnr=grid.psnr,
        )
        prediction = class_prediction(zoo, last, params=params)
        del params
        over_epochs = psnr_over_epochs(zoo)
        psnr = np.asarray(metrics["psnr"], np.float64)[~np.asarray(metrics["diverged"], bool)]
        figures = psnr_histogram(psnr, target, peak, folder)
        if target > 0:
            figures += steps_histogram(
                np.asarray(metrics["steps_to_target"], np.float64), int(config.training.num_steps), target, folder
            )
        figures += psnr_epochs_figure(over_epochs, target, folder)
        figures += reconstruction_figure(grid, folder)
        images = zoo.images
        seeds = sorted({row["seed"] for row in zoo.table})
        splits = [row["split"] for row in zoo.table]
        card = {
            "task": "inr",
            "name": config.name,
            "dataset": {
                "name": config.data.name,
                "source": images.dataset.source,
                "image_size": zoo.image_shape[0],
                "channels": zoo.image_shape[2],
                "num_classes": int(images.num_classes),
                "images_per_split": {s: int(np.sum(images.split == s)) for s in ("train", "test")},
            },
            "models": len(zoo.table),
            "images": len({row["image"] for row in zoo.table}),
            "seeds": len(seeds),
            "models_per_split": {s: splits.count(s) for s in ("train", "test")},
            "epoch": last,
            "num_epochs": int(config.training.num_steps) // int(config.training.steps_per_epoch),
            "step": last * int(config.training.steps_per_epoch),
            "siren": {
                "features": list(zoo.spec.features),
                "params": zoo.spec.num_params,
                "w0_first": zoo.spec.w0_first,
                "w0_hidden": zoo.spec.w0_hidden,
                "first_init": zoo.spec.first_init,
                "bias_init": zoo.spec.bias_init,
                "last_init": zoo.spec.last_init,
                "output_offset": zoo.spec.output_offset,
            },
            "recipe": {
                "optimizer": config.training.optimizer,
                "lr": float(config.training.lr),
                "num_steps": int(config.training.num_steps),
                "steps_per_epoch": int(config.training.steps_per_epoch),
                "target_psnr": target,
                "coordinates": config.model.coordinates,
                "target_range": config.model.target_range,
                "peak": peak,
                "first_seed": int(config.population.first_seed),
                "shared_init": bool(config.population.shared_init),
            },
            "psnr": psnr_statistics(metrics, target),
            "steps_to_target": steps_statistics(metrics, target),
            "psnr_over_epochs": over_epochs,
            "reconstructions": {
                "model_ids": grid.rows.tolist(),
                "images": [zoo.table[r]["image"] for r in grid.rows],
                "labels": grid.labels.tolist(),
                "psnr": grid.psnr.tolist(),
                "file": GRID_FILE,
            },
            "class_prediction": prediction,
            "figures": in_card_folder(figures, zoo.path),
            "notes": config.get("notes", ""),
            "seconds": 0.0,
        }
        card["seconds"] = time.time() - start
        write_card(folder, card, card_markdown(card))
    publish_card(zoo.path / "card", zoo.path, log, start)
    return card
