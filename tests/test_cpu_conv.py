"""The C++ population convolution (XLA FFI) against XLA's im2col: values, gradients, training."""

import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxzoo import cpu_conv
from jaxzoo.errors import UserError
from jaxzoo.models import ARCHS, CNN, extract_patches, init_params, max_pool_2x2
from jaxzoo.population import build_population, expand_grid
from jaxzoo.steps import make_step_functions
from conftest import small_zoo_config

pytestmark = pytest.mark.skipif(cpu_conv._compiler() is None, reason="no C++ compiler to build the kernel")


@pytest.fixture(scope="module", autouse=True)
def kernel():
    assert cpu_conv.resolve("cpu_kernel") == "cpu_kernel"


def im2col_conv(x, kernel, bias):
    return extract_patches(x, kernel.shape[0]) @ kernel.reshape(-1, kernel.shape[-1]) + bias


def random_case(models, batch, size, channels, k, features, seed=0):
    rng = np.random.default_rng(seed)
    x = jnp.asarray(rng.normal(size=(models, batch, size, size, channels)), jnp.float32)
    w = jnp.asarray(rng.normal(size=(models, k, k, channels, features)) / k, jnp.float32)
    b = jnp.asarray(rng.normal(size=(models, features)), jnp.float32)
    grad = jnp.asarray(rng.normal(size=(models, batch, size - k + 1, size - k + 1, features)), jnp.float32)
    return x, w, b, grad


def assert_close(got, want, scale=2e-6):
    np.testing.assert_allclose(got, want, atol=scale * float(jnp.abs(want).max()), rtol=0)


# The convolutions of CNN-s and CNN-m, and channel counts that are not multiples of 8 (padding).
GEOMETRIES = [(28, 1, 5, 8), (12, 8, 5, 6), (4, 6, 2, 4), (32, 3, 3, 16), (15, 16, 3, 32), (6, 32, 3, 15),
              (9, 5, 3, 20), (7, 3, 7, 9)]


@pytest.mark.parametrize("size,channels,k,features", GEOMETRIES)
def test_values_and_both_gradients_equal_im2col(size, channels, k, features):
    x, w, b, grad = random_case(3, 2, size, channels, k, features)
    out, vjp = jax.vjp(jax.vmap(cpu_conv.population_conv), x, w, b)
    expected, expected_vjp = jax.vjp(jax.vmap(im2col_conv), x, w, b)
    assert_close(out, expected)
    for got, want in zip(vjp(grad), expected_vjp(grad), strict=True):  # images, kernel, bias
        assert_close(got, want)


@pytest.mark.parametrize("size,channels,k,features", [(28, 1, 5, 8), (12, 8, 5, 6), (32, 3, 3, 16), (15, 16, 3, 32),
                                                      (6, 32, 3, 15)])
def test_fused_max_pool_equals_conv_then_pool(size, channels, k, features):
    """Odd conv outputs (15 - 3 + 1 = 13) are floored, as MaxPool2d(2, 2)."""
    x, w, b, _ = random_case(3, 2, size, channels, k, features)
    reference = jax.vmap(lambda *args: max_pool_2x2(im2col_conv(*args)))
    out, vjp = jax.vjp(jax.vmap(cpu_conv.population_conv_pool), x, w, b)
    expected, expected_vjp = jax.vjp(reference, x, w, b)
    assert out.shape == expected.shape
    assert_close(out, expected)
    grad = jnp.asarray(np.random.default_rng(1).normal(size=out.shape), jnp.float32)
    for got, want in zip(vjp(grad), expected_vjp(grad), strict=True):
        assert_close(got, want)


def test_pool_gradient_of_ties_goes_where_pytorch_sends_it():
    """A zero kernel makes every window a tie: PyTorch routes each window's gradient to its first pixel."""
    torch = pytest.importorskip("torch")
    x, _, b, _ = random_case(1, 2, 9, 2, 2, 3)
    w = jnp.zeros((1, 2, 2, 2, 3)).at[0, 0, 0, 0, 0].set(1.0)  # channel 0: x itself; 1, 2: all zero
    grad = jnp.asarray(np.random.default_rng(2).normal(size=(1, 2, 4, 4, 3)), jnp.float32)
    conv_out = torch.tensor(np.asarray(jax.vmap(im2col_conv)(x, w, b)[0]).transpose(0, 3, 1, 2), requires_grad=True)
    torch.nn.functional.max_pool2d(conv_out, 2, 2).backward(torch.tensor(np.asarray(grad[0]).transpose(0, 3, 1, 2)))
    expected = conv_out.grad.numpy().transpose(0, 2, 3, 1)  # gradient of the conv outputs
    _, conv_vjp = jax.vjp(jax.vmap(im2col_conv), x, w, b)
    _, pool_vjp = jax.vjp(jax.vmap(cpu_conv.population_conv_pool), x, w, b)
    np.testing.assert_allclose(pool_vjp(grad)[1], conv_vjp(jnp.asarray(expected)[None])[1], atol=1e-5)


@pytest.mark.parametrize("arch_name,channels", [("cnn_s", 1), ("cnn_m", 3)])
def test_cnn_with_the_kernel_equals_xla_in_value_and_gradient(arch_name, channels):
    arch = ARCHS[arch_name]
    x = jnp.asarray(np.random.default_rng(3).normal(size=(4, arch.image_size, arch.image_size, channels)), jnp.float32)
    labels = jnp.arange(4) % 10
    xla_model = CNN(arch, ("tanh",), use_dropout=False)
    params = init_params(xla_model.init(jax.random.key(0), x, 0, 0.0, train=False)["params"], jax.random.key(1), 0,
                         ("kaiming_uniform",))

    def loss(model, p):
        logits = model.apply({"params": p}, x, 0, 0.0, train=False)
        return -jnp.take_along_axis(jax.nn.log_softmax(logits), labels[:, None], 1).mean(), logits

    (xla_loss, xla_logits), xla_grads = jax.value_and_grad(lambda p: loss(xla_model, p), has_aux=True)(params)
    kernel_model = CNN(arch, ("tanh",), use_dropout=False, conv="cpu_kernel")
    (k_loss, k_logits), k_grads = jax.value_and_grad(lambda p: loss(kernel_model, p), has_aux=True)(params)
    np.testing.assert_allclose(k_logits, xla_logits, atol=1e-5)
    for got, want in zip(jax.tree.leaves(k_grads), jax.tree.leaves(xla_grads)):
        np.testing.assert_allclose(got, want, atol=1e-5, rtol=1e-4)


def test_single_model_without_vmap():
    x, w, b, _ = random_case(1, 4, 12, 8, 5, 6)
    np.testing.assert_allclose(cpu_conv.population_conv(x[0], w[0], b[0]), im2col_conv(x[0], w[0], b[0]), atol=1e-4)


def test_a_models_numbers_do_not_depend_on_its_population():
    x, w, b, _ = random_case(5, 3, 12, 8, 5, 6)
    conv = jax.vmap(cpu_conv.population_conv_pool)
    grad = jnp.asarray(np.random.default_rng(4).normal(size=(5, 3, 4, 4, 6)), jnp.float32)
    conv_vjp = lambda *args: jax.vjp(conv, *args[:3])[1](args[3])
    full, full_grads = conv(x, w, b), conv_vjp(x, w, b, grad)
    alone, alone_grads = conv(x[3:4], w[3:4], b[3:4]), conv_vjp(x[3:4], w[3:4], b[3:4], grad[3:4])
    np.testing.assert_array_equal(alone[0], full[3])
    for a, f in zip(alone_grads, full_grads):
        np.testing.assert_array_equal(a[0], f[3])


def test_shape_errors_name_the_problem():
    x, w, b, _ = random_case(2, 2, 12, 8, 5, 6)
    with pytest.raises(Exception, match="kernels must be"):
        jax.block_until_ready(jax.vmap(cpu_conv.population_conv)(x[..., :4], w, b))
    with pytest.raises(Exception, match="images do not split evenly over the kernels"):
        images = x.reshape(4, 12, 12, 8)[:3]
        jax.block_until_ready(cpu_conv._call(cpu_conv.FORWARD, cpu_conv._f32((3, 8, 8, 6)), images, w, b))
    with pytest.raises(Exception, match="the bias has the wrong size"):
        jax.block_until_ready(cpu_conv._call(cpu_conv.FORWARD, cpu_conv._f32((4, 8, 8, 6)), x, w, b[:, :5]))


def test_training_steps_equal_the_xla_convolution(mnist_small):
    """Three Adam/SGD steps of a mixed CNN-s population: the kernel and XLA agree to rounding."""
    config = small_zoo_config()
    population = build_population(expand_grid(config.population, config.seed))
    images, labels = mnist_small.train
    results = []
    for conv in ("xla", "cpu_kernel"):
        fns = make_step_functions(ARCHS["cnn_s"], population.activations, population.inits, population.optimizers,
                                  population.uses_dropout, 0.9, (28, 28, 1), len(labels), 10, mnist_small.mean,
                                  mnist_small.std, conv=conv)
        factors = jax.tree.map(jnp.asarray, population.factors(np.arange(8)))
        state = fns.init(factors)
        order, mask = fns.order(factors["seed"], 1)
        x, y, m = fns.gather(images, labels, order[:, :3], mask[:, :3])
        state, loss, _ = fns.train(state, factors, x, y, m, 1, 0)
        results.append((state["params"], loss))
    (xla_params, xla_loss), (kernel_params, kernel_loss) = results
    np.testing.assert_allclose(kernel_loss, xla_loss, rtol=1e-5)
    for got, want in zip(jax.tree.leaves(kernel_params), jax.tree.leaves(xla_params)):
        np.testing.assert_allclose(got, want, atol=1e-5, rtol=1e-4)


def test_resolve_rejects_unknown_names_and_keeps_xla():
    with pytest.raises(UserError, match="runtime.conv='fast' is unknown"):
        cpu_conv.resolve("fast")
    assert cpu_conv.resolve("xla") == "xla"
    assert cpu_conv.resolve("auto") == "cpu_kernel"


def test_build_is_cached_and_compiler_failures_are_reported(tmp_path, monkeypatch):
    library = cpu_conv.build_library(tmp_path)
    stamp = library.stat().st_mtime_ns
    assert cpu_conv.build_library(tmp_path) == library and library.stat().st_mtime_ns == stamp
    assert [p.name for p in tmp_path.iterdir()] == [library.name]  # no build leftovers
    monkeypatch.setenv("CXX", "false")  # a compiler that fails
    with pytest.raises(RuntimeError, match="false failed"):
        cpu_conv.build_library(tmp_path / "other")


def test_auto_falls_back_to_xla_without_a_compiler(tmp_path):
    """In a fresh process with no compiler on PATH: 'auto' trains with XLA, 'cpu_kernel' refuses."""
    code = ("from jaxzoo import cpu_conv; print(cpu_conv.resolve('auto'))\n"
            "try:\n    cpu_conv.resolve('cpu_kernel')\nexcept Exception as e:\n    print(type(e).__name__, e)\n")
    env = {**os.environ, "PATH": str(tmp_path), "JAXZOO_KERNEL_DIR": str(tmp_path / "kernels")}
    env.pop("CXX", None)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    lines = out.stdout.strip().splitlines()
    assert lines[0] == "xla"
    assert lines[1].startswith("UserError the CPU convolution kernel is unavailable (no C++ compiler found")
    assert "using XLA's (slower)" in out.stderr
