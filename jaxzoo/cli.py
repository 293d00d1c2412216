"""What every jaxzoo command shares: bad input ends in one line and exit code 2; progress logs."""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import logging
import math
import os
import sys
import warnings
from collections.abc import Callable

from absl import logging as absl_logging

from jaxzoo import compile_cache, host
from jaxzoo.data import tfds_source
from jaxzoo.errors import DestinationError, UserError

log = logging.getLogger("jaxzoo")


def error_exit(message: str) -> int:
    print(f"jaxzoo: error: {message}", file=sys.stderr)
    return 2


class ArgumentParser(argparse.ArgumentParser):
    """argparse with jaxzoo's error style (one line, exit 2) and the flags every command shares:
    --verbose, and --compile_cache (parsing turns the persistent compilation cache on)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.add_argument("--verbose", action="store_true", help="show the libraries' own log lines and warnings")
        self.add_argument(
            "--compile_cache",
            default=None,
            help=f"folder of the persistent compilation cache, or 'off' (default: ${compile_cache.ENV}, "
            "else ~/.cache/jaxzoo/compile)",
        )

    def parse_args(self, args=None, namespace=None):
        parsed = super().parse_args(args, namespace)
        use_cpu_compile_options()
        try:
            compile_cache.enable(parsed.compile_cache)
        except UserError as error:
            sys.exit(error_exit(str(error)))
        return parsed

    def error(self, message: str):
        sys.exit(error_exit(f"{message.splitlines()[0]} (see {self.prog} --help)"))


def user_message(error: UserError, flags: dict[str, str] | None = None) -> str:
    """A UserError's one line, a destination named by the command's flag for its role (`flags`:
    role -> flag, e.g. {"export folder": "--out"})."""
    if isinstance(error, DestinationError) and error.role in (flags or {}):
        return error.named(flags[error.role])
    return str(error).splitlines()[0]


def run(action: Callable[[], object], verbose: bool = False, flags: dict[str, str] | None = None) -> int:
    """Runs a command's action: 0, or 2 with the UserError's one-line message (`user_message`)."""
    quiet_libraries(verbose)
    try:
        action()
    except UserError as error:
        return error_exit(user_message(error, flags))
    return 0


def quiet_libraries(verbose: bool) -> None:
    """Keeps the libraries' chatter (absl, Orbax, TFDS, Python warnings) off the terminal
    unless `verbose` (--verbose) or JAXZOO_VERBOSE=1; jaxzoo's own lines are not affected."""
    if verbose:
        os.environ["JAXZOO_VERBOSE"] = "1"  # what tfds_source.quiet() reads
    verbose = tfds_source.verbose()

    absl_logging.set_verbosity(absl_logging.INFO if verbose else absl_logging.ERROR)
    for name in LIBRARY_LOGGERS:
        logging.getLogger(name).setLevel(logging.INFO if verbose else logging.ERROR)
    # Orbax's failed reads of a damaged checkpoint leave asyncio tasks whose errors asyncio logs
    # at ERROR ("Task exception was never retrieved"), after jaxzoo's one-line error.
    logging.getLogger("asyncio").setLevel(logging.INFO if verbose else logging.CRITICAL)
    if not verbose:
        warnings.filterwarnings("ignore")
        sys.unraisablehook = _drop_unraisable


LIBRARY_LOGGERS = ("absl", "orbax", "tensorflow", "tensorflow_datasets", "jax", "etils")


def _drop_unraisable(unraisable) -> None:
    """Drops the errors Python cannot raise anywhere ("Exception ignored in: ..."): Orbax's and
    TensorStore's reads of a damaged checkpoint leave coroutines and callbacks aimed at a closed
    asyncio loop that print hundreds of them after jaxzoo's one-line error. --verbose shows them."""
    del unraisable


def epoch_list(text: str) -> list[int] | None:
    """argparse type for '--epochs 5,15,50' ('' means the command's default): distinct epochs >= 0."""
    if not text:
        return None
    try:
        epochs = [int(e) for e in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of integers") from None
    if min(epochs) < 0 or len(set(epochs)) < len(epochs):
        raise argparse.ArgumentTypeError(f"{text!r} must list distinct epochs >= 0")
    return sorted(epochs)


def number_in(low: float, high: float = math.inf, integer: bool = False, low_open: bool = False):
    """argparse type: a finite number (an integer with `integer`) in [low, high] ((low, high] with low_open)."""
    kind = "an integer" if integer else "a number"
    bound = f"{'>' if low_open else '>='} {low}" if high == math.inf else f"in {'(' if low_open else '['}{low}, {high}]"

    def parse(text: str):
        try:
            value = int(text) if integer else float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {kind}") from None
        if not math.isfinite(value) or value < low or (low_open and value == low) or value > high:
            raise argparse.ArgumentTypeError(f"{text} is out of range: use {kind} {bound}")
        return value

    return parse


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever sys.stderr is at the time of each line (captured output included)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _):
        pass


def setup_logging() -> None:
    """jaxzoo's progress lines on stderr with a timestamp (absl's root handler left out); once."""
    if not any(isinstance(handler, _StderrHandler) for handler in log.handlers):
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
        log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False


# XLA:CPU's LLVM optimisation level for jaxzoo's programs (XLA's default is 3). Measured on 2
# cores: the quickstart's 18 programs compiled in 8.8 s instead of 15.0 s (an init program in
# 0.7 s instead of 3.7 s), trained as fast, and gave bitwise the same models.
CPU_OPTIMIZATION_LEVEL = 2
# Where JAX finds accelerator backends (PJRT plugins register under the entry-point group).
PLUGIN_GROUP = "jax_plugins"
ACCELERATOR_MODULES = ("libtpu", "jax_cuda12_plugin", "jax_cuda13_plugin", "jax_rocm60_plugin")


def cpu_only() -> bool:
    """Whether JAX will run on the CPU alone: JAX_PLATFORMS says so, or no accelerator is installed."""
    platforms = os.environ.get("JAX_PLATFORMS", "")
    if platforms:
        return set(platforms.split(",")) <= {"cpu"}
    if importlib.metadata.entry_points(group=PLUGIN_GROUP):
        return False
    return not any(importlib.util.find_spec(name) for name in ACCELERATOR_MODULES)


def use_cpu_compile_options() -> bool:
    """Compiles XLA:CPU programs at `CPU_OPTIMIZATION_LEVEL` (call before JAX runs; XLA reads
    its flags when its backend starts). Only where JAX runs on the CPU alone (the level would
    apply to an accelerator's compiler too), and never over the user's own XLA_FLAGS setting.
    Returns whether it was set."""
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_backend_optimization_level" in flags or not cpu_only():
        return False
    os.environ["XLA_FLAGS"] = f"{flags} --xla_backend_optimization_level={CPU_OPTIMIZATION_LEVEL}".strip()
    return True


def use_cpu_cores(count: int = 0) -> int:
    """One XLA CPU device per core (count 0: every core this process may use); call before JAX runs.

    XLA:CPU spreads the small ops of a population step poorly over threads; devices run in
    parallel, so the population axis sharded over per-core devices trains ~1.7x faster on 2
    cores (docs/benchmarks.md). Leaves an explicit --xla_force_host_platform_device_count alone.
    Returns the device count asked for (0 when left alone). No effect on GPU/TPU backends.
    """
    import jax

    use_cpu_compile_options()
    if "xla_force_host_platform_device_count" in os.environ.get("XLA_FLAGS", ""):
        return 0
    count = count or host.usable_cpu_count()
    try:
        jax.config.update("jax_num_cpu_devices", count)
    except RuntimeError:  # JAX already runs in this process (a notebook, a test): keep its devices
        log.debug("JAX already started: keeping its %d device(s)", jax.local_device_count())
        return 0
    return count
