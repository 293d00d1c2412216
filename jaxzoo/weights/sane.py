"""SANE's tokens of a zoo's flat vectors (numpy only, no torch), their exact inverse, and the
permutation spec SANE aligns models with.

SANE (Schürholt et al., "Towards scalable and versatile weight space learning", HSG-AIML/SANE)
trains on checkpoints cut into tokens of a fixed width. Per layer (a state_dict `weight`, in
key order), the weight is viewed as [out, -1] (one row per output unit: a dense unit's incoming
weights, a conv channel's kernel in [in, kh, kw] order) and the layer's bias, when there is
one, is appended as the row's last column. Each row is cut into ceil(width / token_size)
tokens of `token_size` entries, the last one zero-padded; the mask is True on real entries.
Every token has a position triple (its index in the whole sequence, the layer's number, the
output unit it belongs to), int16 as SANE stores them (int32 past 32,767).

Layouts: the CNN / MLP `index_dict` of classification exports (state_dict keys
`module_list.{layer}.weight`) and the per-tensor layouts (`{'tensors': [{key, offset,
shape}]}`: INR zoos, ResNets, custom modules), where every tensor must be a `weight` or the
bias of one (its key with `weight` replaced by `bias`), as SANE reads a checkpoint with
`ignore_bn=False`. `token_size=0` takes the widest row (SANE's own `tokensize=0` rule).

Functions: `sane_tokens` (vectors [N, P] or a state_dict -> tokens [N, T, token_size], mask
[T, token_size], positions [T, 3]), `sane_vectors` (the inverse, exact), `token_table` (the
index of every token entry in the vector), `sane_permutation_spec` (SANE's `axes_to_perm` of a
chain of layers: the permutation of each hidden layer's units named `P_bg{i}`).
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping

import numpy as np

from jaxzoo.weights.adapters import from_tensors, vector_layout
from jaxzoo.weights.vectors import LoaderError, layers, layout_size

POSITION_INT16_MAX = 32767  # SANE stores positions as int16 while they fit


@dataclasses.dataclass(frozen=True)
class SaneLayer:
    """One tokenised layer: its weight [units, fan_in] (row-major) at `start` of the flat vector,
    its bias [units] at `bias_start` (None: no bias), and the state_dict keys."""

    weight_key: str
    bias_key: str | None
    start: int
    units: int
    fan_in: int
    bias_start: int | None

    @property
    def width(self) -> int:
        """Entries of one row: the unit's weights, then its bias."""
        return self.fan_in + (self.bias_start is not None)


def sane_layers(layout: dict) -> list[SaneLayer]:
    """The layers SANE tokenises, in state_dict order, of an export's `index_dict` layout."""
    if "tensors" not in layout:
        numbers = layout.get("layer", list(range(len(layout.get("idx_start", [])))))
        return [
            SaneLayer(f"module_list.{n}.weight", f"module_list.{n}.bias", x.start, x.units, x.fan_in, x.bias_start)
            for n, x in zip(numbers, layers(layout))
        ]
    tensors = {t["key"]: t for t in layout["tensors"]}
    out, covered = [], set()
    for key, tensor in tensors.items():
        if "weight" not in key:
            continue
        shape = [int(s) for s in tensor["shape"]]
        bias_key = key.replace("weight", "bias")
        bias = tensors.get(bias_key)
        if bias is not None and [int(s) for s in bias["shape"]] != shape[:1]:
            bias = None
        bias_start = None if bias is None else int(bias["offset"])
        out.append(
            SaneLayer(
                key, bias_key if bias else None, int(tensor["offset"]), shape[0], math.prod(shape[1:]), bias_start
            )
        )
        covered |= {key, bias_key} if bias else {key}
    left = [key for key in tensors if key not in covered]
    if left:
        raise LoaderError(
            f"tensor {left[0]} of this layout is neither a weight nor the bias of one: SANE's tokens hold "
            "weights and their biases only, so these vectors cannot be tokenised exactly"
        )
    return out


@dataclasses.dataclass(frozen=True)
class TokenTable:
    """Where each token entry comes from: `index` [T, token_size] into the flat vector (0 on
    padding), `mask` [T, token_size] (True on real entries), `positions` [T, 3] (sequence index,
    layer number, output unit) and the vector size `size`."""

    index: np.ndarray
    mask: np.ndarray
    positions: np.ndarray
    size: int


def check_token_size(token_size) -> int:
    """`token_size` as an int, or LoaderError unless it is an integer >= 0."""
    if not (isinstance(token_size, (int, np.integer)) and not isinstance(token_size, bool) and token_size >= 0):
        raise LoaderError(f"token_size must be an integer >= 0 (0: the widest row), got {token_size!r}")
    return int(token_size)


def token_table(layout: dict, token_size: int) -> TokenTable:
    """The token layout of `layout` cut into tokens of `token_size` (0: the widest row)."""
    token_size = check_token_size(token_size)
    parts = sane_layers(layout)
    size = layout_size(layout)
    token_size = token_size or max(layer.width for layer in parts)
    index, mask, positions = [], [], []
    for number, layer in enumerate(parts):
        per_row = -(-layer.width // token_size)  # tokens per output unit
        column = np.arange(per_row * token_size)  # [C] place in the padded row
        unit = np.arange(layer.units)[:, None]  # [U, 1]
        where = np.where(column < layer.fan_in, layer.start + unit * layer.fan_in + column, 0)
        real = np.broadcast_to(column < layer.fan_in, where.shape).copy()
        if layer.bias_start is not None:
            is_bias = column == layer.fan_in
            where = np.where(is_bias, layer.bias_start + unit, where)
            real |= is_bias
        index.append(where.reshape(-1, token_size))
        mask.append(real.reshape(-1, token_size))
        positions.append(np.stack([np.full(layer.units * per_row, number), np.repeat(unit[:, 0], per_row)], axis=1))
    index, mask = np.concatenate(index), np.concatenate(mask)
    positions = np.concatenate(positions)
    positions = np.concatenate([np.arange(len(positions))[:, None], positions], axis=1)
    dtype = np.int16 if positions.max(initial=0) <= POSITION_INT16_MAX else np.int32
    counts = np.bincount(index[mask], minlength=size)
    if len(counts) != size or (counts != 1).any():
        raise LoaderError(
            "this layout's layers do not cover its vectors once each: the tokens could not be turned back "
            "into vectors (re-export the zoo)"
        )
    return TokenTable(index, mask, positions.astype(dtype), size)


def state_dict_vectors(state_dict: Mapping, layout: dict) -> np.ndarray:
    """A state_dict (key -> array in PyTorch's layout, with or without a leading model axis)
    -> flat vectors [N, P] in the layout's order (the weights SANE's tokeniser reads)."""
    first = vector_layout(layout).tensors[0]
    single = first.key in state_dict and np.shape(state_dict[first.key]) == tuple(first.shape)
    return from_tensors(
        {key: np.asarray(value)[None] if single else value for key, value in state_dict.items()}, layout
    )


def sane_tokens(
    vectors_or_state_dict: np.ndarray | Mapping, layout: dict, token_size: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Flat vectors [N, P] (or [P], or a state_dict) -> (tokens [N, T, token_size] with zeros on
    padding, mask [T, token_size] bool, positions [T, 3]) as SANE's `tokenize_checkpoint`."""
    if isinstance(vectors_or_state_dict, Mapping):
        vectors = state_dict_vectors(vectors_or_state_dict, layout)
    else:
        vectors = np.asarray(vectors_or_state_dict)
        vectors = vectors[None] if vectors.ndim == 1 else vectors
    table = token_table(layout, token_size)
    if vectors.ndim != 2 or vectors.shape[1] != table.size:
        raise LoaderError(
            f"vectors of shape {vectors.shape} do not fit this layout of {table.size} parameters: pass rows [N, {table.size}]"
        )
    # where, not a product: padding is +0.0 even next to a negative, infinite or NaN entry 0
    tokens = np.where(table.mask, np.take(vectors, table.index, axis=1), np.zeros((), vectors.dtype))
    return tokens, table.mask.copy(), table.positions.copy()


def sane_vectors(tokens: np.ndarray, layout: dict, token_size: int) -> np.ndarray:
    """tokens [N, T, token_size] -> flat vectors [N, P]: the exact inverse of `sane_tokens`."""
    table = token_table(layout, token_size)
    tokens = np.asarray(tokens)
    if tokens.shape[1:] != table.index.shape:
        raise LoaderError(
            f"tokens of shape {tokens.shape} do not fit this layout's {table.index.shape} tokens: "
            "pass the layout and token_size they were made with"
        )
    vectors = np.zeros((len(tokens), table.size), tokens.dtype)
    vectors[:, table.index[table.mask]] = tokens[:, table.mask]
    return vectors


SIREN_KEY = re.compile(r"^layer(\d+)\.(weight|bias)$")


def sane_permutation_spec(layout: dict) -> dict[str, tuple[str | None, ...]]:
    """SANE's `axes_to_perm` for a chain of layers (the CNN / MLP layouts, and SIRENs' `layer{i}`
    layouts): weight key -> (permutation of its output units, of its input units), bias key ->
    (permutation of its units,), the hidden layer i's units permuted by `P_bg{i}`; the input and
    the output are never permuted (None). SANE's `permutation_spec_from_axes_to_perm` of it is
    the PermutationSpec its Git Re-Basin alignment and permutation augmentation take."""
    parts = sane_layers(layout)
    if "tensors" in layout:
        keys = [t["key"] for t in layout["tensors"]]
        expected = [key for i in range(len(parts)) for key in (f"layer{i}.weight", f"layer{i}.bias")]
        if keys != expected:
            raise LoaderError(
                "a permutation spec is defined here for chains of layers (the CNN / MLP layouts, SIRENs); "
                "this layout has other tensors (ResNet or custom modules)"
            )
    last = len(parts) - 1
    spec: dict[str, tuple[str | None, ...]] = {}
    for i, layer in enumerate(parts):
        out = f"P_bg{i}" if i < last else None
        spec[layer.weight_key] = (out, f"P_bg{i - 1}" if i else None)
        if layer.bias_key:
            spec[layer.bias_key] = (out,)
    return spec
