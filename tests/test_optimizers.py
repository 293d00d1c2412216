"""The optimizer registry: every torch-backed entry against torch.optim (20 steps, then 5 more
from the moved state), per-model values under vmap, the old Adam/SGD state, custom entries."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxzoo.training.optimizers import (
    OPTIMIZERS,
    OptimizerEntry,
    check_optimizer,
    init_state,
    make_transform,
    optimizer_entry,
    register_optimizer,
    set_learning_rate,
    torch_state,
)

torch = pytest.importorskip("torch")

D, H, C, BATCH = 5, 8, 3, 16
STEPS, MORE = 20, 5
TORCH_ORDER = ("0.weight", "0.bias", "2.weight", "2.bias")  # nn.Sequential(Linear, Tanh, Linear)
_rng = np.random.default_rng(0)
X = _rng.normal(size=(STEPS + MORE, BATCH, D)).astype(np.float32)
Y = _rng.integers(0, C, size=(STEPS + MORE, BATCH)).astype(np.int32)
PARAMS0 = {
    "0.weight": _rng.normal(scale=0.5, size=(H, D)).astype(np.float32),
    "0.bias": _rng.normal(scale=0.1, size=(H,)).astype(np.float32),
    "2.weight": _rng.normal(scale=0.5, size=(C, H)).astype(np.float32),
    "2.bias": _rng.normal(scale=0.1, size=(C,)).astype(np.float32),
}

# Non-default values of every hyperparameter each entry reads.
CASES = {
    "adam": ("adam", {"lr": 2e-2, "weight_decay": 5e-2, "b1": 0.8, "b2": 0.99, "eps": 1e-6}),
    "sgd": ("sgd", {"lr": 1e-1, "weight_decay": 5e-2, "momentum": 0.7}),
    "sgd-m0": ("sgd", {"lr": 1e-1, "weight_decay": 5e-2, "momentum": 0.0}),
    "adamw": ("adamw", {"lr": 2e-2, "weight_decay": 1e-1, "b1": 0.85, "b2": 0.995, "eps": 1e-7}),
    "rmsprop": ("rmsprop", {"lr": 1e-2, "weight_decay": 5e-2, "momentum": 0.5, "alpha": 0.9, "eps": 1e-6}),
    "rmsprop-m0": ("rmsprop", {"lr": 1e-2, "weight_decay": 5e-2, "momentum": 0.0, "alpha": 0.95, "eps": 1e-7}),
    "adagrad": ("adagrad", {"lr": 5e-2, "weight_decay": 5e-2, "eps": 1e-4}),
    "nadam": ("nadam", {"lr": 2e-2, "weight_decay": 5e-2, "b1": 0.85, "b2": 0.99, "eps": 1e-7}),
}
TORCH_BACKED = sorted(name for name, entry in OPTIMIZERS.items() if entry.torch is not None)


def loss_fn(params, x, y):
    hidden = jnp.tanh(x @ params["0.weight"].T + params["0.bias"])
    logits = hidden @ params["2.weight"].T + params["2.bias"]
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()


grad_fn = jax.jit(jax.grad(loss_fn))


def to_torch(tree):
    return [np.asarray(tree[name]) for name in TORCH_ORDER]


@functools.cache
def jitted_update(name: str, injected: tuple[str, ...], static: tuple = ()):
    transform = make_transform(name, injected, dict(static))

    @jax.jit
    def update(params, state, grads):
        updates, state = transform.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    return transform, update


def run_jax(name, values, injected: bool, params, state=None, start=0, steps=STEPS):
    """`steps` optimizer steps on batches start.. -> (params, state)."""
    entry = optimizer_entry(name)
    factors = entry.hyperparams if injected else ()
    static = () if injected else tuple(sorted(values.items()))
    transform, update = jitted_update(name, factors, static)
    params = jax.tree.map(jnp.asarray, params)
    if state is None:
        state = init_state(transform, params, {f: values[f] for f in factors})
    for i in range(start, start + steps):
        params, state = update(params, state, grad_fn(params, X[i], Y[i]))
    return params, state


@functools.cache
def jax_trajectory(case: str, injected: bool):
    """-> (params after STEPS, state after STEPS, params after STEPS + MORE), numpy."""
    name, values = CASES[case]
    params, state = run_jax(name, values, injected, PARAMS0)
    later, _ = run_jax(name, values, injected, params, state, start=STEPS, steps=MORE)
    as_np = lambda tree: jax.tree.map(np.asarray, tree)
    return as_np(params), as_np(state), as_np(later)


def torch_model(params):
    model = torch.nn.Sequential(torch.nn.Linear(D, H), torch.nn.Tanh(), torch.nn.Linear(H, C))
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            parameter.copy_(torch.from_numpy(np.array(params[name])))
    return model


def torch_optimizer(name, values, model):
    entry = OPTIMIZERS[name]
    return getattr(torch.optim, entry.torch.class_name)(model.parameters(), **entry.torch.kwargs(values))


def torch_steps(model, optimizer, start, steps):
    for i in range(start, start + steps):
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(torch.from_numpy(X[i])), torch.from_numpy(Y[i]).long())
        loss.backward()
        optimizer.step()
    return {name: parameter.detach().numpy().copy() for name, parameter in model.named_parameters()}


def assert_params_close(got, want, tol=1e-5):
    for name in TORCH_ORDER:
        np.testing.assert_allclose(got[name], want[name], rtol=tol, atol=tol, err_msg=name)


def test_every_torch_entry_is_tested():
    assert sorted({name for name, _ in CASES.values()}) == TORCH_BACKED
    assert set(TORCH_BACKED) >= {"adam", "sgd", "adamw", "rmsprop", "adagrad", "nadam"}


@pytest.mark.parametrize("injected", [True, False], ids=["injected", "static"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_matches_torch_optim(case, injected):
    name, values = CASES[case]
    got, _, _ = jax_trajectory(case, injected)
    model = torch_model(PARAMS0)
    want = torch_steps(model, torch_optimizer(name, values, model), 0, STEPS)
    assert_params_close(got, want)
    moved = max(np.abs(got[k] - PARAMS0[k]).max() for k in TORCH_ORDER)
    assert moved > 1e-2  # the comparison is not vacuous


@pytest.mark.parametrize("case", sorted(CASES))
def test_state_continues_in_torch(case):
    name, values = CASES[case]
    entry = OPTIMIZERS[name]
    params, state, later = jax_trajectory(case, True)
    model = torch_model(params)
    optimizer = torch_optimizer(name, values, model)
    fresh = optimizer.state_dict()
    moved = torch_state(entry, state, values, to_torch)
    optimizer.load_state_dict({"state": moved, "param_groups": fresh["param_groups"]})
    assert_params_close(torch_steps(model, optimizer, STEPS, MORE), later)

    tensors, step = entry.torch.buffers(state, values)
    assert step == (None if name == "sgd" else STEPS)
    if tensors:  # a fresh torch state continues differently: the moved state is what matters
        model = torch_model(params)
        restarted = torch_steps(model, torch_optimizer(name, values, model), STEPS, MORE)
        assert max(np.abs(restarted[k] - later[k]).max() for k in TORCH_ORDER) > 1e-4
    else:
        assert values["momentum"] == 0.0


@pytest.mark.parametrize("case", sorted(CASES))
def test_learning_rate_schedule_matches_torch(case):
    """lr changed before each step (set_learning_rate / param_groups): buffers that fold lr
    in (optax.rmsprop's momentum trace) would drift from PyTorch's here."""
    name, values = CASES[case]
    transform, update = jitted_update(name, OPTIMIZERS[name].hyperparams)
    params = jax.tree.map(jnp.asarray, PARAMS0)
    state = init_state(transform, params, values)
    model = torch_model(PARAMS0)
    optimizer = torch_optimizer(name, values, model)
    for i in range(10):
        lr = values["lr"] * (1.0 - 0.09 * i)
        state = set_learning_rate(state, lr)
        params, state = update(params, state, grad_fn(params, X[i], Y[i]))
        optimizer.param_groups[0]["lr"] = lr
        want = torch_steps(model, optimizer, i, 1)
    assert_params_close(jax.tree.map(np.asarray, params), want)


def test_nadam_moves_mu_product():
    _, state, _ = jax_trajectory("nadam", True)
    tensors, _ = OPTIMIZERS["nadam"].torch.buffers(state, CASES["nadam"][1])
    assert isinstance(tensors["mu_product"], float) and 0 < tensors["mu_product"] < 1e-5


def other_values(name):
    """A second model's values, each hyperparameter different from the first's."""
    values = {**OPTIMIZERS[name].defaults, "lr": 1e-2, "weight_decay": 1e-2}
    if name in CASES:
        values.update(CASES[name][1])
    changed = {f: v * 0.5 if f in ("lr", "weight_decay", "eps") else v * 0.9 for f, v in values.items()}
    if "momentum" in values:
        changed["momentum"] = 0.3
    return values, changed


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_vmap_gives_each_model_its_own_values(name):
    """Two models, every hyperparameter different, updated under vmap == each alone (to an ulp
    or so: XLA may evaluate b**t differently batched; gradients are computed per model)."""
    entry = OPTIMIZERS[name]
    first, second = other_values(name)
    transform, update = jitted_update(name, entry.hyperparams)
    pair = {f: jnp.asarray([first[f], second[f]], jnp.float32) for f in entry.hyperparams}
    stack = lambda trees: jax.tree.map(lambda *a: jnp.stack(a), *trees)
    params = stack([PARAMS0, PARAMS0])
    state = jax.vmap(lambda p, v: init_state(transform, p, v))(params, pair)
    batched = jax.jit(jax.vmap(update))
    alone = [
        (p, init_state(transform, p, v))
        for p, v in ((jax.tree.map(jnp.asarray, PARAMS0), values) for values in (first, second))
    ]
    for i in range(5):
        grads = [grad_fn(p, X[i], Y[i]) for p, _ in alone]
        params, state = batched(params, state, stack(grads))
        alone = [update(p, s, g) for (p, s), g in zip(alone, grads)]
    for m in range(2):
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a[m], b, rtol=1e-6, atol=1e-7), (params, state), alone[m])
    assert max(np.abs(alone[0][0][k] - alone[1][0][k]).max() for k in TORCH_ORDER) > 1e-3


# ------------------------------------------------------------------ checkpoint compatibility


def old_transform(name, momentum=0.9):
    """The previous jaxzoo.training.optimizers.make_transform, inline."""
    if name == "adam":
        inner = lambda lr: optax.adam(lr, b1=0.9, b2=0.999, eps=1e-8)
    else:
        inner = lambda lr: optax.sgd(lr, momentum=momentum or None)

    def factory(learning_rate, weight_decay):
        return optax.chain(optax.add_decayed_weights(weight_decay), inner(learning_rate))

    return optax.inject_hyperparams(factory)(learning_rate=0.0, weight_decay=0.0)


def old_init(transform, params, lr, weight_decay):
    state = transform.init(params)
    state.hyperparams["learning_rate"] = jnp.asarray(lr, jnp.float32)
    state.hyperparams["weight_decay"] = jnp.asarray(weight_decay, jnp.float32)
    return state


@pytest.mark.parametrize("name,momentum", [("adam", None), ("sgd", None), ("sgd", 0.0)])
def test_old_adam_sgd_state_and_updates_unchanged(name, momentum):
    static = {} if momentum is None else {"momentum": momentum}
    new = make_transform(name, ("lr", "weight_decay"), static)
    old = old_transform(name, 0.9 if momentum is None else momentum)
    params = jax.tree.map(jnp.asarray, PARAMS0)
    new_state = init_state(new, params, {"lr": 3e-2, "weight_decay": 1e-2})
    old_state = old_init(old, params, 3e-2, 1e-2)
    assert jax.tree.structure(new_state) == jax.tree.structure(old_state)
    assert sorted(new_state.hyperparams) == ["learning_rate", "weight_decay"]
    spec = lambda s: [(a.shape, a.dtype) for a in jax.tree.leaves(s)]
    assert spec(new_state) == spec(old_state)
    # Adam's bias corrections are now multiplications by their reciprocals (what XLA made of
    # optax's divisions in some programs and not in others): an ulp per step, which three
    # steps of training carry to 1e-5 of the updates (measured).
    same = np.testing.assert_array_equal
    if name == "adam":
        same = lambda got, want: np.testing.assert_allclose(got, want, rtol=1e-4, atol=0)
    for i in range(3):
        grads = grad_fn(params, X[i], Y[i])
        updates, old_state_next = old.update(grads, old_state, params)
        new_updates, new_state = new.update(grads, new_state, params)
        restored_updates, _ = new.update(grads, old_state, params)  # an old checkpoint's state
        for got in (new_updates, restored_updates):
            jax.tree.map(same, got, updates)
        params, old_state = optax.apply_updates(params, updates), old_state_next
    jax.tree.map(same, new_state, old_state)


def test_set_learning_rate_under_vmap():
    transform = make_transform("adam", ("lr", "weight_decay"))
    params = jax.tree.map(lambda a: jnp.stack([a, a]), PARAMS0)
    values = {"lr": jnp.asarray([1e-2, 2e-2]), "weight_decay": jnp.zeros(2)}
    state = jax.vmap(lambda p, v: init_state(transform, p, v))(params, values)
    state = jax.vmap(set_learning_rate)(state, jnp.asarray([5e-3, 7e-3]))
    np.testing.assert_array_equal(state.hyperparams["learning_rate"], np.float32([5e-3, 7e-3]))
    assert state.hyperparams["learning_rate"].dtype == jnp.float32
    with pytest.raises(ValueError, match="not injected"):
        set_learning_rate(make_transform("adam", (), {"lr": 1e-3, "weight_decay": 0}).init(PARAMS0), 1e-3)


# ------------------------------------------------------------------ registry


def my_factory(learning_rate, weight_decay, momentum=0.5):
    return optax.chain(optax.add_decayed_weights(weight_decay), optax.sgd(learning_rate, momentum=momentum))


MY_ENTRY = OptimizerEntry(
    "my_sgd",
    my_factory,
    ("lr", "weight_decay", "momentum"),
    {"momentum": 0.5},
    None,
    no_torch_reason="A test optimizer.",
)
NOT_AN_OPTIMIZER = 3


def needs_mask_factory(learning_rate, weight_decay, mask):
    return optax.adamw(learning_rate, weight_decay=weight_decay, mask=mask)


def no_decay_factory(learning_rate):
    return optax.sgd(learning_rate)


def test_builtin_entries_are_consistent():
    for name, entry in OPTIMIZERS.items():
        assert entry.name == name and entry.hyperparams[:2] == ("lr", "weight_decay")
        assert set(entry.defaults) == set(entry.hyperparams[2:])
        if entry.torch is not None:
            assert hasattr(torch.optim, entry.torch.class_name)
    assert OPTIMIZERS["sgd"].defaults["momentum"] == 0.9
    assert OPTIMIZERS["sgd"].resolve({"lr": 0.1, "weight_decay": 0, "b1": 0.5}) == {
        "lr": 0.1,
        "weight_decay": 0.0,
        "momentum": 0.9,
    }
    assert {n for n, e in OPTIMIZERS.items() if e.weight_decay == "decoupled"} == {"adamw", "lion"}
    lion = OPTIMIZERS["lion"]
    assert lion.torch is None and not hasattr(torch.optim, "Lion")
    assert lion.no_torch_reason.endswith(".") and "Lion" in lion.no_torch_reason


def test_custom_factory_and_entry_by_path():
    spec = f"{__name__}:my_factory"
    entry = optimizer_entry(spec)
    assert entry.hyperparams == ("lr", "weight_decay", "momentum") and entry.defaults == {"momentum": 0.5}
    assert entry.torch is None and spec in entry.no_torch_reason
    transform = make_transform(spec, ("lr", "weight_decay"))
    params = jax.tree.map(jnp.asarray, PARAMS0)
    state = init_state(transform, params, {"lr": 1e-1, "weight_decay": 1e-2})
    grads = grad_fn(params, X[0], Y[0])
    got, _ = transform.update(grads, state, params)
    reference = my_factory(1e-1, 1e-2)
    want, _ = reference.update(grads, reference.init(params), params)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-7), got, want)
    assert optimizer_entry(f"{__name__}:MY_ENTRY") is MY_ENTRY


def test_register_optimizer():
    with pytest.raises(ValueError, match="built in"):
        register_optimizer(OptimizerEntry("adam", my_factory, ("lr", "weight_decay"), {}, None, no_torch_reason="x."))
    register_optimizer(MY_ENTRY)
    try:
        assert optimizer_entry("my_sgd") is MY_ENTRY
        make_transform("my_sgd", ("lr", "weight_decay", "momentum"))
    finally:
        OPTIMIZERS.pop("my_sgd")
    with pytest.raises(ValueError, match="no_torch_reason"):
        OptimizerEntry("x", my_factory, ("lr", "weight_decay"), {}, None)


@pytest.mark.parametrize(
    "spec,words",
    [
        ("adamx", ["unknown optimizer 'adamx'", "package.module:factory", "adam"]),
        ("no_such_module_xyz:factory", ["cannot import", "no_such_module_xyz", "PYTHONPATH"]),
        (f"{__name__}:missing", ["no attribute 'missing'"]),
        (f"{__name__}:NOT_AN_OPTIMIZER", ["is a int", "point it at one"]),
        ("a:b:c", ["form"]),
        (f"{__name__}:needs_mask_factory", ["requires ['mask']", "give them defaults"]),
        (f"{__name__}:no_decay_factory", ["does not take ['weight_decay']", "keyword parameters"]),
    ],
)
def test_bad_names_raise_one_line(spec, words):
    with pytest.raises(ValueError) as info:
        optimizer_entry(spec)
    message = str(info.value)
    assert "\n" not in message and ": " in message
    for word in words:
        assert word in message


def test_bad_hyperparameters_raise_one_line():
    cases = [
        (lambda: make_transform("adam", ("lr", "weight_decay", "momentum")), "does not read ['momentum']"),
        (lambda: make_transform("adam", ("lr",)), "needs a value for 'weight_decay'"),
        (lambda: make_transform("adam", ("lr", "weight_decay"), {"lrr": 1.0}), "unknown hyperparameter 'lrr'"),
        (
            lambda: init_state(make_transform("sgd", ("lr", "weight_decay")), PARAMS0, {"lr": 0.1}),
            "exactly the injected",
        ),
    ]
    for call, words in cases:
        with pytest.raises(ValueError) as info:
            call()
        assert words in str(info.value) and "\n" not in str(info.value)


def raising_factory(learning_rate, weight_decay):
    raise RuntimeError("the user's factory failed")


def int_factory(learning_rate, weight_decay):
    return 42


def wrong_update_factory(learning_rate, weight_decay):
    return optax.GradientTransformation(lambda params: (), lambda updates, state, params=None: ({"x": 1}, state))


@pytest.mark.parametrize(
    "factory,words",
    [
        ("raising_factory", ["raised RuntimeError: the user's factory failed", "learning_rate"]),
        ("int_factory", ["returned 42 (int)", "not an optax.GradientTransformation"]),
        ("wrong_update_factory", ["its update returns", "for params"]),
    ],
)
def test_user_factories_are_tried_once_and_fail_in_one_line(factory, words):
    """check_optimizer (config validation) builds the user's factory and traces one update."""
    with pytest.raises(ValueError) as info:
        check_optimizer(f"{__name__}:{factory}")
    assert "\n" not in str(info.value) and f"optimizer factory '{__name__}:{factory}'" in str(info.value)
    for word in words:
        assert word in str(info.value)
    check_optimizer(f"{__name__}:my_factory")  # a working one passes
    for name in OPTIMIZERS:
        check_optimizer(name)
