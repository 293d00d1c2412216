"""Weight-space symmetries (jaxzoo.weights.symmetry): permutations, canonical form, weight matching, sign flips."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxzoo.models.registry import arch_spec, build_model, params_shapes
from jaxzoo.models.torch_layout import flat_vectors, index_dict
from jaxzoo.weights import symmetry

# name -> (model config, image shape): every registered CNN/MLP family, small images where free.
ARCHS = {
    "cnn_s": ({"arch": "cnn_s"}, (28, 28, 1)),
    "cnn_m": ({"arch": "cnn_m"}, (32, 32, 3)),
    # 2 convs (the second without pool: sign-flippable under tanh), 2 hidden dense layers
    "cnn": ({"arch": "cnn", "convs": ((6, 3, True), (5, 3, False)), "widths": (12, 7)}, (12, 12, 1)),
    "mlp": ({"arch": "mlp", "widths": (16, 8)}, (8, 8, 1)),
}
CLASSES = 10


def np_map(f, tree):
    return jax.tree.map(lambda a: f(np.asarray(a)), tree)


FORWARD = {}


class Zoo:
    """`count` randomly initialised models of one architecture (leading model axis)."""

    def __init__(self, name, activation="tanh", count=2, seed=0):
        config, self.shape = ARCHS[name]
        self.model = build_model(config, activation, False, "xla", self.shape, CLASSES)
        self.arch = arch_spec(config, self.shape[0], self.shape[-1], CLASSES)
        self.index = index_dict(self.arch, self.shape[-1])
        rng = np.random.default_rng(seed)
        self.params = {}  # kaiming-uniform kernels, distinct random biases; leading model axis
        for layer, leaves in params_shapes(self.model, self.shape).items():
            kernel = leaves["kernel"].shape
            bound = np.sqrt(6.0 / np.prod(kernel[:-1]))
            self.params[layer] = {
                "kernel": rng.uniform(-bound, bound, (count, *kernel)).astype(np.float32),
                "bias": (0.1 * rng.standard_normal((count, kernel[-1]))).astype(np.float32),
            }
        self.x = jnp.asarray(np.random.default_rng(7).standard_normal((4, *self.shape)), jnp.float32)
        key = (name, activation)
        if key not in FORWARD:  # one compilation per architecture and activation
            FORWARD[key] = jax.jit(
                jax.vmap(lambda p, x: self.model.apply({"params": p}, x, 0, 0.0, train=False), (0, None))
            )
        self.forward = FORWARD[key]

    def logits(self, params):
        """[M, 4, classes] of params with a leading model axis, on 4 random images."""
        return np.asarray(self.forward(params, self.x))

    def vectors(self, params=None):
        return flat_vectors(self.params if params is None else params, self.arch)


@pytest.mark.parametrize("activation", ["tanh", "relu"])
@pytest.mark.parametrize("name", list(ARCHS))
def test_permutations_preserve_function_and_agree_with_vectors(name, activation):
    zoo = Zoo(name, activation)
    perms = symmetry.random_permutations(zoo.index, 1, count=2)  # one per model
    mu = np_map(lambda a: 3.0 * a, zoo.params)
    nu = np_map(lambda a: a * a + 1.0, zoo.params)
    jax_params = jax.tree.map(jnp.asarray, zoo.params)
    permuted, (mu_p, nu_p) = symmetry.permute_params(jax_params, perms, moments=(mu, nu))
    assert isinstance(permuted["fc0"]["kernel"], jax.Array) and isinstance(mu_p["fc0"]["kernel"], np.ndarray)
    assert not np.allclose(zoo.vectors(permuted), zoo.vectors())  # it did permute
    np.testing.assert_allclose(zoo.logits(permuted), zoo.logits(zoo.params), atol=1e-5, rtol=0)
    # permute params then flatten == flatten then permute the vectors (the flatten order included)
    np.testing.assert_array_equal(zoo.vectors(permuted), symmetry.permute_vectors(zoo.vectors(), zoo.index, perms))
    # moments move with their parameters (elementwise functions of params commute with the gather)
    np.testing.assert_array_equal(zoo.vectors(mu_p), zoo.vectors(np_map(lambda a: 3.0 * a, permuted)))
    np.testing.assert_array_equal(zoo.vectors(nu_p), zoo.vectors(np_map(lambda a: a * a + 1.0, permuted)))


def test_permute_vectors_with_rng_is_per_row_and_reproducible():
    zoo = Zoo("cnn")
    vectors = np.repeat(zoo.vectors()[:1], 3, axis=0)
    a = symmetry.permute_vectors(vectors, zoo.index, np.random.default_rng(3))
    b = symmetry.permute_vectors(vectors, zoo.index, np.random.default_rng(3))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a[0], a[1])  # each row its own permutation
    np.testing.assert_array_equal(np.sort(a, axis=1), np.sort(vectors, axis=1))  # the same numbers
    with pytest.raises(ValueError, match="not a permutation"):
        symmetry.permute_vectors(vectors, zoo.index, [np.zeros(n, int) for n in symmetry.hidden_layer_sizes(zoo.index)])


@pytest.mark.parametrize("name", list(ARCHS))
def test_canonical_form_is_unique_per_permutation_class(name):
    zoo = Zoo(name)
    one = np.repeat(zoo.vectors()[:1], 2, axis=0)
    copies = symmetry.permute_vectors(one, zoo.index, np.random.default_rng(5))
    assert not np.array_equal(copies[0], copies[1])
    canonical = symmetry.canonical_vectors(copies, zoo.index)
    np.testing.assert_array_equal(canonical[0], canonical[1])
    np.testing.assert_array_equal(symmetry.canonical_vectors(canonical, zoo.index), canonical)  # idempotent


def test_canonical_params_preserve_function_and_match_vectors():
    zoo = Zoo("cnn")
    canonical = symmetry.canonical_params(zoo.params)
    np.testing.assert_allclose(zoo.logits(canonical), zoo.logits(zoo.params), atol=1e-5, rtol=0)
    np.testing.assert_array_equal(zoo.vectors(canonical), symmetry.canonical_vectors(zoo.vectors(), zoo.index))


@pytest.mark.parametrize("name", list(ARCHS))
def test_alignment_recovers_a_permuted_copy(name):
    zoo = Zoo(name)
    a = zoo.vectors()[0]
    b = symmetry.permute_vectors(a[None], zoo.index, np.random.default_rng(11))[0]
    assert np.linalg.norm(b - a) > 1.0
    aligned = symmetry.align_vectors(b, a, zoo.index)
    assert np.linalg.norm(aligned - a) <= 1e-5


def test_alignment_reduces_the_distance_of_two_models_and_preserves_function():
    zoo = Zoo("cnn", count=2, seed=1)
    one = lambda m: np_map(lambda a: a[m], zoo.params)
    aligned = symmetry.align_params(one(1), one(0))
    before = np.linalg.norm(zoo.vectors()[1] - zoo.vectors()[0])
    after_vector = flat_vectors(np_map(lambda a: a[None], aligned), zoo.arch)[0]
    after = np.linalg.norm(after_vector - zoo.vectors()[0])
    print(
        f"weight matching, two independent cnn models: l2 {before:.3f} -> {after:.3f} "
        f"({100 * (1 - after / before):.1f}% less)"
    )
    assert after < 0.97 * before
    np.testing.assert_allclose(
        after_vector, symmetry.align_vectors(zoo.vectors()[1], zoo.vectors()[0], zoo.index), atol=0
    )
    np.testing.assert_allclose(
        zoo.logits(np_map(lambda a: a[None], aligned)), zoo.logits(zoo.params)[1:], atol=1e-5, rtol=0
    )


def test_aligned_distance_statistics_of_a_small_zoo():
    zoo = Zoo("cnn", count=4, seed=2)
    rng = np.random.default_rng(0)
    # 12 models: 4 independent bases, each in 3 noisy, randomly permuted copies
    base = np.repeat(zoo.vectors(), 3, axis=0)
    base = base + 0.02 * rng.standard_normal(base.shape).astype(np.float32)
    vectors = symmetry.permute_vectors(base, zoo.index, rng)
    stats = symmetry.aligned_distance_statistics(vectors, zoo.index)
    assert stats["pairs"] == 66 and set(stats["raw"]) == {"l2", "cosine"}
    pairs = [np.linalg.norm(vectors[i].astype(np.float64) - vectors[j]) for i in range(12) for j in range(i + 1, 12)]
    assert stats["raw"]["l2"][0] == pytest.approx(np.mean(pairs), rel=1e-9)
    print("raw", stats["raw"], "aligned", stats["aligned"])
    assert stats["aligned"]["l2"][0] < 0.9 * stats["raw"]["l2"][0]
    assert stats["aligned"]["cosine"][0] < stats["raw"]["cosine"][0]
    # already-aligned copies of one model stay as they are: aligned equals raw
    same = symmetry.aligned_distance_statistics(base[:3], zoo.index)
    assert same["aligned"]["l2"][0] == pytest.approx(same["raw"]["l2"][0])


def test_sign_flips_preserve_tanh_where_valid_and_are_refused_elsewhere():
    zoo = Zoo("cnn", "tanh")
    # hidden layers: conv0 (pooled), conv1 (no pool), fc0, fc1
    assert symmetry.sign_flippable_layers(zoo.arch, "tanh") == [1, 2, 3]
    assert symmetry.sign_flippable_layers(zoo.arch, "relu") == []
    signs = symmetry.random_signs(zoo.arch, "tanh", zoo.index, 4, count=2)
    assert signs[0] is None and all((s == -1).any() for s in signs[1:])
    mu = np_map(lambda a: 3.0 * a, zoo.params)
    flipped, mu_f = symmetry.flip_signs(zoo.params, signs, zoo.arch, "tanh", moments=mu)
    assert not np.allclose(zoo.vectors(flipped), zoo.vectors())
    np.testing.assert_allclose(zoo.logits(flipped), zoo.logits(zoo.params), atol=1e-5, rtol=0)
    np.testing.assert_array_equal(
        zoo.vectors(flipped), symmetry.flip_signs_vectors(zoo.vectors(), zoo.index, signs, zoo.arch, "tanh")
    )
    np.testing.assert_array_equal(zoo.vectors(mu_f), zoo.vectors(np_map(lambda a: 3.0 * a, flipped)))

    pooled = [-np.ones(6), None, None, None]  # conv0 is followed by a max-pool
    with pytest.raises(ValueError, match="max-pool"):
        symmetry.flip_signs(zoo.params, pooled, zoo.arch, "tanh")
    with pytest.raises(ValueError, match="not odd"):
        symmetry.flip_signs(zoo.params, [None, None, -np.ones(12), None], zoo.arch, "relu")
    # ... and refused for a reason: pretending conv0 had no pool, the flip changes the logits
    unpooled = dataclasses.replace(zoo.arch, convs=tuple(dataclasses.replace(c, pool=False) for c in zoo.arch.convs))
    wrong = symmetry.flip_signs(zoo.params, pooled, unpooled, "tanh")
    assert np.abs(zoo.logits(wrong) - zoo.logits(zoo.params)).max() > 1e-3


def test_sign_flip_is_not_a_symmetry_of_relu():
    zoo = Zoo("mlp", "relu")
    assert symmetry.sign_flippable_layers(zoo.arch, "relu") == []
    signs = [-np.ones(16), None]
    tanh_rules = symmetry.flip_signs(zoo.params, signs, zoo.arch, "tanh")  # the tanh rule, on a relu model
    assert np.abs(zoo.logits(tanh_rules) - zoo.logits(zoo.params)).max() > 1e-3
