"""Reads ModelZooDataset trial folders (Schürholt et al. 2022), a folder or a .zip of it.

An experiment folder whose subfolders holding params.json are the trials (other subfolders are
skipped and named in one log line); jaxzoo's own export (`<out>/<experiment>/` with trials/ and
dataset.json, or its trials/ folder) too. A trial holds params.json (model::type, model::nlin,
model::init_type, model::dropout, optim::optimizer, optim::lr, optim::wd, seed,
training::batchsize, training::epochs_train, dataset::dump or dataset::name), result.json (a JSON
object per epoch: train/test/val loss and acc, training_iteration) and
checkpoint_{e:06d}/checkpoints (or checkpoint_{e}/checkpoints), a PyTorch state_dict.
model::type CNN -> cnn_s, CNN3 -> cnn_m, Resnet18 -> resnet18 (torchvision keys, BatchNorm
statistics kept), jaxzoo:cnn / jaxzoo:mlp -> cnn / mlp. Tensors are converted back to Flax params
by the inverses of the export's own mappings (`torch_layout.torch_inverse`, `resnet.torch_inverse`).
The dataset: a jaxzoo export's dataset.json, else dataset::name (a jaxzoo name) or dataset::dump
(.../MNIST/dataset.pt -> mnist).
"""

from __future__ import annotations

import dataclasses
import io
import json
import re

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
    optional_factor,
    parent,
    population_config,
    read_json,
    with_divergence,
)
from jaxzoo.models import resnet
from jaxzoo.models.cnn import ACTIVATIONS, ARCHS
from jaxzoo.models.registry import arch_spec, build_model, params_shapes
from jaxzoo.models.torch_layout import torch_inverse
from jaxzoo.training.factors import FACTOR_TABLE, FACTORS_BY_NAME
from jaxzoo.zoo import checkpoint

TRIALS_FORMAT = "modelzoo_trials"
METRICS = checkpoint.METRIC_NAMES
REQUIRED_RESULTS = ("train_loss", "train_acc", "test_loss", "test_acc")
MODEL_TYPES = {"CNN": "cnn_s", "CNN3": "cnn_m", "Resnet18": "resnet18", "jaxzoo:cnn": "cnn", "jaxzoo:mlp": "mlp"}
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


@dataclasses.dataclass
class Trial:
    folder: str  # relative to the source root
    params: dict
    results: dict[int, dict]  # epoch -> result line
    checkpoints: list[str]  # epoch -> relative path of its state_dict file


def locate_trials(source: Source) -> tuple[str, list[str], list[str]]:
    """-> (the folder holding the trials, trial folders, other subfolders there)."""
    bases = [""]
    top = source.dirs("")
    if "trials" in top:
        bases.append("trials")
    if len(top) == 1:
        bases += [top[0], join(top[0], "trials")]
    for base in bases:
        folders = source.dirs(base)
        trials = [d for d in folders if source.is_file(join(d, "params.json"))]
        if trials:
            return base, trials, [d for d in folders if d not in trials]
    raise IngestError(
        f"{source.where('')} holds no trial folders (subfolders with params.json) and no Small CNN Zoo "
        "files (weights.npy, metrics.csv, layout.csv): pass an experiment folder, its trials/ "
        "folder or its .zip"
    )


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


def read_trial(source: Source, folder: str, num_epochs: int | None) -> Trial:
    """A trial's params, results and checkpoint files for epochs 0..num_epochs (None: the
    trial's training::epochs_train, else its last result line)."""
    params_rel = join(folder, "params.json")
    params = read_json(source, params_rel)
    if not isinstance(params, dict):
        raise IngestError(f"{source.where(params_rel)} is not a JSON object: restore it")
    require(params, "model::type", source, params_rel)
    require(params, "seed", source, params_rel)
    results_rel = join(folder, "result.json")
    if not source.is_file(results_rel):
        raise IngestError(f"{source.where(results_rel)} is missing: restore it or remove its trial from the source")
    results = results_by_epoch(result_lines(source, results_rel))
    if num_epochs is None:
        num_epochs = params.get("training::epochs_train", max(results, default=0))
        if not isinstance(num_epochs, int) or isinstance(num_epochs, bool) or num_epochs < 1:
            raise IngestError(f"{source.where(params_rel)} has training::epochs_train={num_epochs!r}: restore it")
    missing = [e for e in range(1, num_epochs + 1) if e not in results]
    if missing:
        raise IngestError(
            f"{source.where(results_rel)} has no line for epochs {missing[:5]} of 0..{num_epochs}: "
            "restore it or remove its trial from the source"
        )
    for epoch in range(num_epochs + 1):  # epoch 0 may have no line (lines from training_iteration 1)
        absent = [key for key in REQUIRED_RESULTS if epoch in results and key not in results[epoch]]
        if absent:
            raise IngestError(
                f"{source.where(results_rel)} lacks {absent[0]!r} at epoch {epoch}: restore it or "
                "remove its trial from the source"
            )
    checkpoints = []
    for epoch in range(num_epochs + 1):
        found = [
            rel
            for rel in (
                join(folder, f"checkpoint_{epoch:06d}", "checkpoints"),
                join(folder, f"checkpoint_{epoch}", "checkpoints"),
            )
            if source.is_file(rel)
        ]
        if not found:
            raise IngestError(
                f"{source.where(join(folder, f'checkpoint_{epoch:06d}', 'checkpoints'))} is missing "
                f"(the zoo has epochs 0..{num_epochs}): restore it or remove its trial from the source"
            )
        checkpoints.append(found[0])
    return Trial(folder, params, results, checkpoints)


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
    rel = join(trial.folder, "params.json")
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
    rel = join(trial.folder, "params.json")
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


def trials_plan(source: Source, dataset: str | None, log) -> Plan:
    base, folders, ignored = locate_trials(source)
    if ignored:
        log(
            f"skipped {len(ignored)} subfolder(s) without params.json: "
            f"{', '.join(p.rsplit('/', 1)[-1] for p in ignored[:5])}{' ...' if len(ignored) > 5 else ''}"
        )
    first = read_trial(source, folders[0], None)
    num_epochs = len(first.checkpoints) - 1
    trials = [first] + [read_trial(source, folder, num_epochs) for folder in folders[1:]]
    arch, model = architecture(first, source)
    for trial in trials[1:]:
        other = architecture(trial, source)
        if other != (arch, model):
            raise IngestError(
                f"{source.where(join(trial.folder, 'params.json'))} has model::type "
                f"{trial.params['model::type']}, {source.where(join(first.folder, 'params.json'))} "
                f"{first.params['model::type']}: a zoo has one architecture; ingest them apart"
            )
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

    # Data and the model's size, from the first trial's first checkpoint.
    tensors = load_state_dict(source, first.checkpoints[0])
    channels, num_classes = model_shape(arch, model, first.params, tensors, source.where(first.checkpoints[0]))
    data = export_dataset(source, base)
    data_config = dict(data) if data and dataset is None else {}
    name = dataset or (data or {}).get("name") or dataset_of_trials(first, source, arch)
    if name is None:
        raise IngestError(
            f"{source.where(join(first.folder, 'params.json'))} names no dataset (dataset::dump or "
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

    # Inverse layouts: the keys of the original CNNs depend on the dropout setting.
    inverses: dict = {}
    image_shape = (image_size, image_size, channels)

    def inverse_for(trial: Trial):
        if arch == "resnet18":
            key = "resnet"
        else:
            key = float(trial.params.get("model::dropout") or 0.0) > 0
        if key not in inverses:
            if arch == "resnet18":
                inverses[key] = resnet.torch_inverse(num_classes, channels)
            else:
                spec = arch_spec(config.model, image_size, channels, num_classes)
                shapes = params_shapes(
                    build_model(config.model, "relu", False, "xla", image_shape, num_classes), image_shape
                )
                leaves = {path: (leaf.shape, leaf.dtype) for path, leaf in traverse_util.flatten_dict(shapes).items()}
                inverses[key] = torch_inverse(spec, 1.0 if key else 0.0, leaves)
        return inverses[key]

    def read_epoch(epoch: int, models: tuple[int, int]):
        arrays, block = None, trials[models[0] : models[1]]
        for i, trial in enumerate(block):
            rel = trial.checkpoints[epoch]
            tensors = load_state_dict(source, rel)
            inverse = inverse_for(trial)
            problem = inverse.problem({key: value.shape for key, value in tensors.items()})
            if problem:
                raise IngestError(
                    f"{source.where(rel)} does not fit model::type {trial.params['model::type']} "
                    f"({problem}): restore it or remove its trial from the source"
                )
            if arrays is None:
                arrays = inverse.allocate(len(block))
            inverse.put(arrays, i, tensors)
        tree = inverse_for(trials[0]).tree(arrays)
        state = tree if arch == "resnet18" else {"params": tree}
        metrics = {
            metric: np.array(
                [
                    as_float(
                        t.results.get(epoch, {}).get(metric),
                        source.where(f"{t.folder}/result.json"),
                        metric,
                        finite=False,
                    )
                    for t in block
                ],
                np.float64,
            )
            for metric in METRICS
        }
        return state, with_divergence(state, metrics, np.array([epoch in t.results for t in block]))

    record = dataset_record(name, channels, num_classes, TRIALS_FORMAT)
    provenance = {
        "format": TRIALS_FORMAT,
        "source": str(source.path),
        "trials_folder": base,
        "skipped_folders": [p.rsplit("/", 1)[-1] for p in ignored],
        "models": len(trials),
    }
    return Plan(TRIALS_FORMAT, config, record, rows, num_epochs, read_epoch, provenance)
