"""PyTorch's OneCycleLR as a pure function of the step, and the SGD it drives.

The ResNet zoos train with SGD + `torch.optim.lr_scheduler.OneCycleLR` (two phases, cosine
annealing, cycled momentum), stepping the scheduler after every optimizer step. Here the
schedule is a function of the number of updates already taken, so a compiled training step
computes its own learning rate and momentum; `max_lr` may be a traced per-model value under
`jax.vmap`, while the phase boundaries depend only on the static `total_steps` and
`pct_start` and are computed in Python doubles, exactly as PyTorch does.

PyTorch computes `end + (start - end) / 2 * (cos(pi * pct) + 1)` in doubles. In float32 that
form loses most digits where `cos(pi * pct)` is close to -1 (the tail of each phase, where
the learning rate is tiny). The same value is written here as the positive-weight sum
`start * sin(pi/2 * (1 - pct))**2 + end * sin(pi/2 * pct)**2`, with `pct` and `1 - pct` each
computed from exact integer step differences, so the float32 result stays within about 1e-6
(relative) of PyTorch's doubles at every step.

`make_one_cycle_sgd` is torch SGD(lr, momentum, weight_decay) (dampening 0, no Nesterov,
coupled L2) with learning rate and momentum injectable per step. optax's trace
(`trace = momentum * trace + g`, starting from zeros, so the first trace is `g`) is torch's
momentum buffer (`buf = clone(g)` on the first step, then `buf = momentum * buf + g`) with
the momentum read at every step, so changing it between steps matches PyTorch.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import optax


def _split(value: float) -> tuple[int, float]:
    """A Python float as (integer part, fraction in [0, 1)); exact in doubles."""
    whole = math.floor(value)
    return whole, value - whole


def _offset(step: jax.Array, boundary: float) -> jax.Array:
    """`step - boundary` in float32 with a single rounding (step int32, boundary a double)."""
    whole, frac = _split(boundary)
    return (step - whole).astype(jnp.float32) - jnp.float32(frac)


def _anneal_cos(start, end, step: jax.Array, start_step: float, end_step: float) -> jax.Array:
    """PyTorch's `_annealing_cos(start, end, (step - start_step) / (end_step - start_step))`."""
    span = jnp.float32(end_step - start_step)
    done = _offset(step, start_step) / span  # pct
    left = -_offset(step, end_step) / span  # 1 - pct
    half_pi = jnp.float32(math.pi / 2)
    return start * jnp.sin(half_pi * left) ** 2 + end * jnp.sin(half_pi * done) ** 2


def one_cycle(
    step: jax.Array | int,
    total_steps: int,
    max_lr: jax.Array | float,
    pct_start: float = 0.3,
    div_factor: float = 25.0,
    final_div_factor: float = 1e4,
    base_momentum: float = 0.85,
    max_momentum: float = 0.95,
) -> tuple[jax.Array, jax.Array]:
    """-> (lr, momentum), float32 scalars, for update number `step` (0 for the first update).

    Equal to `param_groups[0]['lr']` and `['momentum']` of a torch optimizer driven by
    `OneCycleLR(opt, max_lr, total_steps, pct_start, anneal_strategy='cos',
    cycle_momentum=True, base_momentum, max_momentum, div_factor, final_div_factor,
    three_phase=False)` just before its `step`-th `optimizer.step()`. `step` may be traced
    (int); it is clipped to [0, total_steps - 1] (PyTorch raises beyond its schedule).
    `max_lr` may be traced (per model under vmap); the other arguments are static.
    """
    if not isinstance(total_steps, int) or total_steps <= 0:
        raise ValueError(f"total_steps must be a positive int, got {total_steps!r}")
    end1 = float(pct_start * total_steps) - 1  # PyTorch's phase boundaries
    end2 = float(total_steps - 1)
    if not 0 < end1 < end2:
        raise ValueError(
            f"pct_start * total_steps - 1 = {end1} must lie in (0, total_steps - 1); "
            "PyTorch divides by zero or skips a phase otherwise"
        )
    step = jnp.clip(jnp.asarray(step, jnp.int32), 0, total_steps - 1)
    max_lr = jnp.asarray(max_lr, jnp.float32)
    initial_lr = max_lr / jnp.float32(div_factor)
    min_lr = initial_lr / jnp.float32(final_div_factor)
    base_m, max_m = jnp.float32(base_momentum), jnp.float32(max_momentum)

    warmup = step <= math.floor(end1)  # step <= end1 for an integer step
    lr = jnp.where(
        warmup,
        _anneal_cos(initial_lr, max_lr, step, 0.0, end1),
        _anneal_cos(max_lr, min_lr, step, end1, end2),
    )
    momentum = jnp.where(
        warmup,
        _anneal_cos(max_m, base_m, step, 0.0, end1),
        _anneal_cos(base_m, max_m, step, end1, end2),
    )
    return lr.astype(jnp.float32), momentum.astype(jnp.float32)


def make_one_cycle_sgd(
    learning_rate: float = 0.0, momentum: float = 0.0, weight_decay: float = 0.0
) -> optax.GradientTransformation:
    """torch SGD(lr, momentum, weight_decay) with injectable `learning_rate`, `momentum` and
    `weight_decay` (set them in `state.hyperparams`, e.g. with `set_one_cycle`)."""

    def factory(learning_rate, momentum, weight_decay):
        return optax.chain(
            optax.add_decayed_weights(weight_decay),
            optax.sgd(learning_rate, momentum=momentum),
        )

    return optax.inject_hyperparams(factory)(learning_rate=learning_rate, momentum=momentum, weight_decay=weight_decay)


def set_hyperparams(state: optax.InjectStatefulHyperparamsState, **values) -> optax.InjectStatefulHyperparamsState:
    """`state` of an `inject_hyperparams` optimizer with `values` written into its hyperparams."""
    return state._replace(hyperparams=dict(state.hyperparams, **values))


def set_one_cycle(
    state: optax.InjectStatefulHyperparamsState,
    step: jax.Array | int,
    total_steps: int,
    max_lr: jax.Array | float,
    **kwargs,
) -> optax.InjectStatefulHyperparamsState:
    """`state` of `make_one_cycle_sgd` with lr and momentum of `one_cycle(step, ...)`;
    `kwargs` go to `one_cycle`. Call before each `update`."""
    lr, momentum = one_cycle(step, total_steps, max_lr, **kwargs)
    return set_hyperparams(state, learning_rate=lr, momentum=momentum)


# Per-model learning-rate schedules (the `schedule` factor). Each is a pure function of the
# model's update number t (0 for its first update), its total number of updates T, its updates
# per epoch and its peak `lr` (traced under vmap); options are static. PyTorch counterparts,
# stepped once per optimizer step: cosine = CosineAnnealingLR(T_max=T, eta_min=0); step =
# StepLR(step_size=every_epochs * steps_per_epoch, gamma); warmup_cosine = LambdaLR with
# (t + 1) / W for t < W, then cosine from W to T; one_cycle = OneCycleLR's learning rate
# (momentum is not cycled by this factor; the ResNet zoos' `training.scheduler` cycles it).
SCHEDULE_OPTIONS = {
    "constant": {},
    "cosine": {},
    "step": {"every_epochs": 0, "gamma": 0.1},  # every_epochs 0: a third of the run
    "warmup_cosine": {"warmup_fraction": 0.05},
    "one_cycle": {"pct_start": 0.3, "div_factor": 25.0, "final_div_factor": 1e4},
}
SCHEDULES = tuple(SCHEDULE_OPTIONS)
# Each option's type and range: (integer, low, high, low_open, high_open).
OPTION_RANGES = {
    "every_epochs": (True, 0, 1_000_000, False, False),
    "gamma": (False, 0.0, 1.0, True, False),
    "warmup_fraction": (False, 0.0, 1.0, False, True),
    "pct_start": (False, 0.0, 1.0, True, True),
    "div_factor": (False, 0.0, 1e12, True, False),
    "final_div_factor": (False, 0.0, 1e12, True, False),
}


def schedule_options(name: str, given: dict | None = None) -> dict:
    """The schedule's options: its defaults updated with `given`; ValueError for an unknown key
    or a value of the wrong type or out of its range (`OPTION_RANGES`)."""
    options = dict(SCHEDULE_OPTIONS[name])
    if given is not None and not isinstance(given, dict):
        raise ValueError(f"options of schedule {name!r} must be a dict of option -> number, not {given!r}")
    unknown = sorted(set(given or {}) - set(options))
    if unknown:
        raise ValueError(f"schedule {name!r} has no option {unknown[0]!r}: its options are {sorted(options) or 'none'}")
    for option, value in (given or {}).items():
        integer, low, high, low_open, high_open = OPTION_RANGES[option]
        kind = "an integer" if integer else "a number"
        numeric = isinstance(value, int if integer else (int, float)) and not isinstance(value, bool)
        inside = numeric and math.isfinite(value) and (low < value if low_open else low <= value)
        inside = inside and (value < high if high_open else value <= high)
        if not inside:
            bounds = f"{'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
            raise ValueError(f"{name}.{option}={value!r} is not {kind} in {bounds}: give one")
    options.update(given or {})
    return options


def _cosine(t: jax.Array, total: jax.Array) -> jax.Array:
    """0.5 * (1 + cos(pi * t / total)) as sin^2 (no cancellation near the end)."""
    return jnp.sin(jnp.float32(math.pi / 2) * (total - t) / total) ** 2


def scheduled_lr(name: str, t: jax.Array, total_steps, steps_per_epoch, lr: jax.Array, options: dict) -> jax.Array:
    """Learning rate of update `t` (int) of a run of `total_steps` updates, `steps_per_epoch`
    per epoch (ints, traced or static), with peak `lr` -> float32 scalar."""
    lr = jnp.asarray(lr, jnp.float32)
    t = jnp.asarray(t, jnp.int32)
    if name == "constant":
        return lr
    if name == "one_cycle":
        return one_cycle(t, total_steps, lr, options["pct_start"], options["div_factor"], options["final_div_factor"])[
            0
        ]
    tf = t.astype(jnp.float32)
    total = jnp.asarray(total_steps, jnp.float32)
    if name == "cosine":
        return lr * _cosine(jnp.minimum(tf, total), total)
    if name == "step":
        epochs = jnp.asarray(total_steps // steps_per_epoch, jnp.int32)
        every = options["every_epochs"] or jnp.maximum(epochs // 3, 1)
        return lr * jnp.float32(options["gamma"]) ** (t // (every * steps_per_epoch)).astype(jnp.float32)
    if name == "warmup_cosine":
        warmup = jnp.maximum(jnp.round(options["warmup_fraction"] * total), 1.0)
        rising = (tf + 1) / warmup
        falling = _cosine(jnp.minimum(tf - warmup, total - warmup), jnp.maximum(total - warmup, 1.0))
        return lr * jnp.where(tf < warmup, rising, falling)
    raise ValueError(f"unknown schedule {name!r}: choose from {SCHEDULES}")
