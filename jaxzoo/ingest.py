"""Imports published model zoos into a jaxzoo workdir.

  python -m jaxzoo.ingest --source PATH --workdir W [--dataset NAME] [--overwrite]

The workdir is written as training writes one (config.json with the zoo's identity, models.json,
metrics.jsonl, one Orbax checkpoint per epoch holding the population's params [M, ...] and the
epoch's metrics), so `python -m jaxzoo.analyze`, `jaxzoo.benchmark`, `jaxzoo.export` and
`jaxzoo.read_zoo` read it like a trained zoo. The checkpoints hold no optimizer state (the
sources' is not converted); ingest.json records where the zoo came from.

Sources, recognised by their files:

  ModelZooDataset trial folders (Schürholt et al. 2022), a folder or a .zip of it: an experiment
      folder whose subfolders holding params.json are the trials (other subfolders are skipped
      and named in one log line); jaxzoo's own export (`<out>/<experiment>/` with trials/ and
      dataset.json, or its trials/ folder) too. A trial holds params.json (model::type,
      model::nlin, model::init_type, model::dropout, optim::optimizer, optim::lr, optim::wd,
      seed, training::batchsize, training::epochs_train, dataset::dump or dataset::name),
      result.json (a JSON object per epoch: train/test/val loss and acc, training_iteration) and
      checkpoint_{e:06d}/checkpoints (or checkpoint_{e}/checkpoints), a PyTorch state_dict.
      model::type CNN -> cnn_s, CNN3 -> cnn_m, Resnet18 -> resnet18 (torchvision keys, BatchNorm
      statistics kept), jaxzoo:cnn / jaxzoo:mlp -> cnn / mlp. Tensors are converted back to Flax
      params by the inverses of the export's own mappings (`layout.torch_inverse`,
      `resnet.torch_inverse`).
  The Small CNN Zoo (Unterthiner et al. 2020), a folder: weights.npy [rows, P] float32 (read
      memory-mapped), metrics.csv or metrics.csv.gz (one row per weights row: config.* columns,
      step, modeldir, train/test accuracy and loss) and layout.csv (varname, start_idx, end_idx,
      shape; TensorFlow layouts: conv kernels HWIO, dense kernels [in, out]). Rows are grouped
      into models by modeldir (else by the checkpoint path in the first column, else by runs of
      increasing steps); a model's k-th checkpoint (steps 0, 1, 2, 3, 20, 40, 60, 80, 86) is
      jaxzoo epoch k, its step kept as the metric `step` and in config `ingest.steps`. Models
      lacking one of those checkpoints are left out (counted in one log line). The models are
      `small_cnn_zoo` (`jaxzoo.models.SmallCNNZoo`).

Datasets: `--dataset NAME` (any jaxzoo data.name); else a jaxzoo export's dataset.json; else
dataset::name (a jaxzoo name) or dataset::dump (.../MNIST/dataset.pt -> mnist); the Small CNN
Zoo's config.dataset (mnist, fashion_mnist, svhn_cropped -> svhn at 28 px; its grayscale
CIFAR-10 has no jaxzoo counterpart: pass --dataset). Nothing is loaded: the data is needed only
by the commands that evaluate models (analyze).

Memory: one epoch of the population at a time (the params [M, ...] of that epoch plus one
source file or one chunk of weights rows), because an Orbax checkpoint is written whole per
epoch (`checkpoint.save_epoch`, as `merge` does): ~600 MB for a 30,000-model Small CNN Zoo
epoch, ~45 MB per ResNet-18 (45 GB per epoch for 1,000 models; ingest such a zoo on a host
with that much memory, or split its trial folders into several zoos).

Bad input (a damaged zip, missing fields, a missing checkpoint epoch, tensors that do not fit
the model type, mixed architectures, a workdir holding another zoo without --overwrite) ends
with one line naming the file and the fix; the zoo is written into a hidden folder next to the
workdir and moved into place when complete, so nothing is left in the workdir on failure.
"""

from __future__ import annotations

import csv
import dataclasses
import gzip
import io
import json
import math
import os
import pathlib
import re
import shutil
import sys
import time
import zipfile
from typing import Callable

import numpy as np
from flax import traverse_util
from ml_collections import ConfigDict

from jaxzoo import checkpoint
from jaxzoo.architectures import arch_spec, build_model, params_shapes
from jaxzoo.cli import ArgumentParser, check_destination, run
from jaxzoo.config import LOCATION_FIELDS, base_config, describe_difference, identity, to_json_dict
from jaxzoo.data import DATASETS, is_registry_name, parse_name
from jaxzoo.errors import UserError
from jaxzoo.factors import FACTOR_TABLE, FACTORS_BY_NAME
from jaxzoo.models import ACTIVATIONS, SMALL_CNN_ZOO_ACTIVATIONS

TRIALS_FORMAT = "modelzoo_trials"
SMALL_CNN_ZOO_FORMAT = "small_cnn_zoo"
PROVENANCE = "ingest.json"
METRICS = checkpoint.METRIC_NAMES
REQUIRED_RESULTS = ("train_loss", "train_acc", "test_loss", "test_acc")
MODEL_TYPES = {"CNN": "cnn_s", "CNN3": "cnn_m", "Resnet18": "resnet18", "jaxzoo:cnn": "cnn", "jaxzoo:mlp": "mlp"}
# Dataset folder names of the original dumps (normalised: lower case, letters and digits), longest first.
DUMP_NAMES = (("tinyimagenet", "tiny_imagenet"), ("fashionmnist", "fashion_mnist"), ("cifar100", "cifar100"),
              ("cifar10", "cifar10"), ("fmnist", "fashion_mnist"), ("mnist", "mnist"), ("svhn", "svhn"),
              ("usps", "usps"), ("stl10", "stl10"), ("stl", "stl10"))
RESNET_DATASETS = {"cifar10": "cifar10_resnet"}
UZ_DATASETS = {"mnist": "mnist", "fashion_mnist": "fashion_mnist", "svhn_cropped": "svhn", "svhn": "svhn"}
UZ_IMAGE_SIZES = {"mnist": 28, "fashion_mnist": 28, "cifar10": 32, "svhn_cropped": 32, "svhn": 32}
UZ_METRICS = {"train_loss": "train_loss", "train_accuracy": "train_acc", "test_loss": "test_loss",
              "test_accuracy": "test_acc"}
UZ_FACTORS = {"activation": "config.activation", "init": "config.w_init", "optimizer": "config.optimizer",
              "lr": "config.learning_rate", "weight_decay": "config.l2reg", "dropout": "config.dropout"}
UZ_EXTRA = {"train_fraction": "config.train_fraction", "init_std": "config.init_std", "b_init": "config.b_init"}
UZ_BATCH_SIZE = 512  # the original training script's default (metrics.csv has no batch size column)
# weights rows read through a fresh memory map at a time: a model's checkpoints are 9 rows
# apart, so a chunk's rows span 9x as much of the file, whose pages (read ahead) count in the
# resident memory while mapped: 256 rows keep that span near 45 MB.
UZ_CHUNK_ROWS = 256


class IngestError(UserError):
    """A source that cannot be ingested (the message names the file and the fix)."""


# --------------------------------------------------------------------------------------------
# Sources: a folder or a zip archive, read through relative posix paths.


class Source:
    """A source folder or .zip, its files addressed by posix paths relative to its root."""

    def __init__(self, path: pathlib.Path):
        self.path = path

    def where(self, rel: str) -> str:
        """How messages name a file of the source."""
        return str(self.path / rel) if rel else str(self.path)

    def is_file(self, rel: str) -> bool:
        raise NotImplementedError

    def dirs(self, rel: str) -> list[str]:
        """The subfolders of `rel` (relative paths, sorted)."""
        raise NotImplementedError

    def read(self, rel: str) -> bytes:
        raise NotImplementedError

    def close(self) -> None:
        pass


class FolderSource(Source):
    def is_file(self, rel: str) -> bool:
        return (self.path / rel).is_file()

    def dirs(self, rel: str) -> list[str]:
        folder = self.path / rel
        if not folder.is_dir():
            return []
        return sorted(join(rel, p.name) for p in folder.iterdir() if p.is_dir())

    def read(self, rel: str) -> bytes:
        try:
            return (self.path / rel).read_bytes()
        except OSError as error:
            raise IngestError(f"{self.where(rel)} is unreadable ({error.strerror or type(error).__name__}): "
                              "restore the file or remove its trial from the source") from None


class ZipSource(Source):
    def __init__(self, path: pathlib.Path):
        super().__init__(path)
        try:
            self.zip = zipfile.ZipFile(path)
            names = self.zip.namelist()
        except (zipfile.BadZipFile, OSError, EOFError, ValueError) as error:
            raise IngestError(f"{path} is not a readable zip archive ({type(error).__name__}): download it again, "
                              "or pass the unpacked folder") from None
        self.files = {name.rstrip("/") for name in names if not name.endswith("/")}
        self.folders: dict[str, set[str]] = {}
        for name in self.files:
            parts = name.split("/")
            for depth in range(len(parts) - 1):
                self.folders.setdefault("/".join(parts[:depth]), set()).add("/".join(parts[:depth + 1]))

    def where(self, rel: str) -> str:
        return f"{self.path}:{rel}" if rel else str(self.path)

    def is_file(self, rel: str) -> bool:
        return rel in self.files

    def dirs(self, rel: str) -> list[str]:
        return sorted(self.folders.get(rel, ()))

    def read(self, rel: str) -> bytes:
        try:
            return self.zip.read(rel)
        except Exception as error:  # BadZipFile (CRC), zlib.error, EOFError, OSError: a damaged member
            raise IngestError(f"{self.where(rel)} is damaged in the archive ({type(error).__name__}): download the "
                              "archive again") from None

    def close(self) -> None:
        self.zip.close()


def join(*parts: str) -> str:
    return "/".join(p for p in parts if p)


def parent(rel: str) -> str:
    return rel.rsplit("/", 1)[0] if "/" in rel else ""


def open_source(path: pathlib.Path) -> Source:
    if not path.exists():
        raise IngestError(f"--source {path} does not exist: pass a trial folder (or its .zip) or a Small CNN Zoo "
                          "folder")
    if path.is_dir():
        return FolderSource(path)
    return ZipSource(path)


def read_json(source: Source, rel: str, what: str = "restore it or remove its trial from the source"):
    try:
        return json.loads(source.read(rel).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise IngestError(f"{source.where(rel)} is not valid JSON ({type(error).__name__}): {what}") from None


# --------------------------------------------------------------------------------------------
# Zoo documents shared by both formats.


@dataclasses.dataclass
class Plan:
    """What is written: the config, the model table and each epoch's (state, metrics)."""

    format: str
    config: ConfigDict
    dataset_record: dict  # the identity's `dataset` entry
    table: list[dict]
    num_epochs: int
    read_epoch: Callable[[int], tuple[dict, dict[str, np.ndarray]]]
    provenance: dict


def population_config(pop: ConfigDict, table: list[dict], momentum: list[float | None]) -> None:
    """Sets the population's factors to the values the models use (sorted, distinct), its seeds,
    and `momentum` from the models' values (None: not recorded): the one value, a tuple factor
    when it varies, the config's 0.9 when no model records one."""
    for factor in FACTOR_TABLE:
        if factor.name == "momentum":
            continue
        values = sorted({row[factor.name] for row in table if factor.name in row})
        pop[factor.name] = tuple(values)
    values = sorted({m for m in momentum if m is not None})
    if len(values) > 1:
        pop.momentum = tuple(values)
        for row, value in zip(table, momentum):
            row["momentum"] = values[0] if value is None else value
    elif values:
        pop.momentum = values[0]
    seeds = sorted({row["seed"] for row in table})
    contiguous = seeds == list(range(seeds[0], seeds[0] + len(seeds)))
    pop.seed_mode = "range" if contiguous else "random"
    pop.num_seeds, pop.first_seed = len(seeds), seeds[0] if contiguous else 1


def optional_factor(rows: list[dict], name: str, values: list) -> None:
    """Adds an optional factor to the rows when some model's value is not the default."""
    from jaxzoo.factors import fixed_value

    if all(v is None for v in values):
        return
    defaults = [fixed_value(None, name, row["optimizer"]) if name in ("b1", "b2", "eps", "alpha")
                else FACTORS_BY_NAME[name].default for row in rows]
    if all(v is None or v == d for v, d in zip(values, defaults)):
        return
    for row, value, default in zip(rows, values, defaults):
        row[name] = value if value is not None else default


def check_dataset(name: str, image_size: int, channels: int, num_classes: int, where: str) -> None:
    """IngestError unless a registry dataset serves `image_size` px with the models' channels and classes."""
    try:
        parse_name(name)
    except UserError as error:
        raise IngestError(f"--dataset: {error}") from None
    if not is_registry_name(name):
        return
    info = DATASETS[name]
    if not info.accepts_size(image_size):
        raise IngestError(f"dataset {name} is not served at {image_size} px, the size of the models in {where}: "
                          "pass --dataset with a dataset of that size")
    if info.channels != channels or info.num_classes != num_classes:
        raise IngestError(f"the models in {where} take {channels}-channel images and give {num_classes} classes, "
                          f"dataset {name} has {info.channels} channels and {info.num_classes} classes: pass "
                          "--dataset with the dataset they were trained on")


def dataset_record(name: str, channels: int, num_classes: int, fmt: str) -> dict:
    """The identity's data record: where the zoo came from; channels and classes for datasets
    beyond the registry (readers cannot look them up)."""
    record = {"source": f"ingest:{fmt}", "fingerprint": ""}
    if not is_registry_name(name):
        record.update(channels=channels, num_classes=num_classes)
    return record


def with_divergence(state: dict, metrics: dict[str, np.ndarray], recorded: np.ndarray | None = None) -> dict:
    """The metrics [M] with `diverged` as training flags it (a non-finite parameter or train loss);
    a train loss the source has no record of (`recorded` False) does not count."""
    from jaxzoo.train import diverged

    train_loss = metrics["train_loss"] if recorded is None else np.where(recorded, metrics["train_loss"], 0.0)
    return {**metrics, "diverged": diverged(state, train_loss)}


# --------------------------------------------------------------------------------------------
# ModelZooDataset trial folders.


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
    raise IngestError(f"{source.where('')} holds no trial folders (subfolders with params.json) and no Small CNN Zoo "
                      "files (weights.npy, metrics.csv, layout.csv): pass an experiment folder, its trials/ "
                      "folder or its .zip")


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
        raise IngestError(f"{source.where(rel)} is not JSON lines ({type(error).__name__}): restore it or remove "
                          "its trial from the source") from None
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
        raise IngestError(f"{source.where(results_rel)} has no line for epochs {missing[:5]} of 0..{num_epochs}: "
                          "restore it or remove its trial from the source")
    for epoch in range(num_epochs + 1):  # epoch 0 may have no line (lines from training_iteration 1)
        absent = [key for key in REQUIRED_RESULTS if epoch in results and key not in results[epoch]]
        if absent:
            raise IngestError(f"{source.where(results_rel)} lacks {absent[0]!r} at epoch {epoch}: restore it or "
                              "remove its trial from the source")
    checkpoints = []
    for epoch in range(num_epochs + 1):
        found = [rel for rel in (join(folder, f"checkpoint_{epoch:06d}", "checkpoints"),
                                 join(folder, f"checkpoint_{epoch}", "checkpoints")) if source.is_file(rel)]
        if not found:
            raise IngestError(f"{source.where(join(folder, f'checkpoint_{epoch:06d}', 'checkpoints'))} is missing "
                              f"(the zoo has epochs 0..{num_epochs}): restore it or remove its trial from the source")
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
        raise IngestError(f"{source.where(rel)} is not a readable PyTorch checkpoint ({type(error).__name__}): "
                          "restore it or remove its trial from the source") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(hasattr(v, "detach") for v in state.values()):
        raise IngestError(f"{source.where(rel)} is not a state_dict of tensors: restore it or remove its trial "
                          "from the source")
    return {key: value.detach().cpu().numpy() for key, value in state.items()}


def architecture(trial: Trial, source: Source) -> tuple[str, dict]:
    """-> (the registry arch, the model config) of a trial."""
    rel = join(trial.folder, "params.json")
    kind = trial.params["model::type"]
    if kind not in MODEL_TYPES:
        raise IngestError(f"{source.where(rel)} has model::type {kind!r}, which jaxzoo does not read: the types are "
                          f"{sorted(MODEL_TYPES)}")
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
        raise IngestError(f"{where} does not hold the tensors of a {params['model::type']} model: restore it or "
                          "remove its trial from the source") from None


def image_size_of(arch: str, dataset: str, params: dict, data: dict) -> int:
    """The models' image size: fixed for CNN-s / CNN-m, model::image_size for jaxzoo:cnn / mlp;
    for ResNet-18 the export's data config, dataset::image_size, else the dataset's size."""
    from jaxzoo.models import ARCHS

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


def check_known(row: dict, activations, where: str, keys: tuple[str, str]) -> None:
    """IngestError unless the row's activation is in `activations` and its optimizer in the
    registry; `keys` name the two fields as the source calls them."""
    from jaxzoo.optim import optimizer_entry

    if row["activation"] not in activations:
        raise IngestError(f"{where} has {keys[0]} {row['activation']!r}, which jaxzoo's model does not have "
                          f"({sorted(activations)}): ingest another zoo")
    try:
        optimizer_entry(row["optimizer"])
    except ValueError:
        raise IngestError(f"{where} has {keys[1]} {row['optimizer']!r}, which is not in jaxzoo's optimizer registry "
                          "(jaxzoo.optim): ingest another zoo") from None


def trials_plan(source: Source, dataset: str | None, log) -> Plan:
    base, folders, ignored = locate_trials(source)
    if ignored:
        log(f"skipped {len(ignored)} subfolder(s) without params.json: "
            f"{', '.join(p.rsplit('/', 1)[-1] for p in ignored[:5])}{' ...' if len(ignored) > 5 else ''}")
    first = read_trial(source, folders[0], None)
    num_epochs = len(first.checkpoints) - 1
    trials = [first] + [read_trial(source, folder, num_epochs) for folder in folders[1:]]
    arch, model = architecture(first, source)
    for trial in trials[1:]:
        other = architecture(trial, source)
        if other != (arch, model):
            raise IngestError(f"{source.where(join(trial.folder, 'params.json'))} has model::type "
                              f"{trial.params['model::type']}, {source.where(join(first.folder, 'params.json'))} "
                              f"{first.params['model::type']}: a zoo has one architecture; ingest them apart")
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
            optional_factor(rows, factor.name, [v if v is None or factor.kind == "categorical" else float(v)
                                                for v in values])

    # Data and the model's size, from the first trial's first checkpoint.
    tensors = load_state_dict(source, first.checkpoints[0])
    channels, num_classes = model_shape(arch, model, first.params, tensors, source.where(first.checkpoints[0]))
    data = export_dataset(source, base)
    data_config = dict(data) if data and dataset is None else {}
    name = dataset or (data or {}).get("name") or dataset_of_trials(first, source, arch)
    if name is None:
        raise IngestError(f"{source.where(join(first.folder, 'params.json'))} names no dataset (dataset::dump or "
                          "dataset::name) that jaxzoo knows: pass --dataset NAME")
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
    config.notes = (f"Ingested from the trial folders of {experiment} (ModelZooDataset format): params and "
                    "metrics as the trials recorded them; no optimizer state.")
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
                from jaxzoo import resnet

                inverses[key] = resnet.torch_inverse(num_classes, channels)
            else:
                from jaxzoo.layout import torch_inverse

                spec = arch_spec(config.model, image_size, channels, num_classes)
                shapes = params_shapes(build_model(config.model, "relu", False, "xla", image_shape, num_classes),
                                       image_shape)
                leaves = {path: (leaf.shape, leaf.dtype) for path, leaf in traverse_util.flatten_dict(shapes).items()}
                inverses[key] = torch_inverse(spec, 1.0 if key else 0.0, leaves)
        return inverses[key]

    def read_epoch(epoch: int):
        arrays = None
        for i, trial in enumerate(trials):
            rel = trial.checkpoints[epoch]
            tensors = load_state_dict(source, rel)
            inverse = inverse_for(trial)
            problem = inverse.problem({key: value.shape for key, value in tensors.items()})
            if problem:
                raise IngestError(f"{source.where(rel)} does not fit model::type {trial.params['model::type']} "
                                  f"({problem}): restore it or remove its trial from the source")
            if arrays is None:
                arrays = inverse.allocate(len(trials))
            inverse.put(arrays, i, tensors)
        tree = inverse_for(trials[0]).tree(arrays)
        state = tree if arch == "resnet18" else {"params": tree}
        metrics = {metric: np.array([as_float(t.results.get(epoch, {}).get(metric)) for t in trials], np.float64)
                   for metric in METRICS}
        return state, with_divergence(state, metrics, np.array([epoch in t.results for t in trials]))

    record = dataset_record(name, channels, num_classes, TRIALS_FORMAT)
    provenance = {"format": TRIALS_FORMAT, "source": str(source.path), "trials_folder": base,
                  "skipped_folders": [p.rsplit("/", 1)[-1] for p in ignored], "models": len(trials)}
    return Plan(TRIALS_FORMAT, config, record, rows, num_epochs, read_epoch, provenance)


def as_float(value) -> float:
    if value is None:
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


# --------------------------------------------------------------------------------------------
# The Small CNN Zoo (Unterthiner et al. 2020).


def small_cnn_zoo_files(path: pathlib.Path) -> dict[str, pathlib.Path] | None:
    """{'weights', 'metrics', 'layout'} paths of a Small CNN Zoo folder, or None if it is not one."""
    pick = lambda *names: next((path / n for n in names if (path / n).is_file()), None)
    weights = pick("weights.npy", "all_weights.npy")
    if weights is None:
        return None
    files = {"weights": weights, "metrics": pick("metrics.csv.gz", "metrics.csv", "all_metrics.csv.gz",
                                                  "all_metrics.csv"), "layout": pick("layout.csv")}
    for key, name in (("metrics", "metrics.csv or metrics.csv.gz"), ("layout", "layout.csv")):
        if files[key] is None:
            raise IngestError(f"{path} has {weights.name} but no {name}: restore the Small CNN Zoo's files")
    return files


def read_csv_rows(path: pathlib.Path) -> tuple[list[str], list[list[str]]]:
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rt", newline="") as f:
            reader = csv.reader(f)
            header = next(reader)
            rows = list(reader)
    except (OSError, EOFError, UnicodeDecodeError, csv.Error, StopIteration) as error:
        raise IngestError(f"{path} is unreadable ({type(error).__name__}): restore it") from None
    return header, rows


def read_layout(path: pathlib.Path, width: int, num_rows: int) -> list[dict]:
    """layout.csv -> [{'varname', 'start', 'end', 'shape'}] checked against the weights' width P."""
    header, rows = read_csv_rows(path)
    columns = {name: i for i, name in enumerate(header)}
    missing = [c for c in ("varname", "start_idx", "end_idx", "shape") if c not in columns]
    if missing:
        raise IngestError(f"{path} lacks the column {missing[0]!r} (varname, start_idx, end_idx, shape): restore it")
    layout = []
    for n, row in enumerate(rows, start=2):
        try:
            shape = tuple(int(s) for s in re.findall(r"\d+", row[columns["shape"]]))
            entry = {"varname": row[columns["varname"]], "start": int(row[columns["start_idx"]]),
                     "end": int(row[columns["end_idx"]]), "shape": shape}
        except (ValueError, IndexError):
            raise IngestError(f"{path} line {n} is not 'varname, start_idx, end_idx, shape': restore it") from None
        if entry["end"] - entry["start"] != math.prod(shape) or entry["start"] < 0:
            raise IngestError(f"{path} line {n}: {entry['varname']} spans {entry['end'] - entry['start']} columns, its "
                              f"shape {list(shape)} holds {math.prod(shape)}: restore it")
        layout.append(entry)
    covered = np.zeros(width, np.int64)
    for entry in layout:
        covered[entry["start"]:entry["end"]] += 1
    if sum(e["end"] - e["start"] for e in layout) != width or not (covered == 1).all():
        raise IngestError(f"{path} does not cover the {width} columns of the weights ({num_rows} rows) once each: "
                          "use the layout.csv published with these weights")
    return layout


def small_cnn_zoo_leaves(layout: list[dict], where: str) -> tuple[dict[tuple[str, str], dict], int, int]:
    """Maps layout rows to the SmallCNNZoo params: -> ({(layer, 'kernel'|'bias'): entry}, channels, classes).

    Kernels in column order are the three convolutions (4-D) then the dense layer (2-D); a bias
    belongs to the kernel whose variable scope it shares (`.../conv2d_1/bias:0`)."""
    scope = lambda name: name.rsplit("/", 1)[0] if "/" in name else ""
    kernels = sorted((e for e in layout if "kernel" in e["varname"].rsplit("/", 1)[-1]), key=lambda e: e["start"])
    biases = {scope(e["varname"]): e for e in layout if "bias" in e["varname"].rsplit("/", 1)[-1]}
    ranks = [len(e["shape"]) for e in kernels]
    if ranks != [4, 4, 4, 2] or len(biases) != 4 or len(layout) != 8:
        raise IngestError(f"{where} does not describe the Small CNN Zoo's CNN (3 conv kernels, 1 dense kernel, "
                          f"4 biases; found kernels of ranks {ranks}): only the 'cnn' architecture of that zoo is read")
    leaves = {}
    for i, kernel in enumerate(kernels):
        layer = f"conv{i}" if i < 3 else "dense"
        bias = biases.get(scope(kernel["varname"]))
        if bias is None:
            raise IngestError(f"{where} has no bias next to {kernel['varname']}: restore it")
        leaves[(layer, "kernel")], leaves[(layer, "bias")] = kernel, bias
    return leaves, kernels[0]["shape"][2], kernels[-1]["shape"][1]


def small_cnn_zoo_plan(path: pathlib.Path, files: dict[str, pathlib.Path], dataset: str | None, log) -> Plan:
    try:
        weights = np.load(files["weights"], mmap_mode="r")
    except (OSError, ValueError, EOFError) as error:
        raise IngestError(f"{files['weights']} is not a readable .npy file ({type(error).__name__}): "
                          "restore it") from None
    if weights.ndim != 2 or weights.dtype.kind != "f":
        raise IngestError(f"{files['weights']} holds {weights.dtype} {list(weights.shape)}, not float [rows, P]: "
                          "restore it")
    layout = read_layout(files["layout"], weights.shape[1], weights.shape[0])
    leaves, channels, num_classes = small_cnn_zoo_leaves(layout, str(files["layout"]))

    where = str(files["metrics"])
    metrics = read_small_zoo_metrics(files["metrics"], weights.shape[0])
    models: list[dict[int, int]] = [{} for _ in metrics.keys]  # model -> {step: row}
    for i, (model, step) in enumerate(zip(metrics.model.tolist(), metrics.steps.tolist())):
        if step in models[model]:
            raise IngestError(f"{where} row {i + 2} repeats step {step} of model {metrics.keys[model]}: restore it")
        models[model][step] = i
    counts: dict[int, int] = {}
    for checkpoints in models:
        for step in checkpoints:
            counts[step] = counts.get(step, 0) + 1
    model_steps = sorted(step for step, count in counts.items() if 2 * count >= len(models))
    complete = [m for m, checkpoints in enumerate(models) if all(s in checkpoints for s in model_steps)]
    if not complete:
        raise IngestError(f"{where} has no model with all of its checkpoints (steps {model_steps}): restore it")
    left_out = len(models) - len(complete)
    if left_out:
        log(f"left out {left_out} of {len(models)} models that lack some of the checkpoints at steps {model_steps}")
    row_index = np.array([[models[m][s] for s in model_steps] for m in complete], np.int64)  # [M, epochs]

    table = []
    for model_id, m in enumerate(complete):
        config_row = metrics.configs[m]
        seed = as_float(config_row.get("config.random_seed"))
        row = {"model_id": model_id, "seed": int(seed) if math.isfinite(seed) else 42}
        for name, column in UZ_FACTORS.items():
            value = config_row[column]
            row[name] = value if FACTORS_BY_NAME[name].kind == "categorical" else as_float(value)
        row["optimizer"] = row["optimizer"].lower()
        for name, column in UZ_EXTRA.items():
            if config_row.get(column, "") != "":
                row[name] = config_row[column] if name == "b_init" else as_float(config_row[column])
        row["modeldir"] = metrics.keys[m]
        table.append(row)
    for row in table:
        check_known(row, SMALL_CNN_ZOO_ACTIVATIONS, where, ("config.activation", "config.optimizer"))

    source_dataset = metrics.configs[complete[0]].get("config.dataset", "")
    name = dataset or UZ_DATASETS.get(source_dataset)
    if name is None:
        raise IngestError(f"{where} says config.dataset {source_dataset!r}, which has no jaxzoo counterpart "
                          f"(known: {sorted(UZ_DATASETS)}; the zoo's CIFAR-10 is grayscale): pass --dataset NAME, "
                          "e.g. npz:PATH with 1-channel images")
    native = UZ_IMAGE_SIZES.get(source_dataset, 28)
    image_size = native
    if is_registry_name(name) and not DATASETS[name].accepts_size(native):
        image_size = DATASETS[name].image_sizes[0]
    check_dataset(name, image_size, channels, num_classes, str(files["layout"]))

    config = base_config()
    config.name = f"small_cnn_zoo_{source_dataset or name}".replace(":", "_").replace("/", "_")
    config.data.name, config.data.image_size = name, image_size
    config.model.module = "small_cnn_zoo"
    first_kernel = leaves[("conv0", "kernel")]["shape"]
    if (first_kernel[3], first_kernel[0]) != (16, 3):  # the zoo's num_units, kernel size
        config.model.kwargs = ConfigDict({"features": first_kernel[3], "kernel": first_kernel[0]})
    image_shape = (image_size, image_size, channels)
    module = build_model(config.model, "relu", False, "xla", image_shape, num_classes)
    expected = traverse_util.flatten_dict(params_shapes(module, image_shape))
    for path, entry in leaves.items():
        if tuple(expected[path].shape) != entry["shape"]:
            raise IngestError(f"{files['layout']}: {entry['varname']} has shape {list(entry['shape'])}, "
                              f"small_cnn_zoo's {'/'.join(path)} {list(expected[path].shape)}: only the 'cnn' "
                              "architecture of the Small CNN Zoo is read")
    num_epochs = len(model_steps) - 1
    config.training.num_epochs = num_epochs
    batch = metrics.configs[complete[0]].get("config.batchsize", "")
    config.training.batch_size = int(as_float(batch)) if batch else UZ_BATCH_SIZE
    population_config(config.population, table, [])
    config.population.momentum = 0.0  # Keras's SGD and RMSprop defaults
    config.notes = (
        f"Ingested from the Small CNN Zoo ({source_dataset}; Unterthiner et al. 2020): epoch k is the k-th checkpoint, "
        f"at steps {model_steps} (the metric `step`); the models were trained with TensorFlow/Keras (optimizers "
        "with Keras defaults, L2 penalty `l2reg` in the loss as weight_decay, images scaled to [-1, 1], grayscale by "
        "the channel mean), so jaxzoo's evaluation of them uses jaxzoo's normalisation of the dataset; recorded "
        "losses include the L2 penalty; no val split (val metrics NaN).")
    config.ingest = ConfigDict({"format": SMALL_CNN_ZOO_FORMAT, "dataset": source_dataset, "steps": model_steps,
                                "models": len(table), "left_out": left_out})

    def read_epoch(epoch: int):
        chosen = row_index[:, epoch]
        params = {path: np.empty((len(chosen), *entry["shape"]), np.float32) for path, entry in leaves.items()}
        for start in range(0, len(chosen), UZ_CHUNK_ROWS):
            part = chosen[start:start + UZ_CHUNK_ROWS]
            order = np.argsort(part)  # ascending rows read the memory map in file order
            block = np.empty((len(part), weights.shape[1]), np.float32)
            # Mapped for this chunk only: the pages a mapping has read count in the process's
            # resident memory until it is unmapped.
            mapped = np.load(files["weights"], mmap_mode="r")
            block[order] = mapped[part[order]]
            del mapped
            for path, entry in leaves.items():
                params[path][start:start + len(part)] = block[:, entry["start"]:entry["end"]].reshape(
                    len(part), *entry["shape"])
        state = {"params": traverse_util.unflatten_dict(params)}
        values = {name: column[chosen] for name, column in metrics.values.items()}
        values.update(val_loss=np.full(len(chosen), np.nan), val_acc=np.full(len(chosen), np.nan))
        values["step"] = np.full(len(chosen), float(model_steps[epoch]))
        return state, with_divergence(state, values)

    record = dataset_record(name, channels, num_classes, SMALL_CNN_ZOO_FORMAT)
    provenance = {"format": SMALL_CNN_ZOO_FORMAT, "source": str(path), "steps": model_steps, "models": len(table),
                  "left_out": left_out}
    return Plan(SMALL_CNN_ZOO_FORMAT, config, record, table, num_epochs, read_epoch, provenance)


@dataclasses.dataclass
class SmallZooMetrics:
    """metrics.csv of a Small CNN Zoo, row for row with the weights (only what is used is kept)."""

    steps: np.ndarray  # [rows] int64: the checkpoint's step (epoch)
    model: np.ndarray  # [rows] int64: index into `keys`
    keys: list[str]  # model identifiers, in order of first appearance
    values: dict[str, np.ndarray]  # jaxzoo metric name -> [rows] float64 (NaN where empty)
    configs: list[dict[str, str]]  # per model: the config.* columns of its first row


def read_small_zoo_metrics(path: pathlib.Path, num_rows: int) -> SmallZooMetrics:
    """Streams metrics.csv(.gz): a model is its `modeldir`, else the folder of the checkpoint path
    in an unnamed first column, else a run of increasing steps."""
    where = str(path)
    steps, model = np.empty(num_rows, np.int64), np.empty(num_rows, np.int64)
    values = {ours: np.empty(num_rows, np.float64) for ours in UZ_METRICS.values()}
    keys, index, configs = [], {}, []
    count, run, previous = 0, -1, None
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rt", newline="") as f:
            reader = csv.reader(f)
            header = next(reader)
            columns = {name: i for i, name in enumerate(header)}
            missing = [c for c in ("step", *UZ_METRICS, *UZ_FACTORS.values()) if c not in columns]
            if missing:
                raise IngestError(f"{where} lacks the column {missing[0]!r}: restore it")
            config_columns = [(name, i) for i, name in enumerate(header) if name.startswith("config.")]
            metric_columns = [(columns[theirs], values[ours]) for theirs, ours in UZ_METRICS.items()]
            step_column, mode = columns["step"], "modeldir" if "modeldir" in columns else None
            for row in reader:
                if count >= num_rows:
                    raise IngestError(f"{where} has more rows than the weights ({num_rows}): they must match row "
                                      "for row; restore the files published together")
                if len(row) != len(header):
                    raise IngestError(f"{where} row {count + 2} has {len(row)} fields, the header {len(header)}: "
                                      "restore it")
                try:
                    step = int(float(row[step_column]))
                except ValueError:
                    raise IngestError(f"{where} row {count + 2} has step {row[step_column]!r}: restore it") from None
                if mode is None:
                    mode = "path" if header[0] == "" and "/" in row[0] else "runs"
                if mode == "modeldir":
                    key = row[columns["modeldir"]]
                elif mode == "path":
                    key = row[0].rstrip("/").rsplit("/", 1)[0]
                else:
                    run += 1 if previous is None or step <= previous else 0
                    key = str(run)
                previous = step
                if key not in index:
                    index[key] = len(keys)
                    keys.append(key)
                    configs.append({name: row[i] for name, i in config_columns})
                steps[count], model[count] = step, index[key]
                for column, target in metric_columns:
                    target[count] = as_float(row[column]) if row[column] != "" else math.nan
                count += 1
    except (OSError, EOFError, UnicodeDecodeError, csv.Error, StopIteration) as error:
        raise IngestError(f"{where} is unreadable ({type(error).__name__}): restore it") from None
    if count != num_rows:
        raise IngestError(f"{where} has {count} rows, the weights {num_rows}: they must match row for row; restore "
                          "the files published together")
    return SmallZooMetrics(steps, model, keys, values, configs)


# --------------------------------------------------------------------------------------------
# The workdir.


def workdir_status(target: pathlib.Path, zoo_identity: dict, overwrite: bool) -> str:
    """'fresh', 'same' (it holds this zoo, complete) or 'replace'; IngestError when it may not be written."""
    if target.exists() and not target.is_dir():
        raise IngestError(f"--workdir {target} is a file: choose another --workdir")
    if not target.exists() or not any(target.iterdir()):
        return "fresh"
    if not any((target / name).exists() for name in ("config.json", "checkpoints", "metrics.jsonl")):
        raise IngestError(f"--workdir {target} exists and is not a jaxzoo workdir: choose another --workdir")
    try:
        existing = checkpoint.read_config(target)["identity"]
    except UserError:
        existing = None
    if existing == zoo_identity:
        try:
            from jaxzoo.export import read_zoo

            read_zoo(target)
            return "same"
        except UserError:
            pass
    if not overwrite:
        what = describe_difference(existing, zoo_identity) if existing else "unreadable config.json"
        raise IngestError(f"--workdir {target} holds another zoo ({what or 'unfinished'}): pass --overwrite to "
                          "replace it, or choose another --workdir")
    return "replace"


def write_workdir(plan: Plan, target: pathlib.Path, overwrite: bool, log) -> dict:
    """Writes the plan's zoo into `target` through a hidden sibling folder (moved into place when
    complete; removed on failure) -> the report."""
    resolved = to_json_dict(plan.config)
    zoo_identity = identity(ConfigDict(resolved))
    zoo_identity["dataset"] = plan.dataset_record
    report = {"workdir": str(target), "format": plan.format, "models": len(plan.table), "epochs": plan.num_epochs + 1}
    if workdir_status(target, zoo_identity, overwrite) == "same":
        log(f"{target} already holds this zoo: nothing to do")
        return {**report, "written": 0}
    partial = target.parent / f".{target.name}.ingest-partial"
    created = next((p for p in reversed((target.parent, *target.parent.parents)) if not p.exists()), None)
    shutil.rmtree(partial, ignore_errors=True)
    try:
        checkpoint.prepare_workdir(partial, zoo_identity, resolved, plan.table)
        model_ids = np.array([row["model_id"] for row in plan.table])
        manager = checkpoint.open_manager(partial, async_save=False)
        try:
            for epoch in range(plan.num_epochs + 1):
                start = time.time()
                state, metrics = plan.read_epoch(epoch)
                checkpoint.save_epoch(manager, epoch, state, metrics)
                lines = checkpoint.metrics_lines(epoch, model_ids, metrics)
                if epoch == 0:
                    checkpoint.rewrite_metrics_file(partial, lines)
                else:
                    checkpoint.append_metrics(partial, lines)
                del state
                log(f"epoch {epoch}/{plan.num_epochs}: {len(model_ids)} models in {time.time() - start:.1f} s")
        finally:
            manager.close()
        (partial / PROVENANCE).write_text(json.dumps(plan.provenance, indent=1))
        move_into_place(partial, target)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        if created is not None:
            shutil.rmtree(created, ignore_errors=True)
        raise
    return {**report, "written": plan.num_epochs + 1}


def move_into_place(partial: pathlib.Path, target: pathlib.Path) -> None:
    if target.is_dir() and not any(target.iterdir()):
        target.rmdir()
    if target.exists():  # --overwrite: the old zoo goes only once the new one is complete
        old = target.parent / f".{target.name}.ingest-old"
        shutil.rmtree(old, ignore_errors=True)
        os.replace(target, old)
        os.replace(partial, target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(partial, target)


def ingest(source, workdir, dataset: str | None = None, overwrite: bool = False, log=print) -> dict:
    """Ingests the published zoo at `source` (trial folders, their .zip, or a Small CNN Zoo folder)
    into the jaxzoo workdir `workdir`; returns a report {workdir, format, models, epochs, written,
    seconds}. `dataset` overrides the data.name found in the source; `overwrite` replaces a
    workdir that holds another zoo. `log` receives progress lines (None: silent)."""
    log = log or (lambda message: None)
    start = time.time()
    target = pathlib.Path(workdir).absolute()
    check_destination(target, "--workdir")
    if dataset is not None:
        try:
            parse_name(dataset)
        except UserError as error:
            raise IngestError(f"--dataset: {error}") from None
    path = pathlib.Path(source).absolute()
    files = small_cnn_zoo_files(path) if path.is_dir() else None
    if files is not None:
        log(f"reading the Small CNN Zoo in {path} ...")
        plan = small_cnn_zoo_plan(path, files, dataset, log)
        report = write_workdir(plan, target, overwrite, log)
    else:
        handle = open_source(path)
        try:
            log(f"reading the trial folders in {path} ...")
            plan = trials_plan(handle, dataset, log)
            report = write_workdir(plan, target, overwrite, log)
        finally:
            handle.close()
    report["seconds"] = time.time() - start
    return report


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m jaxzoo.ingest", description=__doc__.splitlines()[0])
    parser.add_argument("--source", required=True, help="trial folders (or their .zip), or a Small CNN Zoo folder")
    parser.add_argument("--workdir", required=True, help="the jaxzoo workdir to write")
    parser.add_argument("--dataset", default=None, help="the data.name the models were trained on (default: "
                                                        "from the source)")
    parser.add_argument("--overwrite", action="store_true", help="replace a workdir that holds another zoo")
    args = parser.parse_args(argv)

    def action():
        report = ingest(args.source, args.workdir, args.dataset, args.overwrite)
        print(f"ingested {report['models']} models x {report['epochs']} epochs ({report['format']}) into "
              f"{report['workdir']} in {report['seconds']:.1f} s")

    return run(action, args.verbose)


if __name__ == "__main__":
    sys.exit(main())
