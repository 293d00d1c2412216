"""Evaluating many weight vectors on a zoo's data: generated, edited or exported flat vectors
scored the way training scored its models.

`evaluate(vectors, zoo_or_workdir)` maps vectors [N, P] (the export's layout) to Flax params
(`adapters.to_flax`) and runs them `MODEL_CHUNK` at a time, vmapped and jitted, so memory is that
of a chunk whatever N. Classification zoos (built-in CNNs / MLPs, custom modules): the zoo's own
Flax model in eval mode on a split of its data, normalised as in training; loss and accuracy as
training's evaluation computes them (`training.steps.nll_and_correct`, summed per image batch).
INR zoos: the SIREN reconstruction of the image each vector fits (`InrZoo.reconstruct`, the
training's sine) against the image; MSE and PSNR as training records them. ResNet-18 vectors
hold no BatchNorm statistics, so they cannot be evaluated alone.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxzoo.data import normalise
from jaxzoo.inr import siren
from jaxzoo.inr.zoo import InrZoo
from jaxzoo.training.precision import cast_for_compute, with_precision
from jaxzoo.training.steps import eval_batches, nll_and_correct
from jaxzoo.weights.adapters import AdapterError, flax_inverse, open_zoo, to_flax
from jaxzoo.weights.vectors import split_name
from jaxzoo.zoo.reader import Zoo

MODEL_CHUNK = 64  # models per compiled call
IMAGE_BATCH = 500  # images per step of the scan over a split


def evaluate(
    vectors,
    zoo: Zoo | InrZoo | str | os.PathLike,
    split: str = "test",
    activation: str | Sequence[str] | None = None,
    image: Sequence[int] | None = None,
    chunk: int = MODEL_CHUNK,
) -> dict[str, np.ndarray]:
    """Scores of vectors [N, P] (rows of the zoo's export) on the zoo's data.

    Classification zoos -> {"accuracy": [N], "loss": [N]} (fraction correct, mean NLL) on
    `split` ('train', 'val' or 'test'); `activation` is the models' activation (one name or
    one per row, e.g. the split's `properties["activation"]`), needed when the zoo mixes them.
    INR zoos -> {"mse": [N], "psnr": [N] (dB)}; `image` [N] is the image each row fits (the
    split's `properties["image"]`); `split` is not used. float64 arrays."""
    zoo = open_zoo(zoo)
    rows = np.asarray(vectors, np.float32)
    rows = rows[None] if rows.ndim == 1 else rows
    if chunk < 1:
        raise AdapterError(f"chunk={chunk}: pass a positive number of models per call")
    if isinstance(zoo, InrZoo):
        return _evaluate_inr(rows, zoo, image, chunk)
    return _evaluate_classifier(rows, zoo, split, activation, chunk)


def _chunks(count: int, chunk: int):
    for start in range(0, count, chunk):
        yield np.arange(start, min(start + chunk, count))


def _padded(params: dict, size: int) -> dict:
    """Params [n, ...] -> [size, ...], the last model repeated: every call has the same shapes."""
    return jax.tree.map(lambda a: np.concatenate([a, np.repeat(a[-1:], size - len(a), axis=0)]), params)


def _activations(zoo: Zoo, activation, count: int) -> np.ndarray:
    if activation is None:
        names = sorted({row["activation"] for row in zoo.table})
        if len(names) > 1:
            raise AdapterError(
                f"the zoo mixes activations {names}: pass activation= (one name, or one per row such as the "
                "split's properties['activation'])"
            )
        return np.array(names * count)
    names = np.array([activation] * count if isinstance(activation, str) else list(activation))
    if len(names) != count:
        raise AdapterError(f"{len(names)} activations for {count} vectors: pass one per row, or one name")
    known = sorted({row["activation"] for row in zoo.table})
    unknown = sorted(set(names.tolist()) - set(known))
    if unknown:
        raise AdapterError(f"activations {unknown} are not the zoo's: pass one of {known} per row")
    return names


@functools.lru_cache(maxsize=16)
def _classifier(model, compute_dtype: str):
    """Compiled (params [m, ...], x [nb, b, H, W, C], y [nb, b], mask [nb, b]) -> (loss sum [m],
    correct [m]): each model's eval-mode logits, summed per image batch as training's evaluation."""

    def logits(params, x):
        out = model.apply(
            {"params": cast_for_compute(params, compute_dtype)}, cast_for_compute(x, compute_dtype), 0, 0.0, train=False
        )
        return out.astype(jnp.float32)

    def scores(params, x, y, mask):
        def body(totals, batch):
            xb, yb, mb = batch
            out = jax.vmap(logits, in_axes=(0, None))(params, xb)
            loss, correct = jax.vmap(nll_and_correct, in_axes=(0, None, None))(out, yb, mb)
            return (totals[0] + loss, totals[1] + correct), None

        m = jax.tree.leaves(params)[0].shape[0]
        zeros = (jnp.zeros((m,), jnp.float32), jnp.zeros((m,), jnp.float32))
        totals, _ = jax.lax.scan(body, zeros, (x, y, mask))
        return totals

    return jax.jit(with_precision(scores, compute_dtype))


def _evaluate_classifier(rows: np.ndarray, zoo: Zoo, split: str, activation, chunk: int) -> dict[str, np.ndarray]:
    if zoo.is_resnet:
        raise AdapterError(
            "ResNet-18 vectors hold the trainable parameters only, not the BatchNorm statistics the "
            "network needs: evaluate the exported trials' state_dicts with the export's model.py instead"
        )
    split = split_name(split)
    dataset = zoo.dataset()
    images, labels = getattr(dataset, split)
    if not len(labels):
        raise AdapterError(f"the zoo's data has no {split} split: evaluate on another split")
    x, y, mask = eval_batches(normalise(images, dataset.mean, dataset.std), labels, IMAGE_BATCH)
    names = _activations(zoo, activation, len(rows))
    compute_dtype = zoo.config["training"].get("compute_dtype", "float32")
    loss, correct = np.zeros(len(rows)), np.zeros(len(rows))
    inverse = flax_inverse(zoo)
    for name in sorted(set(names)):
        scores = _classifier(zoo.model(str(name)), compute_dtype)
        members = np.flatnonzero(names == name)
        for part in _chunks(len(members), chunk):
            picked = members[part]
            params = _padded(to_flax(rows[picked], inverse), min(chunk, len(members)))
            loss_sum, hits = scores(params, x, y, mask)
            loss[picked] = np.asarray(loss_sum, np.float64)[: len(picked)] / len(labels)
            correct[picked] = np.asarray(hits, np.float64)[: len(picked)] / len(labels)
    return {"accuracy": correct, "loss": loss}


def _evaluate_inr(rows: np.ndarray, zoo: InrZoo, image, chunk: int) -> dict[str, np.ndarray]:
    if image is None:
        raise AdapterError(
            "an INR zoo's vectors need image= (the image each row fits: the split's properties['image'])"
        )
    image = np.asarray(image, np.int64).reshape(-1)
    if len(image) != len(rows):
        raise AdapterError(f"{len(image)} images for {len(rows)} vectors: pass one image index per row")
    model_of = {int(row["image"]): m for m, row in enumerate(zoo.table)}  # a model per image: its target
    unknown = sorted(set(image.tolist()) - set(model_of))
    if unknown:
        raise AdapterError(f"images {unknown[:5]} are not among the zoo's: pass the image indices of its models")
    mse, inverse = np.zeros(len(rows)), flax_inverse(zoo)
    for part in _chunks(len(rows), chunk):
        params = _padded(to_flax(rows[part], inverse), min(chunk, len(rows)))
        drawn = zoo.reconstruct(params, sine=zoo.config.runtime.sine)[: len(part)]
        targets = zoo.target_images(np.array([model_of[int(i)] for i in image[part]]))
        mse[part] = np.asarray(_mse(jnp.asarray(drawn), jnp.asarray(targets)))
    return {"mse": mse, "psnr": np.asarray(siren.psnr(mse, zoo.config.model.target_range), np.float64)}


@jax.jit
def _mse(drawn: jax.Array, targets: jax.Array) -> jax.Array:
    """[n, H, W, C] twice -> [n] mean squared error per image, in float32 as training's."""
    return jnp.mean(jnp.square(drawn - targets).reshape(len(drawn), -1), axis=1)
