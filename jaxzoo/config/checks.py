"""The primitives every config validator shares (classification and INR zoos alike): each
raises ConfigError with one line that names the field and the fix."""

from __future__ import annotations

import math

from jaxzoo.errors import UserError

MAX_SEED = 2**32 - 1  # model and zoo seeds are uint32
MAX_MODELS = 1_000_000  # the model table and models.json are built in host memory


class ConfigError(UserError, ValueError):
    """A config value that cannot be trained; the message names the field and the fix."""


def check(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


def check_choices(field: str, values, choices) -> None:
    values = tuple(values) if isinstance(values, (tuple, list)) else (values,)
    check(len(values) > 0, f"{field} is empty: give at least one value")
    for value in values:
        check(value in choices, f"unknown {field} {value!r}: choose from {sorted(choices)}")


def is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_int(field: str, value, low: int, high: int, meaning: str = "") -> None:
    ok = isinstance(value, int) and not isinstance(value, bool) and low <= value <= high
    check(ok, f"{field}={value!r} is out of range: use an integer in {low}..{high}{meaning}")


def check_numbers(field: str, values, low: float, high: float, low_open: bool) -> None:
    values = tuple(values) if isinstance(values, (tuple, list)) else (values,)
    check(len(values) > 0, f"{field} is empty: give at least one value")
    for value in values:
        check(is_number(value), f"{field} value {value!r} is not a number: use a number such as 0.001")
        ok = math.isfinite(value)
        ok = ok and (low < value if low_open else low <= value) and value < high
        bracket = "(" if low_open else "["
        check(ok, f"{field} value {value!r} is out of range: use a number in {bracket}{low}, {high})")


def check_seeds(num_seeds, first_seed) -> None:
    """population.num_seeds and first_seed: the seeds first_seed..first_seed + num_seeds - 1 are
    32-bit model seeds."""
    check_int("population.num_seeds", num_seeds, 1, MAX_MODELS)
    check_int(
        "population.first_seed",
        first_seed,
        0,
        MAX_SEED + 1 - num_seeds,
        f" (seeds are 32-bit: first_seed + num_seeds - 1 <= {MAX_SEED})",
    )
