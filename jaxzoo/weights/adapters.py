"""Flat vectors -> what weight-space methods and frameworks take, and back (exact: reshapes,
transposes and pads only).

A flat vector [P] (`jaxzoo.export.load_vectors`, float32) is the export's PyTorch tensors
flattened row-major in state_dict order; its `index_dict` says where each tensor lies, in one of
two forms: the original's per-layer map (built-in CNN / MLP zoos: layer, idx_start, kernel_no,
kernel_size, channels_in) or {'tensors': [{key, offset, shape}]} (ResNet-18, custom modules,
SIREN zoos). `vector_layout` reads either form (or an export folder) into a `VectorLayout`.

Targets, each with its inverse (N models at once, a leading batch axis first):

* `to_tensors` / `from_tensors`: {state_dict key: [N, *PyTorch shape]}; `to_state_dicts` /
  `from_state_dicts`: one {key: array} per model (torch.from_numpy each value for
  `load_state_dict`; the export's model.py `load_vector` fills a network directly).
* `to_nfn` / `from_nfn`: NFN's `WeightSpaceFeatures(weights, biases)` (nfn.common's
  `state_dict_to_tensors` + `default_collate`): weights [N, 1, out, in] (conv: [N, 1, out, in,
  kh, kw]), biases [N, 1, out].
* `to_dwsnets` / `from_dwsnets`: DWSNets' INR / MLP batches (dense layers only): weights
  [N, in, out, 1], biases [N, out, 1].
* `to_scalegmn` / `from_scalegmn`: ScaleGMN's CNN dataset (its `_transform_weights_biases`, no
  `linear_as_conv`): conv weights [N, in, out, kmax_h * kmax_w] (kernels zero-padded to
  `max_kernel_size`, centred, then flattened), dense weights [N, in, out, 1], biases [N, out, 1].
  For MLPs and SIRENs this is the DWSNets layout, as ScaleGMN's INR datasets read it.
* `to_flax` / `from_flax`: the Flax params tree the workdir holds ([N, ...] leaves), for a
  classification zoo (built-in, custom, ResNet-18 trainable params) or an INR zoo;
  `flax_inverse` builds the inverse once for many `to_flax` calls.

The per-layer methods (NFN, DWSNets, ScaleGMN) need a chain of layers, each a weight [out, in]
or [out, in, kh, kw] followed by its bias [out]: built-in CNNs and MLPs, SIRENs, and custom
modules of that shape; a ResNet-18 layout is refused.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import pathlib
from collections.abc import Callable, Sequence

import jax
import numpy as np
from flax import traverse_util

from jaxzoo.errors import UserError
from jaxzoo.inr import siren
from jaxzoo.inr.zoo import InrZoo, is_inr_workdir, read_inr_zoo
from jaxzoo.models import resnet
from jaxzoo.models.registry import params_shapes
from jaxzoo.models.torch_layout import TorchInverse
from jaxzoo.weights.symmetry import vector_blocks
from jaxzoo.weights.vectors import SPLITS, VectorSplit
from jaxzoo.zoo.reader import Zoo, read_zoo


class AdapterError(UserError):
    """Vectors, a layout or a zoo an adapter cannot take (the message names the problem and the fix)."""


@dataclasses.dataclass(frozen=True)
class TensorSpec:
    """One tensor of a flat vector: its state_dict key, offset (in numbers) and PyTorch shape."""

    key: str
    offset: int
    shape: tuple[int, ...]

    @property
    def size(self) -> int:
        return math.prod(self.shape)


@dataclasses.dataclass(frozen=True)
class VectorLayout:
    """Where every tensor of a flat vector lies, in state_dict (= vector) order."""

    tensors: tuple[TensorSpec, ...]

    @property
    def size(self) -> int:
        """P, the numbers of one vector."""
        return sum(t.size for t in self.tensors)

    def layers(self) -> list[tuple[TensorSpec, TensorSpec]]:
        """(weight, bias) per layer, in forward order; AdapterError unless the layout is a chain
        of weights [out, in] or [out, in, kh, kw] each followed by its bias [out]."""
        tensors, out = list(self.tensors), []
        for i in range(0, len(tensors), 2):
            weight = tensors[i]
            bias = tensors[i + 1] if i + 1 < len(tensors) else None
            if (
                bias is None
                or len(weight.shape) not in (2, 4)
                or bias.shape != weight.shape[:1]
                or not weight.key.endswith("weight")
                or not bias.key.endswith("bias")
            ):
                raise AdapterError(
                    f"tensor {weight.key} {list(weight.shape)} is not a layer's weight followed by its bias: "
                    "DWSNets, NFN and ScaleGMN take chains of dense / conv layers (built-in CNNs and MLPs, "
                    "SIRENs); use to_tensors or to_flax for this layout"
                )
            out.append((weight, bias))
        return out


def _index_dict_tensors(index_dict: dict) -> list[TensorSpec]:
    """The original per-layer map -> tensors `module_list.{layer}.weight/bias`. The last layer is
    dense; going back, a layer is dense while it feeds the next one directly: kernel_size 1, the
    next layer's inputs are its outputs (not out x H x W of a flatten), and only an activation
    (and dropout) sit between their modules. A 1x1 conv on a 1x1 map reads as dense ([out, in]
    for [out, in, 1, 1]: the same numbers)."""
    layer, sizes = list(index_dict["layer"]), list(index_dict["kernel_size"])
    outs, ins = list(index_dict["kernel_no"]), list(index_dict["channels_in"])
    first_fc = len(layer) - 1
    while (
        first_fc > 0
        and sizes[first_fc - 1] == 1
        and ins[first_fc] == outs[first_fc - 1]
        and layer[first_fc] - layer[first_fc - 1] in (2, 3)
    ):
        first_fc -= 1
    tensors = []
    for i, (module, (start, out, units_in, rest)) in enumerate(zip(layer, vector_blocks(index_dict))):
        kernel = math.isqrt(rest)
        if i < first_fc and kernel * kernel != rest:
            raise AdapterError(f"index_dict layer {i}: kernel_size {rest} is not a square kernel (kh * kw, kh == kw)")
        shape = (out, units_in, kernel, kernel) if i < first_fc else (out, units_in * rest)
        tensors.append(TensorSpec(f"module_list.{module}.weight", int(start), shape))
        tensors.append(TensorSpec(f"module_list.{module}.bias", int(start) + math.prod(shape), (out,)))
    return tensors


def vector_layout(source: dict | VectorSplit | VectorLayout | str | os.PathLike) -> VectorLayout:
    """The layout of flat vectors from an index_dict (either form), a `VectorSplit`, or an export
    folder (`<experiment>/`, its `vectors/` or `index_dict.json`): the folder alone suffices."""
    if isinstance(source, VectorLayout):
        return source
    if isinstance(source, VectorSplit):
        source = source.index_dict
    if isinstance(source, (str, os.PathLike)):
        path = pathlib.Path(source)
        candidates = [path] if path.is_file() else [path / "index_dict.json"]
        candidates += [path / "vectors" / f"{split}.json" for split in SPLITS] + [path / f"{s}.json" for s in SPLITS]
        found = next((p for p in candidates if p.is_file()), None)
        if found is None:
            raise AdapterError(
                f"{path} holds no index_dict.json nor vectors/<split>.json: pass an export folder "
                "written by python -m jaxzoo.export"
            )
        document = json.loads(found.read_text())
        source = document.get("index_dict", document)
    if not isinstance(source, dict) or not ({"tensors"} <= set(source) or {"layer", "idx_start"} <= set(source)):
        raise AdapterError(
            "the layout is neither an index_dict ({'layer', 'idx_start', ...} or {'tensors': [...]}) nor an "
            "export folder: pass the split's index_dict or the export's folder"
        )
    if "tensors" in source:
        tensors = [TensorSpec(t["key"], int(t["offset"]), tuple(int(d) for d in t["shape"])) for t in source["tensors"]]
    else:
        tensors = _index_dict_tensors(source)
    layout = VectorLayout(tuple(tensors))
    offset = 0
    for t in layout.tensors:
        if t.offset != offset:
            raise AdapterError(
                f"{t.key} starts at {t.offset}, not at {offset}: the index_dict is damaged, export again"
            )
        offset += t.size
    return layout


def _rows(vectors, layout: VectorLayout) -> np.ndarray:
    """vectors [N, P] or [P] -> [N, P] (no copy when possible); AdapterError on another P."""
    array = np.asarray(vectors)
    array = array[None] if array.ndim == 1 else array
    if array.ndim != 2 or array.shape[1] != layout.size:
        raise AdapterError(
            f"vectors of shape {list(np.shape(vectors))} for a layout of {layout.size} numbers: pass [N, "
            f"{layout.size}] rows of the export the layout comes from"
        )
    return array


def _join(parts: Sequence[np.ndarray], count: int) -> np.ndarray:
    return np.concatenate([np.reshape(p, (count, -1)) for p in parts], axis=1)


# ---- PyTorch tensors and state_dicts -------------------------------------------------------------


def to_tensors(vectors, layout) -> dict[str, np.ndarray]:
    """vectors [N, P] -> {state_dict key: [N, *PyTorch shape]} in state_dict order (views when
    the vectors are contiguous). `layout`: anything `vector_layout` reads."""
    layout = vector_layout(layout)
    rows = _rows(vectors, layout)
    return {t.key: rows[:, t.offset : t.offset + t.size].reshape(len(rows), *t.shape) for t in layout.tensors}


def from_tensors(tensors: dict[str, np.ndarray], layout) -> np.ndarray:
    """{key: [N, *shape]} (numpy or torch tensors, by key) -> vectors [N, P] in the layout's order."""
    layout = vector_layout(layout)
    missing = [t.key for t in layout.tensors if t.key not in tensors]
    if missing:
        raise AdapterError(f"tensors lack {', '.join(missing[:3])}: pass every tensor of the layout")
    arrays = [np.asarray(tensors[t.key]) for t in layout.tensors]
    count = len(arrays[0])
    for t, a in zip(layout.tensors, arrays):
        if a.shape != (count, *t.shape):
            raise AdapterError(
                f"{t.key} has shape {list(a.shape)}, the layout's is [{count}, {', '.join(map(str, t.shape))}]"
            )
    return _join(arrays, count)


def to_state_dicts(vectors, layout, keys: Sequence[str] | None = None) -> list[dict[str, np.ndarray]]:
    """vectors [N, P] -> N state_dicts {key: numpy array}, PyTorch shapes; `keys` (state_dict
    order) rename the layout's, e.g. `list(model.state_dict())` of a CNN with dropout modules,
    whose module indices sit above the index_dict's dropout-free ones."""
    tensors = to_tensors(vectors, layout)
    names = list(tensors) if keys is None else list(keys)
    if len(names) != len(tensors):
        raise AdapterError(f"{len(names)} keys for {len(tensors)} tensors: pass one key per tensor, in order")
    count = len(next(iter(tensors.values())))
    return [{name: np.array(a[m]) for name, a in zip(names, tensors.values())} for m in range(count)]


def from_state_dicts(state_dicts: Sequence[dict], layout) -> np.ndarray:
    """N state_dicts (numpy arrays or torch tensors; values in state_dict order, any key names,
    e.g. a CNN's with dropout modules) -> vectors [N, P]."""
    layout = vector_layout(layout)
    values = [list(sd.values()) for sd in state_dicts]
    if any(len(v) != len(layout.tensors) for v in values):
        raise AdapterError(
            f"state_dicts of other lengths than the layout's {len(layout.tensors)} tensors: pass its parameters only"
        )
    stacked = {t.key: np.stack([np.asarray(v[i]) for v in values]) for i, t in enumerate(layout.tensors)}
    return from_tensors(stacked, layout)


# ---- per-layer conventions: NFN, DWSNets, ScaleGMN ------------------------------------------------


def to_nfn(vectors, layout) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """vectors [N, P] -> (weights, biases) as NFN's `WeightSpaceFeatures` takes them: per layer a
    weight [N, 1, out, in] (conv: [N, 1, out, in, kh, kw]) and a bias [N, 1, out]
    (torch.from_numpy each, then `WeightSpaceFeatures(weights, biases)`)."""
    tensors = to_tensors(vectors, layout)
    pairs = vector_layout(layout).layers()
    return [tensors[w.key][:, None] for w, _ in pairs], [tensors[b.key][:, None] for _, b in pairs]


def from_nfn(weights: Sequence, biases: Sequence, layout) -> np.ndarray:
    """The inverse of `to_nfn` (one feature channel) -> vectors [N, P]."""
    pairs = vector_layout(layout).layers()
    _check_count(weights, biases, pairs)
    tensors = {}
    for (w, b), weight, bias in zip(pairs, weights, biases):
        tensors[w.key], tensors[b.key] = _channel(weight, 1, w.key), _channel(bias, 1, b.key)
    return from_tensors(tensors, layout)


def to_dwsnets(vectors, layout) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """vectors [N, P] of an MLP / SIREN -> (weights, biases) as DWSNets' INR dataset batches them:
    per layer a weight [N, in, out, 1] (the PyTorch weight transposed, a feature axis last) and a
    bias [N, out, 1]. Conv layers are refused (DWSNets takes MLPs)."""
    tensors = to_tensors(vectors, layout)
    pairs = vector_layout(layout).layers()
    for w, _ in pairs:
        if len(w.shape) != 2:
            raise AdapterError(
                f"{w.key} is a conv kernel {list(w.shape)}: DWSNets takes MLPs and INRs; use to_nfn or to_scalegmn for CNNs"
            )
    return (
        [np.swapaxes(tensors[w.key], 1, 2)[..., None] for w, _ in pairs],
        [tensors[b.key][..., None] for _, b in pairs],
    )


def from_dwsnets(weights: Sequence, biases: Sequence, layout) -> np.ndarray:
    """The inverse of `to_dwsnets` -> vectors [N, P]."""
    pairs = vector_layout(layout).layers()
    _check_count(weights, biases, pairs)
    tensors = {}
    for (w, b), weight, bias in zip(pairs, weights, biases):
        tensors[w.key] = np.swapaxes(_channel(weight, -1, w.key), 1, 2)
        tensors[b.key] = _channel(bias, -1, b.key)
    return from_tensors(tensors, layout)


def _kernel_padding(shape: tuple[int, ...], max_kernel_size: tuple[int, int]) -> list[tuple[int, int]]:
    """ScaleGMN's centred padding of a kernel [kh, kw] to max_kernel_size, per spatial axis."""
    pads = []
    for size, top in zip(shape, max_kernel_size):
        if size > top:
            raise AdapterError(
                f"a {shape[0]}x{shape[1]} kernel exceeds max_kernel_size {tuple(max_kernel_size)}: pass a larger one"
            )
        pads.append(((top - size) // 2, top - size - (top - size) // 2))
    return pads


def _max_kernel(pairs, max_kernel_size) -> tuple[int, int]:
    if max_kernel_size is not None:
        return tuple(int(k) for k in max_kernel_size)
    kernels = [w.shape[2:] for w, _ in pairs if len(w.shape) == 4] or [(1, 1)]
    return (max(k[0] for k in kernels), max(k[1] for k in kernels))


def to_scalegmn(
    vectors, layout, max_kernel_size: tuple[int, int] | None = None
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """vectors [N, P] -> (weights, biases) as ScaleGMN's CNN dataset feeds its graphs: conv weights
    [N, in, out, kh * kw] with every kernel zero-padded (centred) to `max_kernel_size` (default:
    the layout's largest kernel) and flattened row-major, dense weights [N, in, out, 1], biases
    [N, out, 1]. MLPs and SIRENs get DWSNets' layout, which ScaleGMN's INR datasets read."""
    tensors = to_tensors(vectors, layout)
    pairs = vector_layout(layout).layers()
    top = _max_kernel(pairs, max_kernel_size)
    weights = []
    for w, _ in pairs:
        a = np.swapaxes(tensors[w.key], 1, 2)
        if a.ndim == 5:
            a = np.pad(a, [(0, 0)] * 3 + _kernel_padding(w.shape[2:], top)).reshape(*a.shape[:3], -1)
        else:
            a = a[..., None]
        weights.append(a)
    return weights, [tensors[b.key][..., None] for _, b in pairs]


def from_scalegmn(
    weights: Sequence, biases: Sequence, layout, max_kernel_size: tuple[int, int] | None = None
) -> np.ndarray:
    """The inverse of `to_scalegmn` (the padding cut off again) -> vectors [N, P]."""
    pairs = vector_layout(layout).layers()
    _check_count(weights, biases, pairs)
    top = _max_kernel(pairs, max_kernel_size)
    tensors = {}
    for (w, b), weight, bias in zip(pairs, weights, biases):
        a = np.asarray(weight)
        if len(w.shape) == 4:
            (t0, _), (l0, _) = _kernel_padding(w.shape[2:], top)
            a = a.reshape(*a.shape[:3], *top)[..., t0 : t0 + w.shape[2], l0 : l0 + w.shape[3]]
        else:
            a = _channel(a, -1, w.key)
        tensors[w.key] = np.swapaxes(a, 1, 2)
        tensors[b.key] = _channel(bias, -1, b.key)
    return from_tensors(tensors, layout)


def _check_count(weights: Sequence, biases: Sequence, pairs) -> None:
    if len(weights) != len(pairs) or len(biases) != len(pairs):
        raise AdapterError(f"{len(weights)} weights and {len(biases)} biases for a layout of {len(pairs)} layers")


def _channel(array, axis: int, key: str) -> np.ndarray:
    """Drops a feature-channel axis of size 1."""
    array = np.asarray(array)
    if array.shape[axis] != 1:
        raise AdapterError(f"{key}: the feature axis has {array.shape[axis]} channels, not 1: pass one channel")
    return np.squeeze(array, axis=axis)


# ---- Flax params -------------------------------------------------------------------------------


def open_zoo(zoo: Zoo | InrZoo | str | os.PathLike) -> Zoo | InrZoo:
    """A `Zoo` or `InrZoo` as given, or read from its workdir."""
    if isinstance(zoo, (Zoo, InrZoo)):
        return zoo
    return read_inr_zoo(zoo) if is_inr_workdir(zoo) else read_zoo(zoo)


def _shapes_tree(tree) -> dict[tuple[str, ...], tuple]:
    return {path: (leaf.shape, leaf.dtype) for path, leaf in traverse_util.flatten_dict(tree).items()}


def flax_mapping(zoo: Zoo | InrZoo) -> tuple[Callable, dict[tuple[str, ...], tuple]]:
    """(forward, leaves) of a zoo's flat vectors: forward(params [N, ...]) -> (key, [N, *PyTorch
    shape]) pairs in vector order, and one model's params leaves {key path: (shape, dtype)}, from
    which `TorchInverse(forward, leaves)` inverts it. Classification zoos: the export's mapping
    (`Zoo.params_torch`; ResNet-18: its trainable parameters); INR zoos: the SIREN's."""
    if isinstance(zoo, InrZoo):
        spec = zoo.spec
        f = spec.features
        leaves = {}
        for i, name in enumerate(siren.layer_names(spec)):
            leaves[(name, "kernel")] = ((f[i], f[i + 1]), np.float32)
            leaves[(name, "bias")] = ((f[i + 1],), np.float32)

        def forward(params):
            return [(f"layer{i}.{kind}", a) for i, kind, a in siren.torch_state_dict_order(spec, params)]

        return forward, leaves
    if zoo.is_resnet:
        variables = jax.eval_shape(
            lambda: resnet.init_resnet(jax.random.key(0), zoo.num_classes, (8, 8, zoo.channels_in))
        )
        return resnet.torch_parameters, _shapes_tree(variables["params"])
    shapes = params_shapes(zoo.model(zoo.table[0]["activation"]), zoo.image_shape)
    if zoo.is_twin:  # the vector holds kernels and biases, not the log sigma^2
        shapes = {name: {leaf: layer[leaf] for leaf in ("kernel", "bias")} for name, layer in shapes.items()}
    return (lambda params: zoo.params_torch(params)), _shapes_tree(shapes)


def flax_inverse(zoo: Zoo | InrZoo | str | os.PathLike) -> TorchInverse:
    """The `TorchInverse` of a zoo's flat vectors (`flax_mapping`): build it once to call
    `to_flax` on many chunks."""
    return TorchInverse(*flax_mapping(open_zoo(zoo)))


def to_flax(vectors, zoo: Zoo | InrZoo | TorchInverse | str | os.PathLike) -> dict:
    """vectors [N, P] of a zoo's export -> its Flax params tree with numpy leaves [N, ...] (as the
    workdir's checkpoints hold them). `zoo`: a Zoo, InrZoo, workdir, or its `flax_inverse`."""
    inverse = zoo if isinstance(zoo, TorchInverse) else flax_inverse(zoo)
    total = sum(math.prod(inverse.shapes[key]) for key in inverse.keys)
    array = np.asarray(vectors, np.float32)
    array = array[None] if array.ndim == 1 else array
    if array.ndim != 2 or array.shape[1] != total:
        raise AdapterError(
            f"vectors of shape {list(np.shape(vectors))}, the zoo's models have {total} numbers: pass its export's rows"
        )
    arrays = inverse.allocate(len(array))
    offset = 0
    for key in inverse.keys:
        path, positions = inverse.targets[key]
        flat = arrays[path].reshape(len(array), -1)  # a view of the freshly allocated leaf
        flat[:, positions] = array[:, offset : offset + positions.size]
        offset += positions.size
    return TorchInverse.tree(arrays)


def from_flax(params: dict, zoo: Zoo | InrZoo | str | os.PathLike) -> np.ndarray:
    """A zoo's Flax params [N, ...] (numpy or jax leaves) -> flat vectors [N, P] float32."""
    forward, _ = flax_mapping(open_zoo(zoo))
    arrays = [np.asarray(a) for _, a in forward(params)]
    return _join(arrays, len(arrays[0])).astype(np.float32)
