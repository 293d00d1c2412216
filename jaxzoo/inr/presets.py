"""The published INR zoos' recipes as configs (the preset files in configs/ call these).

`dwsnets_zoo`: DWSNets' INR class as its code has it and its authors' fitting recipe.
`nfn_zoo`: NFN's SIREN and data layout; its optimizer and steps were never published, so
the ones here are this project's choice. Each config's `notes` say which is which.
"""

from __future__ import annotations

import ml_collections

from jaxzoo.inr.config import base_inr_config

DWSNETS_NOTES = ("DWSNets' INR class as its code has it (first layer U(+-sqrt(6/2)/30) since is_first is never "
                 "set; zero sine biases; last layer PyTorch default; +0.5; 'xy' inputs) and its authors' recipe "
                 "(Adam 5e-4, 1,000 steps, stop at 40 dB). Inferred: pixels in [0, 1], full-image steps.")
NFN_NOTES = ("NFN's SIREN and layout as its code has them (SIREN-paper init, 'ij' inputs, targets in [-1, 1], no "
             "offset). The optimizer and steps were not published: Adam 5e-4 for 1,000 steps is this project's "
             "choice.")


def siren_32x2(config: ml_collections.ConfigDict) -> None:
    """2 -> 32 -> 32 -> C with w0 30 on both sine layers (both families)."""
    config.model.widths = (32, 32)
    config.model.w0_first = 30.0
    config.model.w0_hidden = 30.0


def dwsnets_zoo(name: str, dataset: str) -> ml_collections.ConfigDict:
    """DWSNets' INR zoo of `dataset` (all train then test images)."""
    config = base_inr_config()
    config.name = name
    config.data.name = dataset
    config.images.splits = ("train", "test")
    siren_32x2(config)
    config.model.first_init = "sine"
    config.model.bias_init = "zero"
    config.model.last_init = "torch_default"
    config.model.output_offset = 0.5
    config.model.coordinates = "xy"
    config.model.target_range = "unit"
    config.training.num_steps = 1000
    config.training.steps_per_epoch = 100
    config.training.optimizer = "adam"
    config.training.lr = 5e-4
    config.training.target_psnr = 40.0
    config.notes = DWSNETS_NOTES
    return config


def nfn_zoo(name: str, dataset: str, image_size: int, count: int = 0) -> ml_collections.ConfigDict:
    """NFN's SIREN zoo of `dataset`: the first `count` images in train-then-test order (0: all)."""
    config = base_inr_config()
    config.name = name
    config.data.name = dataset
    config.data.image_size = image_size
    config.images.splits = ("train", "test")
    config.images.count = count
    siren_32x2(config)
    config.model.first_init = "siren"
    config.model.bias_init = "torch_default"
    config.model.last_init = "sine"
    config.model.output_offset = 0.0
    config.model.coordinates = "ij"
    config.model.target_range = "symmetric"
    config.training.num_steps = 1000
    config.training.steps_per_epoch = 100
    config.training.optimizer = "adam"
    config.training.lr = 5e-4
    config.training.target_psnr = 0.0
    config.notes = NFN_NOTES
    return config
