"""Population convolutions on XLA:CPU through a C++ kernel (XLA FFI), with XLA as the fallback.

XLA:CPU runs a vmapped per-model convolution as one op over the whole population, so its
patches and the max-pool's passes leave the caches; the kernel in `kernels/population_conv.cc`
convolves (and max-pools) each model's images with the model's kernel held in L1.

The kernel is compiled on first use with the system C++ compiler (`$CXX`, else g++ or c++) for
this CPU and cached under `$JAXZOO_KERNEL_DIR` (default ~/.cache/jaxzoo/kernels), keyed by the
source, the compiler, the jax version and the CPU, so a shared home serves different machines.
`runtime.conv = 'auto'` uses it on the CPU backend when it builds, and XLA's im2col otherwise.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import tempfile
from pathlib import Path

import jax
import jax.numpy as jnp

from jaxzoo.errors import UserError

log = logging.getLogger("jaxzoo")

SOURCE = Path(__file__).parent / "kernels" / "population_conv.cc"
FORWARD, INPUT_GRAD, KERNEL_GRAD = "JaxzooConvForward", "JaxzooConvInputGrad", "JaxzooConvKernelGrad"
POOL_FORWARD, POOL_INPUT_GRAD, POOL_KERNEL_GRAD = (
    "JaxzooConvPoolForward", "JaxzooConvPoolInputGrad", "JaxzooConvPoolKernelGrad")
TARGETS = (FORWARD, INPUT_GRAD, KERNEL_GRAD, POOL_FORWARD, POOL_INPUT_GRAD, POOL_KERNEL_GRAD)
CONV_IMPLEMENTATIONS = ("auto", "xla", "cpu_kernel")
FLAGS = ("-O3", "-march=native", "-std=c++17", "-shared", "-fPIC", "-Wno-return-type")


def cache_dir() -> Path:
    return Path(os.environ.get("JAXZOO_KERNEL_DIR") or Path.home() / ".cache" / "jaxzoo" / "kernels")


def _cpu_identity() -> str:
    """The CPU's model and instruction sets: -march=native code is only valid on such a CPU."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        return "\n".join(sorted({l for l in lines if l.startswith(("model name", "flags"))}))
    except OSError:
        return platform.processor() + platform.machine()


def _compiler() -> str | None:
    for name in (os.environ.get("CXX"), "g++", "c++", "clang++"):
        if name and shutil.which(name):
            return name
    return None


def build_library(directory: Path | None = None) -> Path:
    """Compiles the kernel (once per source, compiler, jax version and CPU) -> the shared library.

    Raises RuntimeError with the compiler's message when there is no compiler or it fails.
    """
    compiler = _compiler()
    if compiler is None:
        raise RuntimeError("no C++ compiler found (set $CXX or install g++)")
    source = SOURCE.read_bytes()
    key = hashlib.sha256(b"\0".join([source, compiler.encode(), jax.__version__.encode(),
                                     _cpu_identity().encode(), " ".join(FLAGS).encode()])).hexdigest()[:16]
    directory = directory or cache_dir()
    library = directory / f"population_conv-{key}.so"
    if library.exists():
        return library
    directory.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=directory) as tmp:  # build aside, then rename: atomic
        built = Path(tmp) / library.name
        result = subprocess.run([compiler, *FLAGS, f"-I{jax.ffi.include_dir()}", str(SOURCE), "-o", str(built)],
                                capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(f"{compiler} failed: {result.stderr.strip()[-2000:]}")
        os.replace(built, library)
    return library


@functools.cache
def _register() -> str:
    """Builds and registers the FFI targets once per process -> '' or why they are unavailable."""
    import ctypes

    try:
        library = ctypes.cdll.LoadLibrary(str(build_library()))
    except (RuntimeError, OSError) as error:
        return str(error)
    for name in TARGETS:
        jax.ffi.register_ffi_target(name, jax.ffi.pycapsule(getattr(library, name)), platform="cpu")
    return ""


def resolve(implementation: str) -> str:
    """'auto' | 'xla' | 'cpu_kernel' -> the convolution to use here: 'xla' or 'cpu_kernel'.

    'auto' picks the kernel on the CPU backend when it builds (else XLA, with a log line);
    'cpu_kernel' raises UserError where it cannot run.
    """
    if implementation not in CONV_IMPLEMENTATIONS:
        raise UserError(f"runtime.conv={implementation!r} is unknown; choose one of {CONV_IMPLEMENTATIONS}")
    if implementation == "xla":
        return "xla"
    if jax.default_backend() != "cpu":
        if implementation == "cpu_kernel":
            raise UserError(f"runtime.conv='cpu_kernel' runs on the CPU backend, not {jax.default_backend()}; "
                            "use runtime.conv='auto'")
        return "xla"
    reason = _register()
    if not reason:
        return "cpu_kernel"
    if implementation == "cpu_kernel":
        raise UserError(f"the CPU convolution kernel is unavailable ({reason}); use runtime.conv='xla'")
    log.warning("CPU convolution kernel unavailable, using XLA's (slower): %s", reason)
    return "xla"


def _call(target: str, results, *operands: jax.Array):
    # broadcast_all: under vmap the population axis leads every operand; the kernel reads it.
    return jax.ffi.ffi_call(target, results, vmap_method="broadcast_all")(*operands)


def _f32(shape: tuple[int, ...]) -> jax.ShapeDtypeStruct:
    return jax.ShapeDtypeStruct(shape, jnp.float32)


def _conv_shape(x: jax.Array, kernel: jax.Array, pool: bool) -> tuple[int, ...]:
    k = kernel.shape[-4]
    h, w = x.shape[-3] - k + 1, x.shape[-2] - k + 1
    return (*x.shape[:-3], *((h // 2, w // 2) if pool else (h, w)), kernel.shape[-1])


@jax.custom_vjp
def population_conv(x: jax.Array, kernel: jax.Array, bias: jax.Array) -> jax.Array:
    """[B, H, W, C] float32 conv [K, K, C, F] (HWIO) + bias [F] -> [B, H-K+1, W-K+1, F]; stride 1, 'VALID'.

    Vmaps over models (each model its own images, kernel and bias). CPU backend only: call
    `resolve('cpu_kernel')` first, which builds and registers the kernel. The bias is added in
    the kernel: XLA:CPU runs an activation fused with the bias add ~5x slower than alone.
    """
    return _call(FORWARD, _f32(_conv_shape(x, kernel, False)), x, kernel, bias)


def _conv_forward(x, kernel, bias):
    return population_conv(x, kernel, bias), (x, kernel)


def _conv_backward(residuals, grad_out):
    x, kernel = residuals
    grad_kernel, grad_bias = _call(KERNEL_GRAD, (_f32(kernel.shape), _f32(kernel.shape[-1:])), x, grad_out)
    return _call(INPUT_GRAD, _f32(x.shape), grad_out, kernel), grad_kernel, grad_bias


population_conv.defvjp(_conv_forward, _conv_backward)


def _conv_pool(x, kernel, bias):
    shape = _conv_shape(x, kernel, True)
    return _call(POOL_FORWARD, (_f32(shape), jax.ShapeDtypeStruct(shape, jnp.uint8)), x, kernel, bias)


@jax.custom_vjp
def population_conv_pool(x: jax.Array, kernel: jax.Array, bias: jax.Array) -> jax.Array:
    """max_pool_2x2(population_conv(x, kernel, bias)) -> [B, (H-K+1)//2, (W-K+1)//2, F], one pass.

    The max-pool is PyTorch's MaxPool2d(2, 2) (floor); its gradient goes to the first maximum of
    each window, as PyTorch's. Keeps only the argmax (uint8) for the backward pass.
    """
    return _conv_pool(x, kernel, bias)[0]


def _conv_pool_forward(x, kernel, bias):
    pooled, which = _conv_pool(x, kernel, bias)
    return pooled, (x, kernel, which)


def _conv_pool_backward(residuals, grad_out):
    x, kernel, which = residuals
    grad_kernel, grad_bias = _call(POOL_KERNEL_GRAD, (_f32(kernel.shape), _f32(kernel.shape[-1:])), x, grad_out, which)
    return _call(POOL_INPUT_GRAD, _f32(x.shape), grad_out, which, kernel), grad_kernel, grad_bias


population_conv_pool.defvjp(_conv_pool_forward, _conv_pool_backward)
