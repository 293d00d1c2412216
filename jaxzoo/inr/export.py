"""Exports an INR zoo in the layouts of the weight-space-learning projects, and as flat vectors.

  python -m jaxzoo.export --workdir W --out DIR --format dwsnets_mnist|dwsnets_fmnist|nfn|arena|vectors|all

Every format holds the last epoch's SIRENs. `<out>/<zoo name>/` receives readme.md, config.json
(the zoo's config), export.json (the manifest) and, by format:
  dwsnets_mnist   mnist-inrs/mnist_png_{training|testing}_{label}_{idx}/checkpoints/model_final.pth
                  (seed slot 0; other seeds in mnist-inrs-seed{seed}/), mnist_splits.json, statistics.pth
  dwsnets_fmnist  fmnist_inrs/{train,test}/model_{idx}.pth (+ an int `label`), fmnist_inrs/splits.json
                  and statistics.pth (other seeds in fmnist_inrs_seed{seed}/)
  nfn             siren_{ds}_wts/randinit_smaller_{label}s/net{image}.pth; seed slot k >= 1 in
                  randinit_smaller_aug{k-1}_{label}s/ (NFN's augmentation copies, aug0 first); a zoo
                  whose images do not start at 0 is renumbered from 0, nfn_index.json maps back
  arena           arena/nefs_{start}-{end}.hdf5 (one per seed), metadata.json, nef.json: the Neural
                  Field Arena / fit-a-nef layout (jaxzoo.inr.arena); not part of `all` (needs h5py)
  vectors         vectors/{train,val,test}.safetensors + .json (+ dataset.pt): one row per model
  all             the layouts this zoo fits (a DWSNets one or NFN) and vectors
The DWSNets layouts need a zoo drawn as DWSNets' INR class ('xy' inputs, +0.5, pixels in [0, 1],
one channel, equal hidden widths, w0 30), NFN's as its Siren ('ij', no offset, pixels in [-1, 1]);
a mismatch is refused in one line before anything is written.
"""

from __future__ import annotations

import collections
import json
import os
import pathlib
import re
import time

import numpy as np

from jaxzoo.config import last_epoch
from jaxzoo.export.rows import ExportError
from jaxzoo.export.writer import ARENA, INR_LAYOUTS, MANIFEST, write_claimed, write_torch_dataset
from jaxzoo.host import check_destination
from jaxzoo.inr import arena, siren
from jaxzoo.inr.zoo import InrZoo, read_inr_zoo
from jaxzoo.weights.vectors import VectorSplit, save_vector_split
from jaxzoo.zoo import checkpoint

TORCH_LAYOUTS = ("dwsnets_mnist", "dwsnets_fmnist", "nfn")
INR_FORMATS = tuple(dict.fromkeys((*INR_LAYOUTS, ARENA, "vectors", "all")))
NFN_INDEX = "nfn_index.json"
VAL_SIZE, FULL_TRAIN_SIZE, VAL_SEED = 5000, 60000, 42  # DWSNets: 5,000 of MNIST's 60,000 train INRs
DWSNETS_W0 = 30.0
NFN_W0 = 30.0
NFN_DATASET_NAMES = {"mnist": "mnist", "mnist_5k": "mnist", "fashion_mnist": "fashion", "cifar10": "cifar"}
MNIST_SPLIT_NAMES = {"train": "training", "test": "testing"}
VECTOR_SPLITS = ("train", "val", "test")


# ---- which layouts a zoo fits ------------------------------------------------------------------


def first_mismatch(fmt: str, checks) -> tuple[str, str, object, str, str] | None:
    """The first (field, value, needed, why) of `checks` whose value is not the needed one, as
    (format, field, value, requirement, why)."""
    for field, value, needed, why in checks:
        if value != needed:
            return fmt, field, value, f"{field}={needed!r}", why
    return None


def layout_mismatch(zoo: InrZoo, fmt: str) -> tuple[str, str, object, str, str] | None:
    """The first field of the zoo the layout `fmt` cannot hold: (format, field, the zoo's value,
    the requirement, why), or None when the zoo fits it."""
    model = zoo.config.model
    widths = tuple(int(w) for w in model.widths)
    if fmt == ARENA:
        return arena.arena_mismatch(zoo)
    if fmt in ("dwsnets_mnist", "dwsnets_fmnist"):
        checks = (
            ("model.coordinates", model.coordinates, "xy", "DWSNets' INR draws (column, row): np.meshgrid's default"),
            ("model.output_offset", float(model.output_offset), 0.5, "DWSNets' INR adds 0.5 to its output"),
            ("model.target_range", model.target_range, "unit", "DWSNets' INRs fit pixels in [0, 1]"),
            ("model.w0_first", float(model.w0_first), DWSNETS_W0, "DWSNets' INR applies sin(30 x) in every sine layer"),
            (
                "model.w0_hidden",
                float(model.w0_hidden),
                DWSNETS_W0,
                "DWSNets' INR applies sin(30 x) in every sine layer",
            ),
        )
        mismatch = first_mismatch(fmt, checks)
        if mismatch:
            return mismatch
        if len(set(widths)) != 1 or widths[0] % 2:
            return (
                fmt,
                "model.widths",
                widths,
                "model.widths of one even width, e.g. (32, 32)",
                "DWSNets' INR has n_layers - 1 hidden layers of in_dim * up_scale = 2 * up_scale units",
            )
        if zoo.spec.out_features != 1:
            return (fmt, "channels", zoo.spec.out_features, "images of 1 channel", "DWSNets' INR outputs one channel")
        return None
    if fmt == "nfn":
        checks = (
            ("model.coordinates", model.coordinates, "ij", "NFN's Siren reads (row, column): torch.meshgrid's 'ij'"),
            ("model.output_offset", float(model.output_offset), 0.0, "NFN's Siren adds no offset"),
            (
                "model.target_range",
                model.target_range,
                "symmetric",
                "NFN's SIRENs fit pixels in [-1, 1] (ToTensor + Normalize(0.5, 0.5))",
            ),
            ("model.w0_first", float(model.w0_first), NFN_W0, "NFN's Siren has first_omega_0 30"),
            ("model.w0_hidden", float(model.w0_hidden), NFN_W0, "NFN's Siren has hidden_omega_0 30"),
        )
        mismatch = first_mismatch(fmt, checks)
        if mismatch:
            return mismatch
        if len(set(widths)) != 1:
            return (
                fmt,
                "model.widths",
                widths,
                "model.widths of one width, e.g. (32, 32)",
                "NFN's Siren has one hidden_features for every hidden layer",
            )
        top = max(row["label"] for row in zoo.table)
        if top > 9:
            return (fmt, "labels", f"0..{top}", "labels 0..9", "NFN's loader reads the class from one digit, _(\\d)s")
        return None
    raise ValueError(f"no layout {fmt!r}")


def mismatch_message(zoo: InrZoo, mismatch) -> str:
    fmt, field, value, requirement, why = mismatch
    others = [f for f in INR_LAYOUTS if f != fmt and layout_mismatch(zoo, f) is None] + ["vectors"]
    fix = {"channels": "train on grayscale images", "labels": "train on a dataset of at most 10 classes"}.get(
        field, f"train with {requirement}"
    )
    choices = ", ".join(others[:-1]) + (" or " if len(others) > 1 else "") + others[-1]
    value = value if field == "labels" else repr(value)
    return f"format {fmt} needs {requirement} ({why}); this zoo has {field}={value}: export it as {choices}, or {fix}"


def auto_layouts(zoo: InrZoo) -> list[str]:
    """The layouts `all` tries: the DWSNets one of the dataset (Fashion-MNIST's or MNIST's), NFN's."""
    dwsnets = "dwsnets_fmnist" if zoo.config.data.name == "fashion_mnist" else "dwsnets_mnist"
    return [dwsnets, "nfn"]


def nfn_dataset_name(zoo: InrZoo) -> str:
    name = str(zoo.config.data.name)
    return NFN_DATASET_NAMES.get(name, re.sub(r"[^A-Za-z0-9_.-]+", "_", name))


# ---- splits and tensors ------------------------------------------------------------------------


def val_images(zoo: InrZoo) -> set[int]:
    """The train images whose INRs form the val split: 5,000 of 60,000 as DWSNets (scaled to
    round(n * 5000 / 60000) for n < 60,000 train images), drawn with default_rng(42)."""
    train = sorted({row["image"] for row in zoo.table if row["split"] == "train"})
    n = len(train)
    size = VAL_SIZE if n >= FULL_TRAIN_SIZE else int(round(n * VAL_SIZE / FULL_TRAIN_SIZE))
    picked = np.random.default_rng(VAL_SEED).choice(n, size, replace=False)
    return {train[i] for i in picked}


def image_split(row: dict, val: set[int]) -> str:
    """train / val / test of a model: its image's source split, val for the val images."""
    return "test" if row["split"] == "test" else ("val" if row["image"] in val else "train")


def seed_slot(zoo: InrZoo, row: dict) -> int:
    return row["seed"] - int(zoo.config.population.first_seed)


def nfn_numbers(zoo: InrZoo) -> dict[int, int]:
    """image index -> idx of its net{idx}.pth: its position among the zoo's images. NFN's and
    ScaleGMN's loaders index net0..net{N-1}, so a zoo whose images do not start at 0
    (images.first > 0, or test images only) is renumbered; otherwise idx is the image index."""
    return {image: idx for idx, image in enumerate(sorted({row["image"] for row in zoo.table}))}


def renumbered(numbers: dict[int, int]) -> bool:
    return any(image != idx for image, idx in numbers.items())


def torch_arrays(zoo: InrZoo, params: dict) -> list[tuple[int, str, np.ndarray]]:
    """(layer, 'weight'|'bias', float32 [M, ...] in PyTorch's orientation) in state_dict order."""
    return [
        (layer, kind, np.ascontiguousarray(array, dtype=np.float32))
        for layer, kind, array in siren.torch_state_dict_order(zoo.spec, params)
    ]


def dwsnets_key(layer: int, kind: str, num_layers: int) -> str:
    return f"seq.{layer}.{kind}"


def nfn_key(layer: int, kind: str, num_layers: int) -> str:
    """NFN's Siren: SineLayers `net.{i}.linear.*`, then the outermost nn.Linear `net.{L}.*`."""
    return f"net.{layer}.{kind}" if layer == num_layers - 1 else f"net.{layer}.linear.{kind}"


def save_state_dict(
    torch, path: pathlib.Path, arrays, key, index: int, num_layers: int, extra: dict | None = None
) -> bool:
    """Writes model `index`'s state_dict to `path` (under a temporary name first); False when a
    previous run wrote it already."""
    if path.exists():
        return False
    state_dict = collections.OrderedDict(
        (key(layer, kind, num_layers), torch.from_numpy(np.array(array[index]))) for layer, kind, array in arrays
    )
    state_dict.update(extra or {})
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.partial")
    torch.save(state_dict, tmp)
    os.replace(tmp, path)
    return True


def statistics(torch, arrays, rows: list[int], num_layers: int) -> tuple[dict, int]:
    """DWSNets' statistics.pth over models `rows` whose weights are finite: per layer, the mean
    and unbiased std over the models of each element, weights as (in, out, 1), biases as
    (out, 1); -> (statistics, models left out as non-finite)."""
    rows = np.asarray(rows, np.int64)
    finite = np.ones(len(rows), bool)
    for _, _, array in arrays:
        finite &= np.isfinite(array[rows].reshape(len(rows), -1)).all(axis=1)
    kept = rows[finite]
    stats = {"weights": {"mean": [], "std": []}, "biases": {"mean": [], "std": []}}
    for layer, kind, array in arrays:
        values = array[kept].astype(np.float64)
        values = np.swapaxes(values, 1, 2)[..., None] if kind == "weight" else values[..., None]
        group = stats["weights" if kind == "weight" else "biases"]
        mean = values.mean(axis=0) if len(kept) else np.full(values.shape[1:], np.nan)
        std = values.std(axis=0, ddof=1) if len(kept) > 1 else np.full(values.shape[1:], np.nan)
        group["mean"].append(torch.from_numpy(mean.astype(np.float32)))
        group["std"].append(torch.from_numpy(std.astype(np.float32)))
    return stats, int((~finite).sum())


# ---- the layouts -------------------------------------------------------------------------------


def write_dwsnets_mnist(zoo: InrZoo, target: pathlib.Path, arrays, val: set[int], torch, log) -> dict:
    splits = {"train": {"path": [], "label": []}, "val": {"path": [], "label": []}, "test": {"path": [], "label": []}}
    primary_train, written = [], 0
    for index, row in sorted(enumerate(zoo.table), key=lambda item: (item[1]["seed"], item[1]["image"])):
        slot = seed_slot(zoo, row)
        folder = "mnist-inrs" if slot == 0 else f"mnist-inrs-seed{row['seed']}"
        name = f"mnist_png_{MNIST_SPLIT_NAMES[row['split']]}_{row['label']}_{row['split_index']}"
        relative = f"{folder}/{name}/checkpoints/model_final.pth"
        written += save_state_dict(torch, target / relative, arrays, dwsnets_key, index, zoo.spec.num_layers)
        if slot == 0:
            split = image_split(row, val)
            splits[split]["path"].append(relative)
            splits[split]["label"].append(str(row["label"]))
            if split == "train":
                primary_train.append(index)
    (target / "mnist_splits.json").write_text(json.dumps(splits))
    stats, left_out = statistics(torch, arrays, primary_train, zoo.spec.num_layers)
    torch.save(stats, target / "statistics.pth")
    counts = {split: len(entry["path"]) for split, entry in splits.items()}
    log(f"  dwsnets_mnist: {written} state_dicts written; splits {counts}")
    return {"files_written": written, "splits": counts, "statistics_non_finite_left_out": left_out}


def write_dwsnets_fmnist(zoo: InrZoo, target: pathlib.Path, arrays, val: set[int], torch, log) -> dict:
    splits = {"train": [], "val": [], "test": []}
    primary_train, written = [], 0
    for index, row in sorted(enumerate(zoo.table), key=lambda item: (item[1]["seed"], item[1]["image"])):
        slot = seed_slot(zoo, row)
        folder = "fmnist_inrs" if slot == 0 else f"fmnist_inrs_seed{row['seed']}"
        relative = f"{folder}/{row['split']}/model_{row['split_index']}.pth"
        written += save_state_dict(
            torch, target / relative, arrays, dwsnets_key, index, zoo.spec.num_layers, {"label": int(row["label"])}
        )
        if slot == 0:
            split = image_split(row, val)
            splits[split].append(relative)
            if split == "train":
                primary_train.append(index)
    (target / "fmnist_inrs").mkdir(exist_ok=True)
    (target / "fmnist_inrs" / "splits.json").write_text(json.dumps(splits))
    stats, left_out = statistics(torch, arrays, primary_train, zoo.spec.num_layers)
    torch.save(stats, target / "fmnist_inrs" / "statistics.pth")
    counts = {split: len(paths) for split, paths in splits.items()}
    log(f"  dwsnets_fmnist: {written} state_dicts written; splits {counts}")
    return {"files_written": written, "splits": counts, "statistics_non_finite_left_out": left_out}


def write_nfn(zoo: InrZoo, target: pathlib.Path, arrays, val: set[int], torch, log) -> dict:
    root = f"siren_{nfn_dataset_name(zoo)}_wts"
    written, folders = 0, collections.Counter()
    numbers = nfn_numbers(zoo)
    for index, row in enumerate(zoo.table):
        slot = seed_slot(zoo, row)
        prefix = "randinit_smaller" if slot == 0 else f"randinit_smaller_aug{slot - 1}"
        folder = f"{prefix}_{row['label']}s"
        path = target / root / folder / f"net{numbers[row['image']]}.pth"
        written += save_state_dict(torch, path, arrays, nfn_key, index, zoo.spec.num_layers)
        folders[prefix] += 1
    report = {"files_written": written, "folder": root, "models_per_prefix": dict(folders)}
    if renumbered(numbers):
        rows = {row["image"]: row for row in zoo.table}
        index = [
            {"net": idx, **{k: rows[image][k] for k in ("image", "split", "split_index", "label")}}
            for image, idx in sorted(numbers.items(), key=lambda item: item[1])
        ]
        arena.write_text(target / NFN_INDEX, json.dumps(index))
        report["renumbered"] = NFN_INDEX
        log(f"  nfn: images {min(numbers)}.. renumbered net0..net{len(numbers) - 1} ({NFN_INDEX} maps them back)")
    log(f"  nfn: {written} state_dicts written in {root}/ ({dict(folders)})")
    return report


LAYOUT_WRITERS = {"dwsnets_mnist": write_dwsnets_mnist, "dwsnets_fmnist": write_dwsnets_fmnist, "nfn": write_nfn}


def vector_layout(zoo: InrZoo) -> dict:
    """index_dict of the flat vectors: {'tensors': [{key, offset, shape}]} in state_dict order."""
    tensors, offset = [], 0
    f = zoo.spec.features
    for layer in range(zoo.spec.num_layers):
        for kind, shape in (("weight", [f[layer + 1], f[layer]]), ("bias", [f[layer + 1]])):
            tensors.append({"key": f"layer{layer}.{kind}", "offset": offset, "shape": shape})
            offset += int(np.prod(shape))
    return {"tensors": tensors}


def inr_vector_splits(zoo: InrZoo, arrays, metrics: dict, val: set[int]) -> dict[str, VectorSplit]:
    """The flat vectors by image split: the test images' models in test, the val images' (every
    seed) in val, the rest in train; rows in model order, no row dropped."""
    flat = np.concatenate([array.reshape(len(array), -1) for _, _, array in arrays], axis=1)
    layout = vector_layout(zoo)
    out = {}
    for split in VECTOR_SPLITS:
        rows = [i for i, row in enumerate(zoo.table) if image_split(row, val) == split]
        take = lambda name, dtype: np.array([zoo.table[i][name] for i in rows], dtype)
        properties: dict = {
            name: take(name, np.int64) for name in ("model_id", "seed", "image", "split_index", "label")
        }
        properties["split"] = [zoo.table[i]["split"] for i in rows]
        for name in ("psnr", "mse", "steps", "steps_to_target"):
            properties[name] = np.asarray(metrics[name], np.float64)[rows]
        for name in ("reached", "diverged"):
            properties[name] = np.asarray(metrics[name], np.float64)[rows] > 0
        weights = flat[rows] if rows else np.zeros((0, flat.shape[1]), np.float32)
        out[split] = VectorSplit(np.ascontiguousarray(weights, np.float32), properties, layout)
    return out


def write_inr_vectors(zoo: InrZoo, folder: pathlib.Path, arrays, metrics: dict, val: set[int], epoch: int, log) -> dict:
    folder.mkdir(parents=True, exist_ok=True)
    counts = {}
    for split, data in inr_vector_splits(zoo, arrays, metrics, val).items():
        diverged = int(data.properties["diverged"].sum())
        meta = save_vector_split(
            folder, split, data, {"rows": len(data.weights), "diverged": diverged}, {"epoch": epoch}
        )
        counts[split] = {"rows": meta["rows"], "diverged": diverged}
        log(f"  vectors/{split}: {meta['rows']} rows ({diverged} diverged)")
    write_torch_dataset(folder, log)
    return {"epoch": epoch, "splits": counts}


# ---- readme ------------------------------------------------------------------------------------


def inr_readme(zoo: InrZoo, written: list[str], skipped: dict[str, str], epoch: int, val: set[int]) -> str:
    model, data = zoo.config.model, zoo.config.data
    seeds = sorted({row["seed"] for row in zoo.table})
    first_seed = int(zoo.config.population.first_seed)
    n_train = len({row["image"] for row in zoo.table if row["split"] == "train"})
    coords = (
        "'xy': pixel (row i, column j) gets input (x_j, y_i), as np.meshgrid's default indexing (DWSNets)"
        if model.coordinates == "xy"
        else "'ij': pixel (row i, column j) gets input (y_i, x_j), as torch.meshgrid(indexing='ij') (NFN)"
    )
    peak = siren.TARGET_RANGES[model.target_range]
    lines = [
        f"# {zoo.name}",
        "",
        f"Exported by jaxzoo: {len(zoo.table)} SIRENs ({'-'.join(str(f) for f in zoo.spec.features)}, w0 "
        f"{model.w0_first:g} first / {model.w0_hidden:g} hidden) fitted to {len({r['image'] for r in zoo.table})} "
        f"images of {data.name} ({data.image_size}x{data.image_size}), seeds {seeds[0]}..{seeds[-1]}; the weights of "
        f"epoch {epoch} (the last). config.json is the zoo's config; export.json the manifest.",
        "",
        "## The SIREN",
        "",
        f"- inputs: linspace(-1, 1) on each axis, pixels in row-major order; coordinates {coords}.",
        "- layers: sin(w0 * (W x + b)) for each hidden layer, then a linear layer to the channels, "
        f"plus an output offset of {float(model.output_offset):g}.",
        f"- targets: pixels in {'[0, 1] (x / 255)' if model.target_range == 'unit' else '[-1, 1] (2 x / 255 - 1)'}.",
        f"- PSNR (the `psnr` property and the training target): 10 log10({peak:g}^2 / MSE), the MSE over every "
        "pixel and channel of the image on the targets' scale.",
        "- state_dict tensors are PyTorch's (weight [out, in], bias [out]), float32, weight then bias per layer.",
        "",
        "## Folders",
        "",
    ]
    if "dwsnets_mnist" in written:
        lines += [
            "- `mnist-inrs/mnist_png_{training|testing}_{label}_{idx}/checkpoints/model_final.pth`: DWSNets' MNIST "
            f"layout, the SIRENs of seed {first_seed} (one per image); keys seq.{{i}}.weight / seq.{{i}}.bias; idx = the "
            f"image's index in its split of {data.name}. "
            + (
                "The other seeds' SIRENs (NFN-style copies) are in the sibling folders mnist-inrs-seed{seed}/, outside "
                "the splits. "
                if len(seeds) > 1
                else ""
            )
            + "`mnist_splits.json`: {train, val, test: {path, label}}, labels as strings; paths are relative to this "
            "folder (the original's are absolute, and DWSNets' loader opens them as they are: run it from here, or "
            "prefix them). `statistics.pth`: per-layer mean and std (torch's unbiased) over the train split's INRs, "
            "weights (in, out, 1), biases (out, 1) (the original took one random batch of 10,000 train INRs; these use "
            "all of them, non-finite ones left out).",
        ]
    if "dwsnets_fmnist" in written:
        lines += [
            "- `fmnist_inrs/{train,test}/model_{idx}.pth`: the Fashion-MNIST INR layout (the seq.* keys plus an int "
            f"`label`), seed {first_seed}; idx = the image's index in its split of {data.name}. "
            + ("Other seeds: fmnist_inrs_seed{seed}/, outside the splits. " if len(seeds) > 1 else "")
            + "`fmnist_inrs/splits.json`: {train, val, test: [paths]}, paths relative to this folder (consumers read "
            "the last two components, e.g. train/model_12.pth). `fmnist_inrs/statistics.pth`: as DWSNets' "
            "statistics.pth, over the train split.",
        ]
    if {"dwsnets_mnist", "dwsnets_fmnist", "vectors"} & set(written):
        lines += [
            f"- val split: {len(val)} of the {n_train} train images, drawn with numpy default_rng(42) (DWSNets takes "
            "5,000 of 60,000, unseeded: scaled here to round(n_train * 5000 / 60000) below 60,000), removed from train. "
            "DWSNets' generate_data_splits.py would split by 'train' anywhere in the path; the splits files here are "
            "the ones to use.",
        ]
    if "nfn" in written:
        lines += [
            f"- `siren_{nfn_dataset_name(zoo)}_wts/randinit_smaller_{{label}}s/net{{idx}}.pth`: NFN's layout, seed "
            f"{first_seed}; idx = the image's position in train-then-test order of {data.name}; keys "
            "net.{i}.linear.weight/bias for the sine layers, net.{L}.weight/bias for the last. "
            + (
                "Seed slot k >= 1 (NFN's augmentation copies) is in randinit_smaller_aug{k-1}_{label}s/ (NFN reads "
                "prefix + '_aug{i}' for i in range(extra_aug)). NFN's SirenDataset globs '{prefix}_*', so the prefix "
                "randinit_smaller also picks up the aug folders (its own TODO): move them aside to read one copy "
                "per image. "
                if len(seeds) > 1
                else ""
            )
            + "NFN splits by idx (split_points); no statistics file (NFN computes them while training).",
        ]
        numbers = nfn_numbers(zoo)
        if renumbered(numbers):
            lines += [
                f"- The images of this zoo do not start at 0 (image {min(numbers)} is the first), and NFN's and "
                f"ScaleGMN's loaders read net0..net{{N-1}}: idx is renumbered from 0 (the image's position among "
                f"this zoo's images), and `{NFN_INDEX}` lists per idx its image index, split, split_index and "
                "label. NFN's split_points were set for whole datasets: choose them for these "
                f"{len(numbers)} images.",
            ]
    if ARENA in written:
        nef = arena.nef_config(zoo.spec)["params"]
        splits = arena.arena_splits(zoo.table, arena.row_order(zoo.table))
        lines += [
            "- `arena/nefs_{start}-{end}.hdf5` (one file per seed, rows start..end-1), `arena/metadata.json`, "
            "`arena/nef.json` (and its copy `nef_cfg.json`): the Neural Field Arena's layout, as fit-a-nef writes "
            "it (`arena/checksums.sha256`: `sha256sum -c` lines for these files). Datasets `params` [n, D] float32, `param_config` (the JSON [key, shape] list that cuts a row into "
            "fit-a-nef's SIREN tensors: kernel_net_{i}.linear then output_linear, bias before kernel, kernels "
            f"[in, out]), `labels`, and `image`, `seed`, `model_id`, `psnr`. SIREN: hidden_dim {nef['hidden_dim']}, "
            f"num_layers {nef['num_layers']}, omega_0 {nef['omega_0']:g}, inputs (x_j, y_i) for pixel (row i, "
            "column j) as fit-a-nef's meshgrid, no output offset: "
            + (
                "the first kernel's input rows are swapped from this zoo's 'ij' order, "
                if model.coordinates == "ij"
                else ""
            )
            + (
                f"the output offset {float(model.output_offset):g} is added to the output bias, "
                if float(model.output_offset)
                else ""
            )
            + "so every row draws this zoo's image on the same targets' scale (fit-a-nef's own fields fit "
            "standardised pixels). Rows are renumbered from 0 in (seed, image) order; `image` maps them back. "
            f"Splits of the first seed's rows ({', '.join(f'{k} {a}..{b - 1}' for k, (a, b) in splits.items())}): "
            "the train images, their last min(5000, round(n_train / 10)) as val (the Arena's MNIST and CIFAR-10 "
            "splits), then the test images; metadata.json holds each split's per-layer mean and std (population "
            "std over its finite rows), under its name and under '{start}_{end}'.",
        ]
    if "vectors" in written:
        lines += [
            "- `vectors/{train,val,test}.safetensors + .json` (+ `dataset.pt`): one row per SIREN (every seed), the "
            "state_dict tensors flattened in order (index_dict in the .json); properties model_id, seed, image, "
            "split_index, label, psnr, mse, steps, steps_to_target (NaN: target not reached), reached, diverged, and "
            "split (the image's source split). Splits follow the images: test images' SIRENs in test, the val images' "
            "(all seeds) in val, the rest in train, so no image is in two splits.",
        ]
    for fmt, reason in skipped.items():
        lines.append(f"- not written: {fmt} ({reason})")
    notes = zoo.config.get("notes", "")
    return "\n".join((lines + ["", notes]) if notes else lines) + "\n"


# ---- the export --------------------------------------------------------------------------------


def export_inr(workdir, out, formats: str = "all", overwrite: bool = False, log=print) -> dict:
    """Exports the INR zoo in `workdir` to `out/<zoo name>` in `formats`; returns a report.

    Every check (format, destination, zoo, layout fit, torch) comes before the first write; an
    existing export is replaced only with `overwrite`, as the classification export."""
    log = log or (lambda message: None)
    path = pathlib.Path(workdir).absolute()
    if formats not in INR_FORMATS:
        raise ExportError(
            f"format {formats} is for classification zoos and {path} holds an INR zoo: choose from {INR_FORMATS}"
        )
    check_destination(pathlib.Path(out), "export folder")
    start = time.time()
    zoo = read_inr_zoo(path)
    document = checkpoint.read_config(path)
    num_epochs = last_epoch(zoo.config)
    epoch = zoo.last_epoch()
    if epoch < num_epochs:
        raise ExportError(
            f"{path} lacks epoch {num_epochs} (the last whole one is {epoch}): finish training first "
            "(rerun the same train command to resume)"
        )
    skipped = {}
    if formats == "all":
        layouts = []
        for fmt in auto_layouts(zoo):
            mismatch = layout_mismatch(zoo, fmt)
            if mismatch:
                skipped[fmt] = f"needs {mismatch[3]}, the zoo has {mismatch[1]}={mismatch[2]!r}"
            else:
                layouts.append(fmt)
    elif formats in (*INR_LAYOUTS, ARENA):
        mismatch = layout_mismatch(zoo, formats)
        if mismatch:
            raise ExportError(mismatch_message(zoo, mismatch))
        layouts = [formats]
    else:
        layouts = []
    if ARENA in layouts:
        arena.require_h5py()
    torch = None
    if set(layouts) & set(TORCH_LAYOUTS):
        try:
            import torch
        except ImportError:
            raise ExportError(
                f"format {formats} writes PyTorch state_dicts and needs torch: pip install "
                "'jaxzoo[torch]' (or export --format vectors)"
            ) from None
    target = pathlib.Path(out).absolute() / zoo.name
    check_destination(target, "export folder")
    settings = {"zoo": document["identity_hash"], "task": "inr", "formats": formats, "epoch": epoch}
    return write_claimed(
        target,
        settings,
        overwrite,
        zoo.path,
        lambda: write_inr_export(zoo, target, settings, document["config"], layouts, skipped, torch, log),
        start,
    )


def write_inr_export(
    zoo: InrZoo, target: pathlib.Path, settings: dict, config: dict, layouts: list[str], skipped: dict, torch, log
) -> dict:
    """Writes the export's files into `target` (the manifest last marked complete); `config` is
    the zoo's config as training stored it."""
    epoch = settings["epoch"]
    manifest_path = target / MANIFEST
    target.mkdir(parents=True, exist_ok=True)
    manifest_path.write_text(json.dumps({**settings, "complete": False}))
    params = zoo.params(epoch)
    metrics = zoo.metrics(epoch)
    arrays = torch_arrays(zoo, params)
    val = val_images(zoo)
    written = [*layouts, *(["vectors"] if settings["formats"] in ("vectors", "all") else [])]
    (target / "config.json").write_text(json.dumps(config, indent=1))
    (target / "readme.md").write_text(inr_readme(zoo, written, skipped, epoch, val))
    for fmt, reason in skipped.items():
        log(f"  {fmt} not written: {reason}")
    diverged = [int(zoo.table[i]["model_id"]) for i in np.flatnonzero(np.asarray(metrics["diverged"]) > 0)]
    report = {
        "out": str(target),
        "models": len(zoo.table),
        "epoch": epoch,
        "written": written,
        "skipped": skipped,
        "val_images": len(val),
        "diverged_models": diverged,
    }
    for fmt in layouts:
        log(f"writing {fmt} ...")
        if fmt == ARENA:
            report[fmt] = arena.write_arena(zoo, target / arena.ARENA_FOLDER, params, metrics, log)
        else:
            report[fmt] = LAYOUT_WRITERS[fmt](zoo, target, arrays, val, torch, log)
    if "vectors" in written:
        log("writing the flat-vector dataset ...")
        report["vectors"] = write_inr_vectors(zoo, target / "vectors", arrays, metrics, val, epoch, log)
    manifest_path.write_text(json.dumps({**settings, "complete": True, "report": report}, indent=1))
    return report
