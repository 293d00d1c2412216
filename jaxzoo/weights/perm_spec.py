"""Permutation specs as JSON: which axes of which tensors one permutation of hidden units acts
on, per architecture, in the `axes_to_perm` form of Git Re-Basin (and SANE, which aligns with
it; Universal Neural Functionals builds its layers from the same information).

`permutation_spec(layout)` takes an export's layout (`index_dict`, or {'tensors': [{key, offset,
shape}]}) and returns a JSON-serialisable dict:

  {"format": "axes_to_perm/1", "framework": "pytorch", "key_sep": ".",
   "perms": {name: size}, "axes": {state_dict key: [name or null, one per axis]},
   "blocks": {key: {axis: units}}}

Keys and axes are PyTorch's (conv weight [out, in, kh, kw], linear weight [out, in]); null axes
are never permuted (the network's input and output, kernel taps). `blocks` marks the axis of a
dense layer that takes a flattened conv output: each channel is `units` consecutive entries
(channel-major flatten), which a permutation moves together. Chains of layers (the CNN / MLP
family, SIRENs) name hidden layer i's units `P_bg{i}` (`jaxzoo.weights.sane.sane_permutation_spec`).
ResNet-18 (torchvision keys, BatchNorm running statistics included) ties every tensor a residual
stream passes through to one permutation per stage, `P_stage{s}`, and each block's inner units
to `P_layer{l}.{b}`: the residual constraints. Git Re-Basin reads `axes` with
`permutation_spec_from_axes_to_perm({k: tuple(v) for k, v in spec["axes"].items()})`.
"""

from __future__ import annotations

import math
import re

from jaxzoo.weights.sane import sane_layers, sane_permutation_spec
from jaxzoo.weights.vectors import LoaderError

PERM_SPEC_FORMAT = "axes_to_perm/1"
RESNET_BLOCK = re.compile(r"^layer(\d)\.(\d)\.(conv1|bn1|conv2|bn2|downsample\.0|downsample\.1)\.(\w+)$")
BN_TENSORS = ("weight", "bias", "running_mean", "running_var")


def permutation_spec(layout: dict) -> dict:
    """The permutation spec (module docstring) of an export's layout: a chain of layers or a
    ResNet-18. LoaderError for other layouts (custom modules: their symmetry is theirs to state)."""
    shapes = _shapes(layout)
    if "conv1.weight" in shapes and any(RESNET_BLOCK.match(key) for key in shapes):
        axes = _resnet_axes(shapes)
    else:
        axes = {key: list(value) for key, value in sane_permutation_spec(layout).items()}
    axes = {key: value + [None] * (len(shapes[key]) - len(value)) for key, value in axes.items()}
    perms, blocks = {}, {}
    for key, names in axes.items():
        for axis, name in enumerate(names):
            if name is None or name in perms:
                continue
            perms[name] = shapes[key][axis]
    for key, names in axes.items():
        for axis, name in enumerate(names):
            if name is not None and shapes[key][axis] != perms[name]:
                units, left = divmod(shapes[key][axis], perms[name])
                if left:
                    raise LoaderError(
                        f"{key} axis {axis} ({shapes[key][axis]}) is not a multiple of {name}'s {perms[name]}"
                    )
                blocks.setdefault(key, {})[str(axis)] = units
    return {
        "format": PERM_SPEC_FORMAT,
        "framework": "pytorch",
        "key_sep": ".",
        "perms": perms,
        "axes": axes,
        "blocks": blocks,
    }


def _shapes(layout: dict) -> dict[str, tuple[int, ...]]:
    """state_dict key -> PyTorch shape of every tensor of the layout."""
    if "tensors" in layout:
        return {t["key"]: tuple(int(s) for s in t["shape"]) for t in layout["tensors"]}
    shapes = {}
    for layer, kernel in zip(sane_layers(layout), layout["kernel_size"]):
        side = math.isqrt(int(kernel))  # kernel_size is kh * kw for convs, 1 for dense layers
        conv = kernel > 1
        shapes[layer.weight_key] = (
            (layer.units, layer.fan_in // kernel, side, side) if conv else (layer.units, layer.fan_in)
        )
        shapes[layer.bias_key] = (layer.units,)
    return shapes


def _resnet_axes(shapes: dict[str, tuple[int, ...]]) -> dict[str, list[str | None]]:
    """ResNet-18's axes_to_perm: the residual stream of layer{l} is `P_stage{l-1}` (the stem's is
    layer1's, `P_stage0`), block (l, b)'s inner units `P_layer{l}.{b}`; fc's outputs are the logits."""
    axes: dict[str, list[str | None]] = {"conv1.weight": ["P_stage0", None]}
    axes.update({f"bn1.{name}": ["P_stage0"] for name in BN_TENSORS})
    for key in shapes:
        match = RESNET_BLOCK.match(key)
        if not match:
            continue
        layer, block, part, tensor = int(match[1]), int(match[2]), match[3], match[4]
        stream_out, inner = f"P_stage{max(layer - 1, 0)}", f"P_layer{layer}.{block}"  # layer1: the stem's
        stream_in = stream_out if block else f"P_stage{max(layer - 2, 0)}"
        if tensor == "num_batches_tracked":
            continue
        axes[key] = {
            "conv1": [inner, stream_in],
            "bn1": [inner],
            "conv2": [stream_out, inner],
            "bn2": [stream_out],
            "downsample.0": [stream_out, stream_in],
            "downsample.1": [stream_out],
        }[part]
    last = f"P_stage{max(int(m[1]) for m in map(RESNET_BLOCK.match, shapes) if m) - 1}"
    axes["fc.weight"], axes["fc.bias"] = [None, last], [None]
    return {key: value for key, value in axes.items() if key in shapes}
