"""Expands a zoo's grid of generating factors into a table of models, and into arrays.

Every model has a stable integer id (its row in the expanded grid), a seed, and one value of
each factor (`jaxzoo.training.factors`). Seeds are the outermost loop, so truncating the table
(`max_models`) keeps whole grids of the first seeds. Models whose static factors agree form a
group that compiles once (`Population.groups`); numeric factors are per-model arrays.
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import Any

import numpy as np

from jaxzoo.training.factors import CORE_FACTORS, FACTOR_TABLE, grid_factors, model_value, static_key, values_of

FACTORS = CORE_FACTORS
CATEGORICAL = ("activation", "init", "optimizer")
NUMERIC = tuple(f.name for f in FACTOR_TABLE if f.kind == "numeric")
SEED_MODES = ("range", "random")
RANDOM_SEED_HIGH = 1_000_000  # the original's tune.randint(0, 1_000_000)


def expand_seeds(population_config, zoo_seed: int, grid_size: int, num_slots: int | None = None) -> np.ndarray:
    """Seeds as [num_slots, grid_size] (row s: the seed of each grid point for seed slot s).

    'range': first_seed.. first_seed+num_seeds-1, shared by every grid point (Seed and
    Hyp-10-fix zoos). 'random': a fresh integer in [0, 1e6) for every model (Hyp-10-rand, as
    the original drew one per trial), from a generator seeded with the zoo seed. `num_slots`
    (default num_seeds) keeps the first slots only; they do not depend on the slots left out.
    """
    n = population_config.num_seeds if num_slots is None else min(num_slots, population_config.num_seeds)
    if population_config.seed_mode == "range":
        seeds = np.arange(population_config.first_seed, population_config.first_seed + n)
        return np.repeat(seeds[:, None], grid_size, axis=1)
    rng = np.random.default_rng(zoo_seed)
    return rng.integers(0, RANDOM_SEED_HIGH, size=(n, grid_size))


def expand_grid(population_config, zoo_seed: int) -> list[dict[str, Any]]:
    """The model table: one dict per model with `model_id`, `seed` and every factor of the grid."""
    names = grid_factors(population_config)
    values = [values_of(population_config, name) for name in names]
    grid = list(itertools.product(*values))
    size = len(grid) * population_config.num_seeds
    if population_config.max_models:  # only the kept models are built (num_seeds may be huge)
        size = min(size, population_config.max_models)
    seeds = expand_seeds(population_config, zoo_seed, len(grid), -(-size // len(grid)))
    table = []
    for slot in range(seeds.shape[0]):
        for point_index, point in enumerate(grid):
            row = {"model_id": len(table), "seed": int(seeds[slot, point_index])}
            row.update({name: _plain(value) for name, value in zip(names, point)})
            table.append(row)
    return table[:size]


def _plain(value):
    """Config values as JSON-friendly Python scalars."""
    if isinstance(value, (np.floating, float)):
        return float(value)
    if isinstance(value, (np.integer, int)) and not isinstance(value, bool):
        return int(value)
    return value


@dataclasses.dataclass(frozen=True)
class Population:
    """A population as arrays along axis 0 (length `size`), plus the static value sets.

    `activations`, `inits`, `optimizers` are the sorted values the population uses; the
    index arrays point into them. Numeric factors are float32 arrays (a factor the zoo does
    not vary holds its fixed value, NaN where the model's optimizer does not read it).
    """

    table: tuple[dict[str, Any], ...]
    activations: tuple[str, ...]
    inits: tuple[str, ...]
    optimizers: tuple[str, ...]
    arrays: dict[str, np.ndarray]
    population_config: Any = None  # fills in the factors that rows omit

    @property
    def size(self) -> int:
        return len(self.table)

    @property
    def uses_dropout(self) -> bool:
        return bool(np.any(self.arrays["dropout"] > 0))

    def factors(self, indices: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """What the compiled functions read (all but model_id), for the models at `indices`."""
        chosen = slice(None) if indices is None else indices
        return {name: array[chosen] for name, array in self.arrays.items() if name != "model_id"}

    def groups(self, merged: tuple[str, ...] = ()) -> list[tuple[dict[str, Any], np.ndarray]]:
        """[(static factors, indices of its models in table order)]: one compiled program each.
        The `merged` static factors are left out of the key: their values vary inside a group.

        A model's group depends on its own factors only, so its program, and therefore its
        numbers, do not depend on which other models share the population (a merged program
        computes each model's numbers bitwise as its own group's would)."""
        members: dict[tuple, list[int]] = {}
        for i, row in enumerate(self.table):
            members.setdefault(static_key(row, self.population_config, merged), []).append(i)
        return [(dict(key), np.array(indices)) for key, indices in sorted(members.items(), key=lambda kv: kv[1][0])]


def build_population(table: list[dict[str, Any]], population_config=None) -> Population:
    """Arrays of the table: seed (uint32), *_index (int32), numeric factors (float32).

    `population_config` supplies the values of factors the rows omit (scalars, defaults)."""
    value_sets = {name: tuple(sorted({row[name] for row in table})) for name in CATEGORICAL}
    arrays = {
        "seed": np.array([row["seed"] for row in table], dtype=np.uint32),
        "model_id": np.array([row["model_id"] for row in table], dtype=np.int64),
    }
    for name in CATEGORICAL:
        lookup = {value: i for i, value in enumerate(value_sets[name])}
        arrays[f"{name}_index"] = np.array([lookup[row[name]] for row in table], dtype=np.int32)
    for name in NUMERIC:
        values = [model_value(row, name, population_config) for row in table]
        arrays[name] = np.array([np.nan if v is None else v for v in values], dtype=np.float32)
    return Population(
        table=tuple(table),
        activations=value_sets["activation"],
        inits=value_sets["init"],
        optimizers=value_sets["optimizer"],
        arrays=arrays,
        population_config=population_config,
    )
