"""The generating factors of a zoo: one table that every consumer reads.

A factor is a `population.<name>` tuple of values; the zoo is the grid over all of them times
the seeds. Each entry says what kind of values it takes, whether it changes the compiled
program (static: the population is split into groups that compile apart) and how it is named
in the formats a zoo is written to (models.json, the original params.json, the flat-vector
properties, the zoo card and Table 3). A new factor is one entry here.

The original zoos' six factors are always written to models.json. The others are optional:
left at `()` (the default) they are not part of the grid, models.json rows omit them and
the zoo's identity does not see them, so zoos made before they existed keep their identity.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from jaxzoo.models.cnn import MERGEABLE_ACTIVATIONS
from jaxzoo.training.optimizers import optimizer_entry


@dataclasses.dataclass(frozen=True)
class Factor:
    """One generating factor.

    kind: 'categorical' (names, e.g. an activation) or 'numeric' (floats).
    static: True when values change the program (activation, optimizer, schedule); numeric
        factors are per-model arrays inside one program, but `static_when` may still split
        them (e.g. dropout > 0 runs the dropout code, dropout 0 skips it).
    optional: the zoo may leave it out (`()`); then a model gets `default`, or for an optimizer
        hyperparameter the optimizer's own default (PyTorch's), or the config's scalar.
    low, high, low_open, high_open: the range of numeric values.
    original_key: the original trial's params.json key; table3: Table 3's column label.
    """

    name: str
    kind: str
    static: bool = False
    optional: bool = False
    default: Any = None
    low: float = 0.0
    high: float = float("inf")
    low_open: bool = False
    high_open: bool = True
    original_key: str = ""
    table3: str = ""
    static_when: Callable[[Any], bool] | None = None  # numeric: the program differs where this holds
    help: str = ""


FACTOR_TABLE: tuple[Factor, ...] = (
    Factor(
        "activation",
        "categorical",
        static=True,
        original_key="model::nlin",
        table3="Act",
        help="nonlinearity after every conv and hidden layer",
    ),
    Factor(
        "init",
        "categorical",
        original_key="model::init_type",
        table3="Init",
        help="how kernels are drawn (biases start at 0.01)",
    ),
    Factor(
        "optimizer",
        "categorical",
        static=True,
        original_key="optim::optimizer",
        table3="Opt",
        help="a registry name (jaxzoo.training.optimizers) or 'package.module:factory'",
    ),
    Factor(
        "lr",
        "numeric",
        low=0.0,
        high=10.0,
        low_open=True,
        original_key="optim::lr",
        table3="LR",
        help="learning rate (the peak of a schedule)",
    ),
    Factor(
        "weight_decay",
        "numeric",
        low=0.0,
        high=1.0,
        original_key="optim::wd",
        table3="WD",
        help="coupled L2 (adam, sgd, rmsprop, adagrad, nadam) or decoupled decay (adamw, lion)",
    ),
    Factor(
        "dropout",
        "numeric",
        low=0.0,
        high=1.0,
        original_key="model::dropout",
        table3="Dropout",
        static_when=lambda value: value > 0,
        help="dropout rate after activations",
    ),
    # Optional factors: `()` leaves them out of the grid.
    Factor(
        "momentum",
        "numeric",
        optional=True,
        low=0.0,
        high=1.0,
        original_key="optim::momentum",
        table3="Momentum",
        help="SGD / RMSprop momentum (a scalar: one value, not a factor)",
    ),
    Factor(
        "b1",
        "numeric",
        optional=True,
        low=0.0,
        high=1.0,
        original_key="optim::beta1",
        table3="Beta1",
        help="first-moment decay (adam, adamw, nadam, lion)",
    ),
    Factor(
        "b2",
        "numeric",
        optional=True,
        low=0.0,
        high=1.0,
        original_key="optim::beta2",
        table3="Beta2",
        help="second-moment decay (adam, adamw, nadam, lion)",
    ),
    Factor(
        "eps",
        "numeric",
        optional=True,
        low=0.0,
        high=1.0,
        low_open=True,
        original_key="optim::eps",
        table3="Eps",
        help="denominator epsilon (adam, adamw, nadam, rmsprop, adagrad)",
    ),
    Factor(
        "alpha",
        "numeric",
        optional=True,
        low=0.0,
        high=1.0,
        original_key="optim::alpha",
        table3="Alpha",
        help="RMSprop's square-average decay",
    ),
    Factor(
        "schedule",
        "categorical",
        static=True,
        optional=True,
        default="constant",
        original_key="optim::scheduler",
        table3="Sched",
        help="learning-rate schedule (jaxzoo.training.schedules.SCHEDULES)",
    ),
    Factor(
        "train_fraction",
        "numeric",
        optional=True,
        default=1.0,
        low=0.0,
        high=1.0,
        low_open=True,
        high_open=False,
        original_key="training::train_fraction",
        table3="TrainFrac",
        static_when=lambda value: value < 1,
        help="share of the train split the model trains on (a subset drawn from its seed)",
    ),
    Factor(
        "label_noise",
        "numeric",
        optional=True,
        default=0.0,
        low=0.0,
        high=1.0,
        original_key="training::label_noise",
        table3="LabelNoise",
        static_when=lambda value: value > 0,
        help="probability that a train label is replaced by another class (fixed per model)",
    ),
)
FACTORS_BY_NAME = {factor.name: factor for factor in FACTOR_TABLE}
CORE_FACTORS = tuple(factor.name for factor in FACTOR_TABLE if not factor.optional)
OPTIMIZER_FACTORS = ("lr", "weight_decay", "momentum", "b1", "b2", "eps", "alpha")


def values_of(population_config, name: str) -> tuple:
    """The values a zoo gives factor `name`: its tuple, () when left out. A scalar (the
    original's `momentum = 0.9`) is one fixed value, not a grid factor: also ()."""
    value = population_config.get(name, ())
    return tuple(value) if isinstance(value, (tuple, list)) else ()


def fixed_value(population_config, name: str, optimizer: str | None = None) -> Any:
    """The value of a factor the zoo does not vary: a scalar in the config, else the default
    (for an optimizer hyperparameter: `optimizer`'s own, None where it does not read it)."""
    value = population_config.get(name, ()) if population_config is not None else ()
    if not isinstance(value, (tuple, list)):
        return value
    if name in OPTIMIZER_FACTORS:
        return optimizer_entry(optimizer).defaults.get(name) if optimizer else None
    return FACTORS_BY_NAME[name].default


def grid_factors(population_config) -> tuple[str, ...]:
    """The factors of the grid, in table order: the core ones and every optional one given."""
    return tuple(f.name for f in FACTOR_TABLE if not f.optional or values_of(population_config, f.name))


def model_value(row: dict, name: str, population_config=None) -> Any:
    """Factor `name` of a models.json row (a fixed value or the default where the row omits it)."""
    if name in row:
        return row[name]
    return fixed_value(population_config, name, row.get("optimizer"))


def static_key(row: dict, population_config=None, merged: tuple[str, ...] = ()) -> tuple:
    """What of a model's factors shapes its compiled program (models with equal keys share one);
    `merged` factors are computed per model inside one program instead
    (`jaxzoo.training.plan.MERGEABLE`; of the activations, those in `MERGEABLE_ACTIVATIONS`)."""
    key = []
    for factor in FACTOR_TABLE:
        if factor.name in merged:
            value = model_value(row, factor.name, population_config)
            if factor.name == "activation" and value not in MERGEABLE_ACTIVATIONS:
                key.append((factor.name, value))  # a program of its own
            continue
        if factor.static:
            key.append((factor.name, model_value(row, factor.name, population_config)))
        elif factor.static_when is not None:
            key.append((factor.name, bool(factor.static_when(model_value(row, factor.name, population_config)))))
    return tuple(key)
