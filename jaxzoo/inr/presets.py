"""The published INR zoos' recipes as configs (the preset files in configs/ call these).

`dwsnets_zoo`: DWSNets' INR class as its code has it and its authors' fitting recipe.
`nfn_zoo`: NFN's SIREN and data layout; its optimizer and steps were never published, so
the ones here are this project's choice. Each config's `notes` say which is which.
"""

from __future__ import annotations

import ml_collections

from jaxzoo.inr.config import base_inr_config

DWSNETS_NOTES = (
    "DWSNets' INR class as its code has it (first layer U(+-sqrt(6/2)/30) since is_first is never "
    "set; zero sine biases; last layer PyTorch default; +0.5; 'xy' inputs) and its authors' recipe "
    "(Adam 5e-4, 1,000 steps, stop at 40 dB). Inferred: pixels in [0, 1], full-image steps."
)
NFN_NOTES = (
    "NFN's SIREN and layout as its code has them (SIREN-paper init, 'ij' inputs, targets in [-1, 1], no "
    "offset). The optimizer and steps were not published: Adam 5e-4 for 1,000 steps is this project's "
    "choice."
)


# The SIREN each family fits: 2 -> 32 -> 32 -> C with w0 30 on both sine layers, then these.
DWSNETS_MODEL = dict(
    first_init="sine",
    bias_init="zero",
    last_init="torch_default",
    output_offset=0.5,
    coordinates="xy",
    target_range="unit",
)
NFN_MODEL = dict(
    first_init="siren",
    bias_init="torch_default",
    last_init="sine",
    output_offset=0.0,
    coordinates="ij",
    target_range="symmetric",
)


def published_zoo(
    name: str, dataset: str, image_size: int, count: int, model: dict, lr: float, target_psnr: float, notes: str
) -> ml_collections.ConfigDict:
    """An INR zoo of the first `count` images of `dataset` (0: all, train then test), fitted for
    at most 1,000 Adam steps (a checkpoint every 100) by the SIREN `model` describes."""
    config = base_inr_config()
    config.name = name
    config.data.name = dataset
    config.data.image_size = image_size
    config.images.splits = ("train", "test")
    config.images.count = count
    config.model.widths = (32, 32)
    config.model.w0_first = 30.0
    config.model.w0_hidden = 30.0
    config.model.update(model)
    config.training.num_steps = 1000
    config.training.steps_per_epoch = 100
    config.training.optimizer = "adam"
    config.training.lr = lr
    config.training.target_psnr = target_psnr
    config.notes = notes
    return config


def dwsnets_zoo(name: str, dataset: str) -> ml_collections.ConfigDict:
    """DWSNets' INR zoo of `dataset` (all train then test images): its authors' recipe, Adam 5e-4
    and an early stop at 40 dB."""
    return published_zoo(name, dataset, 28, 0, DWSNETS_MODEL, 5e-4, 40.0, DWSNETS_NOTES)


def nfn_zoo(name: str, dataset: str, image_size: int, count: int = 0) -> ml_collections.ConfigDict:
    """NFN's SIREN zoo of `dataset`: the first `count` images in train-then-test order (0: all);
    Adam 5e-4 without early stop (chosen: not published)."""
    return published_zoo(name, dataset, image_size, count, NFN_MODEL, 5e-4, 0.0, NFN_NOTES)
