"""An open registry of per-model optimizers, each an optax transform with its PyTorch counterpart.

A population is split into groups with one optimizer each; `make_transform` builds a group's
transform under `optax.inject_hyperparams`, so the hyperparameters the zoo varies (the
`injected` factors) live in `state.hyperparams` and, under `jax.vmap`, every model has its own.
The others are fixed Python floats. Factor names (`lr`, `weight_decay`, `momentum`, `b1`,
`b2`, `eps`, `alpha`) map to the factories' optax keyword names through `FACTOR_TO_OPTAX`.

Weight decay comes in two kinds, recorded in `OptimizerEntry.weight_decay`:

- coupled (L2): `weight_decay * param` is added to the gradient before the optimizer sees it,
  so adaptive optimizers normalise it like the rest of the gradient. PyTorch's Adam, SGD,
  RMSprop, Adagrad and NAdam do this; here it is `chain(add_decayed_weights(wd), ...)`.
- decoupled: the parameter shrinks by `lr * weight_decay * param` beside the optimizer's step
  (PyTorch's AdamW; optax's adamw and lion add the decay after the normalisation).

Every entry with a `TorchCounterpart` follows its `torch.optim` class step for step (tested to
1e-5 over 25 steps, and after moving the state across), and says how to build the torch
optimizer (`kwargs`) and its per-parameter state (`buffers`, or `torch_state` for the whole
`state_dict()['state']`). Where optax's own alias differs from PyTorch (Adagrad's eps and
initial accumulator, NAdam's momentum schedule) a small transform below does PyTorch's update.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

FACTOR_TO_OPTAX: Mapping[str, str] = {
    "lr": "learning_rate",
    "weight_decay": "weight_decay",
    "momentum": "momentum",
    "b1": "b1",
    "b2": "b2",
    "eps": "eps",
    "alpha": "decay",  # RMSprop's smoothing constant (optax.rmsprop's `decay`)
}
OPTAX_TO_FACTOR: Mapping[str, str] = {v: k for k, v in FACTOR_TO_OPTAX.items()}
REQUIRED_FACTORS = ("lr", "weight_decay")
WEIGHT_DECAY_KINDS = ("coupled", "decoupled", "custom")  # custom: a user factory's own way
NADAM_MOMENTUM_DECAY = 4e-3  # torch.optim.NAdam's default psi, fixed (not a factor)

Values = Mapping[str, float]


@dataclasses.dataclass(frozen=True)
class TorchCounterpart:
    """How a model's optimizer becomes `torch.optim.<class_name>`.

    kwargs(values) -> the constructor's keyword arguments (params aside); `values` maps factor
    names to floats, missing ones take the entry's defaults.
    buffers(state, values) -> (per_param, step): `state` is ONE model's optax state as the
    entry's `make_transform` returns it (or restored as nested dicts/lists with the same
    names). `per_param` maps torch state names (e.g. 'exp_avg') to a pytree shaped like the
    params, or to a Python float for a scalar that PyTorch keeps per parameter with the same
    value for all (NAdam's 'mu_product'; written as a 0-d float32 tensor). `step` is the step
    count PyTorch keeps as 'step' (a 0-d float32 tensor), or None when it keeps none (SGD).
    """

    class_name: str
    kwargs: Callable[[Values], dict]
    buffers: Callable[[Any, Values], tuple[dict[str, Any], int | None]]


@dataclasses.dataclass(frozen=True)
class OptimizerEntry:
    """One optimizer: factory(**optax-named hyperparameters) -> optax transform.

    `hyperparams` are the factor names it reads, starting with ("lr", "weight_decay");
    `defaults` are the values of the others when the zoo does not vary them.
    """

    name: str
    factory: Callable[..., optax.GradientTransformation]
    hyperparams: tuple[str, ...]
    defaults: Mapping[str, float]
    torch: TorchCounterpart | None
    no_torch_reason: str = ""
    weight_decay: str = "coupled"

    def __post_init__(self):
        if tuple(self.hyperparams[:2]) != REQUIRED_FACTORS:
            raise ValueError(
                f"optimizer {self.name!r}: hyperparams {self.hyperparams} must start with {REQUIRED_FACTORS}"
            )
        unknown = [f for f in self.hyperparams if f not in FACTOR_TO_OPTAX]
        if unknown:
            raise ValueError(
                f"optimizer {self.name!r}: unknown hyperparameters {unknown}: choose from {sorted(FACTOR_TO_OPTAX)}"
            )
        extra = [f for f in self.defaults if f not in self.hyperparams[2:]]
        if extra:
            raise ValueError(
                f"optimizer {self.name!r}: defaults {extra} are not among its hyperparams {self.hyperparams[2:]}"
            )
        if self.torch is None and not self.no_torch_reason.strip():
            raise ValueError(f"optimizer {self.name!r} has no torch counterpart: give no_torch_reason (a sentence)")
        if self.weight_decay not in WEIGHT_DECAY_KINDS:
            raise ValueError(
                f"optimizer {self.name!r}: weight_decay {self.weight_decay!r} must be one of {WEIGHT_DECAY_KINDS}"
            )

    def resolve(self, values: Values) -> dict[str, float]:
        """Every hyperparameter it reads as a float: `values` over `defaults` (others ignored)."""
        merged = {**self.defaults, **{k: float(v) for k, v in values.items() if k in self.hyperparams}}
        missing = [f for f in self.hyperparams if f not in merged]
        if missing:
            raise ValueError(f"optimizer {self.name!r} needs values for {missing}: give them (they have no default)")
        return {f: merged[f] for f in self.hyperparams}


# ---------------------------------------------------------------- PyTorch-exact transforms


def bias_corrected(moment, decay, count: jax.Array):
    """moment / (1 - decay**count), computed as moment * (1 / (1 - decay**count)).

    Why the reciprocal: XLA rewrites a division by a broadcast per-model scalar into a
    multiplication by its reciprocal in some programs and not in others (it did on one CPU
    device and not on two, measured), so a model's Adam update depended on the device layout.
    Written as the multiplication, every layout computes the same numbers (those of one device).
    """
    inverse = 1 / (1 - decay**count)
    return jax.tree.map(lambda t: t * inverse.astype(t.dtype), moment)


def scale_by_adam(b1: float | jax.Array, b2: float | jax.Array, eps: float | jax.Array) -> optax.GradientTransformation:
    """optax.scale_by_adam (eps_root 0, no Nesterov) with `bias_corrected`: the same state
    (`optax.ScaleByAdamState`) and the same update up to the rounding of that correction."""

    def init(params):
        zeros = lambda: jax.tree.map(jnp.zeros_like, params)
        return optax.ScaleByAdamState(count=jnp.zeros([], jnp.int32), mu=zeros(), nu=zeros())

    def update(updates, state, params=None):
        del params
        mu = optax.tree.update_moment(updates, state.mu, b1, 1)
        nu = optax.tree.update_moment_per_elem_norm(updates, state.nu, b2, 2)
        count = optax.safe_increment(state.count)
        mu_hat, nu_hat = bias_corrected(mu, b1, count), bias_corrected(nu, b2, count)
        updates = jax.tree.map(lambda m, v: m / (jnp.sqrt(v) + eps), mu_hat, nu_hat)
        return updates, optax.ScaleByAdamState(count=count, mu=mu, nu=nu)

    return optax.GradientTransformation(init, update)


class ScaleByTorchAdagradState(NamedTuple):
    sum_of_squares: Any  # pytree like params


def scale_by_torch_adagrad(eps: float | jax.Array = 1e-10) -> optax.GradientTransformation:
    """torch.optim.Adagrad's direction g / (sqrt(sum g^2) + eps), the sum starting at 0.

    optax.scale_by_rss puts eps inside the square root and starts the sum at
    `initial_accumulator_value` (0.1 in optax.adagrad), and has no option for PyTorch's form.
    """

    def init(params):
        return ScaleByTorchAdagradState(jax.tree.map(jnp.zeros_like, params))

    def update(updates, state, params=None):
        del params
        sums = jax.tree.map(lambda g, s: s + g * g, updates, state.sum_of_squares)
        updates = jax.tree.map(lambda g, s: g / (jnp.sqrt(s) + eps), updates, sums)
        return updates, ScaleByTorchAdagradState(sums)

    return optax.GradientTransformation(init, update)


class ScaleByTorchNadamState(NamedTuple):
    count: jax.Array  # int32 [], steps taken
    mu_product: jax.Array  # float32 [], product of the momentum coefficients so far
    mu: Any  # pytree like params, first moment
    nu: Any  # pytree like params, second moment


def scale_by_torch_nadam(
    b1: float | jax.Array = 0.9,
    b2: float | jax.Array = 0.999,
    eps: float | jax.Array = 1e-8,
    momentum_decay: float = NADAM_MOMENTUM_DECAY,
) -> optax.GradientTransformation:
    """torch.optim.NAdam's direction (Dozat's schedule mu_t = b1 (1 - 0.96^(t psi) / 2)).

    optax.scale_by_nadam uses a constant b1 for the look-ahead and no mu_product, a different
    update, so PyTorch's is written out here.
    """

    def init(params):
        zeros = lambda: jax.tree.map(jnp.zeros_like, params)
        return ScaleByTorchNadamState(jnp.zeros([], jnp.int32), jnp.ones([], jnp.float32), zeros(), zeros())

    def update(updates, state, params=None):
        del params
        count = state.count + 1
        t = count.astype(jnp.float32)
        mu_t = b1 * (1.0 - 0.5 * 0.96 ** (t * momentum_decay))
        mu_next = b1 * (1.0 - 0.5 * 0.96 ** ((t + 1.0) * momentum_decay))
        mu_product = state.mu_product * mu_t
        coef_grad = (1.0 - mu_t) / (1.0 - mu_product)
        coef_avg = mu_next / (1.0 - mu_product * mu_next)
        mu = jax.tree.map(lambda g, m: m + (1.0 - b1) * (g - m), updates, state.mu)
        nu = jax.tree.map(lambda g, v: b2 * v + (1.0 - b2) * g * g, updates, state.nu)
        nu_hat = bias_corrected(nu, b2, t)
        updates = jax.tree.map(
            lambda g, m, v: (coef_grad * g + coef_avg * m) / (jnp.sqrt(v) + eps), updates, mu, nu_hat
        )
        return updates, ScaleByTorchNadamState(count, mu_product.astype(jnp.float32), mu, nu)

    return optax.GradientTransformation(init, update)


# ---------------------------------------------------------------- factories (optax names)


def _no_momentum(momentum) -> bool:
    """A static zero momentum keeps no buffer (the original zoos' SGD); injected always does."""
    return isinstance(momentum, (int, float)) and momentum == 0


def adam_factory(learning_rate, weight_decay, b1, b2, eps) -> optax.GradientTransformation:
    # optax.adam's chain (scale_by_adam, scale_by_learning_rate), with `scale_by_adam` above.
    adam = optax.chain(scale_by_adam(b1, b2, eps), optax.scale_by_learning_rate(learning_rate))
    return optax.chain(optax.add_decayed_weights(weight_decay), adam)


def sgd_factory(learning_rate, weight_decay, momentum) -> optax.GradientTransformation:
    momentum = None if _no_momentum(momentum) else momentum
    return optax.chain(optax.add_decayed_weights(weight_decay), optax.sgd(learning_rate, momentum=momentum))


def adamw_factory(learning_rate, weight_decay, b1, b2, eps) -> optax.GradientTransformation:
    # optax.adamw's chain: adam direction + wd * p, times -lr (every parameter, as torch).
    return optax.chain(
        scale_by_adam(b1, b2, eps),
        optax.add_decayed_weights(weight_decay),
        optax.scale_by_learning_rate(learning_rate),
    )


def rmsprop_factory(learning_rate, weight_decay, momentum, decay, eps) -> optax.GradientTransformation:
    # optax.rmsprop scales by lr before the momentum trace; PyTorch's buffer holds g / avg and
    # lr multiplies afterwards, which differs once lr changes, so the chain is spelled out.
    return optax.chain(
        optax.add_decayed_weights(weight_decay),
        optax.scale_by_rms(decay=decay, eps=eps, initial_scale=0.0, eps_in_sqrt=False),
        optax.identity() if _no_momentum(momentum) else optax.trace(decay=momentum),
        optax.scale_by_learning_rate(learning_rate),
    )


def adagrad_factory(learning_rate, weight_decay, eps) -> optax.GradientTransformation:
    return optax.chain(
        optax.add_decayed_weights(weight_decay),
        scale_by_torch_adagrad(eps),
        optax.scale_by_learning_rate(learning_rate),
    )


def nadam_factory(learning_rate, weight_decay, b1, b2, eps) -> optax.GradientTransformation:
    return optax.chain(
        optax.add_decayed_weights(weight_decay),
        scale_by_torch_nadam(b1, b2, eps),
        optax.scale_by_learning_rate(learning_rate),
    )


def lion_factory(learning_rate, weight_decay, b1, b2) -> optax.GradientTransformation:
    return optax.lion(learning_rate, b1=b1, b2=b2, weight_decay=weight_decay)


# ---------------------------------------------------------------- torch counterparts


def _get(node, key: str):
    return node[key] if isinstance(node, Mapping) else getattr(node, key)


def _has(node, key: str) -> bool:
    if isinstance(node, Mapping):
        return key in node
    return key in getattr(node, "_fields", ())


def _find(state, field: str):
    """The first `field` of a state node inside `state`'s inner_state (depth first)."""
    stack = [_get(state, "inner_state")]
    while stack:
        node = stack.pop(0)
        if _has(node, field):
            return _get(node, field)
        if isinstance(node, Mapping):
            stack[:0] = list(node.values())
        elif isinstance(node, (tuple, list)):
            stack[:0] = list(node)
    raise ValueError(
        f"optimizer state has no {field!r}: pass the state of make_transform's transform for this optimizer"
    )


def _step(state) -> int:
    return int(np.asarray(_get(state, "count")))


def _with_defaults(defaults: Values) -> Callable[[Values], dict[str, float]]:
    return lambda values: {**defaults, **{k: float(v) for k, v in values.items()}}


def _adam_like(class_name: str, defaults: Values) -> TorchCounterpart:
    full = _with_defaults(defaults)

    def kwargs(values):
        v = full(values)
        return {"lr": v["lr"], "betas": (v["b1"], v["b2"]), "eps": v["eps"], "weight_decay": v["weight_decay"]}

    def buffers(state, values):
        return {"exp_avg": _find(state, "mu"), "exp_avg_sq": _find(state, "nu")}, _step(state)

    return TorchCounterpart(class_name, kwargs, buffers)


def _sgd_torch(defaults: Values) -> TorchCounterpart:
    full = _with_defaults(defaults)

    def kwargs(values):
        v = full(values)
        return {
            "lr": v["lr"],
            "momentum": v["momentum"],
            "weight_decay": v["weight_decay"],
            "dampening": 0.0,
            "nesterov": False,
        }

    def buffers(state, values):
        return ({} if full(values)["momentum"] == 0 else {"momentum_buffer": _find(state, "trace")}), None

    return TorchCounterpart("SGD", kwargs, buffers)


def _rmsprop_torch(defaults: Values) -> TorchCounterpart:
    full = _with_defaults(defaults)

    def kwargs(values):
        v = full(values)
        return {
            "lr": v["lr"],
            "alpha": v["alpha"],
            "eps": v["eps"],
            "weight_decay": v["weight_decay"],
            "momentum": v["momentum"],
            "centered": False,
        }

    def buffers(state, values):
        tensors = {"square_avg": _find(state, "nu")}
        if full(values)["momentum"] != 0:
            tensors["momentum_buffer"] = _find(state, "trace")
        return tensors, _step(state)

    return TorchCounterpart("RMSprop", kwargs, buffers)


def _adagrad_torch(defaults: Values) -> TorchCounterpart:
    full = _with_defaults(defaults)

    def kwargs(values):
        v = full(values)
        return {
            "lr": v["lr"],
            "weight_decay": v["weight_decay"],
            "eps": v["eps"],
            "lr_decay": 0.0,
            "initial_accumulator_value": 0.0,
        }

    def buffers(state, values):
        return {"sum": _find(state, "sum_of_squares")}, _step(state)

    return TorchCounterpart("Adagrad", kwargs, buffers)


def _nadam_torch(defaults: Values) -> TorchCounterpart:
    full = _with_defaults(defaults)

    def kwargs(values):
        v = full(values)
        return {
            "lr": v["lr"],
            "betas": (v["b1"], v["b2"]),
            "eps": v["eps"],
            "weight_decay": v["weight_decay"],
            "momentum_decay": NADAM_MOMENTUM_DECAY,
        }

    def buffers(state, values):
        tensors = {
            "exp_avg": _find(state, "mu"),
            "exp_avg_sq": _find(state, "nu"),
            "mu_product": float(np.asarray(_find(state, "mu_product"))),
        }
        return tensors, _step(state)

    return TorchCounterpart("NAdam", kwargs, buffers)


def torch_state(
    entry: OptimizerEntry, state, values: Values, to_torch: Callable[[Any], Sequence[Any]]
) -> dict[int, dict]:
    """PyTorch's `optimizer.state_dict()['state']` for ONE model's optax `state`.

    to_torch(tree) -> the arrays of a params-shaped pytree in the order (and layout) of the
    torch model's `parameters()`. Returns {position: {name: tensor, 'step': tensor}}; pair it
    with the fresh torch optimizer's 'param_groups'. Imports torch.
    """
    import torch

    if entry.torch is None:
        raise ValueError(f"optimizer {entry.name!r} has no torch counterpart: {entry.no_torch_reason}")
    tensors, step = entry.torch.buffers(state, values)
    scalars = {k: v for k, v in tensors.items() if isinstance(v, (int, float))}
    per_param: dict[int, dict] = {}
    for name, tree in tensors.items():
        if name in scalars:
            continue
        for position, array in enumerate(to_torch(tree)):
            per_param.setdefault(position, {})[name] = torch.from_numpy(np.array(array))
    for entry_state in per_param.values():
        for name, value in scalars.items():
            entry_state[name] = torch.tensor(float(value), dtype=torch.float32)
        if step is not None:
            entry_state["step"] = torch.tensor(float(step), dtype=torch.float32)
    return per_param


# ---------------------------------------------------------------- the registry


def _builtin_entries() -> dict[str, OptimizerEntry]:
    adam_defaults = {"b1": 0.9, "b2": 0.999, "eps": 1e-8}
    sgd_defaults = {"momentum": 0.9}  # the original zoos' value (PyTorch's default is 0)
    rmsprop_defaults = {"momentum": 0.0, "alpha": 0.99, "eps": 1e-8}
    adagrad_defaults = {"eps": 1e-10}
    lion_defaults = {"b1": 0.9, "b2": 0.99}
    adam_factors = ("lr", "weight_decay", "b1", "b2", "eps")
    entries = [
        OptimizerEntry("adam", adam_factory, adam_factors, adam_defaults, _adam_like("Adam", adam_defaults)),
        OptimizerEntry("sgd", sgd_factory, ("lr", "weight_decay", "momentum"), sgd_defaults, _sgd_torch(sgd_defaults)),
        OptimizerEntry(
            "adamw",
            adamw_factory,
            adam_factors,
            adam_defaults,
            _adam_like("AdamW", adam_defaults),
            weight_decay="decoupled",
        ),
        OptimizerEntry(
            "rmsprop",
            rmsprop_factory,
            ("lr", "weight_decay", "momentum", "alpha", "eps"),
            rmsprop_defaults,
            _rmsprop_torch(rmsprop_defaults),
        ),
        OptimizerEntry(
            "adagrad",
            adagrad_factory,
            ("lr", "weight_decay", "eps"),
            adagrad_defaults,
            _adagrad_torch(adagrad_defaults),
        ),
        OptimizerEntry("nadam", nadam_factory, adam_factors, adam_defaults, _nadam_torch(adam_defaults)),
        OptimizerEntry(
            "lion",
            lion_factory,
            ("lr", "weight_decay", "b1", "b2"),
            lion_defaults,
            None,
            no_torch_reason="torch.optim has no Lion optimizer, so this model's optimizer state "
            "has no PyTorch counterpart and is not exported.",
            weight_decay="decoupled",
        ),
    ]
    return {entry.name: entry for entry in entries}


OPTIMIZERS: dict[str, OptimizerEntry] = _builtin_entries()
BUILTIN_OPTIMIZERS = frozenset(OPTIMIZERS)


def register_optimizer(entry: OptimizerEntry) -> None:
    """Adds `entry` under `entry.name` (a later registration of a non-built-in name replaces it)."""
    if not isinstance(entry, OptimizerEntry):
        raise ValueError(f"register_optimizer takes an OptimizerEntry, not {type(entry).__name__}: build one first")
    if ":" in entry.name or not entry.name:
        raise ValueError(f"optimizer name {entry.name!r} must be non-empty without ':': rename the entry")
    if entry.name in BUILTIN_OPTIMIZERS:
        raise ValueError(f"optimizer {entry.name!r} is built in and cannot be replaced: register it under another name")
    OPTIMIZERS[entry.name] = entry


def _one_line(error: BaseException) -> str:
    return " ".join(f"{type(error).__name__}: {error}".split())


def _entry_from_factory(spec: str, factory: Callable) -> OptimizerEntry:
    """An entry for a custom factory: its factor-named keywords become its hyperparameters."""
    try:
        parameters = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        parameters = {}
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
    missing = [FACTOR_TO_OPTAX[f] for f in REQUIRED_FACTORS if FACTOR_TO_OPTAX[f] not in parameters]
    if missing and not takes_any:
        raise ValueError(
            f"optimizer factory {spec!r} does not take {missing}: "
            "give it keyword parameters learning_rate and weight_decay"
        )
    unfilled = [
        n
        for n, p in parameters.items()
        if n not in OPTAX_TO_FACTOR
        and p.default is inspect.Parameter.empty
        and p.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    ]
    if unfilled:
        raise ValueError(
            f"optimizer factory {spec!r} requires {unfilled}, which are no hyperparameters "
            f"({sorted(OPTAX_TO_FACTOR)}): give them defaults"
        )
    extra = tuple(
        OPTAX_TO_FACTOR[n] for n in parameters if n in OPTAX_TO_FACTOR and OPTAX_TO_FACTOR[n] not in REQUIRED_FACTORS
    )
    defaults = {
        OPTAX_TO_FACTOR[n]: float(p.default)
        for n, p in parameters.items()
        if n in OPTAX_TO_FACTOR and OPTAX_TO_FACTOR[n] in extra and isinstance(p.default, (int, float))
    }
    reason = (
        f"The optimizer {spec!r} is a custom optax factory with no PyTorch counterpart, so its state is not exported."
    )
    return OptimizerEntry(spec, factory, REQUIRED_FACTORS + extra, defaults, None, reason, weight_decay="custom")


def optimizer_entry(name: str) -> OptimizerEntry:
    """A registry name, or 'package.module:attribute' naming an OptimizerEntry or a factory
    (optax-named keyword hyperparameters -> transform, with no torch counterpart)."""
    if not isinstance(name, str):
        raise ValueError(f"optimizer must be a name, not {type(name).__name__}: choose from {sorted(OPTIMIZERS)}")
    if name in OPTIMIZERS:
        return OPTIMIZERS[name]
    if ":" not in name:
        raise ValueError(
            f"unknown optimizer {name!r}: choose from {sorted(OPTIMIZERS)} or give 'package.module:factory'"
        )
    module_name, _, attribute = name.partition(":")
    if not module_name or not attribute or ":" in attribute:
        raise ValueError(f"optimizer {name!r} is not of the form 'package.module:attribute': write it so")
    try:
        module = importlib.import_module(module_name)
    except Exception as error:  # any failure of the user's module, reported in one line
        raise ValueError(
            f"optimizer {name!r}: cannot import {module_name!r} ({_one_line(error)}): "
            "make the module importable (installed or on PYTHONPATH)"
        ) from None
    try:
        target = getattr(module, attribute)
    except AttributeError:
        raise ValueError(
            f"optimizer {name!r}: module {module_name!r} has no attribute {attribute!r}: "
            "name an OptimizerEntry or a factory defined there"
        ) from None
    if isinstance(target, OptimizerEntry):
        return target
    if callable(target) and not isinstance(target, type):
        return _entry_from_factory(name, target)
    raise ValueError(
        f"optimizer {name!r} is a {type(target).__name__}, not an OptimizerEntry or a factory "
        "(keyword hyperparameters -> optax transform): point it at one"
    )


# Values the boundary check (`check_optimizer`) calls a factory with: small and valid for every
# hyperparameter (betas, decays and momenta in [0, 1), positive rates and epsilons).
PROBE_VALUE = 0.01


def check_optimizer(name: str) -> None:
    """ValueError in one line unless optimizer `name` (a registry name or the user's
    'module:factory') builds an optax transformation whose init and update run on a small
    params tree and return updates of the params' shapes. Traced abstractly (no compute), once
    per optimizer at config validation, so a broken factory fails before anything is written."""
    entry = optimizer_entry(name)
    kwargs = {FACTOR_TO_OPTAX[factor]: PROBE_VALUE for factor in entry.hyperparams}
    what = f"optimizer {name!r}" if name in OPTIMIZERS else f"optimizer factory {name!r}"
    try:
        built = entry.factory(**kwargs)
    except Exception as error:  # the user's factory, reported in one line
        raise ValueError(f"{what} raised {_one_line(error)} when called with {kwargs}: fix it") from None
    if not isinstance(built, optax.GradientTransformation):
        raise ValueError(
            f"{what} returned {built!r:.60} ({type(built).__name__}), not an optax.GradientTransformation: "
            "return one (e.g. optax.sgd(learning_rate))"
        )
    params = {"kernel": jnp.zeros((3, 2)), "bias": jnp.zeros((2,))}
    transform = make_transform(name, entry.hyperparams)
    values = {factor: jnp.float32(PROBE_VALUE) for factor in entry.hyperparams}

    def one_update(params):
        updates, _ = transform.update(params, init_state(transform, params, values), params)
        return updates

    try:
        updates = jax.eval_shape(one_update, params)
    except Exception as error:  # the user's transformation, reported in one line
        raise ValueError(f"{what}: its transformation's init or update fails ({_one_line(error)}): fix it") from None
    shapes = jax.tree.map(lambda leaf: (leaf.shape, jnp.dtype(leaf.dtype)), updates)
    if shapes != jax.tree.map(lambda leaf: (leaf.shape, leaf.dtype), params):
        raise ValueError(f"{what}: its update returns {shapes} for params {jax.tree.map(jnp.shape, params)}: fix it")


# ---------------------------------------------------------------- transforms and states


def make_transform(name: str, injected: Sequence[str], static: Values | None = None) -> optax.GradientTransformation:
    """The optimizer `name` with the factors `injected` per model (in state.hyperparams under
    their optax names, written by `init_state`) and every other hyperparameter it reads fixed
    at `static[factor]` or its default. `static` may name factors it does not read (one
    mapping serves every group); injected factors take no static value."""
    entry = optimizer_entry(name)
    injected, static = tuple(injected), dict(static or {})
    for factor in (*injected, *static):
        if factor not in FACTOR_TO_OPTAX:
            raise ValueError(
                f"unknown hyperparameter {factor!r} for optimizer {name!r}: choose from {sorted(FACTOR_TO_OPTAX)}"
            )
    unread = [f for f in injected if f not in entry.hyperparams]
    if unread:
        raise ValueError(
            f"optimizer {name!r} does not read {unread}: inject only its hyperparameters {entry.hyperparams}"
        )
    if len(set(injected)) != len(injected):
        raise ValueError(f"injected factors {injected} repeat a name: list each once")
    fixed = {}
    for factor in entry.hyperparams:
        if factor in injected:
            continue
        value = static.get(factor, entry.defaults.get(factor))
        if value is None:
            raise ValueError(f"optimizer {name!r} needs a value for {factor!r}: inject it or give it in static")
        fixed[FACTOR_TO_OPTAX[factor]] = float(value)
    names = [FACTOR_TO_OPTAX[f] for f in injected]

    def inner(**hyperparams):
        return entry.factory(**fixed, **hyperparams)

    # inject_hyperparams injects every numeric argument of the signature it sees: show only
    # the injected ones, so the fixed values stay Python floats outside the state.
    inner.__signature__ = inspect.Signature([inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY) for n in names])
    inner.__name__ = f"{entry.name}_factory"
    return optax.inject_hyperparams(inner)(**{n: 0.0 for n in names})


def init_state(transform: optax.GradientTransformation, params, values: Mapping[str, jax.Array]):
    """transform.init(params) with `values` (factor -> [] array, one per injected factor, no
    more, no fewer) written as float32 into state.hyperparams. vmap it for a population."""
    state = transform.init(params)
    hyperparams = dict(state.hyperparams)
    given = {FACTOR_TO_OPTAX.get(f, f): f for f in values}
    if set(given) != set(hyperparams):
        injected = sorted(OPTAX_TO_FACTOR.get(n, n) for n in hyperparams)
        raise ValueError(
            f"values give {sorted(values)} but the transform injects {injected}: give exactly the injected factors"
        )
    for optax_name, factor in given.items():
        hyperparams[optax_name] = jnp.asarray(values[factor], jnp.float32)
    return state._replace(hyperparams=hyperparams)


def set_learning_rate(state, lr: jax.Array):
    """`state` with its injected learning rate replaced by `lr` (for schedules in the step)."""
    if "learning_rate" not in state.hyperparams:
        raise ValueError("the learning rate is not injected: build the transform with 'lr' in injected")
    current = state.hyperparams["learning_rate"]
    return state._replace(hyperparams={**state.hyperparams, "learning_rate": jnp.asarray(lr, current.dtype)})
