"""PyTorch side of jaxzoo exports (needs torch): model definitions and a flat-vector Dataset.

`build_model(params_json)` returns a trial's network (the original's `module_list` CNNs, and
jaxzoo's `cnn` / `mlp` models in the same layout), whose state_dict keys match the exported
checkpoints for both dropout settings, so
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
from jaxzoo.architectures import arch_spec
from jaxzoo.models import ARCHS, ArchSpec

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

    def __init__(self, arch: str | ArchSpec, activation: str, dropout: float, channels_in: int):
        super().__init__()
        spec = ARCHS[arch] if isinstance(arch, str) else arch
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


def build_model(params_json: dict) -> torch.nn.Module:
    """The network of an exported trial from its params.json."""
    if params_json["model::type"] == "Resnet18":
        return ResNet18Cifar(params_json["model::o_dim"], params_json["model::channels_in"])
    if params_json["model::type"] == "CNN_ARD":
        return ZooCNNARD("cnn_s", params_json["model::nlin"], params_json["model::channels_in"])
    if params_json["model::type"] in ("jaxzoo:cnn", "jaxzoo:mlp"):
        model = {"arch": params_json["model::type"].split(":")[1], "convs": params_json["model::convs"],
                 "widths": params_json["model::widths"]}
        channels = params_json["model::channels_in"]
        arch = arch_spec(model, params_json["model::image_size"], channels, params_json["model::o_dim"])
        return ZooCNN(arch, params_json["model::nlin"], params_json["model::dropout"], channels)
    if params_json["model::type"] == "jaxzoo:custom":
        raise ValueError(f"the zoo's models are {params_json['model::module']} (a Flax module of the zoo's "
                         "author): load the state_dict into its PyTorch twin, whose keys are in index_dict.json")
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


class Conv2dARD(nn.Conv2d):
    """The original's Conv2dARD: conv with log_sigma2 (and log_sigma2_bias); eval masks log alpha >= 3."""

    threshold, clamp = 3.0, (-8.0, 8.0)

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int):
        super().__init__(in_channels, out_channels, kernel_size)
        self.log_sigma2 = nn.Parameter(torch.full_like(self.weight, -10.0))
        self.log_sigma2_bias = nn.Parameter(torch.full_like(self.bias, -10.0))

    def log_alpha(self, log_sigma2, w):
        return torch.clamp(log_sigma2 - 2 * torch.log(torch.abs(w) + 1e-15), *self.clamp)

    def forward(self, x):
        if self.training:  # local reparameterisation
            mean = super().forward(x)
            var = torch.nn.functional.conv2d(
                x * x, torch.exp(self.log_alpha(self.log_sigma2, self.weight)) * self.weight**2,
                torch.exp(self.log_alpha(self.log_sigma2_bias, self.bias)) * self.bias**2,
            )
            return mean + torch.sqrt(1e-15 + var) * torch.randn_like(mean)
        weight = self.weight * (self.log_alpha(self.log_sigma2, self.weight) < self.threshold)
        bias = self.bias * (self.log_alpha(self.log_sigma2_bias, self.bias) < self.threshold)
        return torch.nn.functional.conv2d(x, weight, bias)


class LinearARD(nn.Linear):
    """The original's LinearARD: log_sigma2 on the weight; the bias is never masked."""

    threshold, clamp = 3.0, (-10.0, 10.0)

    def __init__(self, in_features: int, out_features: int):
        super().__init__(in_features, out_features)
        self.log_sigma2 = nn.Parameter(torch.full_like(self.weight, -10.0))
        self.log_sigma2_bias = nn.Parameter(torch.zeros_like(self.bias))  # allocated, unused (as the original)

    def log_alpha(self):
        return torch.clamp(self.log_sigma2 - 2 * torch.log(torch.abs(self.weight) + 1e-15), *self.clamp)

    def forward(self, x):
        if self.training:
            var = (x * x) @ (torch.exp(self.log_alpha()) * self.weight**2).T + 1e-15
            mean = x @ self.weight.T
            return mean + torch.sqrt(var) * torch.randn_like(mean) + self.bias
        return torch.nn.functional.linear(x, self.weight * (self.log_alpha() < self.threshold), self.bias)


class ZooCNNARD(ZooCNN):
    """CNN_ARD: the CNN-s layout without dropout, conv and linear layers replaced by ARD ones."""

    def __init__(self, arch: str, activation: str, channels_in: int):
        super().__init__(arch, activation, 0.0, channels_in)
        for i, module in enumerate(self.module_list):
            if isinstance(module, nn.Conv2d):
                self.module_list[i] = Conv2dARD(module.in_channels, module.out_channels, module.kernel_size[0])
            elif isinstance(module, nn.Linear):
                self.module_list[i] = LinearARD(module.in_features, module.out_features)


class ResNetBasicBlock(nn.Module):
    """torchvision's BasicBlock (same module names, so the same state_dict keys)."""

    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = None
        if stride != 1 or inplanes != planes:
            self.downsample = nn.Sequential(nn.Conv2d(inplanes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(out + identity)


class ResNet18Cifar(nn.Module):
    """The original zoos' ResNet-18: torchvision's with a 3x3/stride-1 conv1 and no max-pool.

    Module names are torchvision's, so `state_dict()` keys (and order) are those of
    `torchvision.models.resnet18(num_classes=K)` after `model.conv1 = nn.Conv2d(C, 64, 3, 1, 1,
    bias=False)` and `model.maxpool = nn.Identity()`; that model accepts the same state_dict
    (this one exists so torchvision is not needed). Init is the original's: kaiming_uniform_
    conv/linear weights, fc bias 0.01, BN weight 1 / bias 0. The counterpart of
    `jaxzoo.resnet.ResNet18`; x [B, C, H, W] (NCHW) -> logits [B, K].
    """

    def __init__(self, num_classes: int, channels_in: int = 3):
        super().__init__()
        self.conv1 = nn.Conv2d(channels_in, 64, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.Identity()
        inplanes = 64
        for stage, (planes, stride) in enumerate(((64, 1), (128, 2), (256, 2), (512, 2)), start=1):
            blocks = [ResNetBasicBlock(inplanes, planes, stride), ResNetBasicBlock(planes, planes)]
            setattr(self, f"layer{stage}", nn.Sequential(*blocks))
            inplanes = planes
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512, num_classes)
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_uniform_(module.weight)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        nn.init.constant_(self.fc.bias, 0.01)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def load_resnet18(state_dict: dict, num_classes: int) -> ResNet18Cifar:
    """ResNet18Cifar loaded (strict=True) from a state_dict of tensors or numpy arrays
    (e.g. `jaxzoo.resnet.torch_state_dict` of one model); channels_in is read from conv1.weight.
    Returned in eval mode.
    """
    tensors = {key: torch.as_tensor(np.array(value)) for key, value in state_dict.items()}
    model = ResNet18Cifar(num_classes, channels_in=tensors["conv1.weight"].shape[1])
    model.load_state_dict(tensors, strict=True)
    return model.eval()
