"""Architecture, layer and flatten order, and inits against the original's PyTorch semantics."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxzoo.models.cnn import ACTIVATIONS, ARCHS, CNN, INITS, init_kernel, init_params, param_count
from jaxzoo.models.registry import ModelError, check_custom_model, checked_layout

erf = np.vectorize(math.erf)


def make_params(arch_name, channels, init="kaiming_uniform", seed=0):
    model = CNN(ARCHS[arch_name], ("tanh",), use_dropout=False)
    size = ARCHS[arch_name].image_size
    template = model.init(jax.random.key(0), jnp.zeros((1, size, size, channels)), 0, 0.0, train=False)
    params = init_params(template["params"], jax.random.key(seed), 0, (init,))
    return model, params


@pytest.mark.parametrize("arch,channels,expected", [("cnn_s", 1, 2464), ("cnn_s", 3, 2864), ("cnn_m", 3, 10853)])
def test_parameter_counts_and_output_shape(arch, channels, expected):
    model, params = make_params(arch, channels)
    assert param_count(params) == expected
    size = ARCHS[arch].image_size
    logits = model.apply({"params": params}, jnp.zeros((7, size, size, channels)), 0, 0.0, train=False)
    assert logits.shape == (7, 10)
    assert ARCHS[arch].flat_features == {"cnn_s": 36, "cnn_m": 60}[arch]


def torch_layout(params):
    """Flax HWIO / [in, out] kernels -> PyTorch OIHW / [out, in]."""
    out = {}
    for name, layer in params.items():
        kernel = np.asarray(layer["kernel"], np.float64)
        out[name] = (
            kernel.transpose(3, 2, 0, 1) if kernel.ndim == 4 else kernel.T,
            np.asarray(layer["bias"], np.float64),
        )
    return out


def numpy_conv(x, weight, bias):
    """Plain NCHW convolution, stride 1, no padding (PyTorch's Conv2d)."""
    n, c, h, w = x.shape
    o, _, kh, kw = weight.shape
    out = np.zeros((n, o, h - kh + 1, w - kw + 1))
    for i in range(h - kh + 1):
        for j in range(w - kw + 1):
            out[:, :, i, j] = np.einsum("nckl,ockl->no", x[:, :, i : i + kh, j : j + kw], weight)
    return out + bias[None, :, None, None]


def numpy_pool(x):
    n, c, h, w = x.shape
    h2, w2 = h // 2, w // 2
    return x[:, :, : 2 * h2, : 2 * w2].reshape(n, c, h2, 2, w2, 2).max(axis=(3, 5))


def numpy_forward(arch, params, x_nchw, act):
    """The original ModuleList in order: conv -> pool -> act (-> dropout), flatten, fc."""
    weights = torch_layout(params)
    for i, spec in enumerate(arch.convs):
        x_nchw = numpy_conv(x_nchw, *weights[f"conv{i}"])
        if spec.pool:
            x_nchw = numpy_pool(x_nchw)
        x_nchw = act(x_nchw)
    x = x_nchw.reshape(x_nchw.shape[0], -1)  # C-major flatten
    w, b = weights["fc0"]
    x = act(x @ w.T + b)
    w, b = weights["fc1"]
    return x @ w.T + b


@pytest.mark.parametrize("arch_name,channels", [("cnn_s", 1), ("cnn_m", 3)])
@pytest.mark.parametrize("activation", ["tanh", "gelu"])
def test_forward_matches_numpy_reference(arch_name, channels, activation):
    arch = ARCHS[arch_name]
    model = CNN(arch, (activation,), use_dropout=False)
    _, params = make_params(arch_name, channels, seed=3)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3, arch.image_size, arch.image_size, channels)).astype(np.float32)
    logits = model.apply({"params": params}, x, 0, 0.0, train=False)
    reference_act = {"tanh": np.tanh, "gelu": lambda v: 0.5 * v * (1 + erf(v / math.sqrt(2)))}[activation]
    expected = numpy_forward(arch, params, x.transpose(0, 3, 1, 2).astype(np.float64), reference_act)
    np.testing.assert_allclose(np.asarray(logits), expected, rtol=1e-4, atol=1e-4)


def test_pool_comes_before_activation():
    """GELU is not monotone, so conv -> act -> pool gives other logits than the original order."""
    arch = ARCHS["cnn_s"]
    model = CNN(arch, ("gelu",), use_dropout=False)
    _, params = make_params("cnn_s", 1, seed=1)
    x = np.random.default_rng(1).normal(size=(2, 28, 28, 1)).astype(np.float32)
    logits = np.asarray(model.apply({"params": params}, x, 0, 0.0, train=False))
    weights = torch_layout(params)
    gelu = lambda v: 0.5 * v * (1 + erf(v / math.sqrt(2)))
    h = x.transpose(0, 3, 1, 2).astype(np.float64)
    for i, spec in enumerate(arch.convs):
        h = gelu(numpy_conv(h, *weights[f"conv{i}"]))
        if spec.pool:
            h = numpy_pool(h)
    h = h.reshape(2, -1)
    swapped = gelu(h @ weights["fc0"][0].T + weights["fc0"][1]) @ weights["fc1"][0].T + weights["fc1"][1]
    assert np.abs(logits - swapped).max() > 1e-3


def test_activations_follow_pytorch():
    x = jnp.linspace(-4, 4, 101)
    np.testing.assert_allclose(
        ACTIVATIONS["gelu"](x), 0.5 * x * (1 + erf(np.asarray(x) / math.sqrt(2))), rtol=1e-5, atol=1e-6
    )
    np.testing.assert_allclose(ACTIVATIONS["leakyrelu"](jnp.array([-2.0, 3.0])), [-0.02, 3.0], rtol=1e-6)
    np.testing.assert_allclose(ACTIVATIONS["sigmoid"](jnp.array([0.0])), [0.5])


@pytest.mark.parametrize("method", INITS)
def test_init_statistics(method):
    shape = (5, 5, 8, 600)  # HWIO: fan_in = 200, fan_out = 15000
    fan_in, fan_out = 200, 15000
    w = np.asarray(init_kernel(jax.random.key(0), shape, method), np.float64)
    expected = {
        "uniform": (0.5, 1 / math.sqrt(12), 0.0, 1.0),
        "normal": (0.0, 1.0, None, None),
        "kaiming_uniform": (0.0, math.sqrt(2 / fan_in), -math.sqrt(6 / fan_in), math.sqrt(6 / fan_in)),
        "kaiming_normal": (0.0, math.sqrt(2 / fan_in), None, None),
        "xavier_uniform": (
            0.0,
            math.sqrt(2 / (fan_in + fan_out)),
            -math.sqrt(6 / (fan_in + fan_out)),
            math.sqrt(6 / (fan_in + fan_out)),
        ),
        "xavier_normal": (0.0, math.sqrt(2 / (fan_in + fan_out)), None, None),
    }[method]
    mean, std, low, high = expected
    assert abs(w.mean() - mean) < 0.02 * max(std, 1e-3) * 10
    assert abs(w.std() / std - 1) < 0.02
    if low is not None:
        assert w.min() >= low and w.max() <= high
        assert w.min() < low + 0.01 * (high - low) and w.max() > high - 0.01 * (high - low)


def test_every_bias_is_0_01_and_inits_select_per_model():
    _, a = make_params("cnn_s", 1, init="uniform", seed=5)
    for layer in a.values():
        np.testing.assert_array_equal(np.asarray(layer["bias"]), np.float32(0.01))
    assert float(a["conv0"]["kernel"].min()) >= 0.0  # U[0, 1), not symmetric
    # Selecting among several inits gives exactly the single-init draw.
    model = CNN(ARCHS["cnn_s"], ("tanh",), use_dropout=False)
    template = model.init(jax.random.key(0), jnp.zeros((1, 28, 28, 1)), 0, 0.0, train=False)["params"]
    mixed = init_params(template, jax.random.key(5), 2, ("kaiming_normal", "normal", "uniform"))
    jax.tree.map(np.testing.assert_array_equal, mixed, a)


def test_dropout_train_only_and_rate_zero_is_identity():
    model = CNN(ARCHS["cnn_s"], ("relu",), use_dropout=True)
    _, params = make_params("cnn_s", 1)
    x = np.random.default_rng(0).normal(size=(4, 28, 28, 1)).astype(np.float32)
    key = {"dropout": jax.random.key(1)}
    plain = model.apply({"params": params}, x, 0, 0.5, train=False)
    off = model.apply({"params": params}, x, 0, 0.0, train=True, rngs=key)
    on = model.apply({"params": params}, x, 0, 0.5, train=True, rngs=key)
    np.testing.assert_array_equal(np.asarray(off), np.asarray(plain))
    assert np.abs(np.asarray(on) - np.asarray(plain)).max() > 1e-3


def test_single_channel_conv_matches_patches_with_gradients():
    """The custom-VJP first conv gives the im2col numbers: output, kernel and input gradients."""
    from jaxzoo.models.cnn import extract_patches, single_channel_conv

    x = jax.random.normal(jax.random.key(0), (3, 9, 8, 1))
    kernel = jax.random.normal(jax.random.key(1), (3, 3, 1, 4))
    weights = jax.random.normal(jax.random.key(2), (3, 7, 6, 4))
    im2col = lambda x, k: extract_patches(x, 3) @ k.reshape(-1, 4)
    loss = lambda conv: lambda x, k: jnp.sum(jnp.tanh(conv(x, k)) * weights)
    np.testing.assert_allclose(single_channel_conv(x, kernel), im2col(x, kernel), rtol=1e-5, atol=1e-5)
    for got, want in zip(
        jax.grad(loss(single_channel_conv), (0, 1))(x, kernel), jax.grad(loss(im2col), (0, 1))(x, kernel)
    ):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "module,words",
    [
        ("zoo_modules:NoParams", "has no parameters"),
        ("zoo_modules:JunkLayout", "returned 7840 numbers for params of 7850"),
    ],
)
def test_custom_modules_and_their_layout_hooks_are_tried_at_the_boundary(module, words):
    with pytest.raises(ModelError) as info:
        check_custom_model({"module": module}, (28, 28, 1), 10)
    assert words in str(info.value) and "\n" not in str(info.value)


def test_layout_hook_output_is_checked():
    params = {"fc": {"kernel": np.zeros((3, 4, 2)), "bias": np.zeros((3, 2))}}  # 3 models
    good = lambda p: [("fc.weight", p["fc"]["kernel"]), ("fc.bias", p["fc"]["bias"])]
    assert [key for key, _ in checked_layout(good, params, 1)] == ["fc.weight", "fc.bias"]
    cases = [
        (lambda p: 5, "raised TypeError"),
        (lambda p: [(1, p["fc"]["kernel"]), ("b", p["fc"]["bias"])], "distinct state_dict keys"),
        (lambda p: [("w", p["fc"]["kernel"]), ("w", p["fc"]["bias"])], "distinct state_dict keys"),
        (lambda p: [("w", np.array(["a"] * 24).reshape(3, 8)), ("b", p["fc"]["bias"])], "numeric arrays"),
        (lambda p: [("w", p["fc"]["kernel"][0]), ("b", p["fc"]["bias"])], "leading axes (3,)"),
    ]
    for hook, words in cases:
        with pytest.raises(ModelError) as info:
            checked_layout(hook, params, 1)
        assert words in str(info.value) and "\n" not in str(info.value)
