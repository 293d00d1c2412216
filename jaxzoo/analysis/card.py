"""The zoo card of a classification zoo (`python -m jaxzoo.analyze --workdir W`).

Writes `W/card/`: README.md (the card), zoo_card.json (the same facts), table2.json (the
metrics) and the figures (PNG + SVG); and the same into every export made from W.

Table 2 at the last epoch, after removing non-viable models (NaN/inf or |w| > threshold):
accuracy; agreement (pairwise share of identical test predictions); CKA (linear CKA of the
outputs of every conv and linear layer, before pooling, BatchNorm and activation, the last
being the logits, on the first 50 test images; a pair's value is the mean over the layers);
weights (mean and std of all w), pairwise l2 and cosine distances of the flat vectors.
table2.json holds the raw values (fractions, weight units) and, under "paper", the paper's
units: every column in percent, the l2 distance divided by the mean l2 norm of the viable
models ("mean_l2_norm") first. Accuracy, weights and norms cover every viable model; the pair
columns cover the pairs of the viable models, or of a seeded sample of them in large zoos
(table2.json's "paired_models"). ResNet-18 zoos: predictions in eval mode (BatchNorm running statistics); the
flat vectors are the trainable parameters in torchvision order. Flat vectors too long to hold
together are paired through their dot products, read by groups of models, never held whole.
"""

from __future__ import annotations

import json
import math
import pathlib
import shutil
import time

import numpy as np

from jaxzoo.analysis import plots
from jaxzoo.analysis import table2 as analysis
from jaxzoo.analysis.forward import (
    MODEL_CHUNK,
    dot_products,
    forward_passes,
    model_chunks,
    resnet_forward_passes,
    weight_facts,
)
from jaxzoo.data import normalise
from jaxzoo.errors import UserError
from jaxzoo.export.writer import EXPORTS_FILE
from jaxzoo.host import folder_in_place
from jaxzoo.ingest.workdir import PROVENANCE
from jaxzoo.models.registry import arch_name, object_name
from jaxzoo.training.factors import FACTOR_TABLE, values_of
from jaxzoo.weights import symmetry
from jaxzoo.zoo.reader import Zoo, read_zoo

RESNET_EMBEDDING_LEFT_OUT = (
    "The weight embedding (Figure 3) is left out for ResNet-18 zoos: it would restore the "
    "11M-number flat vectors of every epoch of every model."
)
EMBEDDING_POINTS = 5000  # (model, epoch) rows in the weight embedding (Figure 3)
MAX_EMBEDDING_POINTS = 1_000_000  # UMAP/PCA rows held in memory for one figure
# float32 flat vectors held for the weight embedding (its PCA holds 3x as much: 192 MLPs of
# 1.86M parameters peaked at 3.3 GiB with 512 MiB); CNN-s zoos get their 5,000 rows well within it
EMBEDDING_BYTES = 128 * 2**20
PAIR_MODELS = 4096  # viable models whose pairs Table 2 averages (8.4M pairs); beyond, a seeded sample
HELD_WEIGHTS_BYTES = 256 * 2**20  # paired flat vectors held for the distances; beyond, `dot_products`
ALIGNED_MODELS = 16  # models whose pairs the card aligns (M(M-1)/2 weight matchings)
MATCHING_SECONDS = 30.0  # the card's weight matching budget: fewer models when one pair is slow
DEFAULT_THRESHOLD = analysis.DEFAULT_THRESHOLD
LICENSE = "CC-BY 4.0, as the original model zoos (https://creativecommons.org/licenses/by/4.0/)"


def vectors_of(zoo: Zoo, epoch: int, models: np.ndarray) -> np.ndarray:
    """Flat vectors [K, P] float32 of `models` (ascending zoo indices) at `epoch`, read by blocks."""
    parts = [zoo.params_vectors(params) for _, params in model_chunks(zoo, epoch, models, MODEL_CHUNK)]
    return np.concatenate(parts) if parts else np.zeros((0, 0), np.float32)


def embedding_limit(zoo: Zoo, max_points: int) -> int:
    """Rows of the weight embedding: at most max_points, and no more flat vectors than `EMBEDDING_BYTES`."""
    return min(max_points, max(2, EMBEDDING_BYTES // zoo.checkpoints.model_bytes(zoo.epochs[-1], "params")))


def embedding_rows(zoo: Zoo, keep: np.ndarray, max_points: int, seed: int = 0):
    """(weights, epoch, model index) of up to max_points (model, epoch) rows of viable models,
    drawn uniformly (epoch-major order); each epoch's chosen models are read a block at a time."""
    models = np.flatnonzero(keep)
    rows = np.arange(len(models) * len(zoo.epochs))
    if len(rows) > max_points:
        rows = np.sort(np.random.default_rng(seed).choice(len(rows), max_points, replace=False))
    epochs, index = np.asarray(zoo.epochs)[rows // len(models)], models[rows % len(models)]
    weights = [vectors_of(zoo, epoch, index[epochs == epoch]) for epoch in zoo.epochs if (epochs == epoch).any()]
    return np.concatenate(weights), epochs, index


def embedding_figure(zoo: Zoo, keep: np.ndarray, max_points: int, folder: pathlib.Path) -> list[str]:
    """Figure 3: the 2-D embedding of up to max_points (model, epoch) weight vectors of the viable
    models `keep` [M] bool, coloured by epoch and each varied categorical factor -> its files."""
    rows, row_epochs, row_models = embedding_rows(zoo, keep, max_points)
    colours = {"epoch": row_epochs}
    for factor in (f.name for f in FACTOR_TABLE if f.kind == "categorical"):
        if len(values_of(zoo.config["population"], factor)) > 1:
            colours[factor] = np.array([zoo.table[m][factor] for m in row_models])
    return plots.weight_embedding(rows, colours, folder)


def paired_models(viable: np.ndarray, limit: int = PAIR_MODELS, seed: int = 0) -> np.ndarray:
    """The viable models (ascending indices) whose pairs Table 2 averages: all of them up to
    `limit`, else `limit` of them drawn without replacement (seeded), so the pair work of a zoo
    of any size is bounded and the means are unbiased estimates over all pairs."""
    if len(viable) <= limit:
        return viable
    return np.sort(np.random.default_rng(seed).choice(viable, limit, replace=False))


def last_epoch_table2(zoo: Zoo, test_images: np.ndarray, num_classes: int, threshold: float) -> tuple[dict, np.ndarray]:
    """(Table 2 of the last epoch, viable models [M] bool).

    One pass over the epoch's blocks gives every model's weight facts (viability, moments, norm);
    the forward passes then run on the paired models (`paired_models`), a block at a time, and
    their per-model rows (predictions, packed Gram matrices, flat vectors while they fit
    `HELD_WEIGHTS_BYTES`, else their dot products by groups) are freed on return."""
    last = zoo.epochs[-1]
    facts = weight_facts(zoo, last)
    paired = paired_models(np.flatnonzero(facts.viability(threshold).keep))
    model_bytes = zoo.checkpoints.model_bytes(last, "params")
    hold = not zoo.is_resnet and len(paired) * model_bytes <= HELD_WEIGHTS_BYTES
    with analysis.ModelRows(len(paired)) as rows:
        if zoo.is_resnet:
            layers = resnet_forward_passes(zoo, last, paired, rows, test_images, analysis.CKA_IMAGES)
        else:
            layers = forward_passes(zoo, last, paired, rows, test_images, analysis.CKA_IMAGES, weights=hold)
        if not hold:
            rows.put("dots", dot_products(zoo, last, paired))
        table2, v = analysis.table2_of_rows(
            zoo.metrics[last]["test_acc"],
            rows,
            layers,
            num_classes,
            threshold,
            block=None if len(paired) else 1,
            facts=facts,
            paired=paired,
        )
    return table2, v.keep


def aligned_distances(
    zoo: Zoo, keep: np.ndarray, max_models: int = ALIGNED_MODELS, seconds: float = MATCHING_SECONDS
) -> dict:
    """Pairwise l2 and cosine distances of up to `max_models` viable models (evenly spaced in model
    order) at the last epoch, raw and with the second model of each pair permuted to match the
    first (weight matching, `jaxzoo.weights.symmetry`): how much of the zoo's weight diversity is
    the permutation symmetry of hidden units (`symmetry.aligned_distance_statistics`).

    The first pair is timed; when all pairs would take longer than `seconds` (wide layers: one
    1024-wide pair takes seconds), fewer models are matched, as many as the budget allows (at
    least 2), and the result says so."""
    evenly = lambda values, count: values[np.unique(np.linspace(0, len(values) - 1, count).round().astype(int))]
    rows = evenly(np.flatnonzero(keep), min(max_models, int(keep.sum())))  # the first models share one seed
    vectors, layout = vectors_of(zoo, zoo.epochs[-1], rows), zoo.vector_layout()
    started = time.perf_counter()
    stats = symmetry.aligned_distance_statistics(vectors[:2], layout)
    per_pair = time.perf_counter() - started
    affordable = max(2, int((1 + math.sqrt(1 + 8 * seconds / max(per_pair, 1e-9))) / 2))  # k(k-1)/2 pairs
    chosen = evenly(np.arange(len(rows)), min(len(rows), affordable))
    if len(chosen) > 2:
        stats = symmetry.aligned_distance_statistics(vectors[chosen], layout)
    return {
        "models": len(chosen),
        "epoch": zoo.epochs[-1],
        "pairs": stats["pairs"],
        "budget": None
        if len(chosen) == len(rows)
        else f"{len(chosen)} of {len(rows)} models: one pair took {per_pair:.1f} s, the budget is {seconds:.0f} s",
        **{kind: {name: list(value) for name, value in stats[kind].items()} for kind in ("raw", "aligned")},
    }


def symmetry_section(symmetry: dict | None) -> str:
    if not symmetry:
        return ""
    raw, aligned = symmetry["raw"], symmetry["aligned"]
    cell = lambda value: f"{value[0]:.3f} ({value[1]:.3f})"
    budget = f"Weight matching within its time budget: {symmetry['budget']}.\n\n" if symmetry.get("budget") else ""
    return (
        "## Weight-space symmetry\n\n"
        f"Distances of the {symmetry['pairs']} pairs of {symmetry['models']} viable models (evenly spaced) at epoch {symmetry['epoch']}, "
        "as they are and after permuting the hidden units of one model of each pair to match the other (weight "
        "matching, as Git Re-Basin; `jaxzoo.weights.symmetry`). The drop is the part of the zoo's weight diversity that permutations of "
        "hidden units account for; the models compute the same functions either way.\n\n"
        f"{budget}"
        "| | l2 distance, mean (std) | cosine distance, mean (std) |\n|---|---:|---:|\n"
        f"| raw | {cell(raw['l2'])} | {cell(raw['cosine'])} |\n"
        f"| aligned | {cell(aligned['l2'])} | {cell(aligned['cosine'])} |\n"
        f"| aligned / raw | {aligned['l2'][0] / raw['l2'][0]:.1%} | {aligned['cosine'][0] / raw['cosine'][0]:.1%} |\n\n"
    )


def generating_factors(zoo: Zoo) -> dict:
    pop = zoo.config["population"]
    seeds = sorted({row["seed"] for row in zoo.table})
    factors = {f.name: list(values_of(pop, f.name)) for f in FACTOR_TABLE if values_of(pop, f.name)}
    return {**factors, "seeds": {"mode": pop["seed_mode"], "count": len(seeds), "min": seeds[0], "max": seeds[-1]}}


PAPER_COLUMNS = {
    "accuracy": "Acc",
    "agreement": "Agreement κ_aggr",
    "cka": "CKA κ_cka",
    "weights": "w",
    "l2_distance": "‖w_k − w_l‖₂",
    "cosine_distance": "cos(w_k, w_l)",
}  # table2.json "paper" keys


def paper_cell(value: dict | None) -> str:
    """A Table 2 cell as the paper prints it: "mean (std)" in percent, one decimal; n/a for None."""
    return "n/a" if value is None else f"{value['mean']:.1f} ({value['std']:.1f})"


def table2_section(name: str, t: dict) -> str:
    """The card's Table 2: the zoo's row in the paper's units and format (`analysis.paper_units`),
    then a line defining each column as the paper does."""
    heading = (
        f"## Table 2 (last epoch, {t['viable']} of {t['models']} models viable; removed: "
        f"{t['removed_non_finite']} NaN/inf, {t['removed_over_threshold']} with |w| > {t['threshold']})"
    )
    definitions = (
        "All columns in percent, mean (std), as the paper's Table 2: Acc, the test accuracy of the viable models; "
        "κ_aggr, the share of test images on which two models predict the same class, and κ_cka, the linear CKA of "
        "their layer outputs (mean over layers), over all pairs of viable models; w, all weight values; "
        "‖w_k − w_l‖₂, the l2 distance between two models' flat vectors divided by the zoo's mean l2 norm "
        f"‖w_n‖₂ = {t['mean_l2_norm']:.4g}; cos(w_k, w_l), their cosine distance 1 − cos. table2.json keeps "
        'the raw values (fractions, weight units) beside these ("paper").'
    )
    header = f"| Zoo | {' | '.join(PAPER_COLUMNS.values())} |"
    row = f"| {name} | {' | '.join(paper_cell(t['paper'][key]) for key in PAPER_COLUMNS)} |"
    return "\n".join([heading, "", header, "|---|" + "---|" * len(PAPER_COLUMNS), row, "", definitions])


def card_markdown(card: dict) -> str:
    t = card["table2"]
    factors = "\n".join(f"| {k} | {v} |" for k, v in card["generating_factors"].items())
    sparsity_section = (
        ""
        if not card.get("sparsity")
        else (
            f"## Sparsification (Variational Dropout)\n\nFinal sparsity {card['sparsity']['final_mean']:.3f} "
            f"({card['sparsity']['final_std']:.3f}) of conv and linear weights with log alpha >= 3; final masked test "
            f"accuracy {100 * card['sparsity']['final_test_acc_mean']:.2f}%. {card['sparsity']['notes']}.\n\n"
        )
    )
    symmetry_text = symmetry_section(card.get("symmetry"))
    figures = "\n".join(
        f"![{pathlib.Path(p).stem}]({pathlib.Path(p).name})" for p in card["figures"] if p.endswith(".png")
    )
    figures += "".join(f"\n\n{note}" for note in card.get("left_out", []))
    return f"""# Zoo card: {card["name"]}

{card["models"]} {card["architecture"]} models on {card["dataset"]["name"]} ({card["dataset"]["source"]}),
{card["epochs"] + 1} states each (epochs 0..{card["epochs"]}): {card["model_states"]} model states.

## Generating factors

| factor | values |
|---|---|
{factors}

## Training protocol

{card["protocol"]}

Splits: dataset train/val/test {card["dataset"]["splits"]}; exported flat vectors split 70/15/15 by model.

{table2_section(card["name"], t)}

{card["metric_definitions"]}

{symmetry_text}{sparsity_section}## Figures

{figures}

## Loading

JAX: `from jaxzoo import checkpoint; epoch, state = checkpoint.load_state("<workdir>", {card["epochs"]})`.
PyTorch: `python -m jaxzoo.export --workdir <workdir> --out exports`, then
`jaxzoo.torch.build_model(params_json).load_state_dict(torch.load(".../checkpoint_{card["epochs"]:06d}/checkpoints"))`
or `jaxzoo.torch.ZooVectorDataset("exports/<zoo>/vectors", "train")`.

## License

{card["license"]}

{card["notes"]}{ingest_line(card.get("ingest"))}
"""


def ingest_summary(workdir: pathlib.Path) -> dict | None:
    """What an ingested zoo's ingest.json says of the source's models left out (incomplete):
    {'format', 'left_out': count, 'reasons': {reason: count}, 'names': the first few}; None for
    a zoo that was not ingested."""
    path = pathlib.Path(workdir) / PROVENANCE
    if not path.is_file():
        return None
    record = json.loads(path.read_text())
    left_out = record.get("left_out", [])
    if isinstance(left_out, int):  # ingest.json of earlier versions: a count
        return {"format": record.get("format"), "left_out": left_out, "reasons": {}, "names": []}
    reasons: dict[str, int] = {}
    for item in left_out:
        reasons[item["reason"]] = reasons.get(item["reason"], 0) + 1
    return {
        "format": record.get("format"),
        "left_out": len(left_out),
        "reasons": reasons,
        "names": [item["name"] for item in left_out[:5]],
    }


def ingest_line(summary: dict | None) -> str:
    """The card's sentence on the models an import left out ('' when nothing was ingested)."""
    if summary is None:
        return ""
    if not summary["left_out"]:
        return f"\n\nImported ({summary['format']}): every model of the source is in the zoo."
    reasons = "; ".join(f"{count} x {reason}" for reason, count in summary["reasons"].items())
    return (
        f"\n\nImported ({summary['format']}): {summary['left_out']} incomplete models of the source were left "
        f"out{f' ({reasons})' if reasons else ''}; ingest.json names them."
    )


def analyze(
    workdir,
    threshold: float = analysis.DEFAULT_THRESHOLD,
    agreement_images: int = 0,
    embedding_points: int = EMBEDDING_POINTS,
    log=print,
) -> dict:
    """Writes the card into `workdir/card` (and each export of the zoo); returns the card."""
    log = log or (lambda message: None)
    start = time.time()
    zoo = read_zoo(workdir)
    config = zoo.config
    last = zoo.epochs[-1]
    data = config["data"]
    dataset = zoo.dataset()
    test_images = normalise(dataset.test[0], dataset.mean, dataset.std)
    if agreement_images > len(test_images):
        raise UserError(
            f"--agreement_images {agreement_images} is more than the {len(test_images)} test images: "
            f"use 0 (all) or at most {len(test_images)}"
        )
    if agreement_images:
        test_images = test_images[:agreement_images]
    log(f"forward passes of {len(zoo.table)} models on {len(test_images)} test images ...")
    table2, keep = last_epoch_table2(zoo, test_images, dataset.num_classes, threshold)
    if not keep.any():
        raise UserError(
            f"no viable model in {zoo.workdir} at --threshold {threshold} "
            f"({table2['removed_non_finite']} non-finite, {table2['removed_over_threshold']} with "
            "|w| above it): raise --threshold to analyse the zoo"
        )
    with folder_in_place(zoo.workdir / "card") as folder:  # a failed analysis leaves the old card
        train_acc = np.stack([zoo.metrics[e]["train_acc"][keep] for e in zoo.epochs])
        test_acc = np.stack([zoo.metrics[e]["test_acc"][keep] for e in zoo.epochs])
        figures = plots.accuracy_over_epochs(train_acc, test_acc, folder)
        figures += plots.final_accuracy(train_acc[-1], test_acc[-1], folder)
        left_out = [RESNET_EMBEDDING_LEFT_OUT] if zoo.is_resnet else []
        if not zoo.is_resnet:
            log("embedding the weights of all epochs ...")
            points = embedding_limit(zoo, embedding_points)
            if points < min(embedding_points, int(keep.sum()) * len(zoo.epochs)):
                left_out.append(
                    f"The weight embedding (Figure 3) draws {points} (model, epoch) rows, not {embedding_points}: "
                    f"their flat vectors are held in memory, at most {EMBEDDING_BYTES // 2**20} MiB."
                )
            figures += embedding_figure(zoo, keep, points, folder)
        symmetry = None
        if not (zoo.is_resnet or zoo.is_custom or zoo.is_twin) and keep.sum() >= 2:
            log("aligning models by weight matching ...")
            symmetry = aligned_distances(zoo, keep)
        sparsity = None
        if zoo.is_twin:
            sparsity = np.stack([zoo.metrics[e]["sparsity"][keep] for e in zoo.epochs])
            figures += plots.sparsity(sparsity, test_acc, folder)
        card = {
            "name": config["name"],
            "dataset": {
                "name": data["name"],
                "source": dataset.source,
                "image_size": data["image_size"],
                "splits": [len(dataset.train[1]), len(dataset.val[1]), len(dataset.test[1])],
            },
            "architecture": arch_name(config["model"]) if not zoo.is_custom else object_name(config["model"]["module"]),
            "models": len(zoo.table),
            "epochs": last,
            "model_states": len(zoo.table) * (last + 1),
            "generating_factors": generating_factors(zoo),
            "protocol": (
                f"batch {config['training']['batch_size']}, {last} epochs, NLL of log_softmax, "
                f"weight decay as each optimizer's PyTorch counterpart (jaxzoo.training.optimizers), momentum "
                f"{config['population']['momentum']} where read; per-model data order from "
                "the model seed; epoch 0 = evaluation before training."
            ),
            "table2": table2,
            "symmetry": symmetry,
            "sparsity": None
            if sparsity is None
            else {
                "final_mean": float(np.nanmean(sparsity[-1])),
                "final_std": float(np.nanstd(sparsity[-1])),
                "final_test_acc_mean": float(np.nanmean(test_acc[-1])),
                "by_epoch_mean": np.nanmean(sparsity, axis=1).tolist(),
                "notes": zoo.config["sparsify"]["notes"],
            },
            "metric_definitions": __doc__.split("\n\n", 2)[2].strip(),
            "figures": in_card_folder(figures, zoo.workdir),
            "left_out": left_out,
            "license": LICENSE,
            "notes": config.get("notes", ""),
            **({"ingest": ingest} if (ingest := ingest_summary(zoo.workdir)) else {}),
            "seconds": time.time() - start,
        }
        (folder / "table2.json").write_text(json.dumps(table2, indent=1))
        write_card(folder, card, card_markdown(card))
    publish_card(zoo.workdir / "card", zoo.workdir, log, start)
    return card


def in_card_folder(figures: list[str], workdir: pathlib.Path) -> list[str]:
    """The figures' paths once the card is in place (they are written into its new folder)."""
    return [str(workdir / "card" / pathlib.Path(figure).name) for figure in figures]


def write_card(folder: pathlib.Path, card: dict, markdown: str) -> None:
    """Writes a card's zoo_card.json and README.md into `folder` (its figures are there already)."""
    (folder / "zoo_card.json").write_text(json.dumps(card, indent=1))
    (folder / "README.md").write_text(markdown)


def publish_card(folder: pathlib.Path, workdir: pathlib.Path, log, start: float) -> None:
    """Copies a finished card folder into every export of the workdir."""
    for export_dir in exports_of(workdir):
        shutil.copytree(folder, export_dir / "card", dirs_exist_ok=True)
        log(f"card copied into {export_dir / 'card'}")
    log(f"card written to {folder} in {time.time() - start:.1f} s")


def exports_of(workdir: pathlib.Path) -> list[pathlib.Path]:
    path = workdir / EXPORTS_FILE
    if not path.exists():
        return []
    return [pathlib.Path(p) for p in json.loads(path.read_text()) if pathlib.Path(p).is_dir()]
