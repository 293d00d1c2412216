"""Reads the Small CNN Zoo (Unterthiner et al. 2020), a folder.

weights.npy [rows, P] float32 (read memory-mapped), metrics.csv or metrics.csv.gz (one row per
weights row: config.* columns, step, modeldir, train/test accuracy and loss) and layout.csv
(varname, start_idx, end_idx, shape; TensorFlow layouts: conv kernels HWIO, dense kernels
[in, out]). Rows are grouped into models by modeldir (else by the checkpoint path in the first
column, else by runs of increasing steps); a model's k-th checkpoint (steps 0, 1, 2, 3, 20, 40,
60, 80, 86) is jaxzoo epoch k, its step kept as the metric `step` and in config `ingest.steps`.
Models lacking one of those checkpoints are left out (one log line naming the first few;
ingest.json `left_out`). The models are `small_cnn_zoo` (`jaxzoo.models.cnn.SmallCNNZoo`);
models.json keeps each one's `modeldir`, and its Keras L2 penalty `config.l2reg` as `l2reg`
(weight_decay is 0: the optimizers decayed nothing). The dataset: config.dataset (mnist,
fashion_mnist, cifar10 -> cifar10_gs, svhn_cropped -> svhn_gs: 32 px, the channel mean as the
zoo computed it, cached rounded to uint8). The images the zoo used (every dataset grayscale, in
[-1, 1]) are recorded as `ingest.source_data`, and where jaxzoo's dataset serves others (mnist:
its own normalisation; --dataset svhn: a 28 px centre crop of PIL's luma) the notes and ingest.json say that recomputed
accuracies differ from metrics.csv.
"""

from __future__ import annotations

import csv
import dataclasses
import gzip
import math
import pathlib
import re

import numpy as np
from flax import traverse_util
from ml_collections import ConfigDict

from jaxzoo.config import MAX_SEED, base_config
from jaxzoo.data import DATASETS, is_registry_name
from jaxzoo.ingest.common import (
    IngestError,
    Plan,
    as_float,
    as_int,
    check_dataset,
    check_known,
    dataset_record,
    population_config,
    report_left_out,
    with_divergence,
)
from jaxzoo.models.cnn import SMALL_CNN_ZOO_ACTIVATIONS
from jaxzoo.models.registry import build_model, params_shapes
from jaxzoo.training.factors import FACTORS_BY_NAME

SMALL_CNN_ZOO_FORMAT = "small_cnn_zoo"
UZ_DATASETS = {
    "mnist": "mnist",
    "fashion_mnist": "fashion_mnist",
    "cifar10": "cifar10_gs",
    "svhn_cropped": "svhn_gs",
    "svhn": "svhn_gs",
}
UZ_IMAGE_SIZES = {"mnist": 28, "fashion_mnist": 28, "cifar10": 32, "svhn_cropped": 32, "svhn": 32}
UZ_METRICS = {
    "train_loss": "train_loss",
    "train_accuracy": "train_acc",
    "test_loss": "test_loss",
    "test_accuracy": "test_acc",
}
UZ_FACTORS = {
    "activation": "config.activation",
    "init": "config.w_init",
    "optimizer": "config.optimizer",
    "lr": "config.learning_rate",
    "dropout": "config.dropout",
}
# Keras's L2 penalty l2reg * sum(w^2) over the kernels, in the loss: not jaxzoo's weight_decay
# (PyTorch's, on every parameter in the optimizer step), so it is kept as the models' `l2reg`.
UZ_L2REG = "config.l2reg"
UZ_EXTRA = {"train_fraction": "config.train_fraction", "init_std": "config.init_std", "b_init": "config.b_init"}
UZ_COLOUR = ("cifar10", "svhn_cropped", "svhn")  # made grayscale by the zoo's training script
UZ_VALUE_RANGE = (-1.0, 1.0)  # the training script's image scaling
UZ_BATCH_SIZE = 512  # the original training script's default (metrics.csv has no batch size column)
MAX_BATCH_SIZE = 1 << 20  # a config.batchsize above it is a damaged file, not a zoo
# weights rows read through a fresh memory map at a time: a model's checkpoints are 9 rows
# apart, so a chunk's rows span 9x as much of the file, whose pages (read ahead) count in the
# resident memory while mapped: 256 rows keep that span near 45 MB.
UZ_CHUNK_ROWS = 256


def factor_value(name: str, value, where: str) -> float:
    """A numeric generating factor of a metrics.csv row, parsed and in the factor's range."""
    factor = FACTORS_BY_NAME.get(name)
    low, high = (factor.low, factor.high) if factor is not None else (-math.inf, math.inf)
    number = as_float(value, where, UZ_FACTORS.get(name, UZ_EXTRA.get(name, name)), low, high)
    if math.isnan(number):
        raise IngestError(f"{where}: {UZ_FACTORS.get(name, name)} is empty for a model: restore the file")
    return number


def small_cnn_zoo_files(path: pathlib.Path) -> dict[str, pathlib.Path] | None:
    """{'weights', 'metrics', 'layout'} paths of a Small CNN Zoo folder, or None if it is not one."""
    pick = lambda *names: next((path / n for n in names if (path / n).is_file()), None)
    weights = pick("weights.npy", "all_weights.npy")
    if weights is None:
        return None
    files = {
        "weights": weights,
        "metrics": pick("metrics.csv.gz", "metrics.csv", "all_metrics.csv.gz", "all_metrics.csv"),
        "layout": pick("layout.csv"),
    }
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
            entry = {
                "varname": row[columns["varname"]],
                "start": int(row[columns["start_idx"]]),
                "end": int(row[columns["end_idx"]]),
                "shape": shape,
            }
        except (ValueError, IndexError):
            raise IngestError(f"{path} line {n} is not 'varname, start_idx, end_idx, shape': restore it") from None
        if entry["end"] - entry["start"] != math.prod(shape) or entry["start"] < 0:
            raise IngestError(
                f"{path} line {n}: {entry['varname']} spans {entry['end'] - entry['start']} columns, its "
                f"shape {list(shape)} holds {math.prod(shape)}: restore it"
            )
        layout.append(entry)
    covered = np.zeros(width, np.int64)
    for entry in layout:
        covered[entry["start"] : entry["end"]] += 1
    if sum(e["end"] - e["start"] for e in layout) != width or not (covered == 1).all():
        raise IngestError(
            f"{path} does not cover the {width} columns of the weights ({num_rows} rows) once each: "
            "use the layout.csv published with these weights"
        )
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
        raise IngestError(
            f"{where} does not describe the Small CNN Zoo's CNN (3 conv kernels, 1 dense kernel, "
            f"4 biases; found kernels of ranks {ranks}): only the 'cnn' architecture of that zoo is read"
        )
    leaves = {}
    for i, kernel in enumerate(kernels):
        layer = f"conv{i}" if i < 3 else "dense"
        bias = biases.get(scope(kernel["varname"]))
        if bias is None:
            raise IngestError(f"{where} has no bias next to {kernel['varname']}: restore it")
        leaves[(layer, "kernel")], leaves[(layer, "bias")] = kernel, bias
    return leaves, kernels[0]["shape"][2], kernels[-1]["shape"][1]


def source_data(source_dataset: str, image_size: int) -> dict:
    """The images the Small CNN Zoo trained and evaluated its models on (every dataset grayscale)."""
    return {
        "name": source_dataset,
        "image_size": image_size,
        "channels": 1,
        "grayscale": "the channel mean" if source_dataset in UZ_COLOUR else "native",
        "value_range": list(UZ_VALUE_RANGE),
    }


def evaluation_note(name: str, image_size: int, source_dataset: str, native: int) -> str:
    """Whether jaxzoo's `name` at `image_size` px serves the images the zoo was trained on (the
    native size, no crop or resize, [0, 1] normalised to [-1, 1]), and if not how it differs."""
    if not is_registry_name(name):
        return (
            f"jaxzoo evaluates the models on {name}: recomputed accuracies match metrics.csv only if it holds "
            f"the source's images ({native} x {native} grayscale, values in [-1, 1])."
        )
    info = DATASETS[name]
    transform = info.transforms.get(image_size)
    changes = [
        text
        for text, applies in (
            (f"{image_size} px, not {native}", image_size != native),
            ("its own grayscale conversion", transform is not None and transform.grayscale),
            (f"a centre crop to {transform.center_crop} px", transform is not None and transform.center_crop),
            (f"a resize to {transform.resize} px", transform is not None and transform.resize),
            (
                f"normalised with mean {list(info.mean)} and std {list(info.std)}, not to [-1, 1]",
                (tuple(info.mean), tuple(info.std)) != ((0.5,), (0.5,)),
            ),
        )
        if applies
    ]
    if not changes:
        return f"jaxzoo's {name} serves the images the zoo used ({native} px, values in [-1, 1])."
    return (
        f"jaxzoo evaluates the models on {name} ({'; '.join(changes)}), not on the source's {source_dataset} "
        f"images ({native} x {native} grayscale, values in [-1, 1]): recomputed accuracies differ from metrics.csv."
    )


def small_cnn_zoo_plan(path: pathlib.Path, files: dict[str, pathlib.Path], dataset: str | None, log) -> Plan:
    try:
        weights = np.load(files["weights"], mmap_mode="r")
    except (OSError, ValueError, EOFError) as error:
        raise IngestError(
            f"{files['weights']} is not a readable .npy file ({type(error).__name__}): restore it"
        ) from None
    if weights.ndim != 2 or weights.dtype.kind != "f":
        raise IngestError(
            f"{files['weights']} holds {weights.dtype} {list(weights.shape)}, not float [rows, P]: restore it"
        )
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
    left_out = [
        {
            "name": metrics.keys[m],
            "reason": f"no checkpoint at steps {[s for s in model_steps if s not in checkpoints]}",
        }
        for m, checkpoints in enumerate(models)
        if any(s not in checkpoints for s in model_steps)
    ]
    report_left_out(left_out, len(models), "models", where, log)
    if not complete:
        raise IngestError(f"{where} has no model with all of its checkpoints (steps {model_steps}): restore it")
    row_index = np.array([[models[m][s] for s in model_steps] for m in complete], np.int64)  # [M, epochs]

    table = []
    for model_id, m in enumerate(complete):
        config_row = metrics.configs[m]
        seed = as_int(config_row.get("config.random_seed"), where, "config.random_seed", 0, MAX_SEED)
        row = {"model_id": model_id, "seed": 42 if seed is None else seed}
        for name, column in UZ_FACTORS.items():
            value = config_row[column]
            row[name] = value if FACTORS_BY_NAME[name].kind == "categorical" else factor_value(name, value, where)
        row["optimizer"] = row["optimizer"].lower()
        row["weight_decay"] = 0.0  # no decay in the optimizer step: Keras's L2 penalty is `l2reg`
        row["l2reg"] = as_float(config_row[UZ_L2REG], where, UZ_L2REG, 0.0)
        if math.isnan(row["l2reg"]):
            raise IngestError(f"{where}: {UZ_L2REG} is empty for a model: restore the file")
        for name, column in UZ_EXTRA.items():
            if config_row.get(column, "") != "":
                row[name] = config_row[column] if name == "b_init" else factor_value(name, config_row[column], where)
        row["modeldir"] = metrics.keys[m]
        table.append(row)
    for row in table:
        check_known(row, SMALL_CNN_ZOO_ACTIVATIONS, where, ("config.activation", "config.optimizer"))

    source_dataset = metrics.configs[complete[0]].get("config.dataset", "")
    name = dataset or UZ_DATASETS.get(source_dataset)
    if name is None:
        raise IngestError(
            f"{where} says config.dataset {source_dataset!r}, which has no jaxzoo counterpart "
            f"(known: {sorted(UZ_DATASETS)}): pass --dataset NAME, "
            "e.g. npz:PATH with 1-channel images"
        )
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
            raise IngestError(
                f"{files['layout']}: {entry['varname']} has shape {list(entry['shape'])}, "
                f"small_cnn_zoo's {'/'.join(path)} {list(expected[path].shape)}: only the 'cnn' "
                "architecture of the Small CNN Zoo is read"
            )
    num_epochs = len(model_steps) - 1
    config.training.num_epochs = num_epochs
    batch = metrics.configs[complete[0]].get("config.batchsize", "")
    config.training.batch_size = as_int(batch, where, "config.batchsize", 1, MAX_BATCH_SIZE) or UZ_BATCH_SIZE
    population_config(config.population, table, [])
    config.population.momentum = 0.0  # Keras's SGD and RMSprop defaults
    evaluation = evaluation_note(name, image_size, source_dataset, native)
    config.notes = (
        f"Ingested from the Small CNN Zoo ({source_dataset}; Unterthiner et al. 2020): epoch k is the k-th checkpoint, "
        f"at steps {model_steps} (the metric `step`); the models were trained with TensorFlow/Keras (optimizers "
        "with Keras defaults; no weight decay in the optimizer: the models' `l2reg` is Keras's L2 penalty "
        f"l2reg * sum(w^2) over the kernels, in the loss; recorded losses include it). {evaluation} No val split "
        "(val metrics NaN)."
    )
    config.ingest = ConfigDict(
        {
            "format": SMALL_CNN_ZOO_FORMAT,
            "dataset": source_dataset,
            "steps": model_steps,
            "models": len(table),
            "left_out": len(left_out),
            "source_data": source_data(source_dataset, native),
        }
    )

    def read_epoch(epoch: int, models: tuple[int, int]):
        chosen = row_index[models[0] : models[1], epoch]
        params = {path: np.empty((len(chosen), *entry["shape"]), np.float32) for path, entry in leaves.items()}
        for start in range(0, len(chosen), UZ_CHUNK_ROWS):
            part = chosen[start : start + UZ_CHUNK_ROWS]
            order = np.argsort(part)  # ascending rows read the memory map in file order
            block = np.empty((len(part), weights.shape[1]), np.float32)
            # Mapped for this chunk only: the pages a mapping has read count in the process's
            # resident memory until it is unmapped.
            mapped = np.load(files["weights"], mmap_mode="r")
            block[order] = mapped[part[order]]
            del mapped
            for path, entry in leaves.items():
                params[path][start : start + len(part)] = block[:, entry["start"] : entry["end"]].reshape(
                    len(part), *entry["shape"]
                )
        state = {"params": traverse_util.unflatten_dict(params)}
        values = {name: column[chosen] for name, column in metrics.values.items()}
        values.update(val_loss=np.full(len(chosen), np.nan), val_acc=np.full(len(chosen), np.nan))
        values["step"] = np.full(len(chosen), float(model_steps[epoch]))
        return state, with_divergence(state, values)

    record = dataset_record(name, channels, num_classes, SMALL_CNN_ZOO_FORMAT)
    provenance = {
        "format": SMALL_CNN_ZOO_FORMAT,
        "source": str(path),
        "steps": model_steps,
        "models": len(table),
        "left_out": left_out,
        "source_data": source_data(source_dataset, native),
        "evaluation": evaluation,
        "l2reg": (
            "Keras's L2 penalty l2reg * sum(w^2) over the kernels, in the loss (models.json `l2reg`; its gradient "
            "2 * l2reg * w is PyTorch-style weight_decay 2 * l2reg on the kernels only): weight_decay is 0"
        ),
    }
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
            missing = [c for c in ("step", *UZ_METRICS, *UZ_FACTORS.values(), UZ_L2REG) if c not in columns]
            if missing:
                raise IngestError(f"{where} lacks the column {missing[0]!r}: restore it")
            config_columns = [(name, i) for i, name in enumerate(header) if name.startswith("config.")]
            metric_columns = [(columns[theirs], values[ours]) for theirs, ours in UZ_METRICS.items()]
            step_column, mode = columns["step"], "modeldir" if "modeldir" in columns else None
            for row in reader:
                if count >= num_rows:
                    raise IngestError(
                        f"{where} has more rows than the weights ({num_rows}): they must match row "
                        "for row; restore the files published together"
                    )
                if len(row) != len(header):
                    raise IngestError(
                        f"{where} row {count + 2} has {len(row)} fields, the header {len(header)}: restore it"
                    )
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
                    target[count] = as_float(row[column], f"{where} row {count + 2}", header[column], finite=False)
                count += 1
    except (OSError, EOFError, UnicodeDecodeError, csv.Error, StopIteration) as error:
        raise IngestError(f"{where} is unreadable ({type(error).__name__}): restore it") from None
    if count != num_rows:
        raise IngestError(
            f"{where} has {count} rows, the weights {num_rows}: they must match row for row; restore "
            "the files published together"
        )
    return SmallZooMetrics(steps, model, keys, values, configs)
