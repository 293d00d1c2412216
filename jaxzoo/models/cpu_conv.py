"""Population convolutions on XLA:CPU through a C++ kernel (XLA FFI), with XLA as the fallback.

XLA:CPU runs a vmapped per-model convolution as one op over the whole population, so its
patches and the max-pool's passes leave the caches; the kernel in `kernels/population_conv.cc`
convolves (and max-pools) each model's images with the model's kernel held in L1.

The kernel is compiled on first use with the system C++ compiler (`$CXX`, else g++, c++ or
clang++) for this CPU and cached under `$JAXZOO_KERNEL_DIR` (default ~/.cache/jaxzoo/kernels),
keyed by the source, the compiler, the jax version and the CPU, so a shared home serves different
machines. `runtime.conv = 'auto'` uses it on the CPU backend when it builds, and XLA's im2col
otherwise, or for a layer wider than the kernel serves (MAX_CHANNELS).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
import os
import platform
import shutil
import signal
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
    "JaxzooConvPoolForward",
    "JaxzooConvPoolInputGrad",
    "JaxzooConvPoolKernelGrad",
)
TARGETS = (FORWARD, INPUT_GRAD, KERNEL_GRAD, POOL_FORWARD, POOL_INPUT_GRAD, POOL_KERNEL_GRAD)
CONV_IMPLEMENTATIONS = ("auto", "xla", "cpu_kernel")
FLAGS = ("-O3", "-std=c++17", "-shared", "-fPIC")  # + the native-CPU flag where the CPU is identified
MAX_CHANNELS = 64  # input and output channels of a layer: kMaxVectors * kLanes in the kernel
CPUINFO = Path("/proc/cpuinfo")
# /proc/cpuinfo's lines that tell CPUs apart (x86: model and flags; arm64: implementer, part, features).
CPUINFO_KEYS = (
    "model name",
    "flags",
    "CPU implementer",
    "CPU architecture",
    "CPU variant",
    "CPU part",
    "CPU revision",
    "Features",
)
BUILD_TIMEOUT_VARIABLE, DEFAULT_BUILD_TIMEOUT = "JAXZOO_KERNEL_BUILD_TIMEOUT", 120.0


def cache_dir() -> Path:
    return Path(os.environ.get("JAXZOO_KERNEL_DIR") or Path.home() / ".cache" / "jaxzoo" / "kernels")


def build_timeout() -> float:
    """Seconds a compiler call may take: $JAXZOO_KERNEL_BUILD_TIMEOUT, default 120."""
    text = os.environ.get(BUILD_TIMEOUT_VARIABLE) or str(DEFAULT_BUILD_TIMEOUT)
    try:
        seconds = float(text)
    except ValueError:
        seconds = 0.0
    if not seconds > 0:
        raise UserError(
            f"{BUILD_TIMEOUT_VARIABLE}={text!r} is not a positive number of seconds; "
            f"set it to e.g. {DEFAULT_BUILD_TIMEOUT:g} or unset it"
        )
    return seconds


def _run_compiler(command: list[str]) -> subprocess.CompletedProcess:
    """Runs a compiler command -> its result; RuntimeError when it outlives build_timeout().

    The compiler runs in its own process group, so a timeout also ends the programs it started.
    """
    timeout = build_timeout()
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, errors="replace", start_new_session=True
    ) as process:
        try:
            stdout, stderr = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            if hasattr(os, "killpg"):
                with contextlib.suppress(ProcessLookupError):  # the group ended meanwhile
                    os.killpg(process.pid, signal.SIGKILL)
            else:  # Windows
                process.kill()
            raise RuntimeError(
                f"{command[0]} did not finish within {timeout:g} s; "
                f"set {BUILD_TIMEOUT_VARIABLE} (seconds) to wait longer"
            ) from None
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


def _native_flag() -> str:
    """The flag that targets this CPU: -mcpu=native on ARM (what clang and GCC accept there), else -march=native."""
    return "-mcpu=native" if platform.machine().lower() in ("arm64", "aarch64") else "-march=native"


def _native_target(compiler: str, native: str) -> str:
    """The compiler's resolution of `native`: the CPU and instruction sets it targets ('' if it names none).

    GCC resolves it in the driver to -march=/-mcpu= and -m<feature> flags; clang to -target-cpu
    and -target-feature: `-###` prints the resolved command without compiling.
    """
    result = _run_compiler([compiler, "-###", native, "-x", "c++", "-c", os.devnull])
    if result.returncode != 0:
        return ""
    tokens = result.stderr.replace('"', " ").split()
    resolved = [t for t in tokens if t.startswith("-m") and not t.endswith("=native")]
    resolved += [value for flag, value in zip(tokens, tokens[1:]) if flag in ("-target-cpu", "-target-feature")]
    names_cpu = "-target-cpu" in tokens or any(t.startswith(("-march=", "-mcpu=")) for t in resolved)
    return " ".join(resolved) if names_cpu else ""


def _cpuinfo() -> str:
    """The CPU-identifying lines of /proc/cpuinfo ('' where there is none, or none of them)."""
    try:
        lines = CPUINFO.read_text().splitlines()
    except OSError:
        return ""
    kept = {" ".join(line.split()) for line in lines if line.split(":")[0].strip() in CPUINFO_KEYS}
    return "\n".join(sorted(kept))


def _compiler() -> str | None:
    for name in (os.environ.get("CXX"), "g++", "c++", "clang++"):
        if name and shutil.which(name):
            return name
    return None


def build_plan(compiler: str) -> tuple[tuple[str, ...], str]:
    """-> (compiler flags, cache key) of the library for this CPU.

    Native code (-march=native) runs only on CPUs with the instruction sets it was built for, so
    the key holds what identifies the CPU: the compiler's resolution of the native flag, else
    /proc/cpuinfo's CPU lines. Where neither does, the build is portable (no native flag)
    rather than risk an illegal instruction on another machine sharing the cache.
    """
    native = _native_flag()
    cpu = _native_target(compiler, native) or _cpuinfo()
    flags = (*FLAGS, native) if cpu else FLAGS
    parts = (compiler, jax.__version__, platform.machine(), cpu, " ".join(flags))
    key = hashlib.sha256(b"\0".join([SOURCE.read_bytes(), *(p.encode() for p in parts)])).hexdigest()[:16]
    return flags, key


def build_library(directory: Path | None = None) -> Path:
    """Compiles the kernel (once per source, compiler, jax version and CPU) -> the shared library.

    Raises RuntimeError with the compiler's message when there is no compiler, it fails or it
    outlives build_timeout().
    """
    compiler = _compiler()
    if compiler is None:
        raise RuntimeError("no C++ compiler found (set $CXX or install g++)")
    flags, key = build_plan(compiler)
    directory = directory or cache_dir()
    library = directory / f"population_conv-{key}.so"
    if library.exists():
        return library
    directory.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=directory) as tmp:  # build aside, then rename: atomic
        built = Path(tmp) / library.name
        # -isystem: XLA's headers are not ours to warn about (they end switches without a return).
        result = _run_compiler([compiler, *flags, "-isystem", jax.ffi.include_dir(), str(SOURCE), "-o", str(built)])
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
    """runtime.conv ('auto' | 'xla' | 'cpu_kernel') -> the CNN's convolution here (see `layer_conv`).

    'xla' where the kernel cannot run (another backend, or it does not build: 'auto' says so in
    the log, 'cpu_kernel' raises UserError), else `implementation` itself, with the kernel built.
    """
    if implementation not in CONV_IMPLEMENTATIONS:
        raise UserError(f"runtime.conv={implementation!r} is unknown; choose one of {CONV_IMPLEMENTATIONS}")
    if implementation == "xla":
        return "xla"
    if jax.default_backend() != "cpu":
        if implementation == "cpu_kernel":
            raise UserError(
                f"runtime.conv='cpu_kernel' runs on the CPU backend, not {jax.default_backend()}; "
                "use runtime.conv='auto'"
            )
        return "xla"
    reason = _register()
    if not reason:
        return implementation
    if implementation == "cpu_kernel":
        raise UserError(f"the CPU convolution kernel is unavailable ({reason}); use runtime.conv='xla'")
    log.warning("CPU convolution kernel unavailable, using XLA's (slower): %s", reason)
    return "xla"


@functools.cache
def _log_fallback(problem: str) -> None:
    """Once per process and problem (every compiled function traces the model again)."""
    log.warning("%s: it uses XLA's convolution", problem)


def layer_conv(implementation: str, layer: str, in_channels: int, out_channels: int) -> str:
    """One conv layer's convolution, 'xla' or 'cpu_kernel', under `resolve`'s answer.

    The kernel serves layers of up to MAX_CHANNELS channels in and out; a wider one uses XLA
    under 'auto' (said once in the log) and is a UserError under 'cpu_kernel'.
    """
    if implementation == "xla":
        return "xla"
    channels = max(in_channels, out_channels)
    if channels <= MAX_CHANNELS:
        return "cpu_kernel"
    problem = f"layer {layer} has {channels} channels, over the CPU convolution kernel's limit of {MAX_CHANNELS}"
    if implementation == "cpu_kernel":
        raise UserError(f"runtime.conv='cpu_kernel': {problem}; use runtime.conv='auto' (XLA for that layer) or 'xla'")
    _log_fallback(problem)
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
