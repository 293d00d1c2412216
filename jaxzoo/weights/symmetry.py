"""Weight-space symmetries of the zoo's CNNs and MLPs (cnn_s, cnn_m, cnn, mlp) and of INR zoos'
SIRENs; numpy, torch-free (the on-device JAX versions are in `jaxzoo.weights.augment`).

A model is a chain of layers conv0.., fc0.. (`models.layer_names`; a SIREN: layer0..); every
layer but the last (the logits, the SIREN's linear output) is *hidden*, and its output units
(conv out-channels, dense outputs) can be transformed without changing the function the model
computes:

* Permutations (every activation). Reordering a hidden layer's output units (kernel columns
  and bias entries) and, the same way, the next layer's inputs leaves the logits unchanged:
  conv -> conv permutes the next kernel's in-channels; conv -> fc permutes the blocks of the
  channel-major flatten (feature c*H*W + h*W + w, `models.CNN`), whole H*W blocks at a time;
  fc -> fc permutes the next kernel's rows. Max-pool, the activation and dropout act per
  unit, so they commute with any permutation. Optimizer moments (Adam mu/nu, momentum) are
  per-parameter and permute exactly as the parameters.
* Sign flips (odd activations: tanh, and a SIREN's sin(w0 x)). Negating a hidden unit's
  incoming weights and bias and its outgoing weights preserves the function because
  f(-x) = -f(x). It holds for dense hidden units, every SIREN hidden layer, and convolutions
  *not followed by a max-pool*; the layer order is conv -> max-pool -> activation and
  max(-x) != -max(x), so pooled convs are excluded (`sign_flippable_layers`). relu, leakyrelu,
  gelu and silu have no sign symmetry; sigmoid only an affine one (sigmoid(-x) =
  1 - sigmoid(x), which also shifts the next bias), not implemented here. Under a flip, first
  moments (mu, momentum) flip with the weights; second moments (nu) are invariant.
* Positive rescaling (relu, leakyrelu: f(c x) = c f(x) for c > 0). A hidden unit's incoming
  weights and bias times c, its outgoing weights times 1/c: the logits do not change. Every
  hidden layer qualifies, pooled convs included (max(c x) = c max(x)); tanh, sigmoid, gelu,
  silu and sine are refused (UserError). Variational-dropout log-variances shift with it
  (log alpha is kept); optimizer moments have no matching rule (Adam is not scale-equivariant).

The architecture arguments (`arch`): a CNN/MLP's `ArchSpec`, from
`jaxzoo.models.registry.arch_spec(config.model, image_size, channels, num_classes)` or
`jaxzoo.zoo.reader.read_zoo(workdir).arch` (an export's config.json names it in `model.arch`,
with `model.convs` / `model.widths` for the configurable cnn and mlp; a trial's params.json in
`model::type`, CNN = cnn_s, CNN3 = cnn_m), with the model's activation (its `activation`
factor; params.json `model::nlin`); a SIREN's `SirenSpec`
(`jaxzoo.inr.zoo.read_inr_zoo(workdir).spec`, `jaxzoo.inr.siren.spec_from_config`), with
activation 'sine'. The flat vectors' `index_dict` is the export's (`index_dict.json`; for an
INR zoo the vectors' {'tensors': [{key, offset, shape}]} layout) and does not say which
activation a model has: the caller must.

Conventions: a permutation `p` of a layer with n units is an int array [n] (or [N, n], one
per model) meaning "new unit i is old unit p[i]". Params are the Flax tree of one model
({conv0: {kernel [kh, kw, in, out], bias [out]}, .., fc0: {kernel [in, out], bias}}; a SIREN:
{layer0: {kernel [in, out], bias [out]}, ..}) or a population (the same with leading axes);
extra per-layer leaves shaped like the kernel or the bias (e.g. variational dropout's
log_sigma2 / log_sigma2_bias) are permuted alike. Flat vectors [N, P] are the export layout
(`layout.flat_vectors`, described by `layout.index_dict`).

Functions: `permute_params` / `permute_vectors` / `random_permutations` (augmentation);
`canonical_params` / `canonical_vectors` (one representative per permutation class: units
sorted by incoming-weight norm, ties lexicographically, from input to output). The canonical
form is an invariant, not an alignment: every permuted copy of a model maps to one vector,
but two different models are not brought towards each other, and the sort can put
functionally similar units of two models in different places, so a model's canonical vector
can be a worse input for linear prediction from weights than its raw one (ridge regression
of test accuracy on a small zoo: lower validation R^2 from canonical vectors).
`weight_matching` / `align_params` / `align_vectors` (Git Re-Basin weight matching, Ainsworth
et al. 2023: one model towards another) and `aligned_distance_statistics` (pairwise l2/cosine
distances before and after aligning: each pair is aligned on its own, model j to model i,
not the zoo to one reference); `sign_flippable_layers` / `flip_signs` / `flip_signs_vectors`
/ `random_signs` and `canonical_signs` / `canonical_sign_params` (sign canonicalisation by the
rule of ScaleGMN's for SIRENs, a unit's bias sign decides: every flippable unit's bias made
positive; also an invariant); `rescalable_layers` / `rescale_params` / `rescale_vectors` /
`random_scales`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
from scipy.optimize import linear_sum_assignment

from jaxzoo.errors import UserError
from jaxzoo.inr.siren import SirenSpec
from jaxzoo.models.cnn import ArchSpec

ODD_ACTIVATIONS = ("tanh",)  # activations with f(-x) = -f(x) among models.ACTIVATIONS
POSITIVE_HOMOGENEOUS = ("relu", "leakyrelu")  # f(c x) = c f(x) for c > 0
SINE = "sine"  # a SIREN's activation (sin(w0 x): odd)
BIAS_LIKE = ("bias", "log_sigma2_bias")
LOG_VARIANCES = ("log_sigma2", "log_sigma2_bias")  # variational dropout: log sigma^2 of a weight

# -- the common representation -------------------------------------------------------------
# Per layer a dict {leaf: array}: kernel-like leaves as [N, out, units_in, rest] (unit i's
# incoming weights grouped by the previous layer's unit), bias-like leaves as [N, out].


def _layer_order(params: dict) -> list[str]:
    names = [name for name in params if re.fullmatch(r"(conv|fc)\d+", name)]
    if len(names) != len(params) or not any(n.startswith("fc") for n in names):
        sirens = [name for name in params if re.fullmatch(r"layer\d+", name)]
        if len(sirens) == len(params) and len(sirens) >= 2:  # a SIREN: layer0.. (all dense)
            return sorted(sirens, key=lambda n: int(n[5:]))
        raise ValueError(
            f"params with layers {sorted(params)} are neither a built-in CNN/MLP (conv0.., fc0..) "
            "nor a SIREN (layer0..)"
        )
    return sorted(names, key=lambda n: (n.startswith("fc"), int(re.sub(r"\D", "", n))))


def _unwrap(params):
    """{'params': tree} or tree -> (tree, rewrap)."""
    if isinstance(params, dict) and set(params) == {"params"}:
        return params["params"], lambda tree: {"params": tree}
    return params, lambda tree: tree


class _ParamsCodec:
    """Flax params <-> the common representation (transposes and reshapes only: exact)."""

    def __init__(self, params: dict):
        self.names = _layer_order(params)
        self.lead: tuple[int, ...] | None = None
        self.kinds, self.kernel_shapes, self.units_in = [], [], []
        previous = None
        for name in self.names:
            kernel = np.shape(params[name]["kernel"])
            core = 4 if name.startswith("conv") else 2
            lead = tuple(kernel[: len(kernel) - core])
            if self.lead is not None and lead != self.lead:
                raise ValueError(f"{name}: leading axes {lead} differ from {self.lead}")
            self.lead = lead
            self.kinds.append("conv" if core == 4 else "fc")
            self.kernel_shapes.append(kernel[len(lead) :])
            fan = kernel[-2]  # in-channels or in-features
            units_in = fan if previous is None else previous
            if fan % units_in:
                raise ValueError(f"{name}: {fan} inputs are not a multiple of the previous layer's {units_in} units")
            self.units_in.append(units_in)
            previous = kernel[-1]
        self.batch = int(np.prod(self.lead)) if self.lead else 1
        self.sizes = [shape[-1] for shape in self.kernel_shapes]

    def encode(self, params: dict) -> list[dict[str, np.ndarray]]:
        rep = []
        for name, kind, shape, units_in in zip(self.names, self.kinds, self.kernel_shapes, self.units_in):
            layer = {}
            for leaf, value in params[name].items():
                array = np.asarray(value)
                core = array.shape[len(self.lead) :]
                if core == shape:
                    a = array.reshape(self.batch, *shape)
                    if kind == "conv":  # [N, kh, kw, in, out] -> [N, out, in, kh*kw]
                        a = a.transpose(0, 4, 3, 1, 2).reshape(self.batch, shape[3], shape[2], -1)
                    else:  # [N, in, out] -> [N, out, units_in, in / units_in]
                        a = a.transpose(0, 2, 1).reshape(self.batch, shape[1], units_in, -1)
                    layer[leaf] = a
                elif core == (shape[-1],):
                    layer[leaf] = array.reshape(self.batch, shape[-1])
                else:
                    raise ValueError(f"{name}/{leaf} of shape {array.shape} is shaped like neither kernel nor bias")
            rep.append(layer)
        return rep

    def decode(self, rep, like: dict) -> dict:
        out = {}
        for name, kind, shape, layer in zip(self.names, self.kinds, self.kernel_shapes, rep):
            out[name] = {}
            for leaf, a in layer.items():
                if a.ndim == 2:
                    array = a.reshape(*self.lead, shape[-1])
                elif kind == "conv":
                    kh, kw, cin, cout = shape
                    array = a.reshape(self.batch, cout, cin, kh, kw).transpose(0, 3, 4, 2, 1)
                    array = array.reshape(*self.lead, *shape)
                else:
                    array = a.reshape(self.batch, shape[1], shape[0]).transpose(0, 2, 1).reshape(*self.lead, *shape)
                original = like[name][leaf]
                out[name][leaf] = jax.numpy.asarray(array) if isinstance(original, jax.Array) else array
        return out


def _dense_layout(index_dict: dict) -> dict:
    """The INR export's layout ({'tensors': [{key, offset, shape}]}: per layer `layerL.weight`
    [out, in], then `layerL.bias` [out], back to back) as an `index_dict` of dense layers."""
    tensors = list(index_dict["tensors"])
    out: dict[str, list[int]] = {"idx_start": [], "kernel_no": [], "kernel_size": [], "channels_in": []}
    offset = 0
    for layer, (weight, bias) in enumerate(zip(tensors[::2], tensors[1::2])):
        shape = [int(n) for n in weight["shape"]]
        if (
            len(tensors) % 2
            or not str(weight["key"]).endswith("weight")
            or not str(bias["key"]).endswith("bias")
            or len(shape) != 2
            or [int(n) for n in bias["shape"]] != shape[:1]
            or int(weight["offset"]) != offset
            or int(bias["offset"]) != offset + shape[0] * shape[1]
            or (layer and shape[1] != out["kernel_no"][-1])
        ):
            raise ValueError(f"layout tensors {tensors}: not dense layers (weight [out, in], bias [out]) back to back")
        for key, value in zip(out, (offset, shape[0], 1, shape[1])):
            out[key].append(value)
        offset += shape[0] * shape[1] + shape[0]
    return out


class _VectorCodec:
    """Flat vectors [N, P] in the `index_dict` layout (or the INR export's {'tensors': ..}
    layout) <-> the common representation."""

    def __init__(self, index_dict: dict):
        if "tensors" in index_dict:
            index_dict = _dense_layout(index_dict)
        self.starts = list(index_dict["idx_start"])
        self.sizes = list(index_dict["kernel_no"])
        self.fans = [c * k for c, k in zip(index_dict["channels_in"], index_dict["kernel_size"])]
        self.units_in = []
        for i, fan in enumerate(self.fans):
            units_in = index_dict["channels_in"][0] if i == 0 else self.sizes[i - 1]
            if index_dict["channels_in"][i] % units_in:
                raise ValueError(
                    f"index_dict layer {i}: {index_dict['channels_in'][i]} inputs are not a multiple "
                    f"of the previous layer's {units_in} units"
                )
            self.units_in.append(units_in)
        self.total = self.starts[-1] + self.sizes[-1] * self.fans[-1] + self.sizes[-1]

    def encode(self, vectors: np.ndarray) -> list[dict[str, np.ndarray]]:
        if vectors.ndim != 2 or vectors.shape[1] != self.total:
            raise ValueError(f"vectors of shape {vectors.shape}, the index_dict describes [N, {self.total}]")
        n = vectors.shape[0]
        rep = []
        for start, out, fan, units_in in zip(self.starts, self.sizes, self.fans, self.units_in):
            end = start + out * fan
            rep.append(
                {"kernel": vectors[:, start:end].reshape(n, out, units_in, -1), "bias": vectors[:, end : end + out]}
            )
        return rep

    def decode(self, rep, vectors: np.ndarray) -> np.ndarray:
        result = np.array(vectors, copy=True)
        n = vectors.shape[0]
        for start, out, fan, layer in zip(self.starts, self.sizes, self.fans, rep):
            result[:, start : start + out * fan] = layer["kernel"].reshape(n, -1)
            result[:, start + out * fan : start + out * fan + out] = layer["bias"]
        return result


def _batched(perm, batch: int, size: int, what: str) -> np.ndarray:
    perm = np.asarray(perm)
    if perm.shape not in ((size,), (batch, size)):
        raise ValueError(f"{what} has shape {perm.shape}, expected [{size}] or [{batch}, {size}]")
    return np.broadcast_to(perm, (batch, size))


def _permute_rep(rep, perms, batch: int):
    hidden = len(rep) - 1
    if len(perms) != hidden:
        raise ValueError(f"{len(perms)} permutations for {hidden} hidden layers")
    rep = [dict(layer) for layer in rep]
    for l, perm in enumerate(perms):
        if perm is None:
            continue
        size = rep[l]["kernel"].shape[1]
        p = _batched(perm, batch, size, f"permutation {l}")
        if not (np.sort(p, axis=1) == np.arange(size)).all():
            raise ValueError(f"permutation {l} is not a permutation of range({size})")
        for leaf, a in rep[l].items():
            index = p if a.ndim == 2 else p[:, :, None, None]
            rep[l][leaf] = np.take_along_axis(a, index, axis=1)
        for leaf, a in rep[l + 1].items():
            if a.ndim == 4:
                rep[l + 1][leaf] = np.take_along_axis(a, p[:, None, :, None], axis=2)
    return rep


def _as_trees(moments):
    """A tree or a sequence of trees -> (list of trees, rebuild)."""
    if moments is None:
        return [], lambda trees: None
    if isinstance(moments, (list, tuple)):
        return list(moments), lambda trees: type(moments)(trees)
    return [moments], lambda trees: trees[0]


# -- permutations -------------------------------------------------------------------------


def hidden_layer_sizes(index_dict: dict) -> list[int]:
    """Units per hidden layer (every layer but the last) of an `index_dict` (or INR layout)."""
    return list(_VectorCodec(index_dict).sizes[:-1])


def vector_blocks(index_dict: dict) -> list[tuple[int, int, int, int]]:
    """Per layer of a flat vector (`index_dict` or INR layout) its (start, units, units_in,
    rest): the kernel is [units, units_in, rest] row-major from `start` (unit i's incoming
    weights grouped by the previous layer's unit; rest = kh*kw, or H*W of the flatten), then
    the bias [units]."""
    codec = _VectorCodec(index_dict)
    return [
        (start, out, units_in, fan // units_in)
        for start, out, fan, units_in in zip(codec.starts, codec.sizes, codec.fans, codec.units_in)
    ]


def permute_params(params: dict, perms: Sequence[Any], moments=None):
    """Permute the hidden units of a built-in CNN/MLP's params (and optimizer moments).

    params: the Flax tree of one model or of a population (leading axes, e.g. [M]); jax
        leaves stay jax arrays, numpy leaves numpy.
    perms: one entry per hidden layer (conv0.., fc0.. except the last fc): an int array [n]
        (the same for every model), [M, n] (one per model, flattened leading axes) or None
        (unchanged). New unit i is old unit p[i].
    moments: optional tree shaped like params (Adam mu or nu, a momentum trace) or a
        list/tuple of such trees; permuted the same way.
    Returns the permuted params, or (params, moments) when moments are given.
    """
    inner, _ = _unwrap(params)
    return _transform_trees(params, moments, lambda rep, batch: _permute_rep(rep, perms, batch), _ParamsCodec(inner))


def _transform_trees(params, moments, transform, codec):
    """`transform(rep, batch)` applied to params and to each moments tree in the codec's
    representation -> params, or (params, moments) when moments are given."""

    def apply(tree):
        inner, rewrap = _unwrap(tree)
        return rewrap(codec.decode(transform(codec.encode(inner), codec.batch), inner))

    out = apply(params)
    if moments is None:
        return out
    trees, rebuild = _as_trees(moments)
    return out, rebuild([apply(tree) for tree in trees])


def random_permutations(index_dict: dict, rng=None, count: int | None = None) -> list[np.ndarray]:
    """A uniformly random permutation per hidden layer: [n] each, or [count, n] with `count`.

    rng: a numpy Generator, a seed, or None.
    """
    rng = np.random.default_rng(rng)
    if count is None:
        return [rng.permutation(n) for n in hidden_layer_sizes(index_dict)]
    return [rng.permuted(np.tile(np.arange(n), (count, 1)), axis=1) for n in hidden_layer_sizes(index_dict)]


def permute_vectors(vectors: np.ndarray, index_dict: dict, perms=None) -> np.ndarray:
    """Permute hidden units of flat vectors [N, P] (export layout) -> [N, P], same dtype.

    perms: a list/tuple with one entry per hidden layer ([n], [N, n] or None), as
    `random_permutations`; anything else (a numpy Generator, a seed, None) is an rng from
    which every row draws its own random permutations (augmentation).
    """
    vectors = np.asarray(vectors)
    codec = _VectorCodec(index_dict)
    if not isinstance(perms, (list, tuple)):
        perms = random_permutations(index_dict, perms, count=vectors.shape[0])
    return codec.decode(_permute_rep(codec.encode(vectors), perms, vectors.shape[0]), vectors)


# -- canonical form -----------------------------------------------------------------------


def _canonical_perms(rep, batch: int) -> list[np.ndarray]:
    """Per hidden layer [N, n]: units sorted by (norm of incoming weights and bias, then the
    incoming weights lexicographically), from input to output."""
    perms = []
    rep = [dict(layer) for layer in rep]
    for l in range(len(rep) - 1):
        size = rep[l]["kernel"].shape[1]
        p = np.empty((batch, size), np.int64)
        for m in range(batch):
            rows = np.concatenate([rep[l]["kernel"][m].reshape(size, -1), rep[l]["bias"][m][:, None]], axis=1)
            rows = rows.astype(np.float64)
            norms = np.sqrt((rows * rows).sum(axis=1))
            p[m] = np.lexsort(np.vstack([rows.T[::-1], norms[None]]))
        perms.append(p)
        rep = _permute_rep(rep, [p if i == l else None for i in range(len(rep) - 1)], batch)
    return perms


def canonical_params(params: dict, moments=None):
    """The canonical representative of params' permutation class (one model or a population,
    each model separately; see `_canonical_perms`); moments follow as in `permute_params`."""
    inner, _ = _unwrap(params)
    codec = _ParamsCodec(inner)
    perms = _canonical_perms(codec.encode(inner), codec.batch)
    return permute_params(params, perms, moments)


def canonical_vectors(vectors: np.ndarray, index_dict: dict) -> np.ndarray:
    """Flat vectors [N, P] -> their canonical representatives [N, P]: permuted copies of one
    model map to the same vector (exactly, unless two units tie in norm and weights)."""
    vectors = np.asarray(vectors)
    codec = _VectorCodec(index_dict)
    rep = codec.encode(vectors)
    perms = _canonical_perms(rep, vectors.shape[0])
    return codec.decode(_permute_rep(rep, perms, vectors.shape[0]), vectors)


# -- alignment (weight matching) -----------------------------------------------------------


def _weight_matching(rep_a, rep_b, max_sweeps: int) -> list[np.ndarray]:
    """rep_*: one model each (batch axis of 1). Coordinate descent over hidden layers; each step
    solves the linear assignment maximising <W_A, P W_B P_prev^T> (incoming weights and bias)
    + <W_A', P_next W_B' P^T> (the next layer's incoming weights)."""
    wa = [layer["kernel"][0].astype(np.float64) for layer in rep_a]
    ba = [layer["bias"][0].astype(np.float64) for layer in rep_a]
    wb = [layer["kernel"][0].astype(np.float64) for layer in rep_b]
    bb = [layer["bias"][0].astype(np.float64) for layer in rep_b]
    for x, y in zip(wa, wb):
        if x.shape != y.shape:
            raise ValueError(f"models of different architectures: {x.shape} vs {y.shape}")
    hidden = len(wa) - 1
    perms = [np.arange(w.shape[0]) for w in wa[:-1]]
    for _ in range(max_sweeps):
        changed = False
        for l in range(hidden):
            n = wa[l].shape[0]
            incoming = wb[l] if l == 0 else wb[l][:, perms[l - 1], :]
            cost = wa[l].reshape(n, -1) @ incoming.reshape(n, -1).T + np.outer(ba[l], bb[l])
            nxt = wb[l + 1] if l + 1 == hidden else wb[l + 1][perms[l + 1]]
            cost += np.einsum("oir,ojr->ij", wa[l + 1], nxt)
            _, cols = linear_sum_assignment(cost, maximize=True)
            if not np.array_equal(cols, perms[l]):
                # accept only an improvement (ties keep the current permutation: termination)
                if cost[np.arange(n), cols].sum() > cost[np.arange(n), perms[l]].sum():
                    perms[l], changed = cols, True
        if not changed:
            break
    return perms


def weight_matching(params_b: dict, params_a: dict, max_sweeps: int = 20) -> list[np.ndarray]:
    """Git Re-Basin weight matching of one model B to one model A (Flax params, no leading
    axis): the per-hidden-layer permutations [n] that `permute_params(params_b, perms)` applies."""
    inner_a, _ = _unwrap(params_a)
    inner_b, _ = _unwrap(params_b)
    codec_a, codec_b = _ParamsCodec(inner_a), _ParamsCodec(inner_b)
    if codec_a.batch != 1 or codec_b.batch != 1:
        raise ValueError("weight_matching aligns one model to one model: index the population first")
    return _weight_matching(codec_a.encode(inner_a), codec_b.encode(inner_b), max_sweeps)


def align_params(params_b: dict, params_a: dict, max_sweeps: int = 20, moments=None):
    """Model B permuted to match model A (weight matching); moments of B follow (`permute_params`)."""
    return permute_params(params_b, weight_matching(params_b, params_a, max_sweeps), moments)


def align_vectors(
    vector_b: np.ndarray, vector_a: np.ndarray, index_dict: dict, max_sweeps: int = 20, return_perms: bool = False
):
    """Flat vector B [P] permuted to match A [P] (weight matching) -> [P] (and the perms)."""
    codec = _VectorCodec(index_dict)
    b = np.asarray(vector_b)[None]
    rep_b = codec.encode(b)
    perms = _weight_matching(codec.encode(np.asarray(vector_a)[None]), rep_b, max_sweeps)
    aligned = codec.decode(_permute_rep(rep_b, perms, 1), b)[0]
    return (aligned, perms) if return_perms else aligned


def aligned_distance_statistics(vectors: np.ndarray, index_dict: dict, max_sweeps: int = 20) -> dict:
    """Table 2's pairwise distances of a set of models, as they are and after weight matching.

    vectors: [M, P] flat vectors. For each of the M(M-1)/2 pairs (i < j), model j is aligned
    to model i (`align_vectors`) and the pair's l2 and cosine distances are taken raw and
    aligned. Matching starts from the identity and keeps only improvements of the pair's inner
    product, so each aligned distance is at most the raw one. (Aligning every model to one
    reference instead is cheaper but can raise the distances between models that were aligned
    with each other already, e.g. models of one seed.) Returns {"pairs": n, "raw": {"l2": (mean,
    std), "cosine": (mean, std)}, "aligned": {...}}; cosine distance is 1 - cosine similarity.
    """
    x = np.asarray(vectors, np.float64)
    if len(x) < 2:
        raise ValueError("distance statistics need at least 2 models")
    norms = np.linalg.norm(x, axis=1)
    distances = {"raw": {"l2": [], "cosine": []}, "aligned": {"l2": [], "cosine": []}}
    for i in range(len(x)):
        for j in range(i + 1, len(x)):
            for kind, b in (("raw", x[j]), ("aligned", align_vectors(x[j], x[i], index_dict, max_sweeps))):
                distances[kind]["l2"].append(np.linalg.norm(x[i] - b))
                distances[kind]["cosine"].append(1.0 - x[i] @ b / (norms[i] * norms[j]))
    summary = {
        kind: {name: (float(np.mean(v)), float(np.std(v))) for name, v in values.items()}
        for kind, values in distances.items()
    }
    return {"pairs": len(distances["raw"]["l2"]), **summary}


# -- sign flips and positive rescaling --------------------------------------------------


def sign_flippable_layers(arch: ArchSpec | SirenSpec, activation: str) -> list[int]:
    """Hidden-layer positions (0-based, forward order conv0.., fc0.. or layer0..) whose units can
    flip sign: with an odd activation (tanh), every dense hidden layer and every conv without a
    max-pool (conv -> max-pool -> activation: max(-x) != -max(x)); for a SIREN (`SirenSpec`,
    activation 'sine'), every hidden layer. Empty for any other activation."""
    if isinstance(arch, SirenSpec):
        return list(range(len(arch.widths))) if activation == SINE else []
    if activation not in ODD_ACTIVATIONS:
        return []
    convs = [i for i, conv in enumerate(arch.convs) if not conv.pool]
    return convs + [len(arch.convs) + i for i in range(len(arch.hidden))]


def _check_signs(signs, arch: ArchSpec | SirenSpec, activation: str, hidden: int) -> None:
    if len(signs) != hidden:
        raise ValueError(f"{len(signs)} sign entries for {hidden} hidden layers")
    allowed = sign_flippable_layers(arch, activation)
    for l, s in enumerate(signs):
        if s is None or l in allowed:
            continue
        if isinstance(arch, SirenSpec):
            why = f"a SIREN's hidden units are sines: pass activation={SINE!r}, not {activation!r}"
        elif activation not in ODD_ACTIVATIONS:
            why = f"activation {activation!r} is not odd (only {', '.join(ODD_ACTIVATIONS)} is)"
        else:
            why = "it is a conv followed by a max-pool, which does not commute with negation"
        raise ValueError(f"hidden layer {l} cannot flip signs: {why}")


def _scale_rep(rep, factors, batch: int, what: str):
    """Unit i of hidden layer l times factors[l][i] (its incoming weights and bias), the next
    layer's weights from it times 1 / factors[l][i]; log-variances (`LOG_VARIANCES`) shift by 2 log|f|
    and -2 log|f| alike (log alpha = log sigma^2 - log w^2 stays). Signs (+-1) leave them as they
    are; other extra leaves are refused unless every factor is +-1."""
    rep = [dict(layer) for layer in rep]
    for l, f in enumerate(factors):
        if f is None:
            continue
        size = rep[l]["kernel"].shape[1]
        f = _batched(f, batch, size, f"{what} {l}")
        if what == "signs" and not np.isin(f, (-1, 1)).all():
            raise ValueError(f"signs {l} must be +1 or -1")
        unit = (np.abs(f) == 1).all()
        shift = None if unit else 2.0 * np.log(np.abs(f.astype(np.float64)))
        for leaf, a in rep[l].items():
            column = (lambda x: x) if a.ndim == 2 else (lambda x: x[:, :, None, None])
            if leaf in ("kernel", "bias"):
                rep[l][leaf] = a * column(f).astype(a.dtype)
            elif shift is not None and leaf in LOG_VARIANCES:
                rep[l][leaf] = a + column(shift).astype(a.dtype)
            elif shift is not None:
                raise ValueError(f"hidden layer {l}: no rescaling rule for the leaf {leaf!r}")
        for leaf, a in rep[l + 1].items():
            if leaf == "kernel":  # times the reciprocal (in a's dtype): as XLA computes it
                rep[l + 1][leaf] = a * (1 / f[:, None, :, None].astype(a.dtype))
            elif shift is not None and leaf in LOG_VARIANCES and a.ndim == 4:
                rep[l + 1][leaf] = a - shift[:, None, :, None].astype(a.dtype)
            elif shift is not None and a.ndim == 4:
                raise ValueError(f"layer {l + 1}: no rescaling rule for the leaf {leaf!r}")
    return rep


def flip_signs(params: dict, signs: Sequence[Any], arch: ArchSpec | SirenSpec, activation: str, moments=None):
    """Flip the sign of hidden units (tanh CNNs/MLPs and SIRENs; see `sign_flippable_layers`).

    params: a CNN/MLP's or a SIREN's params (one model or a population, as `permute_params`).
    signs: one entry per hidden layer: +-1 array [n] or [M, n], or None (unchanged); an entry
        at a layer where the flip does not preserve the function raises ValueError.
    arch: the model's `ArchSpec` (`jaxzoo.models.registry.arch_spec(config.model, image size,
        channels, classes)`, `read_zoo(workdir).arch`; the export's params.json names
        model.arch) with its activation (a model's `activation` factor), or a SIREN's `SirenSpec`
        (`read_inr_zoo(workdir).spec`, `siren.spec_from_config`) with activation 'sine'.
    moments: first moments (Adam mu, momentum), a tree or list of trees, flip alike; do not
        pass second moments (nu), which are invariant. Returns params, or (params, moments).
    """
    inner, _ = _unwrap(params)
    codec = _ParamsCodec(inner)
    _check_signs(signs, arch, activation, len(codec.names) - 1)
    return _transform_trees(params, moments, lambda rep, batch: _scale_rep(rep, signs, batch, "signs"), codec)


def random_signs(
    arch: ArchSpec | SirenSpec, activation: str, index_dict: dict, rng=None, count: int | None = None
) -> list[np.ndarray | None]:
    """Random +-1 per unit of every sign-flippable hidden layer ([n] or [count, n]), None elsewhere."""
    rng = np.random.default_rng(rng)
    allowed = sign_flippable_layers(arch, activation)
    shape = () if count is None else (count,)
    return [
        rng.choice(np.array([-1, 1]), size=(*shape, n)) if l in allowed else None
        for l, n in enumerate(hidden_layer_sizes(index_dict))
    ]


def flip_signs_vectors(
    vectors: np.ndarray, index_dict: dict, signs, arch: ArchSpec | SirenSpec, activation: str
) -> np.ndarray:
    """Sign flips of flat vectors [N, P] -> [N, P] (a CNN/MLP's `index_dict` or the INR export's
    layout). signs: as `flip_signs`, or an rng (Generator, seed, None) from which every row draws
    random signs on the flippable layers."""
    vectors = np.asarray(vectors)
    codec = _VectorCodec(index_dict)
    if not isinstance(signs, (list, tuple)):
        signs = random_signs(arch, activation, index_dict, signs, count=vectors.shape[0])
    _check_signs(signs, arch, activation, len(codec.sizes) - 1)
    return codec.decode(_scale_rep(codec.encode(vectors), signs, vectors.shape[0], "signs"), vectors)


def _canonical_signs(rep, allowed: list[int], batch: int) -> list[np.ndarray | None]:
    """Per hidden layer [N, n] (None where not flippable): the signs that make each unit's bias
    positive; a unit whose bias is 0 makes its first nonzero incoming weight positive instead
    (layers from the input, so that weight is already canonical). Units all zero keep +1."""
    signs: list[np.ndarray | None] = [None] * (len(rep) - 1)
    for l in allowed:
        size = rep[l]["kernel"].shape[1]
        rows = np.concatenate([rep[l]["bias"][:, :, None], rep[l]["kernel"].reshape(batch, size, -1)], axis=2)
        first = np.take_along_axis(rows, (rows != 0).argmax(axis=2)[:, :, None], axis=2)[:, :, 0]
        signs[l] = np.where(first < 0, -1, 1)
        rep = _scale_rep(rep, [signs[l] if i == l else None for i in range(len(rep) - 1)], batch, "signs")
    return signs


def canonical_signs(
    vectors: np.ndarray, index_dict: dict, arch: ArchSpec | SirenSpec, activation: str, return_signs: bool = False
):
    """Sign canonicalisation of flat vectors [N, P] -> [N, P] (as ScaleGMN's for SIRENs): every
    sign-flippable hidden unit (`sign_flippable_layers`) is flipped so that its bias is
    positive (a zero bias: its first nonzero incoming weight). Every sign-flipped copy of a model
    maps to one vector, exactly; the function is unchanged. With return_signs, also the signs
    applied (as `flip_signs`' argument). Like `canonical_vectors`, an invariant, not an alignment."""
    vectors = np.asarray(vectors)
    codec = _VectorCodec(index_dict)
    rep = codec.encode(vectors)
    signs = _canonical_signs(rep, sign_flippable_layers(arch, activation), vectors.shape[0])
    out = codec.decode(_scale_rep(rep, signs, vectors.shape[0], "signs"), vectors)
    return (out, signs) if return_signs else out


def canonical_sign_params(params: dict, arch: ArchSpec | SirenSpec, activation: str, moments=None):
    """`canonical_signs` of params (one model or a population); first moments follow as in
    `flip_signs`."""
    inner, _ = _unwrap(params)
    codec = _ParamsCodec(inner)
    signs = _canonical_signs(codec.encode(inner), sign_flippable_layers(arch, activation), codec.batch)
    return flip_signs(params, signs, arch, activation, moments)


def rescalable_layers(arch: ArchSpec | SirenSpec, activation: str) -> list[int]:
    """Hidden-layer positions whose units can be rescaled by c > 0: every hidden layer of a
    CNN/MLP whose activation is positively homogeneous (relu, leakyrelu: f(c x) = c f(x));
    max-pool commutes with it (max(c x) = c max(x)), and so does dropout. Empty otherwise."""
    if isinstance(arch, SirenSpec) or activation not in POSITIVE_HOMOGENEOUS:
        return []
    return list(range(len(arch.convs) + len(arch.hidden)))


def _check_scales(scales, arch: ArchSpec | SirenSpec, activation: str, hidden: int) -> None:
    """UserError unless `scales` has one entry per hidden layer, each None or finite and > 0,
    on an activation that allows it."""
    if len(scales) != hidden:
        raise UserError(f"{len(scales)} scale entries for {hidden} hidden layers: give one per hidden layer (or None)")
    if any(s is not None for s in scales) and not rescalable_layers(arch, activation):
        kind = "a SIREN's sine" if isinstance(arch, SirenSpec) else f"activation {activation!r}"
        raise UserError(
            f"cannot rescale hidden units: {kind} is not positively homogeneous (f(c x) = c f(x) for "
            f"c > 0 holds for {' and '.join(POSITIVE_HOMOGENEOUS)} only), so rescaling changes the "
            "function: use permutations (or sign flips where the activation is odd) instead"
        )
    for l, s in enumerate(scales):
        if s is not None and not (np.all(np.isfinite(s)) and np.all(np.asarray(s) > 0)):
            raise UserError(f"scales of hidden layer {l} must be finite and > 0 (a negative one is a sign flip)")


def rescale_params(params: dict, scales: Sequence[Any], arch: ArchSpec, activation: str) -> dict:
    """Positive rescaling of a relu/leakyrelu CNN/MLP's hidden units (one model or a population):
    unit i of hidden layer l gets its incoming weights and bias times scales[l][i] > 0 and its
    outgoing weights divided by it; the logits do not change. Variational-dropout log-variances
    follow (log alpha unchanged). scales: per hidden layer [n], [M, n] or None. Other activations
    raise UserError. Optimizer moments have no matching rule (Adam is not scale-equivariant)."""
    inner, _ = _unwrap(params)
    codec = _ParamsCodec(inner)
    _check_scales(scales, arch, activation, len(codec.names) - 1)
    return _transform_trees(params, None, lambda rep, batch: _scale_rep(rep, scales, batch, "scales"), codec)


def random_scales(
    arch: ArchSpec, activation: str, index_dict: dict, rng=None, count: int | None = None, max_log2: float = 1.0
) -> list[np.ndarray | None]:
    """Random float32 scales 2**U(-max_log2, max_log2) per unit of every hidden layer of a
    relu/leakyrelu model ([n] or [count, n]); None everywhere for other activations."""
    rng = np.random.default_rng(rng)
    allowed = rescalable_layers(arch, activation)
    shape = () if count is None else (count,)
    return [
        np.exp2(rng.uniform(-max_log2, max_log2, (*shape, n))).astype(np.float32) if l in allowed else None
        for l, n in enumerate(hidden_layer_sizes(index_dict))
    ]


def rescale_vectors(vectors: np.ndarray, index_dict: dict, scales, arch: ArchSpec, activation: str) -> np.ndarray:
    """Positive rescaling of flat vectors [N, P] -> [N, P] (as `rescale_params`). scales: per
    hidden layer [n], [N, n] or None, or an rng from which every row draws `random_scales`."""
    vectors = np.asarray(vectors)
    codec = _VectorCodec(index_dict)
    if not isinstance(scales, (list, tuple)):
        scales = random_scales(arch, activation, index_dict, scales, count=vectors.shape[0])
    _check_scales(scales, arch, activation, len(codec.sizes) - 1)
    return codec.decode(_scale_rep(codec.encode(vectors), scales, vectors.shape[0], "scales"), vectors)
