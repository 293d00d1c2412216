"""What every jaxzoo command shares: bad input ends in one line and exit code 2; progress logs."""

from __future__ import annotations

import argparse
import logging
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
