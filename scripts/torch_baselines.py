"""PyTorch references for scripts/bench_train.py (needs torch).

- `original`: CNN-s trained as the original zoos did: one model per process, batch 10, Adam,
  its own shuffled order (FastTensorDataLoader slicing), one process per core, all cores busy.
- `ensemble`: a torch.func ensemble of M models (stack_module_state + functional_call + vmap),
  per-model batches of 10, Adam applied to the stacked parameters, all threads of the machine.
Both return model-samples/s over the timed window (warm-up excluded).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import time

import numpy as np


def _train_one_process(seed: int, seconds: float, images: np.ndarray, labels: np.ndarray, queue) -> None:
    import torch

    from jaxzoo.torch import ZooCNN

    torch.set_num_threads(1)
    torch.manual_seed(seed)
    model = ZooCNN("cnn_s", "tanh", 0.0, images.shape[1])
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-4)
    x, y = torch.from_numpy(images), torch.from_numpy(labels).long()
    n, batch, steps = len(y), 10, 0
    perm, position = torch.randperm(n), 0

    def step():
        nonlocal perm, position
        if position + batch > n:
            perm, position = torch.randperm(n), 0
        idx = perm[position : position + batch]
        position += batch
        optimizer.zero_grad()
        loss = torch.nn.functional.nll_loss(torch.log_softmax(model(x[idx]), 1), y[idx])
        loss.backward()
        optimizer.step()

    for _ in range(50):  # warm-up
        step()
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        step()
        steps += 1
    queue.put(steps * batch / (time.perf_counter() - start))


def original(images_nchw: np.ndarray, labels: np.ndarray, seconds: float, processes: int | None = None) -> float:
    """Total model-samples/s of `processes` (default: all cores) single-threaded trainers."""
    processes = processes or os.cpu_count()
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    workers = [
        ctx.Process(target=_train_one_process, args=(i, seconds, images_nchw, labels, queue)) for i in range(processes)
    ]
    for w in workers:
        w.start()
    rates = [queue.get() for _ in workers]
    for w in workers:
        w.join()
    return float(sum(rates))


def ensemble(images_nchw: np.ndarray, labels: np.ndarray, models: int, seconds: float) -> float:
    """model-samples/s of a torch.func ensemble of `models` CNN-s with per-model batches."""
    import torch
    from torch.func import functional_call, grad, stack_module_state, vmap

    from jaxzoo.torch import ZooCNN

    torch.set_num_threads(os.cpu_count())
    nets = [ZooCNN("cnn_s", "tanh", 0.0, images_nchw.shape[1]) for _ in range(models)]
    params, buffers = stack_module_state(nets)
    base = ZooCNN("cnn_s", "tanh", 0.0, images_nchw.shape[1]).to("meta")
    x_all, y_all = torch.from_numpy(images_nchw), torch.from_numpy(labels).long()

    def loss_fn(p, b, x, y):
        logits = functional_call(base, (p, b), (x,))
        return torch.nn.functional.nll_loss(torch.log_softmax(logits, 1), y)

    grads_fn = vmap(grad(loss_fn), in_dims=(0, 0, 0, 0))
    m = {k: torch.zeros_like(v) for k, v in params.items()}
    v = {k: torch.zeros_like(t) for k, t in params.items()}
    n, batch, t = len(y_all), 10, 0

    def step():
        nonlocal t
        idx = torch.stack([torch.randint(0, n, (batch,)) for _ in range(models)])
        grads = grads_fn(params, buffers, x_all[idx], y_all[idx])
        t += 1
        with torch.no_grad():
            for k, g in grads.items():
                m[k].mul_(0.9).add_(g, alpha=0.1)
                v[k].mul_(0.999).addcmul_(g, g, value=0.001)
                params[k].sub_(3e-4 * (m[k] / (1 - 0.9**t)) / ((v[k] / (1 - 0.999**t)).sqrt() + 1e-8))

    for _ in range(5):
        step()
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        step()
        steps += 1
    return steps * batch * models / (time.perf_counter() - start)
