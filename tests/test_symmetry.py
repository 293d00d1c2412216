"""Weight-space symmetries (jaxzoo.weights.symmetry): permutations, canonical form, weight matching, sign flips."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxzoo.analysis.table3 import ridge_select
from jaxzoo.errors import UserError
from jaxzoo.export.rows import vector_splits
from jaxzoo.inr.export import torch_arrays, vector_layout
from jaxzoo.inr.zoo import read_inr_zoo
from jaxzoo.models.registry import arch_spec, build_model, params_shapes
from jaxzoo.models.torch_layout import flat_vectors, index_dict
from jaxzoo.weights import augment, symmetry
from jaxzoo.zoo.reader import read_zoo

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
        self.activation = activation
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


# -- SIRENs: sign flips, permutations, sign canonicalisation ----------------------------------


def siren_params_of(vectors, layout):
    """Flat INR vectors [N, P] -> SIREN params, read from the layout's description alone
    (per layer `layerL.weight` [out, in] then `layerL.bias` [out]; Flax kernels are [in, out])."""
    params = {}
    for tensor in layout["tensors"]:
        name, kind = tensor["key"].split(".")
        size = int(np.prod(tensor["shape"]))
        block = vectors[:, tensor["offset"] : tensor["offset"] + size].reshape(len(vectors), *tensor["shape"])
        params.setdefault(name, {})["kernel" if kind == "weight" else "bias"] = (
            np.swapaxes(block, 1, 2) if kind == "weight" else block
        )
    return params


@pytest.fixture(scope="module")
def sirens(inr_zoo):
    """(the INR zoo, 6 trained SIRENs' params [6, ..], their flat vectors [6, P], the layout)."""
    zoo = read_inr_zoo(inr_zoo)
    params = jax.tree.map(lambda a: np.asarray(a[:6]), zoo.params())
    vectors = np.concatenate([a.reshape(6, -1) for _, _, a in torch_arrays(zoo, params)], axis=1)
    return zoo, params, vectors, vector_layout(zoo)


def test_sine_sign_flips_and_permutations_preserve_trained_sirens(sirens):
    zoo, params, vectors, layout = sirens
    np.testing.assert_array_equal(flat_siren(siren_params_of(vectors, layout), zoo), vectors)  # the test's reader
    hidden = len(zoo.spec.widths)
    assert symmetry.sign_flippable_layers(zoo.spec, "sine") == list(range(hidden))
    assert symmetry.hidden_layer_sizes(layout) == list(zoo.spec.widths)
    signs = symmetry.random_signs(zoo.spec, "sine", layout, 3, count=6)
    flipped = symmetry.flip_signs(params, signs, zoo.spec, "sine")
    assert not np.allclose(flat_siren(flipped, zoo), vectors)
    images = zoo.reconstruct(params)
    np.testing.assert_allclose(zoo.reconstruct(flipped), images, atol=1e-5, rtol=0)
    np.testing.assert_array_equal(
        flat_siren(flipped, zoo), symmetry.flip_signs_vectors(vectors, layout, signs, zoo.spec, "sine")
    )
    perms = symmetry.random_permutations(layout, 4, count=6)
    permuted = symmetry.permute_vectors(vectors, layout, perms)
    np.testing.assert_array_equal(flat_siren(symmetry.permute_params(params, perms), zoo), permuted)
    np.testing.assert_allclose(zoo.reconstruct(siren_params_of(permuted, layout)), images, atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="activation='sine'"):
        symmetry.flip_signs(params, signs, zoo.spec, "tanh")


def flat_siren(params, zoo):
    return np.concatenate([a.reshape(len(a), -1) for _, _, a in torch_arrays(zoo, params)], axis=1)


def test_canonical_signs_map_every_flipped_copy_to_one_vector(sirens):
    zoo, params, vectors, layout = sirens
    copies = np.repeat(vectors[:2], 4, axis=0)  # 4 randomly flipped copies of each of 2 models
    copies = symmetry.flip_signs_vectors(copies, layout, np.random.default_rng(8), zoo.spec, "sine")
    assert len({row.tobytes() for row in copies}) == 8
    canonical, signs = symmetry.canonical_signs(copies, layout, zoo.spec, "sine", return_signs=True)
    for m in range(2):
        for k in range(4):
            np.testing.assert_array_equal(canonical[4 * m + k], canonical[4 * m])
    np.testing.assert_array_equal(symmetry.canonical_signs(canonical, layout, zoo.spec, "sine"), canonical)
    biases = [canonical[:, t["offset"] : t["offset"] + t["shape"][0]] for t in layout["tensors"][1:-2:2]]
    assert all((b > 0).all() for b in biases)  # trained biases: none exactly 0
    np.testing.assert_array_equal(symmetry.flip_signs_vectors(copies, layout, signs, zoo.spec, "sine"), canonical)
    np.testing.assert_allclose(
        zoo.reconstruct(siren_params_of(canonical, layout)),
        zoo.reconstruct(siren_params_of(copies, layout)),
        atol=1e-5,
        rtol=0,
    )
    np.testing.assert_array_equal(
        flat_siren(symmetry.canonical_sign_params(params, zoo.spec, "sine"), zoo),
        symmetry.canonical_signs(vectors, layout, zoo.spec, "sine"),
    )
    # a zero bias: the first nonzero incoming weight decides
    zeroed = vectors[:1].copy()
    bias = layout["tensors"][1]
    zeroed[0, bias["offset"]] = 0.0
    both = np.concatenate([zeroed, symmetry.flip_signs_vectors(zeroed, layout, 5, zoo.spec, "sine")])
    canonical = symmetry.canonical_signs(both, layout, zoo.spec, "sine")
    np.testing.assert_array_equal(canonical[0], canonical[1])
    assert canonical[0, 0] > 0  # unit 0 of layer 0: weight row (w_00, w_01) starts at offset 0


# -- positive rescaling (relu, leakyrelu) -----------------------------------------------------


@pytest.mark.parametrize("activation", ["relu", "leakyrelu"])
@pytest.mark.parametrize("name", list(ARCHS))
def test_positive_rescaling_preserves_relu_logits(name, activation):
    zoo = Zoo(name, activation)
    hidden = len(symmetry.hidden_layer_sizes(zoo.index))
    assert symmetry.rescalable_layers(zoo.arch, activation) == list(range(hidden))  # pooled convs too
    scales = symmetry.random_scales(zoo.arch, activation, zoo.index, 6, count=2, max_log2=2.0)
    scaled = symmetry.rescale_params(zoo.params, scales, zoo.arch, activation)
    assert np.abs(zoo.vectors(scaled) - zoo.vectors()).max() > 0.1
    logits = zoo.logits(zoo.params)
    np.testing.assert_allclose(zoo.logits(scaled), logits, atol=1e-5 * np.abs(logits).max(), rtol=1e-5)
    np.testing.assert_array_equal(
        zoo.vectors(scaled), symmetry.rescale_vectors(zoo.vectors(), zoo.index, scales, zoo.arch, activation)
    )


def test_rescaling_keeps_variational_dropout_log_alpha():
    zoo = Zoo("cnn", "relu")
    rng = np.random.default_rng(2)
    params = {
        name: {
            **leaves,
            "log_sigma2": rng.normal(-8, 1, leaves["kernel"].shape).astype(np.float32),
            "log_sigma2_bias": rng.normal(-8, 1, leaves["bias"].shape).astype(np.float32),
        }
        for name, leaves in zoo.params.items()
    }
    scaled = symmetry.rescale_params(params, symmetry.random_scales(zoo.arch, "relu", zoo.index, 1), zoo.arch, "relu")
    for name, leaves in params.items():
        for weight, log_sigma2 in (("kernel", "log_sigma2"), ("bias", "log_sigma2_bias")):
            before = leaves[log_sigma2] - 2 * np.log(np.abs(leaves[weight]))
            after = scaled[name][log_sigma2] - 2 * np.log(np.abs(scaled[name][weight]))
            np.testing.assert_allclose(after, before, atol=1e-4)


@pytest.mark.parametrize("activation", ["tanh", "sigmoid", "gelu"])
def test_rescaling_is_refused_where_it_changes_the_function(activation):
    zoo = Zoo("mlp", activation)
    assert symmetry.rescalable_layers(zoo.arch, activation) == []
    assert symmetry.random_scales(zoo.arch, activation, zoo.index, 0) == [None, None]
    scales = [np.full(16, 2.0, np.float32), None]
    with pytest.raises(UserError, match="not positively homogeneous"):
        symmetry.rescale_params(zoo.params, scales, zoo.arch, activation)
    with pytest.raises(UserError, match="not positively homogeneous"):
        symmetry.rescale_vectors(zoo.vectors(), zoo.index, scales, zoo.arch, activation)
    # ... for a reason: the relu rule applied to this model changes its logits
    wrong = symmetry.rescale_params(zoo.params, scales, zoo.arch, "relu")
    assert np.abs(zoo.logits(wrong) - zoo.logits(zoo.params)).max() > 1e-3
    with pytest.raises(UserError, match="> 0"):
        symmetry.rescale_params(zoo.params, [-scales[0], None], zoo.arch, "relu")


def test_rescaling_trained_relu_cnn_s_and_canonical_vectors_in_table3(small_zoo):
    """Trained relu CNN-s models of the small zoo keep their logits under rescaling; and Table 3's
    ridge R^2 of test accuracy from raw vs canonical (permutation-sorted) vectors, printed."""
    zoo = read_zoo(small_zoo)
    epoch = zoo.epochs[-1]
    state = zoo.state(epoch)
    rows = [m for m, row in enumerate(zoo.table) if row["activation"] == "relu"][:4]
    params = jax.tree.map(lambda a: np.asarray(a[rows]), state["params"])
    index = zoo.vector_layout()
    scales = symmetry.random_scales(zoo.arch, "relu", index, 3, count=len(rows))
    scaled = symmetry.rescale_params(params, scales, zoo.arch, "relu")
    model = zoo.model("relu")
    forward = jax.vmap(lambda p, x: model.apply({"params": p}, x, 0, 0.0, train=False), (0, None))
    x = jnp.asarray(np.random.default_rng(0).normal(size=(4, *zoo.image_shape)), jnp.float32)
    logits = np.asarray(forward(params, x))
    np.testing.assert_allclose(np.asarray(forward(scaled, x)), logits, atol=1e-5 * np.abs(logits).max(), rtol=1e-5)

    splits, _ = vector_splits(zoo, zoo.epochs[1:], np.inf)
    data = {
        kind: {k: (transform(v.weights, v.index_dict), np.asarray(v.properties["test_acc"])) for k, v in splits.items()}
        for kind, transform in (("raw", lambda w, i: w), ("canonical", symmetry.canonical_vectors))
    }
    scores = {kind: ridge_select(d["train"], d["val"], d["test"]) for kind, d in data.items()}
    print(
        "ridge R^2 of test_acc (train, val, test):",
        {k: [round(s[n], 3) for n in ("train", "val", "test")] for k, s in scores.items()},
    )
    assert all(np.isfinite(s["test"]) for s in scores.values())
    # the canonical form is an invariant: randomly permuted test models score as they are
    test = splits["test"]
    moved = symmetry.permute_vectors(test.weights, test.index_dict, np.random.default_rng(1))
    for kind, transform in (
        ("raw", lambda w: w),
        ("canonical", lambda w: symmetry.canonical_vectors(w, test.index_dict)),
    ):
        again = ridge_select(data[kind]["train"], data[kind]["val"], (transform(moved), data[kind]["test"][1]))
        if kind == "raw":
            assert again["test"] != pytest.approx(scores[kind]["test"], abs=1e-6)
        else:
            assert again["test"] == pytest.approx(scores[kind]["test"], abs=1e-9)


# -- on the device (JAX) ------------------------------------------------------------------


@pytest.mark.parametrize("activation", ["tanh", "relu", "gelu"])
def test_device_transform_equals_the_host_path(activation):
    zoo = Zoo("cnn", activation, count=3)
    vectors = zoo.vectors()
    perms = symmetry.random_permutations(zoo.index, 1, count=3)
    host = symmetry.permute_vectors(vectors, zoo.index, perms)
    if activation == "tanh":
        factors = symmetry.random_signs(zoo.arch, activation, zoo.index, 2, count=3)
        host = symmetry.flip_signs_vectors(host, zoo.index, factors, zoo.arch, activation)
    elif activation == "relu":
        factors = symmetry.random_scales(zoo.arch, activation, zoo.index, 2, count=3)
        host = symmetry.rescale_vectors(host, zoo.index, factors, zoo.arch, activation)
    else:
        factors = None
    np.testing.assert_array_equal(np.asarray(augment.transform_vectors(vectors, zoo.index, perms, factors)), host)


def test_device_augmentation_of_a_siren_batch(sirens):
    zoo, _, vectors, layout = sirens
    batch = np.repeat(vectors, 2, axis=0)  # [12, P]
    draw = jax.jit(lambda key: augment.random_transforms(key, 12, layout, zoo.spec, "sine"))  # one compilation
    perms, signs = draw(jax.random.key(1))
    perms, signs = [np.asarray(p) for p in perms], [np.asarray(s) for s in signs]
    assert all((np.sort(p, axis=1) == np.arange(p.shape[1])).all() for p in perms)
    assert all(set(np.unique(s)) == {-1.0, 1.0} for s in signs)
    host = symmetry.flip_signs_vectors(symmetry.permute_vectors(batch, layout, perms), layout, signs, zoo.spec, "sine")
    np.testing.assert_array_equal(np.asarray(augment.transform_vectors(batch, layout, perms, signs)), host)
    out = np.asarray(augment.augmenter(layout, zoo.spec, "sine")(jax.random.key(1), batch))
    np.testing.assert_array_equal(out, host)  # the same draws inside the jitted augmenter
    assert len({row.tobytes() for row in out}) == 12  # every row its own transform
    np.testing.assert_allclose(
        zoo.reconstruct(siren_params_of(out, layout)),
        zoo.reconstruct(siren_params_of(batch, layout)),
        atol=1e-5,
        rtol=0,
    )


def test_device_augmentation_preserves_relu_logits():
    zoo = Zoo("cnn", "relu", count=4, seed=3)
    augment_fn = augment.augmenter(zoo.index, zoo.arch, "relu", max_log2=1.0)
    out = np.asarray(augment_fn(jax.random.key(0), zoo.vectors()))
    assert np.abs(out - zoo.vectors()).max() > 0.1
    logits = zoo.logits(zoo.params)
    np.testing.assert_allclose(
        zoo.logits(cnn_params_of(out, zoo.index)), logits, atol=1e-5 * np.abs(logits).max(), rtol=1e-5
    )


def cnn_params_of(vectors, index):
    """Flat vectors [N, P] -> Flax params, from the `index_dict` description (conv weight [out,
    in, kh, kw] -> kernel [kh, kw, in, out]; linear weight [out, in] -> kernel [in, out])."""
    params, n = {}, len(vectors)
    convs = sum(size > 1 for size in index["kernel_size"])
    for l, (start, out, size, cin) in enumerate(
        zip(index["idx_start"], index["kernel_no"], index["kernel_size"], index["channels_in"])
    ):
        weight = vectors[:, start : start + out * cin * size]
        bias = vectors[:, start + out * cin * size : start + out * cin * size + out]
        if l < convs:
            k = int(round(np.sqrt(size)))
            kernel = weight.reshape(n, out, cin, k, k).transpose(0, 3, 4, 2, 1)
            name = f"conv{l}"
        else:
            kernel = weight.reshape(n, out, cin).transpose(0, 2, 1)
            name = f"fc{l - convs}"
        params[name] = {"kernel": kernel, "bias": bias}
    return params
