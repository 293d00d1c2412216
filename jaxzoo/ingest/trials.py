"""Reads ModelZooDataset trial folders (Schürholt et al. 2022), a folder or a .zip of it.

The trials are the subfolders holding params.json or result.json of the shallowest folder that
has any (`common.locate_trials`: the same search in a folder and in a zip, so an experiment
folder, its trials/, jaxzoo's export (`<out>/<experiment>/` with trials/ and dataset.json) and
an archive of `<dataset>/<experiment>/` are read alike); other subfolders there are skipped and
named in one log line. A trial's config is params.json (model::type, model::nlin,
model::init_type, model::dropout, optim::optimizer, optim::lr, optim::wd, seed,
training::batchsize, training::epochs_train, dataset::dump or dataset::name), else the `config`
of result.json's first line (the original loader's rule); result.json holds a JSON object per
epoch (train/test/val loss and acc, training_iteration; twins sparsity_ratio), and
checkpoint_{e:06d}/checkpoints (or checkpoint_{e}/checkpoints) a PyTorch state_dict. The zoo's
epochs are those most trials were to train; a trial missing a result line or checkpoint of
them is left out (one log line, ingest.json `left_out`); none complete is an IngestError.
model::type CNN -> cnn_s, CNN3 -> cnn_m, CNN_ARD -> a cnn_s twin zoo (Variational Dropout:
weight, bias, log_sigma2, log_sigma2_bias per layer, module indices with or without dropout
modules), Resnet18 -> resnet18 (torchvision keys, BatchNorm statistics kept), jaxzoo:cnn /
jaxzoo:mlp -> cnn / mlp. Tensors are converted back to Flax params by the inverses of the
export's own mappings (`torch_layout.torch_inverse`, `resnet.torch_inverse`). models.json names
each model's trial folder (`source_trial`, relative to the source). The dataset: a jaxzoo
export's dataset.json, else dataset::name (a jaxzoo name) or dataset::dump (.../MNIST/dataset.pt
-> mnist).
"""

from __future__ import annotations

import dataclasses
import io
import json
import re

import jax
import numpy as np
from flax import traverse_util
from ml_collections import ConfigDict

from jaxzoo.config import LOCATION_FIELDS, base_config
from jaxzoo.data import DATASETS, is_registry_name, parse_name
from jaxzoo.errors import UserError
from jaxzoo.ingest.common import (
    FolderSource,
    IngestError,
    Plan,
    Source,
    as_float,
    check_dataset,
    check_known,
    dataset_record,
    join,
    locate_trials,
    optional_factor,
    parent,
    population_config,
    read_json,
    report_left_out,
    with_divergence,
)
from jaxzoo.models import ard, resnet
from jaxzoo.models.cnn import ACTIVATIONS, ARCHS
from jaxzoo.models.registry import arch_spec, build_model, params_shapes
from jaxzoo.models.torch_layout import TorchInverse, torch_inverse
from jaxzoo.training.factors import FACTOR_TABLE, FACTORS_BY_NAME
from jaxzoo.zoo import checkpoint

TRIALS_FORMAT = "modelzoo_trials"
METRICS = checkpoint.METRIC_NAMES
REQUIRED_RESULTS = ("train_loss", "train_acc", "test_loss", "test_acc")
MODEL_TYPES = {
    "CNN": "cnn_s",
    "CNN3": "cnn_m",
    "CNN_ARD": "cnn_s",
    "Resnet18": "resnet18",
    "jaxzoo:cnn": "cnn",
    "jaxzoo:mlp": "mlp",
}
TWIN_TYPES = ("CNN_ARD",)  # sparsified (Variational Dropout) twins: a jaxzoo twin zoo
# Dataset folder names of the original dumps (normalised: lower case, letters and digits), longest first.
DUMP_NAMES = (
    ("tinyimagenet", "tiny_imagenet"),
    ("fashionmnist", "fashion_mnist"),
    ("cifar100", "cifar100"),
    ("cifar10", "cifar10"),
    ("fmnist", "fashion_mnist"),
    ("mnist", "mnist"),
    ("svhn", "svhn"),
    ("usps", "usps"),
    ("stl10", "stl10"),
    ("stl", "stl10"),
)
RESNET_DATASETS = {"cifar10": "cifar10_resnet"}
population_sparsity = jax.jit(jax.vmap(ard.sparsity))  # twins' params [M, ...] -> [M] share of masked weights


@dataclasses.dataclass
class Trial:
    folder: str  # relative to the source root
    params: dict
    config_rel: str  # the file the params came from: params.json, else result.json
    results: dict[int, dict] | None  # epoch -> result line (None: no result.json)
    checkpoints: list[str] = dataclasses.field(default_factory=list)  # epoch -> its state_dict file


class Incomplete(Exception):
    """A trial that lacks some of the zoo's epochs (left out of the zoo); the message is the reason."""


def experiment_name(source: Source, base: str) -> str:
    parts = [p for p in base.split("/") if p]
    if parts and parts[-1] == "trials":
        parts = parts[:-1]
    if parts:
        return parts[-1]
    if isinstance(source, FolderSource):
        path = source.path.absolute()
        return path.parent.name if path.name == "trials" else path.name
    return source.path.stem


def export_dataset(source: Source, base: str) -> dict | None:
    """The data config a jaxzoo export keeps in its dataset.json (next to trials/), if any."""
    candidates = [join(base, "dataset.json"), join(parent(base), "dataset.json")] if base else ["dataset.json"]
    for rel in candidates:
        if source.is_file(rel):
            data = read_json(source, rel, "restore it, or pass --dataset")
            if isinstance(data, dict) and isinstance(data.get("name"), str):
                return data
            raise IngestError(f"{source.where(rel)} holds no data config (a 'name'): restore it, or pass --dataset")
    if isinstance(source, FolderSource) and not base and source.path.name == "trials":
        outer = source.path.parent / "dataset.json"
        if outer.is_file():
            return read_json(FolderSource(source.path.parent), "dataset.json", "restore it, or pass --dataset")
    return None


def require(params: dict, key: str, source: Source, rel: str):
    if key not in params or params[key] is None:
        raise IngestError(f"{source.where(rel)} lacks {key!r}: restore the file or remove its trial from the source")
    return params[key]


def result_lines(source: Source, rel: str) -> list[dict]:
    """result.json as a list of JSON objects (one per line)."""
    try:
        text = source.read(rel).decode("utf-8")
        lines = [json.loads(line) for line in text.splitlines() if line.strip()]
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise IngestError(
            f"{source.where(rel)} is not JSON lines ({type(error).__name__}): restore it or remove "
            "its trial from the source"
        ) from None
    if not all(isinstance(line, dict) for line in lines):
        raise IngestError(f"{source.where(rel)} is not one JSON object per line: restore it")
    return lines


def results_by_epoch(lines: list[dict]) -> dict[int, dict]:
    """{epoch: line}: by training_iteration when every line has one (the original loader's
    rule, whose lines may start at iteration 1), else line e = epoch e."""
    iterations = [line.get("training_iteration") for line in lines]
    if lines and all(isinstance(i, int) and not isinstance(i, bool) for i in iterations):
        return dict(zip(iterations, lines))
    return dict(enumerate(lines))


def read_trial(source: Source, folder: str) -> Trial:
    """A trial's params (params.json, else the `config` of result.json's first line, as the
    original loader) and its result lines."""
    params_rel, results_rel = join(folder, "params.json"), join(folder, "result.json")
    lines = result_lines(source, results_rel) if source.is_file(results_rel) else None
    if source.is_file(params_rel):
        params, config_rel = read_json(source, params_rel), params_rel
    elif lines and isinstance(lines[0].get("config"), dict):
        params, config_rel = lines[0]["config"], results_rel
    else:
        raise IngestError(
            f"{source.where(folder)} has no params.json and its result.json no 'config' in its first "
            "line: restore params.json or remove the trial from the source"
        )
    if not isinstance(params, dict):
        raise IngestError(f"{source.where(params_rel)} is not a JSON object: restore it")
    require(params, "model::type", source, config_rel)
    require(params, "seed", source, config_rel)
    return Trial(folder, params, config_rel, None if lines is None else results_by_epoch(lines))


def planned_epochs(trial: Trial, source: Source) -> int | None:
    """The epochs a trial was to train: training::epochs_train, else its last result line (None: unknown)."""
    if "training::epochs_train" in trial.params:
        epochs = trial.params["training::epochs_train"]
        if not isinstance(epochs, int) or isinstance(epochs, bool) or epochs < 1:
            raise IngestError(f"{source.where(trial.config_rel)} has training::epochs_train={epochs!r}: restore it")
        return epochs
    return max(trial.results) if trial.results and max(trial.results) >= 1 else None


def zoo_epochs(trials: list[Trial], source: Source) -> int:
    """The zoo's last epoch: the one most trials were to train (the larger on a tie)."""
    counts: dict[int, int] = {}
    for trial in trials:
        epochs = planned_epochs(trial, source)
        if epochs is not None:
            counts[epochs] = counts.get(epochs, 0) + 1
    if not counts:
        raise IngestError(
            f"{source.where(trials[0].config_rel)} has no training::epochs_train and no trial has a result "
            "line after epoch 0: restore the trials' result.json"
        )
    return max(counts, key=lambda epochs: (counts[epochs], epochs))


def complete_trial(source: Source, trial: Trial, num_epochs: int) -> Trial:
    """The trial with its checkpoint files for epochs 0..num_epochs; Incomplete when a result
    line or a checkpoint is missing, IngestError when a line lacks a metric."""
    results_rel = join(trial.folder, "result.json")
    if trial.results is None:
        raise Incomplete("no result.json")
    missing = [e for e in range(1, num_epochs + 1) if e not in trial.results]
    if missing:
        raise Incomplete(f"no result line for epochs {missing[:5]}{' ...' if len(missing) > 5 else ''}")
    for epoch in range(num_epochs + 1):  # epoch 0 may have no line (lines from training_iteration 1)
        absent = [key for key in REQUIRED_RESULTS if epoch in trial.results and key not in trial.results[epoch]]
        if absent:
            raise IngestError(
                f"{source.where(results_rel)} lacks {absent[0]!r} at epoch {epoch}: restore it or "
                "remove its trial from the source"
            )
    checkpoints, missing = [], []
    for epoch in range(num_epochs + 1):
        found = [
            rel
            for rel in (
                join(trial.folder, f"checkpoint_{epoch:06d}", "checkpoints"),
                join(trial.folder, f"checkpoint_{epoch}", "checkpoints"),
            )
            if source.is_file(rel)
        ]
        if found:
            checkpoints.append(found[0])
        else:
            missing.append(epoch)
    if missing:
        raise Incomplete(f"no checkpoint for epochs {missing[:5]}{' ...' if len(missing) > 5 else ''}")
    return dataclasses.replace(trial, checkpoints=checkpoints)


def load_state_dict(source: Source, rel: str) -> dict[str, np.ndarray]:
    """One checkpoint file -> {key: numpy array}."""
    try:
        import torch
    except ImportError:
        raise IngestError("reading trial checkpoints needs torch: pip install 'jaxzoo[torch]'") from None
    data = source.read(rel)
    try:
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for damaged files
        raise IngestError(
            f"{source.where(rel)} is not a readable PyTorch checkpoint ({type(error).__name__}): "
            "restore it or remove its trial from the source"
        ) from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(hasattr(v, "detach") for v in state.values()):
        raise IngestError(
            f"{source.where(rel)} is not a state_dict of tensors: restore it or remove its trial from the source"
        )
    return {key: value.detach().cpu().numpy() for key, value in state.items()}


def architecture(trial: Trial, source: Source) -> tuple[str, dict]:
    """-> (the registry arch, the model config) of a trial."""
    rel = trial.config_rel
    kind = trial.params["model::type"]
    if kind not in MODEL_TYPES:
        raise IngestError(
            f"{source.where(rel)} has model::type {kind!r}, which jaxzoo does not read: the types are "
            f"{sorted(MODEL_TYPES)}"
        )
    arch = MODEL_TYPES[kind]
    model = {"arch": arch}
    if arch in ("cnn", "mlp"):
        model["widths"] = tuple(require(trial.params, "model::widths", source, rel))
        if arch == "cnn":
            model["convs"] = tuple(tuple(c) for c in require(trial.params, "model::convs", source, rel))
        require(trial.params, "model::image_size", source, rel)
    return arch, model


def model_shape(arch: str, model: dict, params: dict, tensors: dict[str, np.ndarray], where: str) -> tuple[int, int]:
    """(channels, classes) of the models, read from a checkpoint's tensors."""
    try:
        if arch == "resnet18":
            return int(tensors["conv1.weight"].shape[1]), int(tensors["fc.bias"].shape[0])
        pattern = re.compile(r"module_list\.(\d+)\.(weight|bias)$")
        indexed = sorted((int(m[1]), key) for key in tensors if (m := pattern.match(key)))
        weights = [tensors[key] for _, key in indexed if key.endswith("weight")]
        biases = [tensors[key] for _, key in indexed if key.endswith("bias")]
        classes = int(biases[-1].shape[0])
        if arch == "mlp":
            return int(weights[0].shape[1]) // int(params["model::image_size"]) ** 2, classes
        return int(weights[0].shape[1]), classes
    except (KeyError, IndexError, AttributeError):
        raise IngestError(
            f"{where} does not hold the tensors of a {params['model::type']} model: restore it or "
            "remove its trial from the source"
        ) from None


def image_size_of(arch: str, dataset: str, params: dict, data: dict) -> int:
    """The models' image size: fixed for CNN-s / CNN-m, model::image_size for jaxzoo:cnn / mlp;
    for ResNet-18 the export's data config, dataset::image_size, else the dataset's size."""
    if arch in ARCHS:
        return ARCHS[arch].image_size
    if arch in ("cnn", "mlp"):
        return int(params["model::image_size"])
    if data.get("image_size") or params.get("dataset::image_size"):
        return int(data.get("image_size") or params["dataset::image_size"])
    return DATASETS[dataset].image_sizes[0] if is_registry_name(dataset) else 32


def dataset_of_trials(trial: Trial, source: Source, arch: str) -> str | None:
    """The jaxzoo data.name of a trial's params.json (dataset::name, else dataset::dump), or None."""
    name = trial.params.get("dataset::name")
    if isinstance(name, str):
        try:
            parse_name(name)
            return name
        except UserError:
            pass
    for text in (name, trial.params.get("dataset::dump")):
        if not isinstance(text, str):
            continue
        for part in reversed(re.split(r"[\\/]", text)):
            key = re.sub(r"[^a-z0-9]", "", part.lower())
            for prefix, mapped in DUMP_NAMES:
                if key.startswith(prefix):
                    return RESNET_DATASETS.get(mapped, mapped) if arch == "resnet18" else mapped
    return None


def trial_row(trial: Trial, source: Source, arch: str, model_id: int) -> tuple[dict, float | None]:
    """-> (the models.json row, the trial's momentum or None)."""
    rel = trial.config_rel
    p = trial.params
    resnet = arch == "resnet18"
    defaults = {"activation": "relu", "init": "kaiming_uniform", "optimizer": "sgd", "dropout": 0.0} if resnet else {}
    row = {"model_id": model_id, "seed": int(require(p, "seed", source, rel))}
    for name in ("activation", "init", "optimizer", "lr", "weight_decay", "dropout"):
        key = FACTORS_BY_NAME[name].original_key
        value = p.get(key, defaults.get(name))
        if value is None:
            require(p, key, source, rel)
        row[name] = value if FACTORS_BY_NAME[name].kind == "categorical" else float(value)
    row["optimizer"] = str(row["optimizer"]).lower()
    check_known(row, ACTIVATIONS, source.where(rel), ("model::nlin", "optim::optimizer"))
    momentum = p.get("optim::momentum")
    return row, None if momentum is None else float(momentum)


def twin_leaves(leaves: dict[tuple[str, ...], tuple]) -> dict[tuple[str, ...], tuple]:
    """CNN-s param leaves {path: (shape, dtype)} -> a twin's, with its Variational Dropout params
    (the tree `ard.from_source` makes, traced for its shapes only)."""
    plain = traverse_util.unflatten_dict(
        {path: jax.ShapeDtypeStruct(shape, dtype) for path, (shape, dtype) in leaves.items()}
    )
    tree = traverse_util.flatten_dict(jax.eval_shape(ard.from_source, plain))
    return {path: (tuple(leaf.shape), np.dtype(leaf.dtype)) for path, leaf in tree.items()}


def complete_trials(source: Source, base: str, folders: list[str], log) -> tuple[list[Trial], int, list[dict]]:
    """-> (the complete trials, the zoo's last epoch, the incomplete ones [{'name', 'reason'}],
    left out and named in one log line); IngestError when none is complete."""
    read = [read_trial(source, folder) for folder in folders]
    num_epochs = zoo_epochs(read, source)
    trials, left_out = [], []
    for trial in read:
        try:
            trials.append(complete_trial(source, trial, num_epochs))
        except Incomplete as reason:
            left_out.append({"name": trial.folder.rsplit("/", 1)[-1], "reason": str(reason)})
    report_left_out(left_out, len(read), f"trials (epochs 0..{num_epochs})", source.where(base), log)
    return trials, num_epochs, left_out


def one_architecture(trials: list[Trial], source: Source) -> tuple[str, dict, bool]:
    """-> (the registry arch, the model config, whether they are twins) the trials share;
    IngestError naming two trials that differ."""
    first = trials[0]
    arch, model = architecture(first, source)
    twin = first.params["model::type"] in TWIN_TYPES
    for trial in trials[1:]:
        other = architecture(trial, source)
        if other != (arch, model) or (trial.params["model::type"] in TWIN_TYPES) != twin:
            raise IngestError(
                f"{source.where(trial.config_rel)} has model::type "
                f"{trial.params['model::type']}, {source.where(first.config_rel)} "
                f"{first.params['model::type']}: a zoo has one architecture; ingest them apart"
            )
    return arch, model, twin


def trials_plan(source: Source, dataset: str | None, log) -> Plan:
    base, folders, ignored = locate_trials(source)
    if ignored:
        log(
            f"skipped {len(ignored)} subfolder(s) without params.json or result.json: "
            f"{', '.join(p.rsplit('/', 1)[-1] for p in ignored[:5])}{' ...' if len(ignored) > 5 else ''}"
        )
    trials, num_epochs, left_out = complete_trials(source, base, folders, log)
    first = trials[0]
    arch, model, twin = one_architecture(trials, source)
    ids = [t.params.get("jaxzoo::model_id") for t in trials]
    if all(isinstance(i, int) for i in ids) and len(set(ids)) == len(ids):
        trials = [t for _, t in sorted(zip(ids, trials), key=lambda pair: pair[0])]
    rows, momentum = [], []
    for i, trial in enumerate(trials):
        row, m = trial_row(trial, source, arch, i)
        rows.append(row)
        momentum.append(m)
    for factor in FACTOR_TABLE:
        if factor.optional and factor.name != "momentum" and not (arch == "resnet18" and factor.name == "schedule"):
            values = [t.params.get(factor.original_key) for t in trials]
            optional_factor(
                rows, factor.name, [v if v is None or factor.kind == "categorical" else float(v) for v in values]
            )
    for row, trial in zip(rows, trials):
        row["source_trial"] = trial.folder  # relative to the source root

    # Data and the model's size, from the first trial's first checkpoint.
    tensors = load_state_dict(source, first.checkpoints[0])
    channels, num_classes = model_shape(arch, model, first.params, tensors, source.where(first.checkpoints[0]))
    data = export_dataset(source, base)
    data_config = dict(data) if data and dataset is None else {}
    name = dataset or (data or {}).get("name") or dataset_of_trials(first, source, arch)
    if name is None:
        raise IngestError(
            f"{source.where(first.config_rel)} names no dataset (dataset::dump or "
            "dataset::name) that jaxzoo knows: pass --dataset NAME"
        )
    image_size = image_size_of(arch, name, first.params, data_config)
    check_dataset(name, image_size, channels, num_classes, source.where(first.checkpoints[0]))

    experiment = experiment_name(source, base)
    config = base_config()
    config.name = experiment
    config.original.experiment = experiment
    for key, value in data_config.items():
        if key in config.data and key not in LOCATION_FIELDS:  # where data lay on the exporting machine
            config.data[key] = value
    config.data.name, config.data.image_size = name, image_size
    config.model.arch = arch
    for key in ("convs", "widths"):
        if key in model:
            config.model[key] = model[key]
    config.training.num_epochs = num_epochs
    config.training.batch_size = int(first.params.get("training::batchsize") or config.training.batch_size)
    if arch == "resnet18" and first.params.get("optim::scheduler") == "OneCycleLR":
        config.training.scheduler = "one_cycle"
    population_config(config.population, rows, momentum)
    config.notes = (
        f"Ingested from the trial folders of {experiment} (ModelZooDataset format): params and "
        "metrics as the trials recorded them; no optimizer state."
    )
    config.ingest = ConfigDict({"format": TRIALS_FORMAT, "experiment": experiment, "models": len(trials)})
    if left_out:  # complete zoos keep the identity they had before incomplete trials were left out
        config.ingest.left_out = len(left_out)
    if twin:  # what makes a workdir a twin zoo (`Zoo.is_twin`); its source zoo is not in the trials
        config.sparsify = ConfigDict(
            {
                "method": "variational_dropout",
                "log_sigma2_init": ard.LOG_SIGMA2_INIT,
                "threshold": ard.THRESHOLD,
                "notes": f"ingested from the CNN_ARD trials of {experiment}; their source zoo is not recorded",
            }
        )

    # Inverse layouts: the keys of the original CNNs depend on the dropout setting (a twin's
    # on its dropout too in the original's CNN_ARD, not in jaxzoo's exports: both are tried).
    inverses: dict = {}
    image_shape = (image_size, image_size, channels)

    def inverse(key):
        if key not in inverses:
            if arch == "resnet18":
                inverses[key] = resnet.torch_inverse(num_classes, channels)
            else:
                spec = arch_spec(config.model, image_size, channels, num_classes)
                shapes = params_shapes(
                    build_model(config.model, "relu", False, "xla", image_shape, num_classes), image_shape
                )
                leaves = {path: (leaf.shape, leaf.dtype) for path, leaf in traverse_util.flatten_dict(shapes).items()}
                inverses[key] = torch_inverse(spec, 1.0 if key else 0.0, twin_leaves(leaves) if twin else leaves)
        return inverses[key]

    def inverse_for(trial: Trial, rel: str, tensors: dict[str, np.ndarray]):
        """The inverse layout that fits the trial's tensors; IngestError naming the file if none does."""
        if arch == "resnet18":
            keys = ["resnet"]
        else:
            keys = [float(trial.params.get("model::dropout") or 0.0) > 0]
            keys += [not keys[0]] if twin else []
        shapes = {key: value.shape for key, value in tensors.items()}
        problems = [inverse(key).problem(shapes) for key in keys]
        if None in problems:
            return inverse(keys[problems.index(None)])
        raise IngestError(
            f"{source.where(rel)} does not fit model::type {trial.params['model::type']} "
            f"({problems[0]}): restore it or remove its trial from the source"
        )

    def read_epoch(epoch: int, models: tuple[int, int]):
        arrays, block = None, trials[models[0] : models[1]]
        for i, trial in enumerate(block):
            rel = trial.checkpoints[epoch]
            tensors = load_state_dict(source, rel)
            layout = inverse_for(trial, rel, tensors)
            if arrays is None:
                arrays = layout.allocate(len(block))
            layout.put(arrays, i, tensors)
        tree = TorchInverse.tree(arrays)
        state = tree if arch == "resnet18" else {"params": tree}
        metrics = {
            metric: np.array([trial_metric(t, epoch, metric, source) for t in block], np.float64) for metric in METRICS
        }
        if twin:
            metrics["sparsity"] = twin_sparsity(block, epoch, tree, source)
        return state, with_divergence(state, metrics, np.array([epoch in t.results for t in block]))

    record = dataset_record(name, channels, num_classes, TRIALS_FORMAT)
    provenance = {
        "format": TRIALS_FORMAT,
        "source": str(source.path),
        "trials_folder": base,
        "skipped_folders": [p.rsplit("/", 1)[-1] for p in ignored],
        "models": len(trials),
        "left_out": left_out,
    }
    return Plan(TRIALS_FORMAT, config, record, rows, num_epochs, read_epoch, provenance)


def twin_sparsity(block: list[Trial], epoch: int, params: dict, source: Source) -> np.ndarray:
    """Twins' metric `sparsity` [M] at `epoch`: result.json's sparsity_ratio, else the share of
    weights the models' params [M, ...] mask (`ard.sparsity`)."""
    recorded = np.array([trial_metric(t, epoch, "sparsity_ratio", source) for t in block], np.float64)
    if np.isnan(recorded).any():
        recorded = np.where(np.isnan(recorded), np.asarray(population_sparsity(params), np.float64), recorded)
    return recorded


def trial_metric(trial: Trial, epoch: int, metric: str, source: Source) -> float:
    """A metric of a trial's result line at `epoch` (NaN where there is none)."""
    value = trial.results.get(epoch, {}).get(metric)
    return as_float(value, source.where(f"{trial.folder}/result.json"), metric, finite=False)
