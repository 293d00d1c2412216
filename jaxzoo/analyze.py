"""Zoo card: `python -m jaxzoo.analyze --workdir W [--threshold 5] [--agreement_images N]`.

Writes `W/card/`: README.md (the card), zoo_card.json (the same facts), table2.json (the
metrics) and the figures (PNG + SVG); and the same into every export made from W.

Table 2 at the last epoch, after removing non-viable models (NaN/inf or |w| > threshold):
accuracy; agreement (pairwise share of identical test predictions); CKA (linear CKA of the
outputs of every conv and linear layer, before pooling, BatchNorm and activation, the last
being the logits, on the first 50 test images; a pair's value is the mean over the layers);
weights (mean and std of all w), pairwise l2 and cosine distances of the flat vectors.
table2.json holds the raw values (fractions, weight units) and, under "paper", the paper's
units: every column in percent, the l2 distance divided by the mean l2 norm of the viable
models ("mean_l2_norm") first. ResNet-18 zoos: predictions in eval mode (BatchNorm running
statistics); the flat vectors are the trainable parameters in torchvision order, paired through
their dot products summed one parameter array at a time, never held whole.
"""

from __future__ import annotations

import functools
import json
import pathlib
import shutil
import sys
import time
from typing import Iterator

import flax.linen as nn
from flax import traverse_util
import jax
import jax.numpy as jnp
import numpy as np
from ml_collections import ConfigDict

from jaxzoo.inr.zoo import is_inr_workdir
from jaxzoo import analysis, plots, resnet, symmetry
from jaxzoo.config import load_config_dataset
from jaxzoo.data import normalise
from jaxzoo.cli import ArgumentParser, number_in, run
from jaxzoo.errors import UserError
from jaxzoo.export import EXPORTS_FILE, Zoo, read_zoo
from jaxzoo.architectures import arch_name, object_name
from jaxzoo.factors import FACTOR_TABLE, values_of
from jaxzoo.models import PatchConv
from jaxzoo.population import build_population
from jaxzoo.precision import compute_dtype_of, with_precision

MODEL_CHUNK = 64
IMAGE_BATCH = 4
RESNET_IMAGE_BATCH = 100  # test images per ResNet-18 forward call
RESNET_EMBEDDING_LEFT_OUT = ("The weight embedding (Figure 3) is left out for ResNet-18 zoos: it would restore the "
                             "11M-number flat vectors of every epoch of every model.")
LICENSE = "CC-BY 4.0, as the original model zoos (https://creativecommons.org/licenses/by/4.0/)"


def forward_functions(zoo: Zoo, activations: tuple[str, ...]):
    """Compiled (predict, features) over a chunk of models; images shared by all models.

    Features are the outputs of every conv and dense layer (before pooling and activation),
    in sorted module-path order (conv0.., fc0.. for the built-in CNNs). A population that mixes
    activations computes each one and keeps the model's own (analysis only runs forward)."""
    models = [zoo.model(activation) for activation in activations]
    is_layer = lambda module, _: isinstance(module, (PatchConv, nn.Dense, nn.Conv))

    def one(params, activation_index, x):
        outputs = [model.apply({"params": params}, x, 0, 0.0, train=False, capture_intermediates=is_layer)
                   for model in models]
        pick = lambda *options: functools.reduce(
            lambda chosen, i: jnp.where(activation_index == i, options[i], chosen), range(1, len(options)), options[0])
        logits = pick(*(out[0] for out in outputs))
        layers = []
        for path, value in sorted(traverse_util.flatten_dict(outputs[0][1]["intermediates"]).items()):
            values = [traverse_util.flatten_dict(out[1]["intermediates"])[path][0] for out in outputs]
            layers.append(pick(*values).reshape(x.shape[0], -1))
        return logits, layers

    def predict(params, activation_index, batches):
        """batches [nb, b, ...] shared by the models -> class ids [M, nb * b]."""
        step = lambda _, x: (None, jax.vmap(lambda p, a: one(p, a, x)[0].argmax(-1))(params, activation_index))
        _, out = jax.lax.scan(step, None, batches)
        return jnp.moveaxis(out, 0, 1).reshape(out.shape[1], -1)

    features = jax.jit(jax.vmap(lambda p, a, x: one(p, a, x)[1], in_axes=(0, 0, None)))
    return jax.jit(predict), features


def param_leaf(zoo: Zoo, epoch: int, path: tuple[str, ...]) -> np.ndarray:
    """One leaf [M, ...] of an epoch's params (nothing else is read; Orbax decodes a leaf whole,
    so restoring one at a time bounds the memory to one leaf of the population)."""
    return traverse_util.flatten_dict(zoo.checkpoints.params(epoch, [path]))[path]


def restore_params(zoo: Zoo, epoch: int, rows: analysis.ModelRows) -> list[tuple[str, ...]]:
    """Puts an epoch's params into rows leaf by leaf (named by `param_name`) -> their key paths."""
    paths = zoo.checkpoints.param_paths(epoch)
    for path in paths:
        rows.put(param_name(path), param_leaf(zoo, epoch, path))
    return paths


def param_name(path: tuple[str, ...]) -> str:
    return "params/" + "/".join(path)


def params_block(zoo: Zoo, rows: analysis.ModelRows, paths: list[tuple[str, ...]], index: slice | np.ndarray) -> dict:
    """The params of the models `index` from rows (`restore_params`): the masked weights for twins."""
    return zoo.vector_params(traverse_util.unflatten_dict({path: rows.read(param_name(path), index) for path in paths}))


def model_chunks(zoo: Zoo, rows: analysis.ModelRows, paths: list[tuple[str, ...]],
                 chunk: int) -> Iterator[tuple[slice, dict]]:
    """(models, their params [b, ...]) for every `chunk` consecutive models, from rows (`restore_params`)."""
    for start in range(0, rows.count, chunk):
        index = slice(start, min(start + chunk, rows.count))
        yield index, params_block(zoo, rows, paths, index)


def vector_chunk(rows: analysis.ModelRows, paths: list[tuple[str, ...]]) -> int:
    """Models per chunk whose params and a working copy of them fit the rows' budget (ResNet-18:
    45 MB per model, so 2 models per chunk under the default 256 MB)."""
    model_bytes = sum(rows.row_bytes(param_name(path)) for path in paths)
    return max(1, rows.budget // (2 * model_bytes))


def image_batches(images: np.ndarray, size: int) -> np.ndarray:
    """images [N, ...] -> [ceil(N / size), size, ...], the last batch padded with zeros."""
    padded = np.concatenate([images, np.zeros((-len(images) % size, *images.shape[1:]), images.dtype)])
    return padded.reshape(-1, size, *images.shape[1:])


def write_grams(rows: analysis.ModelRows, start: int, features: list) -> int:
    """Writes per layer "gram0".. the packed Gram matrices of features [b, n, d] of the models
    start.. (`analysis.packed_grams`) -> the number of layers."""
    for k, layer in enumerate(features):
        rows.write(analysis.GRAM.format(k), start, analysis.packed_grams(np.asarray(layer)))
    return len(features)


def forward_passes(zoo: Zoo, rows: analysis.ModelRows, paths: list[tuple[str, ...]], test_images: np.ndarray,
                   cka_images: int) -> int:
    """Forward passes of all models, `MODEL_CHUNK` at a time, on params from rows (`restore_params`);
    writes into rows "weights" [M, P] (flat vectors), "predictions" [M, N] (class ids, the smallest
    integer type) and per layer "gram0".. the packed centred Gram matrices of the first cka_images
    images, [M, n(n+1)/2] float32 (`analysis.packed_grams`) -> the number of layers. The features
    themselves are never kept."""
    population = build_population(zoo.table, zoo.config["population"])
    predict, features = forward_functions(zoo, population.activations)
    activation_index = population.arrays["activation_index"]
    # Small image batches run fastest on CPU (as in training's evaluation); pad to whole batches.
    n = len(test_images)
    batches = image_batches(test_images, IMAGE_BATCH)
    class_ids = np.min_scalar_type(zoo.num_classes - 1)
    layers = 0
    for chunk, params in model_chunks(zoo, rows, paths, MODEL_CHUNK):
        a = activation_index[chunk]
        rows.write("weights", chunk.start, zoo.params_vectors(params))
        rows.write("predictions", chunk.start, np.asarray(predict(params, a, batches))[:, :n].astype(class_ids))
        layers = write_grams(rows, chunk.start, features(params, a, test_images[:cka_images]))
    return layers


@functools.cache
def resnet_functions(num_classes: int, compute_dtype: str = "float32"):
    """Compiled (predict, features) of one ResNet-18 in eval mode (BatchNorm running statistics),
    as the training's evaluation. predict(variables, x [B, H, W, C]) -> class ids [B];
    features(variables, x [n, H, W, C]) -> per conv and fc layer (sorted module paths) its output
    before BatchNorm and activation, [n, d]."""
    model = resnet.ResNet18(num_classes, dtype=compute_dtype_of(compute_dtype))
    is_layer = lambda module, _: isinstance(module, (nn.Conv, nn.Dense))

    def features(variables, x):
        _, captured = model.apply(variables, x, train=False, capture_intermediates=is_layer)
        return [value.reshape(x.shape[0], -1) for value in jax.tree.leaves(captured["intermediates"])]

    predict = lambda variables, x: model.apply(variables, x, train=False).argmax(-1)
    return jax.jit(with_precision(predict, compute_dtype)), jax.jit(with_precision(features, compute_dtype))


def resnet_forward_passes(zoo: Zoo, rows: analysis.ModelRows, paths: list[tuple[str, ...]], stats: dict,
                          test_images: np.ndarray, cka_images: int) -> tuple[int, analysis.WeightFacts]:
    """`forward_passes` of a ResNet-18 zoo: one model at a time in eval mode (running statistics
    `stats` [M, ...]), params from rows by chunks of models (`vector_chunk`). Writes "predictions"
    and "gram0".., not the 11M-number flat vectors -> (the number of layers, the `WeightFacts` of
    the flat vectors, `Zoo.flat_vectors`, from the params leaves: the same numbers in another order)."""
    predict, features = resnet_functions(zoo.num_classes, zoo.config["training"].get("compute_dtype", "float32"))
    n = len(test_images)
    batches = image_batches(test_images, min(RESNET_IMAGE_BATCH, n))
    class_ids = np.min_scalar_type(zoo.num_classes - 1)
    facts, layers = [], 0
    for chunk, params in model_chunks(zoo, rows, paths, vector_chunk(rows, paths)):
        facts.append(analysis.WeightFacts.of_tensors(jax.tree.leaves(params)))
        for model in range(chunk.start, chunk.stop):
            variables = jax.device_put({"params": jax.tree.map(lambda a: a[model - chunk.start], params),
                                        "batch_stats": jax.tree.map(lambda a: a[model], stats)})  # once per model
            predictions = np.concatenate([np.asarray(predict(variables, batch)) for batch in batches])[:n]
            rows.write("predictions", model, predictions[None].astype(class_ids))
            layers = write_grams(rows, model, [np.asarray(layer)[None]
                                               for layer in features(variables, test_images[:cka_images])])
    return layers, analysis.WeightFacts.concat(facts)


def embedding_rows(zoo: Zoo, keep: np.ndarray, max_points: int, seed: int = 0):
    """(weights, epoch, model index) of up to max_points (model, epoch) rows of viable models,
    drawn uniformly (epoch-major order); each epoch's params are restored one leaf at a time."""
    models = np.flatnonzero(keep)
    rows = np.arange(len(models) * len(zoo.epochs))
    if len(rows) > max_points:
        rows = np.sort(np.random.default_rng(seed).choice(len(rows), max_points, replace=False))
    epochs, index = np.asarray(zoo.epochs)[rows // len(models)], models[rows % len(models)]
    weights = []
    for epoch in zoo.epochs:
        chosen = index[epochs == epoch]
        if len(chosen):
            params = {path: param_leaf(zoo, epoch, path)[chosen] for path in zoo.checkpoints.param_paths(epoch)}
            weights.append(zoo.params_vectors(zoo.vector_params(traverse_util.unflatten_dict(params))))
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


def last_epoch_table2(zoo: Zoo, test_images: np.ndarray, num_classes: int, threshold: float) -> tuple[dict, np.ndarray]:
    """(Table 2 of the last epoch, viable models [M] bool). The per-model arrays it needs (params,
    weights [M, P], predictions, packed Gram matrices) are held in `analysis.ModelRows` (memory
    up to its budget, temporary files beyond) and freed on return, before the figures."""
    last = zoo.epochs[-1]
    with analysis.ModelRows(len(zoo.table)) as rows:
        paths = restore_params(zoo, last, rows)
        facts = None
        if zoo.is_resnet:  # pairs from the dot products: [M, M] float64 (8 MB for 1,000 models)
            stats = zoo.checkpoints.params(last, collection="batch_stats")  # 38 KB per ResNet-18
            layers, facts = resnet_forward_passes(zoo, rows, paths, stats, test_images, analysis.CKA_IMAGES)
            names = [param_name(path) for path in paths]  # the params leaves hold the flat vector's numbers
            rows.put("dots", analysis.dot_products(rows, names, analysis.column_block(rows.count, rows.budget)))
        else:
            layers = forward_passes(zoo, rows, paths, test_images, analysis.CKA_IMAGES)
        for path in paths:
            rows.drop(param_name(path))
        table2, v = analysis.table2_of_rows(zoo.metrics[last]["test_acc"], rows, layers, num_classes, threshold,
                                            facts=facts)
    return table2, v.keep


ALIGNED_MODELS = 16  # models whose pairs the card aligns (M(M-1)/2 weight matchings)


def aligned_distances(zoo: Zoo, keep: np.ndarray, max_models: int = ALIGNED_MODELS) -> dict:
    """Pairwise l2 and cosine distances of `max_models` viable models (evenly spaced in model
    order) at the last epoch, raw and with the second model of each pair permuted to match the first (weight
    matching, `jaxzoo.symmetry`): how much of the zoo's weight diversity is the permutation
    symmetry of hidden units (`symmetry.aligned_distance_statistics`)."""
    viable = np.flatnonzero(keep)  # evenly spread: the first models of a zoo share one seed
    rows = viable[np.unique(np.linspace(0, len(viable) - 1, min(max_models, len(viable))).round().astype(int))]
    params = jax.tree.map(lambda a: a[rows], zoo.checkpoints.params(zoo.epochs[-1]))
    stats = symmetry.aligned_distance_statistics(zoo.params_vectors(params), zoo.vector_layout())
    return {"models": len(rows), "epoch": zoo.epochs[-1], "pairs": stats["pairs"],
            **{kind: {name: list(value) for name, value in stats[kind].items()} for kind in ("raw", "aligned")}}


def symmetry_section(symmetry: dict | None) -> str:
    if not symmetry:
        return ""
    raw, aligned = symmetry["raw"], symmetry["aligned"]
    cell = lambda value: f"{value[0]:.3f} ({value[1]:.3f})"
    return (
        "## Weight-space symmetry\n\n"
        f"Distances of the {symmetry['pairs']} pairs of {symmetry['models']} viable models (evenly spaced) at epoch {symmetry['epoch']}, "
        "as they are and after permuting the hidden units of one model of each pair to match the other (weight "
        "matching, as Git Re-Basin; `jaxzoo.symmetry`). The drop is the part of the zoo's weight diversity that permutations of "
        "hidden units account for; the models compute the same functions either way.\n\n"
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


PAPER_COLUMNS = {"accuracy": "Acc", "agreement": "Agreement κ_aggr", "cka": "CKA κ_cka", "weights": "w",
                 "l2_distance": "‖w_k − w_l‖₂", "cosine_distance": "cos(w_k, w_l)"}  # table2.json "paper" keys


def paper_cell(value: dict | None) -> str:
    """A Table 2 cell as the paper prints it: "mean (std)" in percent, one decimal; n/a for None."""
    return "n/a" if value is None else f"{value['mean']:.1f} ({value['std']:.1f})"


def table2_section(name: str, t: dict) -> str:
    """The card's Table 2: the zoo's row in the paper's units and format (`analysis.paper_units`),
    then a line defining each column as the paper does."""
    heading = (f"## Table 2 (last epoch, {t['viable']} of {t['models']} models viable; removed: "
               f"{t['removed_non_finite']} NaN/inf, {t['removed_over_threshold']} with |w| > {t['threshold']})")
    definitions = (
        "All columns in percent, mean (std), as the paper's Table 2: Acc, the test accuracy of the viable models; "
        "κ_aggr, the share of test images on which two models predict the same class, and κ_cka, the linear CKA of "
        "their layer outputs (mean over layers), over all pairs of viable models; w, all weight values; "
        "‖w_k − w_l‖₂, the l2 distance between two models' flat vectors divided by the zoo's mean l2 norm "
        f"‖w_n‖₂ = {t['mean_l2_norm']:.4g}; cos(w_k, w_l), their cosine distance 1 − cos. table2.json keeps "
        "the raw values (fractions, weight units) beside these (\"paper\").")
    header = f"| Zoo | {' | '.join(PAPER_COLUMNS.values())} |"
    row = f"| {name} | {' | '.join(paper_cell(t['paper'][key]) for key in PAPER_COLUMNS)} |"
    return "\n".join([heading, "", header, "|---|" + "---|" * len(PAPER_COLUMNS), row, "", definitions])


def card_markdown(card: dict) -> str:
    t = card["table2"]
    factors = "\n".join(f"| {k} | {v} |" for k, v in card["generating_factors"].items())
    sparsity_section = "" if not card.get("sparsity") else (
        f"## Sparsification (Variational Dropout)\n\nFinal sparsity {card['sparsity']['final_mean']:.3f} "
        f"({card['sparsity']['final_std']:.3f}) of conv and linear weights with log alpha >= 3; final masked test "
        f"accuracy {100 * card['sparsity']['final_test_acc_mean']:.2f}%. {card['sparsity']['notes']}.\n\n"
    )
    symmetry_text = symmetry_section(card.get("symmetry"))
    figures = "\n".join(f"![{pathlib.Path(p).stem}]({pathlib.Path(p).name})" for p in card["figures"] if p.endswith(".png"))
    figures += "".join(f"\n\n{note}" for note in card.get("left_out", []))
    return f"""# Zoo card: {card['name']}

{card['models']} {card['architecture']} models on {card['dataset']['name']} ({card['dataset']['source']}),
{card['epochs'] + 1} states each (epochs 0..{card['epochs']}): {card['model_states']} model states.

## Generating factors

| factor | values |
|---|---|
{factors}

## Training protocol

{card['protocol']}

Splits: dataset train/val/test {card['dataset']['splits']}; exported flat vectors split 70/15/15 by model.

{table2_section(card['name'], t)}

{card['metric_definitions']}

{symmetry_text}{sparsity_section}## Figures

{figures}

## Loading

JAX: `from jaxzoo import checkpoint; epoch, state = checkpoint.load_state("<workdir>", {card['epochs']})`.
PyTorch: `python -m jaxzoo.export --workdir <workdir> --out exports`, then
`jaxzoo.torch.build_model(params_json).load_state_dict(torch.load(".../checkpoint_{card['epochs']:06d}/checkpoints"))`
or `jaxzoo.torch.ZooVectorDataset("exports/<zoo>/vectors", "train")`.

## License

{card['license']}

{card['notes']}
"""


def analyze(workdir, threshold: float = analysis.DEFAULT_THRESHOLD, agreement_images: int = 0,
            embedding_points: int = 5000, log=print) -> dict:
    """Writes the card into `workdir/card` (and each export of the zoo); returns the card. An INR
    zoo's workdir gets the INR card (`jaxzoo.inr.card`; the other arguments do not apply)."""
    if is_inr_workdir(workdir):
        from jaxzoo.inr.card import inr_card  # it builds on this module (through jaxzoo.benchmark)

        return inr_card(workdir, log=log)
    log = log or (lambda message: None)
    start = time.time()
    zoo = read_zoo(workdir)
    config = zoo.config
    last = zoo.epochs[-1]
    data = config["data"]
    dataset = load_config_dataset(ConfigDict(config))
    test_images = normalise(dataset.test[0], dataset.mean, dataset.std)
    if agreement_images > len(test_images):
        raise UserError(f"--agreement_images {agreement_images} is more than the {len(test_images)} test images: "
                        f"use 0 (all) or at most {len(test_images)}")
    if agreement_images:
        test_images = test_images[:agreement_images]
    log(f"forward passes of {len(zoo.table)} models on {len(test_images)} test images ...")
    table2, keep = last_epoch_table2(zoo, test_images, dataset.num_classes, threshold)
    if not keep.any():
        raise UserError(f"no viable model in {zoo.workdir} at --threshold {threshold} "
                        f"({table2['removed_non_finite']} non-finite, {table2['removed_over_threshold']} with "
                        "|w| above it): raise --threshold to analyse the zoo")
    folder = zoo.workdir / "card"
    folder.mkdir(exist_ok=True)
    train_acc = np.stack([zoo.metrics[e]["train_acc"][keep] for e in zoo.epochs])
    test_acc = np.stack([zoo.metrics[e]["test_acc"][keep] for e in zoo.epochs])
    figures = plots.accuracy_over_epochs(train_acc, test_acc, folder)
    figures += plots.final_accuracy(train_acc[-1], test_acc[-1], folder)
    left_out = [RESNET_EMBEDDING_LEFT_OUT] if zoo.is_resnet else []
    if not zoo.is_resnet:
        log("embedding the weights of all epochs ...")
        figures += embedding_figure(zoo, keep, embedding_points, folder)
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
        "dataset": {"name": data["name"], "source": dataset.source, "image_size": data["image_size"],
                    "splits": [len(dataset.train[1]), len(dataset.val[1]), len(dataset.test[1])]},
        "architecture": arch_name(config["model"]) if not zoo.is_custom else object_name(config["model"]["module"]),
        "models": len(zoo.table),
        "epochs": last,
        "model_states": len(zoo.table) * (last + 1),
        "generating_factors": generating_factors(zoo),
        "protocol": (f"batch {config['training']['batch_size']}, {last} epochs, NLL of log_softmax, "
                     f"weight decay as each optimizer's PyTorch counterpart (jaxzoo.optim), momentum "
                     f"{config['population']['momentum']} where read; per-model data order from "
                     "the model seed; epoch 0 = evaluation before training."),
        "table2": table2,
        "symmetry": symmetry,
        "sparsity": None if sparsity is None else {
            "final_mean": float(np.nanmean(sparsity[-1])), "final_std": float(np.nanstd(sparsity[-1])),
            "final_test_acc_mean": float(np.nanmean(test_acc[-1])), "by_epoch_mean": np.nanmean(sparsity, axis=1).tolist(),
            "notes": zoo.config["sparsify"]["notes"],
        },
        "metric_definitions": __doc__.split("\n\n", 2)[2].strip(),
        "figures": figures,
        "left_out": left_out,
        "license": LICENSE,
        "notes": config.get("notes", ""),
        "seconds": time.time() - start,
    }
    (folder / "table2.json").write_text(json.dumps(table2, indent=1))
    publish_card(folder, card, card_markdown(card), zoo.workdir, log, start)
    return card


def publish_card(folder: pathlib.Path, card: dict, markdown: str, workdir: pathlib.Path, log, start: float) -> None:
    """Writes a card's zoo_card.json and README.md into `folder` (its figures are there already)
    and copies the folder into every export of the workdir."""
    (folder / "zoo_card.json").write_text(json.dumps(card, indent=1))
    (folder / "README.md").write_text(markdown)
    for export_dir in exports_of(workdir):
        shutil.copytree(folder, export_dir / "card", dirs_exist_ok=True)
        log(f"card copied into {export_dir / 'card'}")
    log(f"card written to {folder} in {time.time() - start:.1f} s")


def exports_of(workdir: pathlib.Path) -> list[pathlib.Path]:
    path = workdir / EXPORTS_FILE
    if not path.exists():
        return []
    return [pathlib.Path(p) for p in json.loads(path.read_text()) if pathlib.Path(p).is_dir()]


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m jaxzoo.analyze", description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--threshold", type=number_in(0, low_open=True), default=analysis.DEFAULT_THRESHOLD,
                        help="models with |w| above it are not viable")
    parser.add_argument("--agreement_images", type=number_in(0, integer=True), default=0,
                        help="first N test images (0: all)")
    parser.add_argument("--embedding_points", type=number_in(2, integer=True), default=5000,
                        help="(model, epoch) rows in the embedding")
    args = parser.parse_args(argv)
    return run(lambda: analyze(args.workdir, args.threshold, args.agreement_images, args.embedding_points),
               args.verbose)


if __name__ == "__main__":
    sys.exit(main())
