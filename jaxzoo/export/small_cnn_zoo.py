"""A zoo of `small_cnn_zoo` models written in the Small CNN Zoo's published format (Unterthiner
et al. 2020), the format `jaxzoo.ingest` reads back.

`write_small_cnn_zoo(workdir_or_zoo, out_folder)` writes into `out_folder`:

- `weights.npy`: float32 [models * epochs, P], one row per (model, exported epoch), models in
  model-id order and each model's epochs ascending (row = model * epochs + k); a row is the
  model's params flattened layer by layer, bias then kernel, in TensorFlow layouts (conv kernels
  HWIO, the dense kernel [in, out]), which are the Flax layouts of `SmallCNNZoo`.
- `layout.csv`: varname, start_idx, end_idx, size, shape of each tensor of a row (Keras
  variable names: `sequential/conv2d/bias:0`, ..., `sequential/dense/kernel:0`).
- `metrics.csv.gz`: row for row with the weights, the published columns (an unnamed first
  column with the checkpoint path, `config.*`, `modeldir`, `step`, train/test accuracy and loss).
  `step` is the jaxzoo epoch (the published zoo's `step` is its epoch too), or for an ingested
  zoo the published step the epoch came from.
- `readme.md`: what each column holds for this zoo and which jaxzoo factors have no column.
- `checksums.sha256`: `sha256sum -c` lines for the four files above.

Models are read a block at a time (`Zoo.model_blocks`, every exported epoch of a block), so
memory does not grow with the zoo. The folder is written beside `out_folder` and moved into
place when complete.
"""

from __future__ import annotations

import csv
import gzip
import io
import math
import os
import pathlib

import numpy as np

from jaxzoo.config.paper_zoos import PUBLISHED_STEPS, SMALL_CNN_ZOO_MODULE  # noqa: F401  (re-exported)
from jaxzoo.data.cache import sha256
from jaxzoo.export.rows import ExportError
from jaxzoo.host import check_destination, check_free_space, folder_in_place, remove
from jaxzoo.models.registry import NAMED_MODULES
from jaxzoo.zoo.reader import Zoo, read_zoo

WEIGHTS, METRICS, LAYOUT, README, CHECKSUMS = (
    "weights.npy",
    "metrics.csv.gz",
    "layout.csv",
    "readme.md",
    "checksums.sha256",
)
# (our layer, the Keras variable scope) in the order of a row.
LAYERS = (
    ("conv0", "sequential/conv2d"),
    ("conv1", "sequential/conv2d_1"),
    ("conv2", "sequential/conv2d_2"),
    ("dense", "sequential/dense"),
)
PARAM_PATHS = [(layer, leaf) for layer, _ in LAYERS for leaf in ("bias", "kernel")]
# The published metrics.csv columns after the unnamed checkpoint-path column (pandas' index), in order.
METRICS_COLUMNS = (
    "config.activation",
    "config.b_init",
    "config.dataset",
    "config.dnn_architecture",
    "config.dropout",
    "config.epochs",
    "config.epochs_between_checkpoints",
    "config.init_std",
    "config.l2reg",
    "config.learning_rate",
    "config.num_layers",
    "config.num_units",
    "config.optimizer",
    "config.random_seed",
    "config.train_fraction",
    "config.w_init",
    "modeldir",
    "step",
    "test_accuracy",
    "test_loss",
    "train_accuracy",
    "train_loss",
)
# jaxzoo factor -> its column (the same pairs `jaxzoo.ingest.small_cnn_zoo` reads back).
FACTOR_COLUMNS = {
    "activation": "config.activation",
    "init": "config.w_init",
    "optimizer": "config.optimizer",
    "lr": "config.learning_rate",
    "dropout": "config.dropout",
    "train_fraction": "config.train_fraction",
}
METRIC_COLUMNS = {
    "test_accuracy": "test_acc",
    "test_loss": "test_loss",
    "train_accuracy": "train_acc",
    "train_loss": "train_loss",
}
JAXZOO_BIAS_INIT = "constant(0.01)"  # jaxzoo's bias initialisation (`jaxzoo.models.cnn.BIAS_INIT`)
# Row fields of the model table that are not factors to declare missing in the readme.
TABLE_BOOKKEEPING = ("model_id", "seed", "modeldir", "b_init", "init_std", "l2reg")


def check_small_cnn_zoo(zoo: Zoo) -> None:
    """ExportError unless the zoo's models are the Small CNN Zoo's CNN: `model.module =
    "small_cnn_zoo"` with 3 stride-2 convolutions (`features` and `kernel` may differ) and its
    params conv0..conv2, dense with a kernel and a bias each (no twin zoo)."""
    model = zoo.config["model"]
    module = model.get("module") or ""
    kwargs = dict(model.get("kwargs") or {})
    where = f"{zoo.workdir} (model.module={module or model['arch']!r})"
    fix = (
        "only zoos of model.module='small_cnn_zoo' are written in this format: export it as trials, vectors or parquet"
    )
    if NAMED_MODULES.get(module, module) != NAMED_MODULES[SMALL_CNN_ZOO_MODULE]:
        raise ExportError(f"{where} is not the Small CNN Zoo's CNN: {fix}")
    fixed = {"num_layers": 3, "stride": 2}
    changed = sorted(k for k, v in kwargs.items() if k in fixed and v != fixed[k])
    unknown = sorted(k for k in kwargs if k not in (*fixed, "features", "kernel", "dropout"))
    if changed or unknown:
        raise ExportError(
            f"{where} sets model.kwargs {changed + unknown}, which the published format has no place for: {fix}"
        )
    if zoo.is_twin:
        raise ExportError(f"{where} is a sparsified twin zoo (ARD params): export its source zoo instead")
    paths = sorted(zoo.checkpoints.param_paths(zoo.epochs[0]))
    if paths != sorted(PARAM_PATHS):
        raise ExportError(f"{where} has params {paths}, not the Small CNN Zoo's {sorted(PARAM_PATHS)}: {fix}")


def tensor_layout(zoo: Zoo) -> list[dict]:
    """[{'varname', 'path', 'start', 'end', 'shape'}] of a weights row, bias before kernel per layer."""
    shapes = zoo.checkpoints.read(zoo.epochs[0], (0, 1), [("params", *path) for path in PARAM_PATHS])["params"]
    layout, start = [], 0
    for layer, scope in LAYERS:
        for leaf in ("bias", "kernel"):
            shape = tuple(int(n) for n in shapes[layer][leaf].shape[1:])
            size = math.prod(shape)
            layout.append(
                {
                    "varname": f"{scope}/{leaf}:0",
                    "path": (layer, leaf),
                    "start": start,
                    "end": start + size,
                    "shape": shape,
                }
            )
            start += size
    return layout


def export_steps(zoo: Zoo, epochs: list[int]) -> list[int]:
    """The `step` of each exported epoch: the epoch, or for an ingested Small CNN Zoo the published step."""
    ingested = zoo.config.get("ingest", {})
    steps = ingested.get("steps") if ingested.get("format") == SMALL_CNN_ZOO_MODULE else None
    if steps and len(steps) == len(zoo.epochs):
        return [int(steps[e]) for e in epochs]
    return list(epochs)


def number(value) -> str:
    """A CSV field: Python's shortest repr of a float, '' for NaN (as pandas writes a missing value)."""
    if value is None:
        return ""
    value = float(value)
    return "" if math.isnan(value) else repr(value)


def l2reg(row: dict) -> float:
    """A model's `config.l2reg`: an ingested model's own, else weight_decay / 2.

    jaxzoo's coupled weight decay adds weight_decay * w to every parameter's gradient; Keras's
    l2(c) penalty c * sum(w^2) on the kernels adds 2c * w to the kernels' gradients only, so c =
    weight_decay / 2 matches the kernels (jaxzoo also decays the biases, Keras did not)."""
    return float(row["l2reg"]) if "l2reg" in row else float(row["weight_decay"]) / 2


def model_columns(zoo: Zoo, row: dict, modeldir: str, epochs_between: int) -> dict[str, str]:
    """The config.* and modeldir fields of one model (the same on each of its rows)."""
    model = zoo.config["model"]
    ingested = zoo.config.get("ingest", {})
    dataset = ingested.get("dataset") or zoo.config["data"]["name"]
    return {
        "config.activation": row["activation"],
        "config.b_init": str(row.get("b_init", JAXZOO_BIAS_INIT)),
        "config.dataset": dataset,
        "config.dnn_architecture": "cnn",
        "config.dropout": number((model.get("kwargs") or {}).get("dropout") or row["dropout"]),  # the module's own
        "config.epochs": str(export_steps(zoo, zoo.epochs)[-1]),
        "config.epochs_between_checkpoints": str(epochs_between),
        "config.init_std": number(row.get("init_std")),
        "config.l2reg": number(l2reg(row)),
        "config.learning_rate": number(row["lr"]),
        "config.num_layers": "3",
        "config.num_units": str((model.get("kwargs") or {}).get("features", 16)),
        "config.optimizer": row["optimizer"],
        "config.random_seed": str(row["seed"]),
        "config.train_fraction": number(row.get("train_fraction", 1.0)),
        "config.w_init": row["init"],
        "modeldir": modeldir,
    }


def small_cnn_zoo_readme(zoo: Zoo, epochs: list[int], steps: list[int], rows: int, width: int) -> str:
    """readme.md of the folder: the files, the columns' meaning for this zoo, what has no column."""
    written = {*FACTOR_COLUMNS, "weight_decay", *TABLE_BOOKKEEPING}  # weight_decay: as config.l2reg
    missing = sorted({key for row in zoo.table for key in row} - written)
    lines = [
        f"# {zoo.experiment} in the Small CNN Zoo format",
        "",
        f"{len(zoo.table)} models x {len(epochs)} checkpoints (jaxzoo epochs {epochs}, the `step` column "
        f"{steps}) = {rows} rows of {width} weights, written by jaxzoo from the workdir of zoo "
        f"{zoo.identity_hash}, in the layout of the Small CNN Zoo (Unterthiner et al. 2020, "
        '"Predicting Neural Network Accuracy from Weights").',
        "",
        f"- `{WEIGHTS}`: float32 [{rows}, {width}]; row `model * {len(epochs)} + k` is the k-th checkpoint of "
        "a model, models in model-id order. `layout.csv` gives each tensor's columns and shape (TensorFlow "
        "layouts: conv kernels [height, width, in, out], the dense kernel [in, out]).",
        f"- `{METRICS}`: one row per weights row, the published columns in the published order.",
        f"- `{CHECKSUMS}`: `sha256sum -c {CHECKSUMS}` checks the files.",
        "",
        "What the columns hold for this zoo:",
        "",
        "- `config.activation`, `config.optimizer`: jaxzoo's names (`relu`, `tanh`, `adam`, `sgd`, `rmsprop`, ...).",
        "- `config.w_init`: jaxzoo's init names with PyTorch semantics (`kaiming_normal` is an untruncated He "
        "normal, `xavier_uniform` Glorot uniform, ...), not Keras initializer names.",
        f"- `config.b_init`: `{JAXZOO_BIAS_INIT}` (jaxzoo starts every bias at 0.01; the published zoo used zeros), "
        "or the value an ingested zoo recorded.",
        "- `config.l2reg`: Keras's L2 coefficient c (penalty c * sum(w^2) over the kernels, gradient 2c * w). "
        "For models trained by jaxzoo it is `weight_decay / 2`: jaxzoo's coupled weight decay adds "
        "`weight_decay * w` to the gradient of every parameter, so it matches Keras's penalty on the kernels "
        "but also decays the biases, which Keras did not. For an ingested zoo, the `l2reg` it recorded.",
        "- `config.init_std`: empty unless the zoo was ingested with one (jaxzoo's inits take no std).",
        "- `config.random_seed`: the model's jaxzoo seed (the published zoo has 42 everywhere).",
        "- `config.epochs`: the zoo's last epoch (step); `config.epochs_between_checkpoints`: the largest gap "
        "between exported steps.",
        "- `config.dataset`: the jaxzoo dataset the zoo trained on (for an ingested zoo, the published name).",
        "- `modeldir` and the first column (`<modeldir>/permanent_ckpt-<step>`): names made by jaxzoo (an "
        "ingested zoo's own `modeldir`).",
        "- accuracies are fractions; losses are the cross-entropy jaxzoo recorded (the published losses "
        "include Keras's L2 penalty). `train_*` are jaxzoo's running values over the epoch's batches, taken "
        "before each update in train mode (the published ones: the trained model evaluated on the train set); "
        "`test_*` are evaluated after the epoch, as published. A diverged model's NaN is an empty field.",
        "",
    ]
    if missing:
        lines.append(
            "jaxzoo factors of this zoo with no column in the format (kept in the workdir's models.json): "
            + ", ".join(f"`{name}`" for name in missing)
            + "."
        )
    else:
        lines.append("Every generating factor of this zoo has a column.")
    batch = zoo.config["training"]["batch_size"]
    lines += ["", f"Batch size {batch} (the published format has no batch size column).", ""]
    return "\n".join(lines)


def write_small_cnn_zoo(
    workdir_or_zoo: str | os.PathLike | Zoo,
    out_folder: str | os.PathLike,
    epochs: list[int] | None = None,
    overwrite: bool = False,
    log=None,
) -> dict:
    """Writes a zoo of `small_cnn_zoo` models into `out_folder` in the Small CNN Zoo's format
    (module docstring): weights.npy [models * len(epochs), P] float32, metrics.csv.gz,
    layout.csv, readme.md, checksums.sha256.

    epochs: the jaxzoo epochs to write (default: all; `PUBLISHED_STEPS` for the published
    checkpoints of an 86-epoch zoo). An `out_folder` that holds files is refused unless
    `overwrite`. Returns {'out', 'models', 'epochs', 'steps', 'rows', 'width', 'files': {name: sha256}}.
    ExportError (a UserError), before anything is written, for another architecture, unknown
    epochs or a folder in the way; a failure while writing leaves `out_folder` as it was.
    """
    log = log or (lambda message: None)
    zoo = workdir_or_zoo if isinstance(workdir_or_zoo, Zoo) else read_zoo(workdir_or_zoo)
    check_small_cnn_zoo(zoo)
    epochs = list(zoo.epochs) if epochs is None else [int(e) for e in epochs]
    bad = [e for e in epochs if e not in zoo.epochs]
    if bad or not epochs:
        raise ExportError(f"epochs {bad or epochs} are not in the zoo (0..{zoo.epochs[-1]}): choose from those")
    if sorted(set(epochs)) != epochs:
        raise ExportError(f"epochs {epochs} are not increasing without repeats: list each epoch once, in order")
    target = pathlib.Path(out_folder).absolute()
    check_destination(target, "Small CNN Zoo folder")
    if target.exists() and (not target.is_dir() or any(target.iterdir())) and not overwrite:
        raise ExportError(
            f"{target} exists and is not empty: pass overwrite=True (--overwrite) or choose another folder"
        )
    layout = tensor_layout(zoo)
    width = layout[-1]["end"]
    rows = len(zoo.table) * len(epochs)
    check_free_space(target, rows * width * 4 + rows * 400, "the Small CNN Zoo files")
    steps = export_steps(zoo, epochs)
    created = next((p for p in reversed(target.parents) if not p.exists()), None)
    try:
        with folder_in_place(target) as folder:
            write_layout(folder / LAYOUT, layout)
            write_rows(zoo, folder, layout, epochs, steps, log)
            (folder / README).write_text(small_cnn_zoo_readme(zoo, epochs, steps, rows, width))
            files = {name: sha256(folder / name) for name in (WEIGHTS, METRICS, LAYOUT, README)}
            (folder / CHECKSUMS).write_text("".join(f"{digest}  {name}\n" for name, digest in files.items()))
    except BaseException:
        if created is not None:
            remove(created)
        raise
    log(f"wrote {rows} rows ({len(zoo.table)} models x {len(epochs)} epochs) of {width} weights to {target}")
    return {
        "out": str(target),
        "models": len(zoo.table),
        "epochs": epochs,
        "steps": steps,
        "rows": rows,
        "width": width,
        "files": files,
    }


def write_layout(path: pathlib.Path, layout: list[dict]) -> None:
    """layout.csv: varname, start_idx, end_idx, size, shape (a Python tuple, e.g. '(3, 3, 1, 16)')."""
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["varname", "start_idx", "end_idx", "size", "shape"])
        for entry in layout:
            size = entry["end"] - entry["start"]
            writer.writerow([entry["varname"], entry["start"], entry["end"], size, str(entry["shape"])])


def write_rows(zoo: Zoo, folder: pathlib.Path, layout: list[dict], epochs: list[int], steps: list[int], log) -> None:
    """weights.npy and metrics.csv.gz, a block of models at a time (every exported epoch of a block)."""
    width = layout[-1]["end"]
    rows = len(zoo.table) * len(epochs)
    gap = max((b - a for a, b in zip(steps, steps[1:])), default=1)  # PUBLISHED_STEPS: 20, as published
    with open(folder / WEIGHTS, "wb") as weights, open(folder / METRICS, "wb") as raw:
        np.lib.format.write_array_header_1_0(
            weights,
            {"descr": np.lib.format.dtype_to_descr(np.dtype("<f4")), "fortran_order": False, "shape": (rows, width)},
        )
        # mtime 0 and no file name in the gzip header: the same zoo gives the same bytes.
        with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as packed:
            text = io.TextIOWrapper(packed, encoding="utf-8", newline="")
            writer = csv.writer(text, lineterminator="\n")
            writer.writerow(["", *METRICS_COLUMNS])
            written = 0
            for start, stop in zoo.model_blocks(epochs=len(epochs), collection="params"):
                block = np.empty((stop - start, len(epochs), width), "<f4")
                for k, epoch in enumerate(epochs):
                    params = zoo.checkpoints.params(epoch, PARAM_PATHS, models=(start, stop))
                    for entry in layout:
                        layer, leaf = entry["path"]
                        block[:, k, entry["start"] : entry["end"]] = params[layer][leaf].reshape(stop - start, -1)
                    del params
                block.tofile(weights)
                del block
                for index in range(start, stop):
                    row = zoo.table[index]
                    modeldir = row.get("modeldir") or f"{zoo.config['name']}/unit_{row['model_id']:05d}"
                    fields = model_columns(zoo, row, modeldir, gap)
                    for epoch, step in zip(epochs, steps):
                        measured = zoo.metrics[epoch]
                        values = {theirs: number(measured[ours][index]) for theirs, ours in METRIC_COLUMNS.items()}
                        line = {**fields, "step": str(step), **values}
                        writer.writerow([f"{modeldir}/permanent_ckpt-{step}", *(line[c] for c in METRICS_COLUMNS)])
                written += stop - start
                log(f"  {written}/{len(zoo.table)} models")
            text.flush()
            text.detach()
