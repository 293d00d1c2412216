"""Weight-space augmentation on the device (JAX): a fresh random symmetry for every row of a
batch of flat vectors [B, P], drawn from a JAX key, jitted and vmapped over the rows.

The transforms are those of `jaxzoo.weights.symmetry` (the numpy host path), in the same flat
layouts (a CNN/MLP's `index_dict` or the INR export's {'tensors': ..} layout): a permutation of
every hidden layer's units, then a per-unit factor where the model allows one, a sign (+-1)
on the sign-flippable layers (`symmetry.sign_flippable_layers`: tanh dense layers and unpooled
convs, every SIREN hidden layer) or a positive scale on the rescalable ones
(`symmetry.rescalable_layers`: relu, leakyrelu). Given the same permutations and factors,
`transform_vectors` returns bitwise what the host path returns for `permute_vectors`, then
`flip_signs_vectors` or `rescale_vectors`: unit i of layer l becomes old unit perms[l][i],
times factors[l][i] (incoming weights and bias), and the next layer's weights from it are
multiplied by 1 / factors[l][i].

  augment = augmenter(index_dict, arch, activation, signs=True, max_log2=1.0)
  batch = augment(jax.random.key(step), batch)       # [B, P] -> [B, P], on the device
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxzoo.inr.siren import SirenSpec
from jaxzoo.models.cnn import ArchSpec
from jaxzoo.weights import symmetry

Block = tuple[int, int, int, int]  # (start, units, units_in, rest): `symmetry.vector_blocks`


def _transform_row(blocks: tuple[Block, ...], vector: jax.Array, perms, factors) -> jax.Array:
    """One flat vector [P] with per-hidden-layer perms [n] (int) and factors [n] -> [P]. The
    operations and their order are the host path's (gathers, then times the reciprocal of the
    previous layer's factor, then times the layer's own), so that the results agree bitwise."""
    pieces = []
    hidden = len(blocks) - 1
    for l, (start, out, units_in, rest) in enumerate(blocks):
        end = start + out * units_in * rest
        kernel = vector[start:end].reshape(out, units_in, rest)
        bias = vector[end : end + out]
        if l < hidden:
            kernel, bias = kernel[perms[l]], bias[perms[l]]
        if l > 0:
            kernel = kernel[:, perms[l - 1]] * (1 / factors[l - 1].astype(vector.dtype))[None, :, None]
        if l < hidden:
            factor = factors[l].astype(vector.dtype)
            kernel, bias = kernel * factor[:, None, None], bias * factor
        pieces += [kernel.reshape(-1), bias]
    return jnp.concatenate(pieces)


@functools.lru_cache(maxsize=32)
def _transform_function(blocks: tuple[Block, ...]) -> Callable:
    return jax.jit(jax.vmap(functools.partial(_transform_row, blocks)))


def _blocks(index_dict: dict) -> tuple[Block, ...]:
    blocks = tuple(symmetry.vector_blocks(index_dict))
    for (start, out, units_in, rest), (following, *_) in zip(blocks, blocks[1:]):
        if start + out * units_in * rest + out != following:
            raise ValueError(f"layout with a gap before offset {following}: the layers are not back to back")
    return blocks


def _identity_filled(entries, batch: int, sizes: list[int], fill: Callable[[int], np.ndarray]) -> tuple:
    if len(entries) != len(sizes):
        raise ValueError(f"{len(entries)} entries for {len(sizes)} hidden layers")
    return tuple(jnp.broadcast_to(fill(n) if e is None else jnp.asarray(e), (batch, n)) for e, n in zip(entries, sizes))


def transform_vectors(
    vectors: jax.Array, index_dict: dict, perms: Sequence, factors: Sequence | None = None
) -> jax.Array:
    """Permute (and scale) the hidden units of flat vectors [B, P] on the device -> [B, P].

    perms: one entry per hidden layer, int [n] or [B, n] (new unit i is old unit p[i]) or None.
    factors: one entry per hidden layer, [n] or [B, n] (+-1 signs, or scales > 0) or None; not
        checked against the activation here (`random_transforms` draws only valid ones).
    """
    vectors = jnp.asarray(vectors)
    blocks = _blocks(index_dict)
    sizes = [out for _, out, _, _ in blocks[:-1]]
    batch = vectors.shape[0]
    perms = _identity_filled(perms, batch, sizes, lambda n: jnp.arange(n))
    factors = _identity_filled([None] * len(sizes) if factors is None else factors, batch, sizes, jnp.ones)
    return _transform_function(blocks)(vectors, perms, factors)


def random_transforms(
    key: jax.Array,
    batch: int,
    index_dict: dict,
    arch: ArchSpec | SirenSpec | None = None,
    activation: str | None = None,
    signs: bool = True,
    max_log2: float = 0.0,
) -> tuple[list[jax.Array], list[jax.Array]]:
    """Per hidden layer a uniformly random permutation [batch, n] (int32) and factors [batch, n]
    (float32): random +-1 on the sign-flippable layers (if `signs`), 2**U(-max_log2, max_log2)
    on the rescalable ones (if max_log2 > 0), ones elsewhere. arch/activation as
    `symmetry.flip_signs`; without them, permutations only."""
    sizes = symmetry.hidden_layer_sizes(index_dict)
    flippable = symmetry.sign_flippable_layers(arch, activation) if arch is not None and signs else []
    rescalable = symmetry.rescalable_layers(arch, activation) if arch is not None and max_log2 > 0 else []
    perms, factors = [], []
    for l, n in enumerate(sizes):
        perm_key, factor_key = jax.random.split(jax.random.fold_in(key, l))
        rows = jnp.broadcast_to(jnp.arange(n, dtype=jnp.int32), (batch, n))  # one shuffle per row:
        perms.append(jax.random.permutation(perm_key, rows, axis=1, independent=True))  # compiles 2x faster than vmap
        if l in flippable:
            factors.append(jax.random.rademacher(factor_key, (batch, n), jnp.float32))
        elif l in rescalable:
            factors.append(jnp.exp2(jax.random.uniform(factor_key, (batch, n), jnp.float32, -max_log2, max_log2)))
        else:
            factors.append(jnp.ones((batch, n), jnp.float32))
    return perms, factors


def augmenter(
    index_dict: dict,
    arch: ArchSpec | SirenSpec | None = None,
    activation: str | None = None,
    signs: bool = True,
    max_log2: float = 0.0,
) -> Callable[[jax.Array, jax.Array], jax.Array]:
    """A jitted `augment(key, vectors [B, P]) -> [B, P]`: `random_transforms` drawn from key,
    then `transform_vectors`, in one program (retraced per batch shape)."""
    blocks = _blocks(index_dict)
    apply = _transform_function(blocks)

    @jax.jit
    def augment(key: jax.Array, vectors: jax.Array) -> jax.Array:
        perms, factors = random_transforms(key, vectors.shape[0], index_dict, arch, activation, signs, max_log2)
        return apply(vectors, tuple(perms), tuple(factors))

    return augment
