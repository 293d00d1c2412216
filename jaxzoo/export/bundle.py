"""What makes a shared zoo self-contained, as the original zoos shipped: the PyTorch model
definitions and the data the models were trained on, next to the trial folders.

  <experiment>/model.py     a copy of jaxzoo/torch_models.py (torch + numpy only): `build_model(params)`
                            rebuilds any trial of the zoo from its params.json
  <experiment>/dataset.pt   {"trainset", "valset", "testset": TensorDataset(images [N, C, H, W]
                            float32, labels [N] int64), "dataset_seed": 42}, the images normalised
                            exactly as training saw them ((x / 255 - mean) / std per channel)

ResNet zoos: dataset.pt holds the un-augmented normalised images (training crops and flips the
train split on the device at every step). dataset.pt pickles TensorDatasets, as the original, and
torch.load's default (weights_only=True since torch 2.6) refuses that class: read it with
`DATA_FILE_LOAD`, which allows TensorDataset alone (or torch.load(path, weights_only=False) for a
file you trust). The flat vectors' vectors/dataset.pt holds plain tensors, lists and dicts only
and loads with torch.load(path).
"""

from __future__ import annotations

import os
import pathlib
import shutil

import numpy as np

from jaxzoo.data import normalise
from jaxzoo.data.splits import SPLIT_SEED
from jaxzoo.errors import UserError

MODEL_FILE = "model.py"
DATA_FILE = "dataset.pt"
SPLIT_KEYS = {"train": "trainset", "val": "valset", "test": "testset"}
# How to read dataset.pt with torch.load's default weights_only=True (the export's log and docs say it).
DATA_FILE_LOAD = "with torch.serialization.safe_globals([torch.utils.data.TensorDataset]): data = torch.load(path)"


def write_model_file(target: pathlib.Path) -> None:
    """Copies jaxzoo's standalone PyTorch model definitions to `<target>/model.py` (no torch needed)."""
    target = pathlib.Path(target)
    tmp = target / f".{MODEL_FILE}.partial"
    shutil.copyfile(pathlib.Path(__file__).with_name("torch_models.py"), tmp)
    os.replace(tmp, target / MODEL_FILE)


DATA_LIMIT_GIB = 4.0  # the largest dataset.pt `--with_data` writes unless told more (`data_limit_gib`)


def data_file_bytes(dataset) -> int:
    """Bytes of the arrays dataset.pt holds: float32 images [N, C, H, W] and int64 labels per split."""
    return sum(len(getattr(dataset, split)[1]) * (4 * int(np.prod(dataset.image_shape)) + 8) for split in SPLIT_KEYS)


def check_data_size(dataset, limit_gib: float) -> int:
    """dataset.pt's bytes; UserError, before anything is written, past `limit_gib` (it is written
    whole, and held in memory while it is)."""
    size = data_file_bytes(dataset)
    if size > limit_gib * 2**30:
        raise UserError(
            f"dataset.pt would hold {size / 2**30:.1f} GiB (the float32 images of {dataset.name}'s train/val/test "
            f"splits), more than --data_limit_gib {limit_gib:g}: raise it (the export holds the file in memory "
            "while it writes it), or export without --with_data and load the data with jaxzoo.load_dataset"
        )
    return size


def write_training_data(zoo, target: pathlib.Path, log) -> None:
    """Writes `<target>/dataset.pt` from the data config of `zoo` (a `jaxzoo.export.Zoo`); `log`
    receives one progress line (None: silent). Images are NHWC uint8 in jaxzoo, NCHW float32 here."""
    try:
        import torch
        from torch.utils.data import TensorDataset
    except ImportError:
        raise UserError(
            "dataset.pt is a PyTorch file and needs torch: pip install 'jaxzoo[torch]' (or export without --with_data)"
        ) from None
    log = log or (lambda message: None)
    dataset = zoo.dataset()
    payload: dict = {"dataset_seed": SPLIT_SEED}  # the original's dataset.pt key (its split seed)
    for split, key in SPLIT_KEYS.items():
        images, labels = getattr(dataset, split)
        nchw = np.ascontiguousarray(normalise(images, dataset.mean, dataset.std).transpose(0, 3, 1, 2))
        payload[key] = TensorDataset(torch.from_numpy(nchw), torch.from_numpy(np.asarray(labels, np.int64)))
    target = pathlib.Path(target)
    tmp = target / f".{DATA_FILE}.partial"
    torch.save(payload, tmp)
    os.replace(tmp, target / DATA_FILE)
    sizes = "/".join(str(len(payload[key])) for key in SPLIT_KEYS.values())
    height, width, channels = dataset.image_shape
    log(
        f"  {DATA_FILE}: train/val/test {sizes} images [{channels}, {height}, {width}] of {dataset.name}, "
        f"normalised as in training (read it with: {DATA_FILE_LOAD})"
    )
