"""PyTorch layout of the original zoos' CNNs: state_dict keys, tensor layouts, flat vectors.

The original's `module_list` interleaves conv, pool, activation and (sometimes) dropout
modules, so a layer's state_dict index depends on the architecture and on whether dropout
modules are present: CNN-s without dropout: conv 0, 3, 6, fc 9, 11; CNN-s with
dropout > 0: conv 0, 4, 8, fc 11, 14; CNN-m (dropout modules always present): conv 0, 4, 8,
fc 13, 16. Flat vectors follow the original loader: per layer in forward order, the weight in
PyTorch layout flattened row-major, then the bias.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np

from jaxzoo.models import ArchSpec, layer_names


def module_sequence(arch: ArchSpec, dropout: float) -> list[str]:
    """The original ModuleList as kinds: 'conv', 'pool', 'act', 'dropout', 'flatten', 'fc'."""
    with_dropout = arch.dropout_always_present or dropout > 0
    modules: list[str] = []
    last = len(arch.convs) - 1
    for i, conv in enumerate(arch.convs):
        modules += ["conv"] + (["pool"] if conv.pool else []) + ["act"]
        if with_dropout and (i < last or arch.dropout_after_last_conv):
            modules.append("dropout")
    modules.append("flatten")
    for _ in arch.hidden:
        modules += ["fc", "act"] + (["dropout"] if with_dropout else [])
    modules.append("fc")
    return modules


def module_indices(arch: ArchSpec, dropout: float) -> list[int]:
    """state_dict indices of the parameter layers, in forward order."""
    return [i for i, kind in enumerate(module_sequence(arch, dropout)) if kind in ("conv", "fc")]


def torch_tensors(params: dict, arch: ArchSpec, dropout: float) -> Iterator[tuple[str, np.ndarray]]:
    """(state_dict key, array in PyTorch layout) for one model's Flax params, in order.

    Works on a leading population axis too: conv kernels [..., kh, kw, in, out] become
    [..., out, in, kh, kw]; dense kernels [..., in, out] become [..., out, in]. Variational
    Dropout params (`log_sigma2` like the kernel, `log_sigma2_bias` like the bias) follow as
    the original CNN_ARD's `log_sigma2` / `log_sigma2_bias`.
    """
    for name, index in zip(layer_names(arch), module_indices(arch, dropout)):
        layer = params[name]
        kernel = np.asarray(layer["kernel"])
        lead = kernel.ndim - (4 if name.startswith("conv") else 2)
        axes = tuple(range(lead))
        order = axes + ((lead + 3, lead + 2, lead, lead + 1) if name.startswith("conv") else (lead + 1, lead))
        yield f"module_list.{index}.weight", kernel.transpose(order)
        yield f"module_list.{index}.bias", np.asarray(layer["bias"])
        if "log_sigma2" in layer:
            yield f"module_list.{index}.log_sigma2", np.asarray(layer["log_sigma2"]).transpose(order)
            yield f"module_list.{index}.log_sigma2_bias", np.asarray(layer["log_sigma2_bias"])


def flat_vectors(params: dict, arch: ArchSpec) -> np.ndarray:
    """Population params (leading axis M) -> [M, P] float32 in the original vector order."""
    parts = []
    for _, array in torch_tensors(params, arch, dropout=0.0):
        parts.append(np.ascontiguousarray(array).reshape(array.shape[0], -1))
    return np.concatenate(parts, axis=1).astype(np.float32)


def index_dict(arch: ArchSpec, channels_in: int) -> dict[str, list[int]]:
    """The original `index_dict.json`: per layer its module index (dropout-free numbering),
    start offset in the vector, kernel count (out), kernel size (kh*kw; 1 for fc), channels in.
    """
    out: dict[str, list[int]] = {"layer": [], "idx_start": [], "kernel_no": [], "kernel_size": [], "channels_in": []}
    offset, cin = 0, channels_in
    for (index, conv) in zip(module_indices(arch, 0.0), arch.convs):
        for key, value in zip(out, (index, offset, conv.features, conv.kernel**2, cin)):
            out[key].append(value)
        offset += conv.features * cin * conv.kernel**2 + conv.features
        cin = conv.features
    widths = (*arch.hidden, arch.num_classes)
    fc_indices = module_indices(arch, 0.0)[len(arch.convs):]
    fan_in = arch.flat_features
    for index, width in zip(fc_indices, widths):
        for key, value in zip(out, (index, offset, width, 1, fan_in)):
            out[key].append(value)
        offset += width * fan_in + width
        fan_in = width
    return out
