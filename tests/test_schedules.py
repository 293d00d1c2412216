"""OneCycleLR and the SGD it drives against PyTorch, step by step and per model under vmap."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

torch = pytest.importorskip("torch")

from jaxzoo.training.schedules import make_one_cycle_sgd, one_cycle, schedule_options, set_one_cycle


def torch_one_cycle(total_steps, max_lr, **kwargs):
    """(lr, momentum) read from the optimizer before each of the run's optimizer steps."""
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([param], lr=max_lr, momentum=0.9)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=max_lr, total_steps=total_steps, **kwargs)
    lrs, momenta = [], []
    for _ in range(total_steps):
        lrs.append(optimizer.param_groups[0]["lr"])
        momenta.append(optimizer.param_groups[0]["momentum"])
        optimizer.step()
        scheduler.step()
    return np.array(lrs), np.array(momenta)


@pytest.mark.parametrize(
    "total_steps, max_lr, kwargs",
    [
        (157 * 3, 0.05, {}),
        (37, 0.1, {}),
        (10, 0.2, {}),  # 0.3 * 10 is 3.0000000000000004: the boundary step stays in phase 1
        (50, 0.01, dict(pct_start=0.25, div_factor=10.0, final_div_factor=100.0, base_momentum=0.8, max_momentum=0.9)),
    ],
)
def test_one_cycle_matches_torch_every_step(total_steps, max_lr, kwargs):
    want_lr, want_momentum = torch_one_cycle(total_steps, max_lr, **kwargs)
    steps = jnp.arange(total_steps)
    got_lr, got_momentum = jax.jit(jax.vmap(lambda s: one_cycle(s, total_steps, max_lr, **kwargs)))(steps)
    assert got_lr.dtype == jnp.float32 and got_momentum.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(got_lr, np.float64), want_lr, rtol=1e-6, atol=0)
    np.testing.assert_allclose(np.asarray(got_momentum, np.float64), want_momentum, rtol=1e-6, atol=0)
    # The schedule's landmarks, independently of torch.
    assert got_lr[0] == pytest.approx(max_lr / kwargs.get("div_factor", 25.0), rel=1e-6)
    assert max_lr * 0.99 < float(jnp.max(got_lr)) <= max_lr * (1 + 1e-6)


def test_one_cycle_python_int_step_equals_traced_step():
    for step in (0, 140, 141, 470):
        eager = one_cycle(step, 471, 0.05)
        traced = jax.jit(lambda s: one_cycle(s, 471, 0.05))(jnp.int32(step))
        assert [float(v) for v in eager] == [float(v) for v in traced]


def test_one_cycle_per_model_max_lr_under_vmap():
    max_lrs = jnp.array([0.05, 0.1, 0.003], jnp.float32)
    steps = jnp.array([0, 57, 300], jnp.int32)  # each model at its own step, too
    batched = jax.jit(jax.vmap(lambda s, m: one_cycle(s, 471, m)))(steps, max_lrs)
    for i in range(3):
        single = one_cycle(int(steps[i]), 471, float(max_lrs[i]))
        # Equal up to float32 rounding (XLA may fuse the batched and scalar forms differently).
        assert float(batched[0][i]) == pytest.approx(float(single[0]), rel=1e-6)
        assert float(batched[1][i]) == pytest.approx(float(single[1]), rel=1e-6)
    # Same step, different max_lr: the learning rates differ, the momenta do not.
    lrs, momenta = jax.vmap(lambda m: one_cycle(100, 471, m))(max_lrs)
    assert len(set(np.asarray(lrs).tolist())) == 3
    assert len(set(np.asarray(momenta).tolist())) == 1


def test_one_cycle_rejects_degenerate_phases():
    with pytest.raises(ValueError):
        one_cycle(0, 3, 0.1)  # 0.3 * 3 - 1 < 0
    with pytest.raises(ValueError):
        one_cycle(0, 0, 0.1)


def test_one_cycle_sgd_matches_torch_trajectory():
    """Linear regression, 20 SGD steps with coupled L2 and one-cycle lr + momentum."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 5)).astype(np.float32)
    y = (x @ rng.normal(size=(5, 1)) + 0.1 * rng.normal(size=(32, 1))).astype(np.float32)
    w0 = rng.normal(size=(5, 1)).astype(np.float32)
    b0 = rng.normal(size=(1,)).astype(np.float32)
    total, max_lr, wd = 20, 0.1, 5e-4

    tw = torch.nn.Parameter(torch.tensor(w0))
    tb = torch.nn.Parameter(torch.tensor(b0))
    optimizer = torch.optim.SGD([tw, tb], lr=max_lr, momentum=0.9, weight_decay=wd)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=max_lr, total_steps=total)
    tx, ty = torch.tensor(x), torch.tensor(y)
    want = []
    for _ in range(total):
        optimizer.zero_grad()
        torch.mean((tx @ tw + tb - ty) ** 2).backward()
        optimizer.step()
        scheduler.step()
        want.append(np.concatenate([tw.detach().numpy().ravel(), tb.detach().numpy()]))

    transform = make_one_cycle_sgd(weight_decay=wd)
    loss = lambda p: jnp.mean((x @ p["w"] + p["b"] - y) ** 2)

    @jax.jit
    def train_step(params, state, step):
        state = set_one_cycle(state, step, total, max_lr)
        updates, state = transform.update(jax.grad(loss)(params), state, params)
        return optax.apply_updates(params, updates), state

    params = {"w": jnp.asarray(w0), "b": jnp.asarray(b0)}
    state = transform.init(params)
    got = []
    for step in range(total):
        params, state = train_step(params, state, jnp.int32(step))
        got.append(np.concatenate([np.asarray(params["w"]).ravel(), np.asarray(params["b"])]))
    got, want = np.array(got), np.array(want)
    assert np.max(np.abs(got[-1] - got[0])) > 0.1  # the run moves
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_one_cycle_sgd_momentum_is_read_every_step():
    """First update -lr1 * g1 (torch's buffer is clone(g)); then buf = m2 * buf + g2."""
    wd = 0.01
    transform = make_one_cycle_sgd(weight_decay=wd)
    params = {"w": jnp.array([1.0, 2.0, -3.0])}
    state = transform.init(params)
    g1, g2 = jnp.array([1.0, -2.0, 0.5]), jnp.array([0.3, 0.1, -1.0])
    hp = lambda st, lr, m: st._replace(
        hyperparams=dict(st.hyperparams, learning_rate=jnp.float32(lr), momentum=jnp.float32(m))
    )
    u1, state = transform.update({"w": g1}, hp(state, 0.1, 0.95), params)
    d1 = g1 + wd * params["w"]
    np.testing.assert_allclose(u1["w"], -0.1 * d1, rtol=1e-6)
    params2 = optax.apply_updates(params, u1)
    u2, _ = transform.update({"w": g2}, hp(state, 0.2, 0.5), params2)
    d2 = g2 + wd * params2["w"]
    np.testing.assert_allclose(u2["w"], -0.2 * (0.5 * d1 + d2), rtol=1e-6)


@pytest.mark.parametrize(
    "name,given,words",
    [
        ("step", {"gamma": "big"}, "step.gamma='big' is not a number in (0.0, 1.0]"),
        ("step", {"every_epochs": 2.5}, "step.every_epochs=2.5 is not an integer"),
        ("step", {"gamma": True}, "is not a number"),
        ("one_cycle", {"pct_start": 1.0}, "one_cycle.pct_start=1.0"),
        ("warmup_cosine", {"warmup_fraction": float("nan")}, "warmup_fraction=nan"),
        ("cosine", 1, "must be a dict"),
    ],
)
def test_schedule_options_of_the_wrong_type_or_range_are_refused(name, given, words):
    with pytest.raises(ValueError) as info:
        schedule_options(name, given)
    assert words in str(info.value) and "\n" not in str(info.value)
    assert schedule_options("step", {"gamma": 0.5, "every_epochs": 3}) == {"gamma": 0.5, "every_epochs": 3}
