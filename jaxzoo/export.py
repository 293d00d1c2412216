"""Exports a jaxzoo workdir in the formats the weight-space community reads.

  python -m jaxzoo.export --workdir W --out DIR [--format trials|vectors|parquet|all]
                          [--epochs 5,15,50] [--threshold 5] [--optimizer_state last|all]
                          [--twin_weights raw|masked] [--with_data] [--overwrite]

An INR zoo's workdir goes to `jaxzoo.inr.export` instead (--format dwsnets_mnist|dwsnets_fmnist|
nfn|vectors|all: the layouts of DWSNets and NFN, and flat vectors).

`<out>/<experiment>/` receives:
  config.json, index_dict.json, readme.md, dataset.json     zoo level
  model.py                      PyTorch classes that rebuild every trial from its params.json
  dataset.pt                    (--with_data) the preprocessed splits the zoo was trained on
  trials/<trial>/params.json, result.json, checkpoint_{e:06d}/checkpoints (+ optimizer): the
      original trial folders, PyTorch state_dicts with the original keys (needs torch). trials/
      holds nothing else, because the original loader takes every subfolder for a model. The
      optimizer state is the last epoch's (the paper; default) or every epoch's (the original
      code; --optimizer_state all).
  vectors/{train,val,test}.safetensors + .json (+ dataset.pt with torch): the flat-vector
      dataset, split 70/15/15 by model after a seed-42 shuffle, NaN/|w|>threshold rows dropped;
      twins' vectors hold the raw weights (the original) or the masked ones (--twin_weights masked)
  parquet/{train,val,test}.parquet + README.md (pyarrow): the
      same rows, one per (model, epoch), with a typed column per property (`jaxzoo.parquet`), and
      the Hugging Face dataset card whose front matter `datasets.load_dataset(<folder>)` reads

Trial folders and vector files are written under temporary names and renamed when complete,
so an interrupted export reruns to completion without duplicates.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import pathlib
import random
import shutil
import sys
import time
from typing import Callable

import jax

import numpy as np

from jaxzoo import checkpoint
from jaxzoo.cli import ArgumentParser, check_destination, epoch_list, number_in, run
from jaxzoo.errors import UserError
from jaxzoo.loaders import write_standardisation
from jaxzoo.layout import flat_vectors, index_dict, torch_tensors
from jaxzoo.data import DATASETS
from jaxzoo import resnet
from jaxzoo.architectures import (RESNET_ARCHS, arch_name, arch_spec, build_model, custom_torch_tensors, is_custom,
                                  object_name, param_order, params_shapes)
from jaxzoo.factors import FACTOR_TABLE, Factor, model_value, values_of
from jaxzoo.optim import optimizer_entry, torch_state
from jaxzoo.paper_zoos import recorded_params
from jaxzoo.inr.config import is_inr
from jaxzoo.inr.zoo import is_inr_workdir

CLASSIFICATION_FORMATS = ("trials", "vectors", "parquet", "all")
INR_LAYOUTS = ("dwsnets_mnist", "dwsnets_fmnist", "nfn")  # INR zoos only (jaxzoo.inr.export)
FORMATS = (*CLASSIFICATION_FORMATS, *INR_LAYOUTS)
OPTIMIZER_STATES = ("last", "all")  # the paper keeps the last epoch's; the original code every epoch's
TWIN_WEIGHTS = ("raw", "masked")  # the original vectorizes the raw ARD weights
TRIALS = "trials"  # the original experiment folder: trial folders and nothing else
SPLIT_FRACTIONS = (0.7, 0.15)
SPLIT_SEED = 42
DEFAULT_THRESHOLD = 5.0
MANIFEST = "export.json"
EXPORTS_FILE = "exports.json"  # in the workdir: where its exports went (the card follows them)
ORIGINAL_TYPE = {"cnn_s": "CNN", "cnn_m": "CNN3", "resnet18": "Resnet18"}
METRICS = checkpoint.METRIC_NAMES


class ExportError(UserError):
    """The export cannot proceed (the message names the problem and the fix)."""


@dataclasses.dataclass
class Zoo:
    """A trained zoo read from its workdir: config, model table, metrics [epoch][name] -> [M]."""

    workdir: pathlib.Path
    config: dict
    identity_hash: str
    table: list[dict]
    epochs: list[int]
    metrics: dict[int, dict[str, np.ndarray]]
    checkpoints: checkpoint.ZooCheckpoints
    dataset_facts: dict  # channels, num_classes, image_size of the images the zoo trained on

    @property
    def is_resnet(self) -> bool:
        return self.config["model"]["arch"] in RESNET_ARCHS and not self.is_custom

    @property
    def is_custom(self) -> bool:
        return is_custom(self.config["model"])

    @property
    def arch(self):
        """The ArchSpec of a built-in CNN / MLP zoo."""
        return arch_spec(self.config["model"], self.image_shape[0], self.channels_in, self.num_classes)

    @property
    def num_classes(self) -> int:
        return self.dataset_facts["num_classes"]

    @property
    def channels_in(self) -> int:
        return self.dataset_facts["channels"]

    @property
    def image_shape(self) -> tuple[int, int, int]:
        size = self.config["data"]["image_size"]
        return (size, size, self.channels_in)

    def model(self, activation: str):
        """The Flax model of the zoo's models with `activation` (eval mode: no dropout)."""
        return build_model(self.config["model"], activation, False, "xla", self.image_shape, self.num_classes)

    @functools.cached_property
    def param_order(self) -> list[tuple[str, ...]]:
        return param_order(self.model(self.table[0]["activation"]), self.image_shape)

    def params_torch(self, params: dict, dropout: float = 0.0, lead: int = 1) -> list[tuple[str, np.ndarray]]:
        """(state_dict key, array in PyTorch layout) of params with `lead` leading axes."""
        if self.is_custom:
            return custom_torch_tensors(self.model(self.table[0]["activation"]), params, self.param_order, lead)
        return list(torch_tensors(params, self.arch, dropout))

    def torch_arrays(self, state: dict, dropout: float = 0.0) -> list[tuple[str, np.ndarray]]:
        """(state_dict key, population array [M, ...] in PyTorch layout) in state_dict order."""
        if self.is_resnet:  # torchvision keys, BatchNorm statistics included
            return list(resnet.torch_state_dict(state).items())
        return self.params_torch(state["params"], dropout)

    def flat_vectors(self, state: dict, masked: bool = True) -> np.ndarray:
        """[M, P] float32 flat vectors of the population (ResNet: trainable parameters only;
        twins: the masked weights, or the raw ones with masked=False)."""
        if self.is_resnet:
            return resnet.flat_vectors(state["params"])
        return self.params_vectors(self.vector_params(state["params"], masked))

    def params_vectors(self, params: dict) -> np.ndarray:
        """Population params -> [M, P] float32: the export's tensors flattened in state_dict order."""
        if not self.is_custom:
            return flat_vectors(params, self.arch)
        parts = [np.ascontiguousarray(a).reshape(a.shape[0], -1) for _, a in self.params_torch(params)]
        return np.concatenate(parts, axis=1).astype(np.float32)

    def vector_layout(self) -> dict:
        """index_dict.json: the original's per-layer map (built-in CNN / MLP), or {'tensors': [{key,
        offset, shape}]} (ResNet, custom modules)."""
        if self.is_resnet:
            return {"tensors": resnet.index_map(self.num_classes, self.channels_in)}
        if self.is_custom:
            template = jax.tree.map(lambda a: np.zeros((1, *a.shape), np.float32),
                                    params_shapes(self.model(self.table[0]["activation"]), self.image_shape))
            tensors, offset = [], 0
            for key, array in self.params_torch(template):
                tensors.append({"key": key, "offset": offset, "shape": list(array.shape[1:])})
                offset += int(np.prod(array.shape[1:]))
            return {"tensors": tensors}
        return index_dict(self.arch, self.channels_in)

    @property
    def experiment(self) -> str:
        return self.config.get("original", {}).get("experiment") or self.config["name"]

    def state(self, epoch: int) -> dict:
        return self.checkpoints.state(epoch)[1]

    @property
    def is_twin(self) -> bool:
        """A sparsified (Variational Dropout) twin zoo: ARD keys, no dropout modules."""
        return "sparsify" in self.config

    def layout_dropout(self, row: dict) -> float:
        return 0.0 if self.is_twin else row["dropout"]

    @property
    def has_val(self) -> bool:
        """Whether the zoo recorded val metrics (Tiny-ImageNet has no val split)."""
        return bool(np.isfinite(self.metrics[self.epochs[0]]["val_acc"]).any())

    def vector_params(self, params: dict, masked: bool = True) -> dict:
        """Params whose flat vectors are taken: for twins the kernels and biases, masked (log alpha
        >= 3 set to 0) unless masked=False; their log sigma^2 are not part of the vector."""
        if not self.is_twin:
            return params
        if not masked:
            return {name: {"kernel": layer["kernel"], "bias": layer["bias"]} for name, layer in params.items()}
        from jaxzoo import ard

        return jax.tree.map(np.asarray, ard.masked_params(params))


def dataset_facts(document: dict) -> dict:
    """Channels, classes and image size of a workdir's data: the registry's, or what training
    recorded in the identity for other datasets."""
    data = document["config"]["data"]
    recorded = document["identity"].get("dataset", {})
    if data["name"] in DATASETS:
        info = DATASETS[data["name"]]
        return {"channels": info.channels, "num_classes": info.num_classes, "image_size": data["image_size"]}
    return {"channels": recorded["channels"], "num_classes": recorded["num_classes"], "image_size": data["image_size"]}


def read_zoo(workdir: str | os.PathLike) -> Zoo:
    """Reads a workdir; ExportError if it is not a finished zoo (missing or damaged epochs)."""
    path = pathlib.Path(workdir).absolute()
    document = checkpoint.read_config(path)
    if is_inr(document["config"]):  # Table 3, twins and merges are for classification zoos
        raise ExportError(f"{path} holds an INR zoo: analyse it with `python -m jaxzoo.analyze` (its card predicts "
                          "the class from weights) and export it with `python -m jaxzoo.export`")
    try:
        table = json.loads((path / "models.json").read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ExportError(f"{path / 'models.json'} is unreadable ({type(error).__name__}): pass the --workdir "
                          "of a trained zoo, or rerun its train command to rewrite it") from None
    num_epochs = document["config"]["training"]["num_epochs"]
    checkpoints = checkpoint.ZooCheckpoints(path)
    damaged = checkpoints.damaged()
    if damaged:
        epoch, reason = next(iter(damaged.items()))
        raise ExportError(
            f"{path} has damaged checkpoints (epochs {sorted(damaged)}; epoch {epoch}: {reason}): rerun the "
            "train command, which sets them aside and retrains them"
        )
    steps = checkpoints.epochs()
    missing = sorted(set(range(num_epochs + 1)) - set(steps))
    if missing:
        raise ExportError(
            f"{path} lacks epochs {missing[:5]}{'...' if len(missing) > 5 else ''} of 0..{num_epochs}: "
            "finish training first (rerun the same train command to resume)"
        )
    metrics = {epoch: checkpoints.metrics(epoch) for epoch in range(num_epochs + 1)}
    return Zoo(path, document["config"], document["identity_hash"], table, list(range(num_epochs + 1)), metrics,
               checkpoints, dataset_facts(document))


def model_type(zoo: Zoo) -> str:
    """params.json's model::type: the original's class name, or jaxzoo's for other models."""
    if zoo.is_twin:
        return "CNN_ARD"
    return original_type(zoo.config["model"])


def original_type(model_config: dict) -> str:
    name = arch_name(model_config)
    return ORIGINAL_TYPE.get(name, f"jaxzoo:{name}")


def model_description(zoo: Zoo) -> dict:
    """What rebuilds a model that is not one of the original's (`jaxzoo.torch.build_model`)."""
    model = zoo.config["model"]
    if zoo.is_custom:
        return {"model::module": object_name(model["module"]), "model::kwargs": model.get("kwargs") or {}}
    if arch_name(model) in ORIGINAL_TYPE:
        return {}
    return {"model::convs": [list(c) for c in model.get("convs", ())], "model::widths": list(model.get("widths", ())),
            "model::image_size": zoo.config["data"]["image_size"]}


def model_factors(zoo: Zoo, row: dict) -> dict:
    """A model's factors as the original keys: the grid's, plus every hyperparameter its
    optimizer reads (fixed ones included)."""
    pop = zoo.config["population"]
    reads = optimizer_entry(row["optimizer"]).hyperparams
    chosen = [f for f in FACTOR_TABLE if not f.optional or f.name in row or f.name in reads or f.name == "momentum"]
    return {f.original_key: model_value(row, f.name, pop) for f in chosen}


def torch_optimizer_note(row: dict) -> dict:
    """Which PyTorch optimizer the exported optimizer state is for, or why there is none."""
    entry = optimizer_entry(row["optimizer"])
    if entry.torch is None:
        return {"optim::torch_optimizer": None, "jaxzoo::no_optimizer_state": entry.no_torch_reason}
    return {"optim::torch_optimizer": f"torch.optim.{entry.torch.class_name}"}


def original_params(zoo: Zoo, row: dict) -> dict:
    """params.json of one trial with the original's config keys; a paper zoo's also carry what
    the original script of that zoo recorded (`paper_zoos.recorded_params`)."""
    config = zoo.config
    extra = {"optim::scheduler": "OneCycleLR", "training::dataloader": "normal"} if zoo.is_resnet else {}
    params = {
        "model::type": model_type(zoo),
        "model::channels_in": zoo.channels_in,
        "model::o_dim": zoo.num_classes,
        "model::use_bias": True,
        **model_description(zoo),
        **model_factors(zoo, row),
        "seed": row["seed"],
        "training::batchsize": config["training"]["batch_size"],
        "training::epochs_train": config["training"]["num_epochs"],
        "training::loss": "nll",
        "training::dataloader": "tensor",
        "dataset::name": config["data"]["name"],
        "dataset::image_size": config["data"]["image_size"],
        "cuda": False,
        "jaxzoo::model_id": row["model_id"],
        "jaxzoo::num_classes": zoo.num_classes,  # the original CNNs ignore o_dim and output 10
        "jaxzoo::zoo": zoo.identity_hash,
        **torch_optimizer_note(row),
        **extra,
    }
    return recorded_params(config.get("original", {}).get("experiment", ""), params)


def search_pattern(zoo: Zoo) -> dict:
    """The zoo-level config.json: fixed values, and {'grid_search': [...]} for varied ones."""
    pop = zoo.config["population"]
    grid = lambda values: values[0] if len(values) == 1 else {"grid_search": values}
    seeds = sorted({row["seed"] for row in zoo.table})
    factors = {f.original_key: grid(list(values_of(pop, f.name))) for f in FACTOR_TABLE if values_of(pop, f.name)}
    if not isinstance(pop.get("momentum"), (list, tuple)):
        factors["optim::momentum"] = pop["momentum"]
    return {
        "model::type": original_type(zoo.config["model"]),
        **model_description(zoo),
        **factors,
        "seed": grid(seeds) if pop["seed_mode"] == "range" else f"{len(zoo.table)} random seeds in [0, 1e6)",
        "training::batchsize": zoo.config["training"]["batch_size"],
        "training::epochs_train": zoo.config["training"]["num_epochs"],
        "dataset::name": zoo.config["data"]["name"],
    }


def trial_name(row: dict) -> str:
    return f"NN_tune_trainable_{row['model_id']:05d}_seed={row['seed']}"


def result_lines(zoo: Zoo, index: int, params: dict) -> list[str]:
    """result.json of one trial: a JSON object per epoch, as Ray Tune's JsonLogger wrote them.

    Non-finite values are null (valid JSON); a zoo without a val split has no val keys, and
    twins carry `sparsity_ratio`, as the original's lines."""
    names = [name for name in METRICS if zoo.has_val or not name.startswith("val_")]
    lines = []
    for epoch in zoo.epochs:
        values = {name: float(zoo.metrics[epoch][name][index]) for name in names}
        if zoo.is_twin:
            values["sparsity_ratio"] = float(zoo.metrics[epoch]["sparsity"][index])
        values = {name: value if np.isfinite(value) else None for name, value in values.items()}
        line = {**values, "training_iteration": epoch, "done": epoch == zoo.epochs[-1],
                "trial_id": f"{params['jaxzoo::model_id']:05d}", "config": params}
        lines.append(json.dumps(line))
    return lines


def torch_optimizer_state(zoo: Zoo, row: dict, index: int, final_state: dict, torch) -> dict | None:
    """The model's optimizer state in `final_state` (one epoch's population state) as its PyTorch
    optimizer's state_dict (None when its optimizer has no PyTorch counterpart: params.json says why)."""
    if zoo.is_resnet:  # one SGD; the momentum buffers follow model.parameters()
        from jaxzoo.torch import build_model

        model = build_model(original_params(zoo, row))
        optimizer = torch.optim.SGD(model.parameters(), lr=row["lr"], momentum=zoo.config["population"]["momentum"],
                                    weight_decay=row["weight_decay"])
        trace = final_state["opt_state"]["inner_state"][1][0]["trace"]
        state_dict = optimizer.state_dict()
        state_dict["state"] = {
            position: {"momentum_buffer": torch.from_numpy(np.ascontiguousarray(np.asarray(array)[index]))}
            for position, (_, array) in enumerate(resnet.torch_parameters(trace))
        }
        return state_dict
    entry = optimizer_entry(row["optimizer"])
    if entry.torch is None:
        return None
    values = entry.resolve({name: model_value(row, name, zoo.config["population"]) for name in entry.hyperparams})
    dropout = zoo.layout_dropout(row)
    # param_groups only list parameter positions: placeholders of the right shapes serve any model.
    shapes = [array.shape[1:] for _, array in zoo.params_torch(jax.tree.map(lambda a: np.asarray(a)[:1],
                                                                              final_state["params"]), dropout)]
    optimizer = getattr(torch.optim, entry.torch.class_name)(
        [torch.nn.Parameter(torch.zeros(shape)) for shape in shapes], **entry.torch.kwargs(values))
    state = jax.tree.map(lambda a: np.asarray(a)[index], final_state["opt_state"][row["optimizer"]])
    to_torch = lambda tree: [np.ascontiguousarray(a) for _, a in zoo.params_torch(tree, dropout, lead=0)]
    state_dict = optimizer.state_dict()
    state_dict["state"] = torch_state(entry, state, values, to_torch)
    if model_value(row, "schedule", zoo.config["population"]) != "constant":
        # As a PyTorch LR scheduler leaves it: the last learning rate in `lr`, the peak in `initial_lr`.
        for group in state_dict["param_groups"]:
            group["initial_lr"], group["lr"] = group["lr"], float(state["hyperparams"]["learning_rate"])
    return state_dict


def write_trials(zoo: Zoo, folder: pathlib.Path, log, optimizer_state: str = "last") -> int:
    """One trial folder per model in `folder` (skips complete ones); returns how many were written.

    optimizer_state: 'last' writes the final epoch's optimizer state (the paper), 'all' every
    epoch's (the original code)."""
    try:
        import torch
    except ImportError:
        raise ExportError("the trials format writes PyTorch checkpoints and needs torch: "
                          "pip install 'jaxzoo[torch]' (or export --format vectors)") from None
    todo = [(i, row) for i, row in enumerate(zoo.table) if not (folder / trial_name(row)).is_dir()]
    if not todo:
        return 0
    params_by_model = {i: original_params(zoo, row) for i, row in todo}
    # State_dict keys depend on the dropout setting; the arrays (PyTorch layout) do not.
    keys = {flag: [key for key, _ in zoo.torch_arrays(zoo.state(0), float(flag))] for flag in (0, 1)}
    arrays_by_epoch, optimizer_epochs = {}, {}
    for epoch in zoo.epochs:  # PyTorch layout of the whole population, once per epoch
        state = zoo.state(epoch)
        arrays_by_epoch[epoch] = [np.ascontiguousarray(a) for _, a in zoo.torch_arrays(state)]
        if (optimizer_state == "all" or epoch == zoo.epochs[-1]) and "opt_state" in state:  # ingested: none
            optimizer_epochs[epoch] = {"opt_state": state["opt_state"], "params": state["params"]}
    for count, (index, row) in enumerate(todo):
        target = folder / trial_name(row)
        tmp = folder / f".{target.name}.partial"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        params = params_by_model[index]
        (tmp / "params.json").write_text(json.dumps(params, indent=1))
        (tmp / "result.json").write_text("".join(line + "\n" for line in result_lines(zoo, index, params)))
        for epoch in zoo.epochs:
            state_dict = {
                key: torch.from_numpy(np.array(array[index]))  # 0-d arrays too (num_batches_tracked)
                for key, array in zip(keys[int(zoo.layout_dropout(row) > 0)], arrays_by_epoch[epoch])
            }
            epoch_dir = tmp / f"checkpoint_{epoch:06d}"
            epoch_dir.mkdir()
            torch.save(state_dict, epoch_dir / "checkpoints")
        for epoch, state in optimizer_epochs.items():
            optimizer = torch_optimizer_state(zoo, row, index, state, torch)
            if optimizer is not None:
                torch.save(optimizer, tmp / f"checkpoint_{epoch:06d}" / "optimizer")
        os.replace(tmp, target)
        if (count + 1) % 200 == 0:
            log(f"  {count + 1}/{len(todo)} trial folders")
    return len(todo)


def model_splits(zoo: Zoo) -> dict[str, list[int]]:
    """70/15/15 by model: sorted trial names shuffled with random.seed(42), as the original."""
    names = sorted((trial_name(row), i) for i, row in enumerate(zoo.table))
    random.seed(SPLIT_SEED)
    random.shuffle(names)
    n = len(names)
    n_train, n_val = int(SPLIT_FRACTIONS[0] * n), int(SPLIT_FRACTIONS[1] * n)
    indices = [i for _, i in names]
    return {"train": indices[:n_train], "val": indices[n_train : n_train + n_val], "test": indices[n_train + n_val :]}


def vector_splits(zoo: Zoo, epochs: list[int], threshold: float, twin_weights: str = "raw",
                  vectors: dict[int, np.ndarray] | None = None,
                  layout: dict | None = None) -> tuple[dict[str, "VectorSplit"], dict]:
    """The flat-vector dataset in memory: {split: VectorSplit} and the filter counts per split.

    Rows are (model, epoch) of the split's models; rows with NaN/inf or |w| > threshold are
    dropped and counted, as the original loader did. Properties carry jaxzoo's names and the
    original's (`drop_in_properties`); twins' vectors are raw weights unless twin_weights='masked'.
    vectors {epoch: [M, P]} and their layout replace the zoo's flat vectors (e.g. features of them).
    """
    layout = layout or zoo.vector_layout()
    masked = twin_weights == "masked"
    weights_by_epoch = vectors or {epoch: zoo.flat_vectors(zoo.state(epoch), masked) for epoch in epochs}
    splits, counts = {}, {}
    for split, models in model_splits(zoo).items():
        rows = [(m, e) for m in models for e in epochs]
        weights = np.stack([weights_by_epoch[e][m] for m, e in rows]) if rows else np.zeros((0, layout_size(layout)), np.float32)
        nan = ~np.isfinite(weights).all(axis=1)
        large = ~nan & (np.abs(np.nan_to_num(weights)) > threshold).any(axis=1)
        keep = ~(nan | large)
        kept = [row for row, k in zip(rows, keep) if k]
        properties: dict = {
            "model_id": np.array([zoo.table[m]["model_id"] for m, _ in kept], np.int64),
            "epoch": np.array([e for _, e in kept], np.int64),
            "ggap": np.array([zoo.metrics[e]["train_acc"][m] - zoo.metrics[e]["test_acc"][m] for m, e in kept], np.float32),
        }
        for name in METRICS:
            properties[name] = np.array([zoo.metrics[e][name][m] for m, e in kept], np.float32)
        properties["seed"] = np.array([zoo.table[m]["seed"] for m, _ in kept], np.int64)
        if zoo.is_twin:
            properties["sparsity_ratio"] = np.array([zoo.metrics[e]["sparsity"][m] for m, e in kept], np.float32)
        for factor in property_factors(zoo):
            values = [zoo.table[m][factor.name] for m, _ in kept]
            properties[factor.name] = np.array(values, np.float64) if factor.kind == "numeric" else values
        properties.update(drop_in_properties(zoo, properties))
        splits[split] = VectorSplit(np.ascontiguousarray(weights[keep]), properties, layout)
        counts[split] = {"rows": int(keep.sum()), "dropped_nan": int(nan.sum()), "dropped_threshold": int(large.sum())}
    return splits, counts


def drop_in_properties(zoo: Zoo, properties: dict) -> dict:
    """The same rows under the original loader's property keys, which its consumers read:
    training_iteration (the epoch) and each factor's params.json key (model::nlin, optim::lr, ...)."""
    aliases = {"training_iteration": properties["epoch"]}
    for factor in property_factors(zoo):
        if factor.original_key not in properties:
            aliases[factor.original_key] = properties[factor.name]
    return aliases


def property_factors(zoo: Zoo) -> list[Factor]:
    """The factors each vector row carries as a property: those of the zoo's grid."""
    return [f for f in FACTOR_TABLE if f.name in zoo.table[0]]


def write_vectors(zoo: Zoo, folder: pathlib.Path, epochs: list[int], threshold: float, log,
                  twin_weights: str = "raw") -> dict:
    """Writes the flat-vector dataset (safetensors + json, dataset.pt); returns the filter report."""
    folder.mkdir(parents=True, exist_ok=True)
    splits, counts = vector_splits(zoo, epochs, threshold, twin_weights)
    for split, data in splits.items():
        meta = save_vector_split(folder, split, data, counts[split], {"epochs": epochs})
        log(f"  vectors/{split}: {meta['rows']} rows kept, {meta['dropped_nan']} NaN, {meta['dropped_threshold']} over |w| > {threshold}")
    if "layer" in zoo.vector_layout() and counts["train"]["rows"]:  # per-layer train statistics (loaders)
        write_standardisation(folder)
    write_torch_dataset(folder, log)
    return {"threshold": threshold, "epochs": epochs, "splits": counts,
            **({"twin_weights": twin_weights} if zoo.is_twin else {})}


def save_vector_split(folder: pathlib.Path, split: str, data: "VectorSplit", counts: dict, extra: dict) -> dict:
    """Writes one split of a flat-vector dataset: `<split>.safetensors` (weights and numeric
    properties) and `<split>.json` (counts, categorical properties, index_dict, `extra`), each
    under a temporary name first; returns the JSON metadata."""
    from safetensors.numpy import save_file

    categorical = [k for k, v in data.properties.items() if isinstance(v, list)]
    numeric = {k: v for k, v in data.properties.items() if k not in categorical}
    tmp = folder / f".{split}.safetensors.partial"
    save_file({"weights": data.weights, **numeric}, str(tmp))
    meta = {
        "split": split, **counts, "numeric_properties": sorted(numeric),
        "categorical_properties": {k: data.properties[k] for k in categorical},
        "index_dict": data.index_dict, **extra,
    }
    (folder / f".{split}.json.partial").write_text(json.dumps(meta))
    os.replace(tmp, folder / f"{split}.safetensors")
    os.replace(folder / f".{split}.json.partial", folder / f"{split}.json")
    return meta


def layout_size(layout: dict) -> int:
    if "tensors" in layout:  # ResNet: {key, offset, shape} per tensor
        last = layout["tensors"][-1]
        return last["offset"] + int(np.prod(last["shape"]))
    last = len(layout["layer"]) - 1
    return layout["idx_start"][last] + layout["kernel_no"][last] * (layout["channels_in"][last] * layout["kernel_size"][last] + 1)


def write_torch_dataset(folder: pathlib.Path, log) -> None:
    """`dataset.pt`: {split: {'weights': tensor, 'properties': {...}}} when torch is installed."""
    try:
        import torch
    except ImportError:
        log("  vectors/dataset.pt skipped: torch is not installed (pip install 'jaxzoo[torch]'); "
            "the safetensors + json files need no torch")
        return
    data = {split: load_vectors_split(folder, split) for split in ("train", "val", "test")}
    payload = {
        split: {"weights": torch.from_numpy(d.weights), "properties": {k: (torch.from_numpy(v) if isinstance(v, np.ndarray) else v) for k, v in d.properties.items()}}
        for split, d in data.items()
    }
    torch.save(payload, folder / ".dataset.pt.partial")
    os.replace(folder / ".dataset.pt.partial", folder / "dataset.pt")


@dataclasses.dataclass
class VectorSplit:
    """One split of an exported flat-vector dataset: weights [rows, P], properties per row."""

    weights: np.ndarray
    properties: dict[str, np.ndarray | list]
    index_dict: dict


def load_vectors_split(folder: pathlib.Path, split: str) -> VectorSplit:
    from safetensors.numpy import load_file

    try:
        tensors = load_file(str(folder / f"{split}.safetensors"))
        meta = json.loads((folder / f"{split}.json").read_text())
    except FileNotFoundError as error:
        raise ExportError(f"{error.filename} is missing: pass a flat-vector folder written by "
                          "python -m jaxzoo.export (its vectors/ folder)") from None
    except Exception as error:  # safetensors and json raise their own types for damaged files
        raise ExportError(f"the {split} split in {folder} is damaged ({type(error).__name__}): export the zoo "
                          "again (python -m jaxzoo.export --overwrite)") from None
    properties: dict = {name: tensors[name] for name in meta["numeric_properties"]}
    properties.update(meta["categorical_properties"])
    return VectorSplit(tensors["weights"], properties, meta["index_dict"])


def load_vectors(export_dir: str | os.PathLike) -> dict[str, VectorSplit]:
    """Reads `<experiment>/vectors` (or the vectors folder itself) back: {'train', 'val', 'test'}."""
    folder = pathlib.Path(export_dir)
    folder = folder if (folder / "train.safetensors").exists() else folder / "vectors"
    return {split: load_vectors_split(folder, split) for split in ("train", "val", "test")}


def zoo_readme(zoo: Zoo, settings: dict) -> str:
    """readme.md of an export: what each folder holds and what was kept where."""
    n = len(zoo.table)
    last = zoo.epochs[-1]
    kept = ("the last epoch's optimizer state (checkpoint_{:06d}/optimizer), as the paper".format(last)
            if settings["optimizer_state"] == "last" else
            "every epoch's optimizer state (checkpoint_*/optimizer), as the original code")
    twin = ("" if not zoo.is_twin else
            f"Flat vectors of this sparsified twin zoo hold the {settings['twin_weights']} weights "
            f"({'as the original' if settings['twin_weights'] == 'raw' else 'weights with log alpha >= 3 set to 0'}); "
            "result.json and the vector properties carry sparsity_ratio.\n")
    formats = settings["formats"]
    parts = []
    if formats in ("trials", "all"):
        parts.append("trials/ holds one folder per model and nothing else (point the original ModelDatasetBase "
                     "there): params.json, result.json (line e = epoch e) and checkpoint_{e:06d}/checkpoints "
                     f"(PyTorch state_dict, original keys), with {kept}.")
    parts.append("model.py rebuilds any trial with torch alone: `build_model(json.load(open('params.json')))`.")
    if formats in ("vectors", "all"):
        parts.append("vectors/ holds the flat-vector dataset (safetensors + json), split 70/15/15 by model.")
    if formats in ("parquet", "all"):
        parts.append("parquet/ holds the same rows as Parquet files (one row per model and epoch), which README.md "
                     "describes as a Hugging Face dataset.")
    return (
        f"# {zoo.config['name']}\n\nExported by jaxzoo from zoo {zoo.identity_hash}: {n} models "
        f"({zoo.config['model']['arch']}) on {zoo.config['data']['name']}, epochs 0..{last}.\n"
        f"Formats: {formats}. " + " ".join(parts) + "\n"
        f"{twin}{zoo.config.get('notes', '')}\n"
    )


def export(workdir, out, formats: str = "all", epochs: list[int] | None = None,
           threshold: float = DEFAULT_THRESHOLD, overwrite: bool = False, log=print,
           optimizer_state: str = "last", twin_weights: str = "raw", with_data: bool = False) -> dict:
    """Exports the zoo in `workdir` to `out/<experiment>`; returns a report (filters, time).

    optimizer_state: 'last' (the paper) or 'all' (the original code) epochs' optimizer states in
    the trial folders; twin_weights: 'raw' (the original) or 'masked' flat vectors of a twin zoo;
    with_data: also write the preprocessed splits (dataset.pt). `log` receives progress lines
    (None: silent). An INR zoo's workdir goes to `jaxzoo.inr.export.export_inr` (formats
    dwsnets_mnist, dwsnets_fmnist, nfn, vectors, all; the other options keep their defaults).
    """
    log = log or (lambda message: None)
    for name, value, choices in (("format", formats, FORMATS), ("optimizer_state", optimizer_state, OPTIMIZER_STATES),
                                 ("twin_weights", twin_weights, TWIN_WEIGHTS)):
        if value not in choices:
            raise ExportError(f"unknown {name} {value!r}: choose from {choices}")
    if is_inr_workdir(workdir):  # an INR zoo: the DWSNets / NFN layouts and flat vectors
        from jaxzoo.inr.export import export_inr, refuse_classification_options

        refuse_classification_options(epochs=epochs, threshold=threshold, optimizer_state=optimizer_state,
                                      twin_weights=twin_weights, with_data=with_data)
        return export_inr(workdir, out, formats, overwrite, log)
    if formats not in CLASSIFICATION_FORMATS:
        raise ExportError(f"format {formats} is for INR zoos and {pathlib.Path(workdir).absolute()} holds a "
                          f"classification zoo: choose from {CLASSIFICATION_FORMATS}")
    if formats in ("parquet", "all"):  # before anything is written
        from jaxzoo.parquet import require_pyarrow

        require_pyarrow()
    check_destination(pathlib.Path(out), "--out")
    start = time.time()
    zoo = read_zoo(workdir)
    check_destination(pathlib.Path(out).absolute() / zoo.experiment, "--out")
    epochs = zoo.epochs if epochs is None else epochs
    bad = [e for e in epochs if e not in zoo.epochs]
    if bad:
        raise ExportError(f"epochs {bad} are not in the zoo (0..{zoo.epochs[-1]}): choose from those")
    target = pathlib.Path(out).absolute() / zoo.experiment
    settings = {"zoo": zoo.identity_hash, "formats": formats, "epochs": epochs, "threshold": threshold,
                "optimizer_state": optimizer_state, "twin_weights": twin_weights, "with_data": with_data}
    return write_claimed(target, settings, overwrite, zoo.workdir, lambda: write_export(zoo, target, settings, log),
                         start)


def write_claimed(target: pathlib.Path, settings: dict, overwrite: bool, workdir: pathlib.Path,
                  write: Callable[[], dict], start: float) -> dict:
    """Claims `target` (`claim_target`), runs `write` (-> its report), removes what it created if
    that fails on a user error (a damaged checkpoint found while writing), records the export in
    the workdir; returns the report with the seconds since `start`."""
    created = claim_target(target, settings, overwrite)
    try:
        report = write()
    except UserError:
        if created is not None:
            shutil.rmtree(created, ignore_errors=True)
        raise
    record_export(workdir, target)
    report["seconds"] = time.time() - start
    return report


def claim_target(target: pathlib.Path, settings: dict, overwrite: bool) -> pathlib.Path | None:
    """Before an export writes into `target`: refuses a complete export, or one of another zoo or
    with other `settings`, unless `overwrite` (then removes it), and a folder that is no export.
    Returns the outermost folder the export will create (None: `target` exists), which a failed
    export removes."""
    manifest_path = target / MANIFEST
    if manifest_path.exists():
        try:
            existing = json.loads(manifest_path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            existing = {}  # a damaged manifest: the export is incomplete, only --overwrite replaces it
        same = {k: existing.get(k) for k in settings} == settings
        if overwrite:
            shutil.rmtree(target)
        elif existing.get("complete") or not same:
            raise ExportError(f"{target} already holds an export{' of another zoo or with other settings' if not same else ''}: "
                              "pass --overwrite to replace it, or choose another --out")
    elif target.exists() and any(target.iterdir()):
        raise ExportError(f"{target} exists and is not a jaxzoo export: choose another --out")
    return next((p for p in reversed((target, *target.parents)) if not p.exists()), None)


def write_export(zoo: Zoo, target: pathlib.Path, settings: dict, log) -> dict:
    """Writes the export's files into `target` (manifest last marked complete); returns the report."""
    from jaxzoo import bundle

    formats = settings["formats"]
    manifest_path = target / MANIFEST
    target.mkdir(parents=True, exist_ok=True)
    manifest_path.write_text(json.dumps({**settings, "complete": False}))
    (target / "config.json").write_text(json.dumps(search_pattern(zoo), indent=1, default=str))
    (target / "index_dict.json").write_text(json.dumps(zoo.vector_layout(), indent=1))
    (target / "dataset.json").write_text(json.dumps({**zoo.config["data"], "dataset_seed": 42}, indent=1))
    (target / "readme.md").write_text(zoo_readme(zoo, settings))
    bundle.write_model_file(target)
    if settings["with_data"]:
        log("writing the preprocessed splits (dataset.pt) ...")
        bundle.write_training_data(zoo, target, log)
    report = {"out": str(target), "models": len(zoo.table), "epochs": len(zoo.epochs)}
    if formats in ("trials", "all"):
        log(f"writing {len(zoo.table)} trial folders ...")
        report["trials_written"] = write_trials(zoo, target / TRIALS, log, settings["optimizer_state"])
    if formats in ("vectors", "all"):
        log("writing the flat-vector dataset ...")
        report["vectors"] = write_vectors(zoo, target / "vectors", settings["epochs"], settings["threshold"], log,
                                          settings["twin_weights"])
    if formats in ("parquet", "all"):
        from jaxzoo import parquet

        log("writing the Parquet dataset and its Hugging Face card (README.md) ...")
        report["parquet"] = parquet.write_parquet(zoo, target / parquet.PARQUET, settings["epochs"],
                                                  settings["threshold"], log, settings["twin_weights"])
        parquet.write_dataset_card(target, report["parquet"]["rows"], zoo_readme(zoo, settings), zoo.config["name"])
    manifest_path.write_text(json.dumps({**settings, "complete": True, "report": report}, indent=1))
    return report


def record_export(workdir: pathlib.Path, target: pathlib.Path) -> None:
    path = workdir / EXPORTS_FILE
    known = json.loads(path.read_text()) if path.exists() else []
    if str(target) not in known:
        path.write_text(json.dumps(known + [str(target)], indent=1))


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m jaxzoo.export", description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--format", default="all", choices=FORMATS,
                        help="classification zoos: trials|vectors|parquet|all; INR zoos: dwsnets_mnist|dwsnets_fmnist|nfn|vectors|all")
    parser.add_argument("--epochs", type=epoch_list, default="", help="comma-separated epochs for the vectors (default: all)")
    parser.add_argument("--threshold", type=number_in(0, low_open=True), default=DEFAULT_THRESHOLD,
                        help="drop rows with |w| above it")
    parser.add_argument("--optimizer_state", default="last", choices=OPTIMIZER_STATES,
                        help="last: the final epoch's optimizer state (the paper); all: every epoch's (the original code)")
    parser.add_argument("--twin_weights", default="raw", choices=TWIN_WEIGHTS,
                        help="flat vectors of a twin zoo: raw ARD weights (the original) or masked")
    parser.add_argument("--with_data", action="store_true", help="also write the preprocessed splits (dataset.pt)")
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(argv)

    def action():
        report = export(args.workdir, args.out, args.format, args.epochs, args.threshold, args.overwrite,
                        optimizer_state=args.optimizer_state, twin_weights=args.twin_weights, with_data=args.with_data)
        print(f"exported to {report['out']} in {report['seconds']:.1f} s")

    return run(action, args.verbose)


if __name__ == "__main__":
    sys.exit(main())
