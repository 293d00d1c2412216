"""Adam and SGD with coupled L2 against PyTorch's update rules, per model under vmap (one
optimizer per group of models, learning rate and weight decay injected)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxzoo.training.optimizers import init_state, make_transform


def pytorch_adam_reference(w, grads_fn, lr, wd, steps, betas=(0.9, 0.999), eps=1e-8):
    """torch.optim.Adam (amsgrad=False, maximize=False): L2 added to the gradient."""
    m = np.zeros_like(w)
    v = np.zeros_like(w)
    for t in range(1, steps + 1):
        g = grads_fn(w) + wd * w
        m = betas[0] * m + (1 - betas[0]) * g
        v = betas[1] * v + (1 - betas[1]) * g * g
        m_hat = m / (1 - betas[0] ** t)
        v_hat = v / (1 - betas[1] ** t)
        w = w - lr * m_hat / (np.sqrt(v_hat) + eps)
    return w


def pytorch_sgd_reference(w, grads_fn, lr, wd, steps, momentum=0.9):
    """torch.optim.SGD (dampening 0, nesterov False): buf = g on the first step."""
    buf = None
    for _ in range(steps):
        g = grads_fn(w) + wd * w
        buf = g if buf is None else momentum * buf + g
        w = w - lr * buf
    return w


TARGET = np.array([1.0, -2.0, 0.5, 3.0])


def toy_grad(w):
    return 2 * (w - TARGET) + np.sin(w)  # a non-quadratic toy loss' gradient


def run_group(name, lrs, wds, steps):
    """A group of len(lrs) models with optimizer `name` (SGD momentum 0.9), each its own lr/wd."""
    transform = make_transform(name, ("lr", "weight_decay"), {"momentum": 0.9})
    params = {"w": jnp.full((len(lrs), 4), 0.3, jnp.float32)}
    values = {"lr": jnp.asarray(lrs, jnp.float32), "weight_decay": jnp.asarray(wds, jnp.float32)}
    state = jax.vmap(lambda p, v: init_state(transform, p, v))(params, values)

    def one(params, state):
        grads = {"w": 2 * (params["w"] - TARGET) + jnp.sin(params["w"])}
        updates, state = transform.update(grads, state, params)
        return jax.tree.map(lambda p, u: p + u, params, updates), state

    step = jax.jit(jax.vmap(one))
    for _ in range(steps):
        params, state = step(params, state)
    return np.asarray(params["w"])


@pytest.mark.parametrize("name", ["adam", "sgd"])
def test_group_matches_pytorch_rules(name):
    lrs, wds = [1e-2, 3e-2, 5e-3], [0.0, 1e-1, 1e-2]
    got = run_group(name, lrs, wds, steps=25)
    reference = pytorch_adam_reference if name == "adam" else pytorch_sgd_reference
    for i in range(len(lrs)):
        ref = reference(np.full(4, 0.3), toy_grad, lrs[i], wds[i], 25)
        np.testing.assert_allclose(got[i], ref, rtol=2e-5, atol=2e-6)


def test_weight_decay_is_coupled_not_decoupled():
    """With Adam, coupled L2 goes through the moment normalisation; AdamW's would not."""
    got = run_group("adam", [1e-2], [0.5], steps=10)[0]
    w = np.full(4, 0.3)
    decoupled = w.copy()
    m = v = np.zeros(4)
    for t in range(1, 11):
        g = toy_grad(decoupled)
        m = 0.9 * m + 0.1 * g
        v = 0.999 * v + 0.001 * g * g
        decoupled = decoupled - 1e-2 * (m / (1 - 0.9**t) / (np.sqrt(v / (1 - 0.999**t)) + 1e-8) + 0.5 * decoupled)
    assert np.abs(got - decoupled).max() > 1e-4
    np.testing.assert_allclose(got, pytorch_adam_reference(w, toy_grad, 1e-2, 0.5, 10), rtol=2e-5, atol=2e-6)


@pytest.mark.parametrize("name", ["adam", "sgd"])
def test_against_torch_optim(name):
    torch = pytest.importorskip("torch")
    lr, wd = 2e-2, 1e-2
    w = torch.nn.Parameter(torch.full((4,), 0.3, dtype=torch.float64))
    opt = (
        torch.optim.Adam([w], lr=lr, weight_decay=wd)
        if name == "adam"
        else torch.optim.SGD([w], lr=lr, momentum=0.9, weight_decay=wd)
    )
    for _ in range(20):
        opt.zero_grad()
        loss = ((w - torch.tensor(TARGET)) ** 2).sum() - torch.cos(w).sum()
        loss.backward()
        opt.step()
    got = run_group(name, [lr], [wd], steps=20)[0]
    np.testing.assert_allclose(got, w.detach().numpy(), rtol=2e-5, atol=2e-6)
