"""What every jaxzoo command shares: bad input ends in one line and exit code 2; progress logs."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Callable

from jaxzoo.errors import UserError

log = logging.getLogger("jaxzoo")


def error_exit(message: str) -> int:
    print(f"jaxzoo: error: {message}", file=sys.stderr)
    return 2


def run(action: Callable[[], object]) -> int:
    """Runs a command's action: 0, or 2 with the UserError's one-line message."""
    try:
        action()
    except UserError as error:
        return error_exit(str(error))
    return 0


def epoch_list(text: str) -> list[int] | None:
    """argparse type for '--epochs 5,15,50' ('' means the command's default)."""
    if not text:
        return None
    try:
        return [int(e) for e in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of integers") from None


def setup_logging() -> None:
    """jaxzoo's progress lines on stderr with a timestamp (absl's root handler left out)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False


def use_cpu_cores(count: int = 0) -> int:
    """One XLA CPU device per core (count 0: every core this process may use); call before JAX runs.

    XLA:CPU spreads the small ops of a population step poorly over threads; devices run in
    parallel, so the population axis sharded over per-core devices trains ~1.7x faster on 2
    cores (docs/benchmarks.md). Leaves an explicit --xla_force_host_platform_device_count alone.
    Returns the device count asked for (0 when left alone). No effect on GPU/TPU backends.
    """
    import jax

    if "xla_force_host_platform_device_count" in os.environ.get("XLA_FLAGS", ""):
        return 0
    count = count or len(os.sched_getaffinity(0))
    jax.config.update("jax_num_cpu_devices", count)
    return count
