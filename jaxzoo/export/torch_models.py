"""PyTorch models of jaxzoo's zoos, rebuilt from a trial's params.json alone.

Standalone: this file imports torch, numpy and the standard library only. An export ships a
copy of it as `<experiment>/model.py`, so a shared zoo loads without jaxzoo, JAX or Flax:

    import importlib.util, json, torch
    spec = importlib.util.spec_from_file_location("model", "<experiment>/model.py")
    zoo_models = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(zoo_models)
    model = zoo_models.build_model(json.load(open("<trial>/params.json")))
    model.load_state_dict(torch.load("<trial>/checkpoint_000050/checkpoints"), strict=True)

A row of the flat-vector dataset (vectors/<split>.safetensors) fills such a network in place,
`load_vector(model, row)` (a vector lists the tensors of model.parameters() in order), and
`evaluate(models, images, labels)` scores many networks on a split (dataset.pt's: NCHW, normalised).

Every model maps x [B, C, H, W] float32 (NCHW, normalised as in training) to logits
[B, classes] (classes: jaxzoo::num_classes; without it 10 for the original CNNs, whose code
ignores model::o_dim, and model::o_dim otherwise). params.json's "model::type" picks the class:

  "CNN"            CNN-s, ZooCNN("cnn_s"): module_list conv 0/3/6, fc 9/11 without dropout
                   modules (model::dropout 0); conv 0/4/8, fc 11/14 with them
  "CNN3"           CNN-m, ZooCNN("cnn_m"): conv 0/4/8, fc 13/16 (dropout modules always present)
  "CNN_ARD"        ZooCNNARD: CNN-s without dropout modules, Conv2dARD / LinearARD layers
                   (Variational Dropout twins: weight, bias, log_sigma2, log_sigma2_bias)
  "Resnet18"       ResNet18Cifar: torchvision's ResNet-18 keys, 3x3/stride-1 conv1, no max-pool
  "jaxzoo:cnn"     ZooCNN(CNNLayout): convs model::convs [[features, kernel, pool], ...], then
  "jaxzoo:mlp"     linear layers model::widths (+ the logits), on model::image_size images;
                   dropout modules after every conv and hidden layer when model::dropout > 0
  "jaxzoo:custom"  a Flax module of the zoo's author (model::module): not rebuildable here

Scope of a duplication: jaxzoo keeps the CNN-s / CNN-m tables and the module-order rule in
jaxzoo.models.ARCHS and jaxzoo.layout.module_sequence, which must work without torch; this file
restates them (ORIGINAL_CNNS, CNNLayout.module_kinds) because it may not import jaxzoo.
jaxzoo's tests (tests/test_standalone.py) check that both give the exported keys and shapes.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
from torch import nn

TORCH_ACTIVATIONS = {
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "relu": nn.ReLU,
    "gelu": nn.GELU,  # exact erf, as the original
    "leakyrelu": nn.LeakyReLU,
    "silu": nn.SiLU,
}


class CNNLayout(NamedTuple):
    """A CNN in the original's form: stride-1 'valid' convs (each optionally followed by a 2x2
    max-pool), a channel-major flatten, then linear layers `hidden`, then `num_classes` logits.
    (A NamedTuple, not a dataclass: this file also loads by path without a sys.modules entry.)"""

    image_size: int
    convs: tuple[tuple[int, int, bool], ...]  # (features, kernel, pool) per conv
    hidden: tuple[int, ...]
    num_classes: int = 10
    channels_in: int = 1
    dropout_after_last_conv: bool = True
    dropout_always_present: bool = False  # CNN-m inserts Dropout modules even when p == 0

    @property
    def flat_features(self) -> int:
        """Inputs of the first linear layer (the flattened [C, H, W] after the convs)."""
        size = self.image_size
        for _, kernel, pool in self.convs:
            size = size - kernel + 1
            size = size // 2 if pool else size
        return size * size * (self.convs[-1][0] if self.convs else self.channels_in)

    def module_kinds(self, dropout: float) -> list[str]:
        """The module_list as kinds 'conv', 'pool', 'act', 'dropout', 'flatten', 'fc': a layer's
        state_dict index is its position here."""
        with_dropout = self.dropout_always_present or dropout > 0
        kinds: list[str] = []
        for i, (_, _, pool) in enumerate(self.convs):
            kinds += ["conv"] + (["pool"] if pool else []) + ["act"]
            if with_dropout and (i < len(self.convs) - 1 or self.dropout_after_last_conv):
                kinds.append("dropout")
        kinds.append("flatten")
        for _ in self.hidden:
            kinds += ["fc", "act"] + (["dropout"] if with_dropout else [])
        return kinds + ["fc"]


ORIGINAL_CNNS = {
    "cnn_s": CNNLayout(image_size=28, convs=((8, 5, True), (6, 5, True), (4, 2, False)), hidden=(20,),
                       dropout_after_last_conv=False, dropout_always_present=False),
    "cnn_m": CNNLayout(image_size=32, convs=((16, 3, True), (32, 3, True), (15, 3, True)), hidden=(20,),
                       dropout_after_last_conv=True, dropout_always_present=True),
}
ORIGINAL_TYPES = {"CNN": "cnn_s", "CNN3": "cnn_m"}  # params.json model::type -> ORIGINAL_CNNS
REGISTRY_TYPES = ("jaxzoo:cnn", "jaxzoo:mlp")
MODEL_TYPES = (*ORIGINAL_TYPES, "CNN_ARD", "Resnet18", *REGISTRY_TYPES)


class ZooCNN(nn.Module):
    """The original CNN / CNN3 of ModelZooDataset (`module_list`, applied in sequence), and the
    registry's cnn / mlp families in the same layout.

    `arch` is "cnn_s", "cnn_m" or a CNNLayout; channels_in (and num_classes, default the
    layout's) override the layout's. x [B, C, H, W] -> logits [B, num_classes].
    """

    def __init__(self, arch: str | CNNLayout, activation: str, dropout: float, channels_in: int,
                 num_classes: int | None = None):
        super().__init__()
        if isinstance(arch, str) and arch not in ORIGINAL_CNNS:
            raise ValueError(f"unknown CNN {arch!r}: use one of {sorted(ORIGINAL_CNNS)} or a CNNLayout")
        if activation not in TORCH_ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}: use one of {sorted(TORCH_ACTIVATIONS)}")
        layout = ORIGINAL_CNNS[arch] if isinstance(arch, str) else arch
        layout = layout._replace(channels_in=channels_in, num_classes=num_classes or layout.num_classes)
        modules, cin = [], channels_in
        convs, widths = iter(layout.convs), iter((*layout.hidden, layout.num_classes))
        fan_in = layout.flat_features
        for kind in layout.module_kinds(dropout):
            if kind == "conv":
                features, kernel, _ = next(convs)
                modules.append(nn.Conv2d(cin, features, kernel))
                cin = features
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
        self.layout = layout
        self.module_list = nn.ModuleList(modules)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [B, C, H, W] (NCHW, normalised) -> logits [B, classes]."""
        for module in self.module_list:
            x = module(x)
        return x


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

    def __init__(self, arch: str, activation: str, channels_in: int, num_classes: int | None = None):
        super().__init__(arch, activation, 0.0, channels_in, num_classes)
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
    conv/linear weights, fc bias 0.01, BN weight 1 / bias 0. The counterpart of jaxzoo's Flax
    ResNet18; x [B, C, H, W] (NCHW) -> logits [B, K].
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
    """ResNet18Cifar loaded (strict=True) from a state_dict of tensors or numpy arrays (e.g. one
    model of jaxzoo.resnet.torch_state_dict); channels_in is read from conv1.weight [64, C, 3, 3].
    Returned in eval mode.
    """
    tensors = {key: torch.as_tensor(np.array(value)) for key, value in state_dict.items()}
    model = ResNet18Cifar(num_classes, channels_in=tensors["conv1.weight"].shape[1])
    model.load_state_dict(tensors, strict=True)
    return model.eval()


def _field(params: dict, key: str):
    if key not in params:
        raise ValueError(f"params.json has no {key!r} (model::type {params.get('model::type')!r}): pass the "
                         "params.json of an exported trial")
    return params[key]


def registry_layout(params: dict) -> CNNLayout:
    """The CNNLayout of a "jaxzoo:cnn" / "jaxzoo:mlp" trial: model::convs, model::widths,
    model::image_size, model::channels_in, model::o_dim."""
    convs = () if params["model::type"] == "jaxzoo:mlp" else tuple(
        (int(features), int(kernel), bool(pool)) for features, kernel, pool in _field(params, "model::convs"))
    return CNNLayout(image_size=int(_field(params, "model::image_size")), convs=convs,
                     hidden=tuple(int(w) for w in _field(params, "model::widths")),
                     num_classes=output_classes(params), channels_in=int(_field(params, "model::channels_in")),
                     dropout_after_last_conv=True, dropout_always_present=False)


def output_classes(params: dict) -> int:
    """The logits of a trial's model: jaxzoo::num_classes where jaxzoo wrote it; otherwise 10 for
    the original CNNs (whose code ignores model::o_dim) and model::o_dim for the others."""
    if "jaxzoo::num_classes" in params:
        return int(params["jaxzoo::num_classes"])
    if params.get("model::type") in (*ORIGINAL_TYPES, "CNN_ARD"):
        return 10
    return int(_field(params, "model::o_dim"))


def build_model(params: dict) -> nn.Module:
    """The network of an exported trial from its params.json dict (PyTorch's default init;
    load the trial's checkpoint into it). ValueError for models it cannot rebuild."""
    kind = params.get("model::type")
    if kind == "jaxzoo:custom" or "model::module" in params:
        raise ValueError(f"the zoo's models are {params.get('model::module')} (a Flax module of the zoo's author), "
                         "which model.py cannot rebuild: load the checkpoints into its PyTorch twin, whose keys "
                         "are in index_dict.json")
    if kind not in MODEL_TYPES:
        raise ValueError(f"params.json model::type {kind!r} is not one of {list(MODEL_TYPES)}: pass the "
                         "params.json of an exported trial")
    channels, classes = int(_field(params, "model::channels_in")), output_classes(params)
    if kind == "Resnet18":
        return ResNet18Cifar(classes, channels)
    activation = _field(params, "model::nlin")
    if kind == "CNN_ARD":
        return ZooCNNARD("cnn_s", activation, channels, classes)
    dropout = float(params.get("model::dropout") or 0.0)
    arch = ORIGINAL_TYPES[kind] if kind in ORIGINAL_TYPES else registry_layout(params)
    return ZooCNN(arch, activation, dropout, channels, classes)


def load_vector(model: nn.Module, vector) -> nn.Module:
    """Fills `model`'s parameters from one flat vector [P] (the export's order: the tensors of
    model.parameters(), each flattened row-major) -> the model, in eval mode. BatchNorm statistics (ResNet-18) are not in a vector: load them from a trial.
    ValueError when P is not the model's parameter count (e.g. a twin's log sigma^2)."""
    vector = torch.as_tensor(np.asarray(vector, np.float32))
    count = sum(p.numel() for p in model.parameters())
    if vector.ndim != 1 or vector.numel() != count:
        raise ValueError(f"a vector of shape {list(vector.shape)} for a model of {count} parameters: pass one row "
                         "of the zoo's flat vectors, for the network build_model(params.json) makes")
    with torch.no_grad():
        torch.nn.utils.vector_to_parameters(vector.to(next(model.parameters()).dtype), model.parameters())
    return model.eval()


def evaluate(models, images, labels, batch_size: int = 500) -> dict:
    """Eval-mode scores of networks on one split -> {"accuracy": [N], "loss": [N]} (numpy float64:
    fraction correct, mean cross-entropy). models: one nn.Module or a sequence; images [n, C, H, W]
    float32 (normalised as in training: dataset.pt's), labels [n] class ids."""
    models = [models] if isinstance(models, nn.Module) else list(models)
    images, labels = torch.as_tensor(images), torch.as_tensor(labels).long()
    accuracy, loss = np.zeros(len(models)), np.zeros(len(models))
    with torch.no_grad():
        for i, model in enumerate(models):
            model.eval()
            nll, correct = 0.0, 0
            for start in range(0, len(labels), batch_size):
                logits = model(images[start : start + batch_size]).double()
                target = labels[start : start + batch_size]
                nll += float(torch.nn.functional.cross_entropy(logits, target, reduction="sum"))
                correct += int((logits.argmax(-1) == target).sum())
            accuracy[i], loss[i] = correct / len(labels), nll / len(labels)
    return {"accuracy": accuracy, "loss": loss}
