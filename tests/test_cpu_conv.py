"""The C++ population convolution (XLA FFI) against XLA's im2col: values, gradients, training; its
build (cache key, timeout), shape limits and fallbacks, and the host probes that keep jaxzoo portable."""

import ctypes
import functools
import json
import logging
import math
import os
import pathlib
import subprocess
import sys
import time
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import small_zoo_config

from jaxzoo import host
from jaxzoo.errors import UserError
from jaxzoo.models import cpu_conv
from jaxzoo.models.cnn import ARCHS, CNN, ArchSpec, ConvSpec, extract_patches, init_params, max_pool_2x2
from jaxzoo.models.registry import arch_spec
from jaxzoo.training.population import build_population, expand_grid
from jaxzoo.training.steps import GroupSpec, StepSetup, make_step_functions

REPO = pathlib.Path(__file__).resolve().parents[1]
needs_compiler = pytest.mark.skipif(cpu_conv._compiler() is None, reason="no C++ compiler to build the kernel")
needs_kernel = pytest.mark.usefixtures("kernel")


@pytest.fixture(scope="module")
def kernel():
    if cpu_conv._compiler() is None:
        pytest.skip("no C++ compiler to build the kernel")
    assert cpu_conv.resolve("cpu_kernel") == "cpu_kernel"


@pytest.fixture
def jaxzoo_log(caplog, monkeypatch):
    """caplog that also sees the 'jaxzoo' logger when the CLI has stopped it propagating."""
    monkeypatch.setattr(logging.getLogger("jaxzoo"), "propagate", True)
    return caplog


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
GEOMETRIES = [
    (28, 1, 5, 8),
    (12, 8, 5, 6),
    (4, 6, 2, 4),
    (32, 3, 3, 16),
    (15, 16, 3, 32),
    (6, 32, 3, 15),
    (9, 5, 3, 20),
    (7, 3, 7, 9),
]


@needs_kernel
@pytest.mark.parametrize("size,channels,k,features", GEOMETRIES)
def test_values_and_both_gradients_equal_im2col(size, channels, k, features):
    x, w, b, grad = random_case(3, 2, size, channels, k, features)
    out, vjp = jax.vjp(jax.vmap(cpu_conv.population_conv), x, w, b)
    expected, expected_vjp = jax.vjp(jax.vmap(im2col_conv), x, w, b)
    assert_close(out, expected)
    for got, want in zip(vjp(grad), expected_vjp(grad), strict=True):  # images, kernel, bias
        assert_close(got, want)


@needs_kernel
@pytest.mark.parametrize(
    "size,channels,k,features", [(28, 1, 5, 8), (12, 8, 5, 6), (32, 3, 3, 16), (15, 16, 3, 32), (6, 32, 3, 15)]
)
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


@needs_kernel
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


REGISTRY_CNN = arch_spec(
    {"arch": "cnn", "convs": ((6, 3, True), (9, 4, False), (5, 2, True)), "widths": (12,)}, 21, 3, 7
)  # a CNN of the registry's `cnn` family: odd sizes, 7 classes


@needs_kernel
@pytest.mark.parametrize("arch_name,channels", [("cnn_s", 1), ("cnn_m", 3), ("registry_cnn", 3)])
def test_cnn_with_the_kernel_equals_xla_in_value_and_gradient(arch_name, channels):
    """The kernel serves every CNN of the registry (within its channel limit), not only the original two."""
    arch = REGISTRY_CNN if arch_name == "registry_cnn" else ARCHS[arch_name]
    x = jnp.asarray(np.random.default_rng(3).normal(size=(4, arch.image_size, arch.image_size, channels)), jnp.float32)
    labels = jnp.arange(4) % arch.num_classes
    xla_model = CNN(arch, ("tanh",), use_dropout=False)
    params = init_params(
        xla_model.init(jax.random.key(0), x, 0, 0.0, train=False)["params"], jax.random.key(1), 0, ("kaiming_uniform",)
    )

    def loss(model, p):
        logits = model.apply({"params": p}, x, 0, 0.0, train=False)
        return -jnp.take_along_axis(jax.nn.log_softmax(logits), labels[:, None], 1).mean(), logits

    (xla_loss, xla_logits), xla_grads = jax.value_and_grad(lambda p: loss(xla_model, p), has_aux=True)(params)
    kernel_model = CNN(arch, ("tanh",), use_dropout=False, conv="cpu_kernel")
    (k_loss, k_logits), k_grads = jax.value_and_grad(lambda p: loss(kernel_model, p), has_aux=True)(params)
    np.testing.assert_allclose(k_logits, xla_logits, atol=1e-5)
    for got, want in zip(jax.tree.leaves(k_grads), jax.tree.leaves(xla_grads)):
        np.testing.assert_allclose(got, want, atol=1e-5, rtol=1e-4)


@needs_kernel
def test_single_model_without_vmap():
    x, w, b, _ = random_case(1, 4, 12, 8, 5, 6)
    np.testing.assert_allclose(cpu_conv.population_conv(x[0], w[0], b[0]), im2col_conv(x[0], w[0], b[0]), atol=1e-4)


@needs_kernel
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


@needs_kernel
def test_shape_errors_name_the_problem():
    x, w, b, _ = random_case(2, 2, 12, 8, 5, 6)
    with pytest.raises(Exception, match="kernels must be"):
        jax.block_until_ready(jax.vmap(cpu_conv.population_conv)(x[..., :4], w, b))
    with pytest.raises(Exception, match="images do not split evenly over the kernels"):
        images = x.reshape(4, 12, 12, 8)[:3]
        jax.block_until_ready(cpu_conv._call(cpu_conv.FORWARD, cpu_conv._f32((3, 8, 8, 6)), images, w, b))
    with pytest.raises(Exception, match="the bias has the wrong size"):
        jax.block_until_ready(cpu_conv._call(cpu_conv.FORWARD, cpu_conv._f32((4, 8, 8, 6)), x, w, b[:, :5]))


@needs_kernel
def test_training_steps_equal_the_xla_convolution(mnist_small):
    """Three Adam steps of a CNN-s group with dropout: the kernel and XLA agree to rounding."""
    config = small_zoo_config()
    population = build_population(expand_grid(config.population, config.seed), config.population)
    images, labels = mnist_small.train
    group = GroupSpec("relu", "adam", use_dropout=True)
    results = []
    for conv in ("xla", "cpu_kernel"):
        model = CNN(ARCHS["cnn_s"], ("relu",), use_dropout=True, conv=conv)
        setup = StepSetup((28, 28, 1), len(labels), 10, 2, 10, mnist_small.mean, mnist_small.std)
        fns = make_step_functions(model, group, setup, population.inits)
        factors = jax.tree.map(jnp.asarray, population.factors(np.arange(8)))
        state = fns.init(factors)
        order, mask = fns.order(factors, 1)
        x, y, m = fns.gather(images, labels, order[:, :3], mask[:, :3], factors)
        state, metrics = fns.train(state, factors, x, y, m, 1, 0)
        results.append((state["params"], metrics["loss_sum"]))
    (xla_params, xla_loss), (kernel_params, kernel_loss) = results
    np.testing.assert_allclose(kernel_loss, xla_loss, rtol=1e-5)
    for got, want in zip(jax.tree.leaves(kernel_params), jax.tree.leaves(xla_params)):
        np.testing.assert_allclose(got, want, atol=1e-5, rtol=1e-4)


@needs_kernel
def test_resolve_rejects_unknown_names_and_keeps_xla():
    with pytest.raises(UserError, match="runtime.conv='fast' is unknown"):
        cpu_conv.resolve("fast")
    assert cpu_conv.resolve("xla") == "xla"
    assert cpu_conv.resolve("auto") == "auto"  # the kernel, XLA for layers it cannot serve


@needs_kernel
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
    code = (
        "from jaxzoo import cpu_conv; print(cpu_conv.resolve('auto'))\n"
        "try:\n    cpu_conv.resolve('cpu_kernel')\nexcept Exception as e:\n    print(type(e).__name__, e)\n"
    )
    env = {**os.environ, "PATH": str(tmp_path), "JAXZOO_KERNEL_DIR": str(tmp_path / "kernels")}
    env.pop("CXX", None)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    lines = out.stdout.strip().splitlines()
    assert lines[0] == "xla"
    assert lines[1].startswith("UserError the CPU convolution kernel is unavailable (no C++ compiler found")
    assert "using XLA's (slower)" in out.stderr


# Shape limits: a layer wider than the kernel serves.

WIDE = ArchSpec(
    name="wide",
    image_size=12,
    convs=(ConvSpec(8, 3, True), ConvSpec(cpu_conv.MAX_CHANNELS + 8, 3, False)),
    hidden=(),
    num_classes=10,
    dropout_after_last_conv=False,
    dropout_always_present=False,
)


def wide_case():
    x = jnp.asarray(np.random.default_rng(5).normal(size=(2, 12, 12, 3)), jnp.float32)
    params = CNN(WIDE, ("tanh",), use_dropout=False).init(jax.random.key(0), x, 0, 0.0, train=False)["params"]
    return x, init_params(params, jax.random.key(1), 0, ("kaiming_uniform",))


@needs_kernel
def test_the_kernel_serves_exactly_max_channels():
    """MAX_CHANNELS is the C++ kernel's own limit: it serves that many channels in and out, not one more."""
    most = cpu_conv.MAX_CHANNELS
    x, w, b, _ = random_case(1, 1, 4, most, 2, most)
    assert_close(jax.vmap(cpu_conv.population_conv)(x, w, b), jax.vmap(im2col_conv)(x, w, b))
    for channels, features in ((most + 1, 8), (8, most + 1)):
        x, w, b, _ = random_case(1, 1, 4, channels, 2, features)
        with pytest.raises(Exception, match=f"at most {most} channels"):
            jax.block_until_ready(jax.vmap(cpu_conv.population_conv)(x, w, b))


@needs_kernel
def test_auto_runs_a_layer_wider_than_the_kernel_on_xla(jaxzoo_log, monkeypatch):
    cpu_conv._log_fallback.cache_clear()
    x, params = wide_case()
    xla_logits = CNN(WIDE, ("tanh",), use_dropout=False).apply({"params": params}, x, 0, 0.0, train=False)
    model = CNN(WIDE, ("tanh",), use_dropout=False, conv=cpu_conv.resolve("auto"))
    apply = lambda p: model.apply({"params": p}, x, 0, 0.0, train=False)
    program = str(jax.make_jaxpr(apply)(params))
    assert program.count(cpu_conv.POOL_FORWARD) == 1 and cpu_conv.FORWARD not in program  # conv0 only
    np.testing.assert_allclose(apply(params), xla_logits, atol=1e-5)
    said = [r.getMessage() for r in jaxzoo_log.records if "wide.conv1" in r.getMessage()]
    assert said == [
        f"layer wide.conv1 has {cpu_conv.MAX_CHANNELS + 8} channels, over the CPU convolution kernel's "
        f"limit of {cpu_conv.MAX_CHANNELS}: it uses XLA's convolution"
    ]  # once, over three traces


def test_cpu_kernel_refuses_a_layer_wider_than_the_kernel_in_one_line():
    x, params = wide_case()
    model = CNN(WIDE, ("tanh",), use_dropout=False, conv="cpu_kernel")
    with pytest.raises(UserError) as error:
        jax.eval_shape(lambda p: model.apply({"params": p}, x, 0, 0.0, train=False), params)
    assert str(error.value) == (
        f"runtime.conv='cpu_kernel': layer wide.conv1 has {cpu_conv.MAX_CHANNELS + 8} "
        f"channels, over the CPU convolution kernel's limit of {cpu_conv.MAX_CHANNELS}; "
        "use runtime.conv='auto' (XLA for that layer) or 'xla'"
    )


# The build: what keys the cache, the timeout, the portable fallbacks.

ARM_CPUINFO = """processor\t: {core}
BogoMIPS\t: 50.00
Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp
CPU implementer\t: 0x41
CPU architecture: 8
CPU variant\t: 0x3
CPU part\t: {part}
CPU revision\t: 1
"""


def test_cache_key_follows_the_cpu_the_compiler_resolves(monkeypatch):
    monkeypatch.setattr(cpu_conv, "_native_target", lambda compiler, native: "-march=znver3 -mavx2 -mno-avx512f")
    flags, key = cpu_conv.build_plan("g++")
    assert cpu_conv._native_flag() in flags and cpu_conv.build_plan("g++") == (flags, key)
    monkeypatch.setattr(cpu_conv, "_native_target", lambda compiler, native: "-march=znver3 -mavx2 -mavx512f")
    other_flags, other_key = cpu_conv.build_plan("g++")
    assert other_flags == flags and other_key != key


def test_arm_cpuinfo_without_model_name_or_flags_still_keys_the_cpu(monkeypatch, tmp_path):
    """Where the compiler names no CPU: arm64's /proc/cpuinfo lines key it, the per-core ones do not."""
    monkeypatch.setattr(cpu_conv, "_native_target", lambda compiler, native: "")
    keys = {}
    for name, cores, part in (("n1", 1, "0xd0c"), ("n1_two_cores", 2, "0xd0c"), ("v1", 1, "0xd40")):
        (tmp_path / name).write_text("\n".join(ARM_CPUINFO.format(core=c, part=part) for c in range(cores)))
        monkeypatch.setattr(cpu_conv, "CPUINFO", tmp_path / name)
        flags, keys[name] = cpu_conv.build_plan("g++")
        assert cpu_conv._native_flag() in flags
    assert keys["n1"] == keys["n1_two_cores"] != keys["v1"]
    monkeypatch.setattr(cpu_conv, "CPUINFO", tmp_path / "absent")  # macOS, Windows: nothing names the CPU
    flags, key = cpu_conv.build_plan("g++")
    assert flags == cpu_conv.FLAGS and key not in keys.values()  # portable, not native, code


@needs_compiler
def test_the_compiler_resolves_the_native_flag_to_this_cpu():
    compiler, native = cpu_conv._compiler(), cpu_conv._native_flag()
    resolved = cpu_conv._native_target(compiler, native)
    assert resolved == cpu_conv._native_target(compiler, native)  # no temporary names: a stable key
    assert resolved and "=native" not in resolved, resolved


def hung_compiler(tmp_path: pathlib.Path) -> pathlib.Path:
    """A 'compiler' that starts a child and never finishes; the child's pid goes to tmp_path/child."""
    script = tmp_path / "hung-c++"
    script.write_text(f"#!/bin/sh\nsleep 60 &\necho $! > {tmp_path / 'child'}\nwait\n")
    script.chmod(0o755)
    return script


@pytest.mark.skipif(sys.platform == "win32", reason="a shell script as the compiler")
def test_a_hung_compiler_times_out_and_auto_uses_xla(tmp_path, monkeypatch, jaxzoo_log):
    compiler = hung_compiler(tmp_path)
    monkeypatch.setenv("CXX", str(compiler))
    monkeypatch.setenv("JAXZOO_KERNEL_BUILD_TIMEOUT", "0.5")
    monkeypatch.setenv("JAXZOO_KERNEL_DIR", str(tmp_path / "kernels"))
    start = time.monotonic()
    with pytest.raises(RuntimeError, match=r"hung-c\+\+ did not finish within 0.5 s; set JAXZOO_KERNEL_BUILD_TIMEOUT"):
        cpu_conv.build_library()
    assert time.monotonic() - start < 10
    child = pathlib.Path(f"/proc/{(tmp_path / 'child').read_text().strip()}/stat")
    for _ in range(50):  # the compiler's own children end with it (gone, or a zombie left to reap)
        if not child.exists() or child.read_text().split(")")[-1].split()[0] == "Z":
            break
        time.sleep(0.1)
    else:
        pytest.fail("the hung compiler's child still runs")

    monkeypatch.setattr(cpu_conv, "_register", functools.cache(cpu_conv._register.__wrapped__))  # a fresh process
    assert cpu_conv.resolve("auto") == "xla"
    assert [r.getMessage() for r in jaxzoo_log.records if "did not finish" in r.getMessage()] == [
        f"CPU convolution kernel unavailable, using XLA's (slower): {compiler} did not finish within 0.5 s; "
        "set JAXZOO_KERNEL_BUILD_TIMEOUT (seconds) to wait longer"
    ]
    with pytest.raises(UserError) as error:
        cpu_conv.resolve("cpu_kernel")
    assert str(error.value) == (
        f"the CPU convolution kernel is unavailable ({compiler} did not finish within 0.5 s; "
        "set JAXZOO_KERNEL_BUILD_TIMEOUT (seconds) to wait longer); use runtime.conv='xla'"
    )


@pytest.mark.parametrize("value", ["soon", "0", "-5", "nan"])
def test_a_bad_build_timeout_is_one_line(monkeypatch, value):
    monkeypatch.setenv("JAXZOO_KERNEL_BUILD_TIMEOUT", value)
    with pytest.raises(
        UserError,
        match=f"^JAXZOO_KERNEL_BUILD_TIMEOUT='{value}' is not a positive number of seconds; "
        "set it to e.g. 120 or unset it$",
    ):
        cpu_conv.build_timeout()


@pytest.mark.slow
def test_a_zoo_trains_on_xla_where_no_compiler_is_reachable(tmp_path):
    """No $CXX, no compiler on PATH, an empty kernel cache: training runs end to end on XLA, and says so."""
    env = {
        **os.environ,
        "CXX": "/nonexistent",
        "PATH": str(tmp_path / "bin"),
        "JAXZOO_KERNEL_DIR": str(tmp_path / "kernels"),
    }  # JAXZOO_DATA_DIR: conftest's, shared
    workdir = tmp_path / "zoo"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "jaxzoo.train",
            "--config",
            "configs/quickstart.py",
            "--workdir",
            str(workdir),
            "--config.training.num_epochs=1",
            "--config.population.max_models=4",
            "--config.data.max_examples_per_split=100",
            "--config.runtime.progress=False",
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "CPU convolution kernel unavailable, using XLA's (slower): no C++ compiler found" in result.stderr
    assert not (tmp_path / "kernels").exists()
    rows = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    assert len({r["model_id"] for r in rows}) == 4
    accuracies = [r[f"{split}_acc"] for r in rows for split in ("train", "val", "test")]
    assert accuracies and all(math.isfinite(a) and 0 <= a <= 1 for a in accuracies)


# The host probes on platforms without Linux's calls.


def test_cpu_count_without_linux_affinity(monkeypatch):
    if hasattr(os, "sched_getaffinity"):
        assert host.usable_cpu_count() == len(os.sched_getaffinity(0))
        monkeypatch.delattr(os, "sched_getaffinity")
    monkeypatch.delattr(os, "process_cpu_count", raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 6)
    assert host.usable_cpu_count() == 6
    monkeypatch.setattr(os, "cpu_count", lambda: None)  # undeterminable
    assert host.usable_cpu_count() == 1


def test_memory_without_linux_sysconf(monkeypatch):
    assert host.available_memory_bytes() > 0

    def mac_sysconf(name: str) -> int:  # no SC_AVPHYS_PAGES
        values = {"SC_PHYS_PAGES": 1000, "SC_PAGE_SIZE": 16384}
        if name not in values:
            raise ValueError(f"unrecognized configuration name {name!r}")
        return values[name]

    monkeypatch.setattr(os, "sysconf", mac_sysconf)
    assert host.available_memory_bytes() == 1000 * 16384
    monkeypatch.delattr(os, "sysconf")
    assert host.available_memory_bytes() == host.FALLBACK_MEMORY_BYTES == 4 << 30


def test_memory_on_windows_reads_global_memory_status(monkeypatch):
    def global_memory_status(pointer):
        status = pointer._obj
        assert status.length == ctypes.sizeof(status) == 64  # MEMORYSTATUSEX's size, as Windows checks
        status.avail_phys = 3 << 30
        return 1

    monkeypatch.setattr(sys, "platform", "win32")
    monkeypatch.setattr(
        ctypes,
        "windll",
        types.SimpleNamespace(kernel32=types.SimpleNamespace(GlobalMemoryStatusEx=global_memory_status)),
        raising=False,
    )
    assert host.available_memory_bytes() == 3 << 30
