"""Exports a jaxzoo workdir in the formats the weight-space community reads.

  python -m jaxzoo.export --workdir W --out DIR [--format trials|vectors|parquet|all|small_cnn_zoo|sane]
                          [--epochs 5,15,50] [--threshold 5] [--optimizer_state last|all]
                          [--twin_weights raw|masked] [--split_by model|seed|init|<factor>]
                          [--token_size 288] [--with_data] [--overwrite]

An INR zoo's workdir goes to `jaxzoo.inr.export` instead (--format dwsnets_mnist|dwsnets_fmnist|
nfn|arena|vectors|all: the layouts of DWSNets, NFN and the Neural Field Arena, and flat vectors).

`<out>/<experiment>/` receives:
  config.json, index_dict.json, readme.md, dataset.json     zoo level
  export.json                   the settings (split rule included) and the report; written last
  model.py                      PyTorch classes that rebuild every trial from its params.json
  dataset.pt                    (--with_data) the preprocessed splits the zoo was trained on
  trials/<trial>/params.json, result.json, checkpoint_{e:06d}/checkpoints (+ optimizer): the
      original trial folders, PyTorch state_dicts with the original keys (needs torch). trials/
      holds nothing else, because the original loader takes every subfolder for a model. The
      optimizer state is the last epoch's (the paper; default) or every epoch's (the original
      code; --optimizer_state all).
  vectors/{train,val,test}.safetensors + .json (+ dataset.pt with torch): the flat-vector
      dataset, split 70/15/15 by model after a seed-42 shuffle (or by groups of models that stay
      together: --split_by, `rows.split_plan`), NaN/|w|>threshold rows dropped; twins' vectors
      hold the raw weights (the original) or the masked ones (--twin_weights masked)
  parquet/{train,val,test}.parquet + README.md (pyarrow): the
      same rows, one per (model, epoch), with a typed column per property and the trial folder
      (`jaxzoo.export.parquet`), and the Hugging Face dataset card whose front matter
      `datasets.load_dataset(<folder>)` reads (split `validation` is val.parquet)
  small_cnn_zoo/weights.npy, metrics.csv.gz, layout.csv, readme.md, checksums.sha256 (--format
      small_cnn_zoo, zoos of the `small_cnn_zoo` module only): the Small CNN Zoo's published
      format (`jaxzoo.export.small_cnn_zoo`)
  sane/{train,val,test}.safetensors + .json, permutation_spec.json, readme.md, checksums.sha256
      (--format sane): the vectors' rows (same rows, order and splits) as SANE's tokens
      [rows, T, --token_size] with their mask and positions (`jaxzoo.weights.sane`)

Trial folders are named `NN_tune_trainable_{model_id:05d}_seed={seed}` (`rows.TRIAL_FOLDER`).
Rows of the vectors are ordered by split order of the models, each model's epochs together;
rows of the Parquet files by epoch, then model: (model_id, epoch) is the key that joins them.

Trial folders and vector files are written under temporary names and renamed when complete,
so an interrupted export reruns to completion without duplicates.
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import time
from collections.abc import Callable

import jax
import numpy as np

from jaxzoo.config import CLASSIFICATION
from jaxzoo.config.paper_zoos import recorded_params
from jaxzoo.data.cache import sha256
from jaxzoo.data.splits import SPLIT_SEED as DATASET_SPLIT_SEED
from jaxzoo.export import bundle, parquet, small_cnn_zoo
from jaxzoo.export.rows import (
    METRICS,
    ExportError,
    fill_vectors,
    model_splits,
    row_filter,
    row_properties,
    split_plan,
    trial_name,
)
from jaxzoo.host import check_destination, check_free_space
from jaxzoo.models import resnet
from jaxzoo.models.registry import arch_name, object_name
from jaxzoo.training.factors import FACTOR_TABLE, model_value, values_of
from jaxzoo.training.optimizers import optimizer_entry, torch_state
from jaxzoo.weights.loaders import write_standardisation
from jaxzoo.weights.sane import check_token_size, sane_permutation_spec, sane_tokens, token_table
from jaxzoo.weights.vectors import (
    DEFAULT_THRESHOLD,
    LoaderError,
    VectorSplit,
    begin_vector_split,
    finish_vector_split,
    layout_size,
    load_vectors_split,
    tensor_rows,
    write_safetensors,
)
from jaxzoo.zoo import checkpoint
from jaxzoo.zoo.reader import Zoo, ZooReadError, read_zoo

SMALL_CNN_ZOO = "small_cnn_zoo"  # zoos of the small_cnn_zoo module only; not part of `all`
SANE = "sane"  # SANE's tokens of the vectors' rows; not part of `all`
CLASSIFICATION_FORMATS = ("trials", "vectors", "parquet", "all", SMALL_CNN_ZOO, SANE)
INR_LAYOUTS = ("dwsnets_mnist", "dwsnets_fmnist", "nfn")  # INR zoos only (jaxzoo.inr.export)
ARENA = "arena"  # INR zoos only: the Neural Field Arena's HDF5 files (needs h5py); not part of `all`
FORMATS = (*CLASSIFICATION_FORMATS, *INR_LAYOUTS, ARENA)
OPTIMIZER_STATES = ("last", "all")  # the paper keeps the last epoch's; the original code every epoch's
TWIN_WEIGHTS = ("raw", "masked")  # the original vectorizes the raw ARD weights
TRIALS = "trials"  # the original experiment folder: trial folders and nothing else
MANIFEST = "export.json"
EXPORTS_FILE = "exports.json"  # in the workdir: where its exports went (the card follows them)
ORIGINAL_TYPE = {"cnn_s": "CNN", "cnn_m": "CNN3", "resnet18": "Resnet18"}
DEFAULT_TOKEN_SIZE = 288  # SANE's token size for the Small CNN Zoo's CNNs: a 32-channel 3x3 conv's fan-in
SANE_CHUNK_BYTES = 64 * 2**20  # tokens written per chunk of rows, at most (memory stays bounded)
SETTING_DEFAULTS = {"split_by": "model"}  # what an export.json written before a setting existed used


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
    return {
        "model::convs": [list(c) for c in model.get("convs", ())],
        "model::widths": list(model.get("widths", ())),
        "model::image_size": zoo.config["data"]["image_size"],
    }


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
        line = {
            **values,
            "training_iteration": epoch,
            "done": epoch == zoo.epochs[-1],
            "trial_id": f"{params['jaxzoo::model_id']:05d}",
            "config": params,
        }
        lines.append(json.dumps(line))
    return lines


def torch_optimizer_state(zoo: Zoo, row: dict, index: int, final_state: dict, torch) -> dict | None:
    """The model's optimizer state in `final_state` (one epoch's population state) as its PyTorch
    optimizer's state_dict (None when its optimizer has no PyTorch counterpart: params.json says why)."""
    if zoo.is_resnet:  # one SGD; the momentum buffers follow model.parameters()
        from jaxzoo.torch import build_model

        model = build_model(original_params(zoo, row))
        optimizer = torch.optim.SGD(
            model.parameters(),
            lr=row["lr"],
            momentum=zoo.config["population"]["momentum"],
            weight_decay=row["weight_decay"],
        )
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
    shapes = [
        array.shape[1:]
        for _, array in zoo.params_torch(jax.tree.map(lambda a: np.asarray(a)[:1], final_state["params"]), dropout)
    ]
    optimizer = getattr(torch.optim, entry.torch.class_name)(
        [torch.nn.Parameter(torch.zeros(shape)) for shape in shapes], **entry.torch.kwargs(values)
    )
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
        raise ExportError(
            "the trials format writes PyTorch checkpoints and needs torch: "
            "pip install 'jaxzoo[torch]' (or export --format vectors)"
        ) from None
    todo = [(i, row) for i, row in enumerate(zoo.table) if not (folder / trial_name(row)).is_dir()]
    if not todo:
        return 0
    # State_dict keys depend on the dropout setting; the arrays (PyTorch layout) do not.
    first = zoo.checkpoints.read(zoo.epochs[0], (0, 1))
    keys = {flag: [key for key, _ in zoo.torch_arrays(first, float(flag))] for flag in (0, 1)}
    written = 0
    # Block by block of models, every epoch of the block (its state, and a PyTorch-layout copy).
    for start, stop in zoo.model_blocks(epochs=2 * len(zoo.epochs)):
        block = [(index, row) for index, row in todo if start <= index < stop]
        if not block:
            continue
        arrays_by_epoch, optimizer_epochs = {}, {}
        for epoch in zoo.epochs:
            state = zoo.checkpoints.read(epoch, (start, stop))
            arrays_by_epoch[epoch] = [np.ascontiguousarray(a) for _, a in zoo.torch_arrays(state)]
            if (optimizer_state == "all" or epoch == zoo.epochs[-1]) and "opt_state" in state:  # ingested: none
                optimizer_epochs[epoch] = {"opt_state": state["opt_state"], "params": state["params"]}
        for index, row in block:
            write_trial(zoo, folder, index, row, index - start, keys, arrays_by_epoch, optimizer_epochs, torch)
            written += 1
            if written % 200 == 0:
                log(f"  {written}/{len(todo)} trial folders")
    return written


def write_trial(
    zoo: Zoo, folder: pathlib.Path, index: int, row: dict, local: int, keys, arrays_by_epoch, optimizer_epochs, torch
) -> None:
    """The trial folder of model `index` (row `local` of the block's arrays), written under a
    temporary name and renamed when complete."""
    target = folder / trial_name(row)
    tmp = folder / f".{target.name}.partial"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    params = original_params(zoo, row)
    (tmp / "params.json").write_text(json.dumps(params, indent=1))
    (tmp / "result.json").write_text("".join(line + "\n" for line in result_lines(zoo, index, params)))
    for epoch in zoo.epochs:
        state_dict = {
            key: torch.from_numpy(np.array(array[local]))  # 0-d arrays too (num_batches_tracked)
            for key, array in zip(keys[int(zoo.layout_dropout(row) > 0)], arrays_by_epoch[epoch])
        }
        epoch_dir = tmp / f"checkpoint_{epoch:06d}"
        epoch_dir.mkdir()
        torch.save(state_dict, epoch_dir / "checkpoints")
    for epoch, state in optimizer_epochs.items():
        optimizer = torch_optimizer_state(zoo, row, local, state, torch)
        if optimizer is not None:
            torch.save(optimizer, tmp / f"checkpoint_{epoch:06d}" / "optimizer")
    os.replace(tmp, target)


def write_vectors(
    zoo: Zoo,
    folder: pathlib.Path,
    epochs: list[int],
    threshold: float,
    log,
    twin_weights: str = "raw",
    splits: dict[str, list[int]] | None = None,
) -> dict:
    """Writes the flat-vector dataset (safetensors + json, dataset.pt); returns the filter report.
    splits {split: model indices} (`rows.split_plan`; default the original 70/15/15 by model).

    Two passes over the epochs' blocks, each reading a block once: the first finds the rows the
    filter drops (`row_filter`); then each split's file is written with its properties and room
    for its kept rows, and the second pass writes every kept row in place (`fill_vectors`), so
    the time grows linearly with the zoo and the memory is one block."""
    counts, _ = write_vector_splits(zoo, folder, epochs, threshold, log, twin_weights, splits)
    if "layer" in zoo.vector_layout() and counts["train"]["rows"]:  # per-layer train statistics (loaders)
        write_standardisation(folder)
    write_torch_dataset(folder, log)
    return {
        "threshold": threshold,
        "epochs": epochs,
        "splits": counts,
        **({"twin_weights": twin_weights} if zoo.is_twin else {}),
    }


def write_vector_splits(
    zoo: Zoo,
    folder: pathlib.Path,
    epochs: list[int],
    threshold: float,
    log,
    twin_weights: str = "raw",
    splits: dict[str, list[int]] | None = None,
) -> tuple[dict, dict[str, VectorSplit]]:
    """The split files of `write_vectors` (`<split>.safetensors` + `.json`, nothing else) ->
    ({split: counts}, {split: its properties as a VectorSplit without weights})."""
    folder.mkdir(parents=True, exist_ok=True)
    layout = zoo.vector_layout()
    size, masked, counts = layout_size(layout), twin_weights == "masked", {}
    nan_rows, large_rows = row_filter(zoo, epochs, threshold, masked)
    splits, begun, destinations = splits or model_splits(zoo), {}, []
    for split, models in splits.items():
        nan, large = nan_rows[models].reshape(-1), large_rows[models].reshape(-1)
        keep = ~(nan | large)  # rows (model, epoch) in split order, the epochs of a model together
        row_models = np.repeat(np.asarray(models, np.int64), len(epochs))
        row_epochs = np.tile(np.asarray(epochs, np.int64), len(models))
        properties = row_properties(zoo, row_models[keep], row_epochs[keep])
        data = VectorSplit(np.zeros((0, size), np.float32), properties, layout)
        counts[split] = {"rows": int(keep.sum()), "dropped_nan": int(nan.sum()), "dropped_threshold": int(large.sum())}
        target = np.full((len(zoo.table), len(epochs)), -1, np.int64)
        target[models] = np.where(keep, np.cumsum(keep) - 1, -1).reshape(len(models), len(epochs))
        path, offset = begin_vector_split(folder, split, data, (int(keep.sum()), size), None)
        begun[split] = data
        destinations.append((path, offset, target))
    fill_vectors(zoo, epochs, masked, destinations)
    for split, data in begun.items():
        meta = finish_vector_split(folder, split, data, counts[split], {"epochs": epochs})
        log(
            f"  vectors/{split}: {meta['rows']} rows kept, {meta['dropped_nan']} NaN, {meta['dropped_threshold']} over |w| > {threshold}"
        )
    return counts, begun


def write_sane(
    zoo: Zoo,
    folder: pathlib.Path,
    epochs: list[int],
    threshold: float,
    log,
    twin_weights: str = "raw",
    splits: dict[str, list[int]] | None = None,
    token_size: int = DEFAULT_TOKEN_SIZE,
) -> dict:
    """Writes SANE's tokens of the flat-vector rows (the rows, order and splits of `write_vectors`
    with the same options) into `folder`: `<split>.safetensors` (tokens [rows, T, token_size]
    float32, mask [T, token_size] uint8, positions [T, 3], the numeric properties [rows]) +
    `<split>.json`, permutation_spec.json, readme.md, checksums.sha256 (last). The vectors go
    to a temporary folder first and are cut into tokens `SANE_CHUNK_BYTES` of rows at a time."""
    folder.mkdir(parents=True, exist_ok=True)
    layout = zoo.vector_layout()
    table = token_table(layout, token_size)
    width = table.index.shape[1]
    staging = folder / ".vectors.partial"
    counts, begun = write_vector_splits(zoo, staging, epochs, threshold, log, twin_weights, splits)
    chunk = max(1, SANE_CHUNK_BYTES // (4 * table.index.size))
    names = []
    for split, data in begun.items():
        shape, rows = tensor_rows(staging / f"{split}.safetensors", "weights")
        n = shape[0]
        blocks = (sane_tokens(rows(a, min(a + chunk, n)), layout, width)[0] for a in range(0, n, chunk))
        numeric = {k: v for k, v in data.properties.items() if not isinstance(v, list)}
        tensors = {
            "tokens": (np.float32, (n, *table.index.shape), blocks),
            "mask": (np.uint8, table.mask.shape, [table.mask.astype(np.uint8)]),
            "positions": (table.positions.dtype, table.positions.shape, [table.positions]),
            **{k: (v.dtype, v.shape, [v]) for k, v in numeric.items()},
        }
        tmp = folder / f".{split}.safetensors.partial"
        write_safetensors(tmp, tensors)
        meta = json.loads((staging / f"{split}.json").read_text())
        meta.update(token_size=width, tokens=[n, *table.index.shape])
        (folder / f".{split}.json.partial").write_text(json.dumps(meta))
        os.replace(tmp, folder / f"{split}.safetensors")
        os.replace(folder / f".{split}.json.partial", folder / f"{split}.json")
        names += [f"{split}.safetensors", f"{split}.json"]
        log(f"  sane/{split}: {n} rows of {table.index.shape[0]} tokens of {width}")
    shutil.rmtree(staging)
    try:
        spec = sane_permutation_spec(layout)
    except LoaderError:
        spec = None  # no chain of layers (ResNets): SANE's permutation spec is not defined here
    if spec is not None:
        (folder / "permutation_spec.json").write_text(json.dumps(spec, indent=1))
        names.append("permutation_spec.json")
    (folder / "readme.md").write_text(sane_readme(table.index.shape, width, token_size, spec is not None))
    names.append("readme.md")
    lines = "".join(f"{sha256(folder / name)}  {name}\n" for name in names)
    (folder / ".checksums.sha256.partial").write_text(lines)
    os.replace(folder / ".checksums.sha256.partial", folder / "checksums.sha256")
    return {
        "threshold": threshold,
        "epochs": epochs,
        "splits": counts,
        "token_size": width,
        "tokens": table.index.shape[0],
    }


def sane_readme(shape: tuple[int, int], width: int, token_size: int, with_spec: bool) -> str:
    """sane/readme.md: what each tensor holds, its shape, and how to read it in PyTorch."""
    chosen = (
        "0: the widest row of a layer (one unit's weights and bias)"
        if token_size == 0
        else ("the default, " if token_size == DEFAULT_TOKEN_SIZE else "") + f"{token_size}"
    )
    return (
        "# SANE tokens\n\n"
        "The rows of vectors/ (same options: same rows, order and splits) cut into the tokens of SANE "
        "(Sequential Autoencoder for Neural Embeddings, HSG-AIML/SANE): each layer's weight is read as "
        "[units, fan_in] (PyTorch layout), each unit's row gets its bias appended and is cut into tokens "
        "of token_size entries, zero-padded; the tokens follow layer and unit order.\n\n"
        f"Token size: {width} ({chosen}). {DEFAULT_TOKEN_SIZE} is the default because it is the token size "
        "SANE uses for the Small CNN Zoo's CNNs (the fan-in of a 32-channel 3x3 convolution); "
        "`--token_size 0` uses the widest row instead.\n\n"
        "- `{train,val,test}.safetensors`: `tokens` [rows, "
        f"{shape[0]}, {width}] float32 (padding +0.0), `mask` [{shape[0]}, {width}] uint8 (1 on a real "
        f"weight, 0 on padding), `positions` [{shape[0]}, 3] int (sequence index, layer number, output unit: "
        "SANE's three positions), and one [rows] tensor per numeric property (epoch, model_id, test_acc, ...).\n"
        "- `{split}.json`: row counts and what was dropped, the categorical properties (one value per row), "
        "`index_dict` (the vectors' layout), `token_size` and `tokens` (the shape).\n"
        + (
            "- `permutation_spec.json`: SANE's `axes_to_perm` (weight key -> (output, input) permutation, "
            "bias key -> (output,)); `permutation_spec_from_axes_to_perm` of it is SANE's PermutationSpec.\n"
            if with_spec
            else ""
        )
        + "- `checksums.sha256`: `sha256sum -c checksums.sha256` checks the files.\n\n"
        "Read in PyTorch:\n\n"
        "    from safetensors.torch import load_file\n"
        "    d = load_file('train.safetensors')\n"
        "    tokens, mask, positions = d['tokens'], d['mask'].bool(), d['positions'].long()\n"
    )


VECTORS_PT_BYTES = 2**30  # vectors/dataset.pt is one pickle of every split, held in memory to write it


def write_torch_dataset(folder: pathlib.Path, log) -> None:
    """`dataset.pt`: {split: {'weights': tensor, 'properties': {...}}} when torch is installed
    and the weights are at most `VECTORS_PT_BYTES` (else skipped, with a line saying why)."""
    try:
        import torch
    except ImportError:
        log(
            "  vectors/dataset.pt skipped: torch is not installed (pip install 'jaxzoo[torch]'); "
            "the safetensors + json files need no torch"
        )
        return
    size = sum((folder / f"{split}.safetensors").stat().st_size for split in ("train", "val", "test"))
    if size > VECTORS_PT_BYTES:
        log(
            f"  vectors/dataset.pt skipped: its {size / 2**30:.1f} GiB would be held in memory to write it, past "
            f"{VECTORS_PT_BYTES / 2**30:.0f} GiB; the safetensors + json files hold the same rows "
            "(jaxzoo.torch.ZooVectorDataset reads them)"
        )
        return
    data = {split: load_vectors_split(folder, split) for split in ("train", "val", "test")}
    payload = {
        split: {
            "weights": torch.from_numpy(d.weights),
            "properties": {
                k: (torch.from_numpy(v) if isinstance(v, np.ndarray) else v) for k, v in d.properties.items()
            },
        }
        for split, d in data.items()
    }
    torch.save(payload, folder / ".dataset.pt.partial")
    os.replace(folder / ".dataset.pt.partial", folder / "dataset.pt")


def zoo_readme(zoo: Zoo, settings: dict) -> str:
    """readme.md of an export: what each folder holds and what was kept where."""
    n = len(zoo.table)
    last = zoo.epochs[-1]
    kept = (
        f"the last epoch's optimizer state (checkpoint_{last:06d}/optimizer), as the paper"
        if settings["optimizer_state"] == "last"
        else "every epoch's optimizer state (checkpoint_*/optimizer), as the original code"
    )
    twin = (
        ""
        if not zoo.is_twin
        else f"Flat vectors of this sparsified twin zoo hold the {settings['twin_weights']} weights "
        f"({'as the original' if settings['twin_weights'] == 'raw' else 'weights with log alpha >= 3 set to 0'}); "
        "result.json and the vector properties carry sparsity_ratio.\n"
    )
    formats = settings["formats"]
    parts = []
    if formats in ("trials", "all"):
        parts.append(
            "trials/ holds one folder per model and nothing else (point the original ModelDatasetBase "
            "there): params.json, result.json (line e = epoch e) and checkpoint_{e:06d}/checkpoints "
            f"(PyTorch state_dict, original keys), with {kept}."
        )
    parts.append("model.py rebuilds any trial with torch alone: `build_model(json.load(open('params.json')))`.")
    split_by = settings.get("split_by", "model")
    if formats in ("vectors", "all"):
        parts.append(
            "vectors/ holds the flat-vector dataset (safetensors + json), split "
            + ("70/15/15 by model." if split_by == "model" else f"about 70/15/15 by {split_by}.")
        )
    if formats in ("parquet", "all"):
        parts.append(
            "parquet/ holds the same rows as Parquet files (one row per model and epoch), which README.md "
            "describes as a Hugging Face dataset."
        )
    if formats == SANE:
        parts.append(
            f"sane/ holds the vectors' rows as SANE's tokens of {settings['token_size'] or 'the widest row'} "
            "entries (safetensors + json; its readme.md says what each tensor holds, checksums.sha256 the files)."
        )
    if formats == SMALL_CNN_ZOO:
        parts.append(
            "small_cnn_zoo/ holds the zoo in the Small CNN Zoo's published format (weights.npy, "
            "metrics.csv.gz, layout.csv; its readme.md says what each column holds, checksums.sha256 the files)."
        )
    if settings["with_data"]:
        parts.append(
            "dataset.pt holds the preprocessed splits in the original layout; torch.load's default "
            f"(weights_only) refuses its TensorDatasets, so read it with `{bundle.DATA_FILE_LOAD}` "
            "(or torch.load(path, weights_only=False) for a file you trust)."
        )
    if formats in ("vectors", "parquet", "all", SANE) and "split" in settings:
        parts.append(split_sentence(settings["split"]))
    return (
        f"# {zoo.config['name']}\n\nExported by jaxzoo from zoo {zoo.identity_hash}: {n} models "
        f"({zoo.config['model']['arch']}) on {zoo.config['data']['name']}, epochs 0..{last}.\n"
        f"Formats: {formats}. " + " ".join(parts) + "\n"
        f"{twin}{zoo.config.get('notes', '')}\n"
    )


def split_sentence(split: dict) -> str:
    """What readme.md and the card say of the split (`rows.split_plan`'s report)."""
    models, shared = split["models"], split["shared_start"]
    rule = (
        "by model (the original rule: sorted trial names shuffled with random.seed(42))"
        if split["split_by"] == "model"
        else f"by {split['split_by']} (--split_by {split['split_by']}: models with "
        + ("identical initial weights" if split["split_by"] == "init" else f"the same {split['split_by']}")
        + f" stay in one split; the {split['groups']} groups were shuffled with the original's seed-42 rule)"
    )
    return (
        f"Split rule: {rule}; {models['train']} train, {models['val']} val, {models['test']} test models. "
        f"Shared starts: {shared['val']} of the {models['val']} val and {shared['test']} of the {models['test']} "
        "test models start from the same initial weights (epoch-0 vector) as a train model"
        + (" (export with --split_by init to keep them apart)." if shared["val"] + shared["test"] else ".")
    )


def check_options(formats: str, optimizer_state: str, twin_weights: str) -> None:
    """ExportError for an unknown format, optimizer state or twin-weights choice."""
    for name, value, choices in (
        ("format", formats, FORMATS),
        ("optimizer_state", optimizer_state, OPTIMIZER_STATES),
        ("twin_weights", twin_weights, TWIN_WEIGHTS),
    ):
        if value not in choices:
            raise ExportError(f"unknown {name} {value!r}: choose from {choices}")


def check_sane_options(formats: str, token_size) -> int:
    """The token size of an export (`DEFAULT_TOKEN_SIZE` when None); ExportError for one given
    with another format than sane, or one that is not an integer >= 0."""
    if token_size is None:
        return DEFAULT_TOKEN_SIZE
    if formats != SANE:
        raise ExportError("--token_size applies to --format sane only: drop it, or pass --format sane")
    try:
        return check_token_size(token_size)
    except LoaderError:
        raise ExportError(
            f"--token_size {token_size!r} is not an integer >= 0: pass the entries per token "
            f"(default {DEFAULT_TOKEN_SIZE}; 0: the widest row)"
        ) from None


def export(
    workdir,
    out,
    formats: str = "all",
    epochs: list[int] | None = None,
    threshold: float = DEFAULT_THRESHOLD,
    overwrite: bool = False,
    log=print,
    optimizer_state: str = "last",
    twin_weights: str = "raw",
    with_data: bool = False,
    data_limit_gib: float = bundle.DATA_LIMIT_GIB,
    split_by: str = "model",
    token_size: int | None = None,
) -> dict:
    """Exports the zoo in `workdir` to `out/<experiment>`; returns a report (filters, time).

    optimizer_state: 'last' (the paper) or 'all' (the original code) epochs' optimizer states in
    the trial folders; twin_weights: 'raw' (the original) or 'masked' flat vectors of a twin zoo;
    with_data: also write the preprocessed splits (dataset.pt), refused past `data_limit_gib`.
    split_by: 'model' (the original 70/15/15), 'seed', 'init' (identical initial weights) or a
    factor of the zoo: the models of one value stay in one split (`rows.split_plan`).
    token_size: format sane only, entries per token (default `DEFAULT_TOKEN_SIZE`, 0: the widest row).
    Too little free space for the export's estimated size is refused before anything is
    written. `log` receives progress lines
    (None: silent). A classification zoo's export (`jaxzoo.kinds.export.export` also takes INR zoos).
    """
    log = log or (lambda message: None)
    check_options(formats, optimizer_state, twin_weights)
    token_size = check_sane_options(formats, token_size)
    if checkpoint.workdir_kind(workdir) not in (None, CLASSIFICATION):
        raise ExportError(
            f"{pathlib.Path(workdir).absolute()} holds an INR zoo: export it with python -m jaxzoo.export "
            "(or jaxzoo.export_zoo)"
        )
    if formats not in CLASSIFICATION_FORMATS:
        raise ExportError(
            f"format {formats} is for INR zoos and {pathlib.Path(workdir).absolute()} holds a "
            f"classification zoo: choose from {CLASSIFICATION_FORMATS}"
        )
    if formats in ("parquet", "all"):  # before anything is written
        parquet.require_pyarrow()
    check_destination(pathlib.Path(out), "export folder")
    start = time.time()
    try:
        zoo = read_zoo(workdir)
    except ZooReadError as error:
        raise ExportError(str(error)) from None
    if twin_weights != "raw" and not zoo.is_twin:
        raise ExportError(
            f"--twin_weights {twin_weights} applies to sparsified twin zoos only and {zoo.workdir} is not one: "
            "drop --twin_weights"
        )
    check_destination(pathlib.Path(out).absolute() / zoo.experiment, "export folder")
    epochs = zoo.epochs if epochs is None else epochs
    bad = [e for e in epochs if e not in zoo.epochs]
    if bad:
        raise ExportError(f"epochs {bad} are not in the zoo (0..{zoo.epochs[-1]}): choose from those")
    if formats == SMALL_CNN_ZOO:
        small_cnn_zoo.check_small_cnn_zoo(zoo)
    plan = split_plan(zoo, split_by)
    target = pathlib.Path(out).absolute() / zoo.experiment
    data_bytes = bundle.check_data_size(zoo.dataset(), data_limit_gib) if with_data else 0
    if formats == SANE:
        try:
            token_table(zoo.vector_layout(), token_size)
        except LoaderError as error:
            raise ExportError(f"--format sane: {error}") from None
    needed = export_bytes(zoo, formats, epochs, optimizer_state, token_size) + data_bytes
    check_free_space(target, needed, f"the export ({formats}{', with data' if with_data else ''})")
    settings = {
        "zoo": zoo.identity_hash,
        "formats": formats,
        "epochs": epochs,
        "threshold": threshold,
        "optimizer_state": optimizer_state,
        "twin_weights": twin_weights,
        "with_data": with_data,
        "split_by": split_by,
        **({"token_size": token_size} if formats == SANE else {}),  # other exports' manifests unchanged
    }
    return write_claimed(
        target, settings, overwrite, zoo.workdir, lambda: write_export(zoo, target, settings, log, plan), start
    )


def export_bytes(
    zoo: Zoo, formats: str, epochs: list[int], optimizer_state: str, token_size: int = DEFAULT_TOKEN_SIZE
) -> int:
    """About how many bytes the export's weights take (uncompressed; small files left out)."""
    models, epoch = len(zoo.table), zoo.epochs[0]
    params = zoo.checkpoints.model_bytes(epoch, "params")
    state = zoo.checkpoints.model_bytes(epoch)
    vectors = models * len(epochs) * 4 * layout_size(zoo.vector_layout())
    size = 0
    if formats in ("trials", "all"):
        optimizer_epochs = len(zoo.epochs) if optimizer_state == "all" else 1
        size += models * (len(zoo.epochs) * params + optimizer_epochs * (state - params))
    if formats in ("vectors", "all"):
        size += vectors + (vectors if vectors <= VECTORS_PT_BYTES else 0)  # safetensors files, dataset.pt
    if formats in ("parquet", "all", SMALL_CNN_ZOO):
        size += vectors
    if formats == SANE:  # the vectors (removed after) and the padded tokens
        size += vectors + models * len(epochs) * 4 * token_table(zoo.vector_layout(), token_size).index.size
    return size


def write_claimed(
    target: pathlib.Path,
    settings: dict,
    overwrite: bool,
    workdir: pathlib.Path,
    write: Callable[[], dict],
    start: float,
) -> dict:
    """Claims `target` (`claim_target`), runs `write` (-> its report), removes what it created if
    that fails for any reason (a damaged checkpoint found while writing, the user's layout hook,
    an interrupt), records the export in the workdir; returns the report with the seconds since
    `start`. An export into a folder that existed keeps its finished parts (it resumes)."""
    created = claim_target(target, settings, overwrite)
    try:
        report = write()
    except BaseException:
        if created is not None:
            shutil.rmtree(created, ignore_errors=True)
        else:
            for partial in target.rglob(".*.partial"):
                shutil.rmtree(partial) if partial.is_dir() else partial.unlink()
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
        same = {k: existing.get(k, SETTING_DEFAULTS.get(k)) for k in settings} == settings
        if overwrite:
            shutil.rmtree(target)
        elif existing.get("complete") or not same:
            raise ExportError(
                f"{target} already holds an export{' of another zoo or with other settings' if not same else ''}: "
                "pass --overwrite to replace it, or choose another --out"
            )
    elif target.exists() and any(target.iterdir()):
        raise ExportError(f"{target} exists and is not a jaxzoo export: choose another --out")
    return next((p for p in reversed((target, *target.parents)) if not p.exists()), None)


def write_export(zoo: Zoo, target: pathlib.Path, settings: dict, log, plan: dict | None = None) -> dict:
    """Writes the export's files into `target` (manifest last marked complete); returns the report.
    plan: `rows.split_plan`'s (default: the original split by model)."""
    formats = settings["formats"]
    plan = plan or split_plan(zoo)
    manifest_path = target / MANIFEST
    target.mkdir(parents=True, exist_ok=True)
    manifest_path.write_text(json.dumps({**settings, "complete": False}))
    (target / "config.json").write_text(json.dumps(search_pattern(zoo), indent=1, default=str))
    (target / "index_dict.json").write_text(json.dumps(zoo.vector_layout(), indent=1))
    (target / "dataset.json").write_text(
        json.dumps({**zoo.config["data"], "dataset_seed": DATASET_SPLIT_SEED}, indent=1)
    )
    readme = zoo_readme(zoo, {**settings, "split": plan["report"]})
    (target / "readme.md").write_text(readme)
    bundle.write_model_file(target)
    if settings["with_data"]:
        log("writing the preprocessed splits (dataset.pt) ...")
        bundle.write_training_data(zoo, target, log)
    report = {"out": str(target), "models": len(zoo.table), "epochs": len(zoo.epochs), "split": plan["report"]}
    if formats in ("trials", "all"):
        log(f"writing {len(zoo.table)} trial folders ...")
        report["trials_written"] = write_trials(zoo, target / TRIALS, log, settings["optimizer_state"])
    if formats in ("vectors", "all"):
        log("writing the flat-vector dataset ...")
        report["vectors"] = write_vectors(
            zoo,
            target / "vectors",
            settings["epochs"],
            settings["threshold"],
            log,
            settings["twin_weights"],
            plan["splits"],
        )
    if formats in ("parquet", "all"):
        log("writing the Parquet dataset and its Hugging Face card (README.md) ...")
        report["parquet"] = parquet.write_parquet(
            zoo,
            target / parquet.PARQUET,
            settings["epochs"],
            settings["threshold"],
            log,
            settings["twin_weights"],
            plan,
        )
        parquet.write_dataset_card(
            target, report["parquet"]["rows"], readme, zoo.config["name"], parquet.layout_metadata(zoo, plan["report"])
        )
    if formats == SANE:
        log("writing SANE's tokens ...")
        report[SANE] = write_sane(
            zoo,
            target / SANE,
            settings["epochs"],
            settings["threshold"],
            log,
            settings["twin_weights"],
            plan["splits"],
            settings["token_size"],
        )
    if formats == SMALL_CNN_ZOO:
        log("writing the Small CNN Zoo files ...")
        report[SMALL_CNN_ZOO] = small_cnn_zoo.write_small_cnn_zoo(
            zoo, target / SMALL_CNN_ZOO, settings["epochs"], overwrite=True, log=log
        )
    manifest_path.write_text(json.dumps({**settings, "complete": True, "report": report}, indent=1))
    return report


def record_export(workdir: pathlib.Path, target: pathlib.Path) -> None:
    path = workdir / EXPORTS_FILE
    known = json.loads(path.read_text()) if path.exists() else []
    if str(target) not in known:
        path.write_text(json.dumps(known + [str(target)], indent=1))
