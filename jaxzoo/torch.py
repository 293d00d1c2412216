"""PyTorch side of jaxzoo exports (needs torch): model definitions and a flat-vector Dataset.

`build_model(arch, activation, dropout)` returns the original's `module_list` network, whose
state_dict keys match the exported checkpoints for both dropout settings, so
`model.load_state_dict(torch.load(".../checkpoint_000050/checkpoints"), strict=True)` works.
`ZooVectorDataset` reads an exported flat-vector split like the original ModelDatasetBase in
vector mode: `data_in` [N, P], `properties` (lists per key), items (vector, properties).
"""

from __future__ import annotations

import json
import pathlib

import numpy as np
import torch
from safetensors.torch import load_file
from torch import nn

from jaxzoo.layout import module_sequence
from jaxzoo.models import ARCHS

TORCH_ACTIVATIONS = {
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "relu": nn.ReLU,
    "gelu": nn.GELU,  # exact erf, as the original
    "leakyrelu": nn.LeakyReLU,
    "silu": nn.SiLU,
}


class ZooCNN(nn.Module):
    """The original CNN / CNN3 of ModelZooDataset (`module_list`, applied in sequence)."""

    def __init__(self, arch: str, activation: str, dropout: float, channels_in: int):
        super().__init__()
        spec = ARCHS[arch]
        modules, cin, convs, widths = [], channels_in, iter(spec.convs), iter((*spec.hidden, spec.num_classes))
        fan_in = spec.flat_features
        for kind in module_sequence(spec, dropout):
            if kind == "conv":
                conv = next(convs)
                modules.append(nn.Conv2d(cin, conv.features, conv.kernel))
                cin = conv.features
            elif kind == "pool":
                modules.append(nn.MaxPool2d(2, 2))
            elif kind == "act":
                modules.append(TORCH_ACTIVATIONS[activation]())
            elif kind == "dropout":
                modules.append(nn.Dropout(dropout))
            elif kind == "flatten":
                modules.append(nn.Flatten())
            else:
                width = next(widths)
                modules.append(nn.Linear(fan_in, width))
                fan_in = width
        self.module_list = nn.ModuleList(modules)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [B, C, H, W] (NCHW, normalised) -> logits [B, classes]."""
        for module in self.module_list:
            x = module(x)
        return x


def build_model(params_json: dict) -> ZooCNN:
    """The network of an exported trial from its params.json."""
    arch = {"CNN": "cnn_s", "CNN3": "cnn_m"}[params_json["model::type"]]
    return ZooCNN(arch, params_json["model::nlin"], params_json["model::dropout"], params_json["model::channels_in"])


class ZooVectorDataset(torch.utils.data.Dataset):
    """One split of an exported flat-vector dataset (`<export>/vectors/<split>.safetensors`)."""

    def __init__(self, vectors_dir: str | pathlib.Path, split: str = "train", epochs: list[int] | None = None):
        folder = pathlib.Path(vectors_dir)
        tensors = load_file(folder / f"{split}.safetensors")
        meta = json.loads((folder / f"{split}.json").read_text())
        keep = torch.ones(len(tensors["weights"]), dtype=torch.bool)
        if epochs is not None:
            keep = torch.isin(tensors["epoch"], torch.tensor(epochs))
        self.data_in = tensors["weights"][keep]
        index = np.flatnonzero(keep.numpy())
        self.properties = {name: tensors[name][keep].tolist() for name in meta["numeric_properties"]}
        for name, values in meta["categorical_properties"].items():
            self.properties[name] = [values[i] for i in index]
        self.layout = meta["index_dict"]

    def __len__(self) -> int:
        return len(self.data_in)

    def __getitem__(self, i: int):
        return self.data_in[i], {name: values[i] for name, values in self.properties.items()}
