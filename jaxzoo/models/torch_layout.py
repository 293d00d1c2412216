"""PyTorch layout of the original zoos' CNNs: state_dict keys, tensor layouts, flat vectors.

The original's `module_list` interleaves conv, pool, activation and (sometimes) dropout
modules, so a layer's state_dict index depends on the architecture and on whether dropout
modules are present: CNN-s without dropout: conv 0, 3, 6, fc 9, 11; CNN-s with
dropout > 0: conv 0, 4, 8, fc 11, 14; CNN-m (dropout modules always present): conv 0, 4, 8,
fc 13, 16. Flat vectors follow the original loader: per layer in forward order, the weight in
PyTorch layout flattened row-major, then the bias.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from jaxzoo.models.cnn import ArchSpec, layer_names


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
    for index, conv in zip(module_indices(arch, 0.0), arch.convs):
        for key, value in zip(out, (index, offset, conv.features, conv.kernel**2, cin)):
            out[key].append(value)
        offset += conv.features * cin * conv.kernel**2 + conv.features
        cin = conv.features
    widths = (*arch.hidden, arch.num_classes)
    fc_indices = module_indices(arch, 0.0)[len(arch.convs) :]
    fan_in = arch.flat_features
    for index, width in zip(fc_indices, widths):
        for key, value in zip(out, (index, offset, width, 1, fan_in)):
            out[key].append(value)
        offset += width * fan_in + width
        fan_in = width
    return out


class TorchInverse:
    """The inverse of a PyTorch-layout mapping, found by running the mapping itself.

    `forward(tree)` is a forward mapping such as `torch_tensors` or `resnet.torch_state_dict`:
    it takes a tree of arrays with one leading (population) axis and yields (state_dict key,
    array) pairs that only transpose, reshape or cast its leaves. `leaves` gives the tree's
    leaves as {key path: (per-model shape, dtype)}. The forward mapping is run once on index
    probes (every element of every leaf numbered, int64, total below 2**24 so that a float32
    cast keeps them), which tells for each key its tensor shape and, element by element, where
    it comes from: the inverse reuses the forward's key and layout tables instead of a second copy.
    """

    def __init__(self, forward, leaves: dict[tuple[str, ...], tuple[tuple[int, ...], np.dtype]]):
        self.leaves = {path: (tuple(shape), np.dtype(dtype)) for path, (shape, dtype) in leaves.items()}
        paths = list(self.leaves)
        sizes = [int(np.prod(shape)) for shape, _ in self.leaves.values()]
        starts = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        if starts[-1] >= 2**24:
            raise ValueError(f"{starts[-1]} elements: the index probes must stay below 2**24")
        tree: dict = {}
        for path, start, (shape, _) in zip(paths, starts, self.leaves.values()):
            node = tree
            for name in path[:-1]:
                node = node.setdefault(name, {})
            node[path[-1]] = (start + np.arange(int(np.prod(shape)), dtype=np.int64)).reshape((1, *shape))
        outputs = forward(tree)
        outputs = outputs.items() if isinstance(outputs, dict) else outputs
        self.keys: list[str] = []
        self.shapes: dict[str, tuple[int, ...]] = {}
        self.targets: dict[str, tuple[tuple[str, ...], np.ndarray]] = {}
        seen = np.zeros(int(starts[-1]), np.int64)
        for key, array in outputs:
            ids = np.rint(np.asarray(array, np.float64)[0]).astype(np.int64)
            leaf = int(np.searchsorted(starts, ids.min(), side="right")) - 1 if ids.size else 0
            if ids.size and not (starts[leaf] <= ids.min() and ids.max() < starts[leaf + 1]):
                raise ValueError(f"{key} mixes leaves: not a layout mapping")
            self.keys.append(key)
            self.shapes[key] = ids.shape
            self.targets[key] = (paths[leaf], (ids - starts[leaf]).reshape(-1))
            seen[ids.reshape(-1)] += 1
        if not (seen == 1).all():
            raise ValueError("the mapping does not cover every leaf element exactly once")

    def problem(self, shapes: dict[str, tuple[int, ...]]) -> str | None:
        """Why tensors with these {key: shape} are not this layout (keys missing, unexpected, or
        of another shape), or None."""
        missing = [key for key in self.keys if key not in shapes]
        if missing:
            return f"missing {', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''}"
        extra = [key for key in shapes if key not in self.shapes]
        if extra:
            return f"unexpected {', '.join(extra[:3])}{' ...' if len(extra) > 3 else ''}"
        for key in self.keys:
            if tuple(shapes[key]) != self.shapes[key]:
                return f"{key} has shape {list(shapes[key])}, the model's is {list(self.shapes[key])}"
        return None

    def allocate(self, count: int) -> dict[tuple[str, ...], np.ndarray]:
        """Zeroed population arrays {key path: [count, *shape]} of the leaves' dtypes."""
        return {path: np.zeros((count, *shape), dtype) for path, (shape, dtype) in self.leaves.items()}

    def put(self, arrays: dict[tuple[str, ...], np.ndarray], index: int, tensors: dict[str, np.ndarray]) -> None:
        """Writes one model's tensors {key: array in PyTorch layout} into row `index` of `arrays`."""
        for key in self.keys:
            path, positions = self.targets[key]
            row = arrays[path][index : index + 1].reshape(-1)  # a view of the model's leaf
            row[positions] = np.asarray(tensors[key]).reshape(-1)

    @staticmethod
    def tree(arrays: dict[tuple[str, ...], np.ndarray]) -> dict:
        """{key path: array} -> the nested dict of the mapping's input tree."""
        tree: dict = {}
        for path, array in arrays.items():
            node = tree
            for name in path[:-1]:
                node = node.setdefault(name, {})
            node[path[-1]] = array
        return tree


def torch_inverse(arch: ArchSpec, dropout: float, leaves: dict[tuple[str, ...], tuple]) -> TorchInverse:
    """The inverse of `torch_tensors` for `arch` with `dropout` (its module indices): original
    `module_list.{i}.weight/bias` tensors back to Flax params. `leaves`: {(layer, 'kernel' |
    'bias'): (shape, dtype)} of one model's params (e.g. from `architectures.params_shapes`)."""
    return TorchInverse(lambda params: torch_tensors(params, arch, dropout), leaves)
