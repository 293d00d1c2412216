"""Forward passes and weights of a zoo's models, chunk by chunk: what the card (Table 2:
agreement, CKA, weight statistics) and Table 3 (weight statistics) both read.

Every function reads an epoch of a `Zoo` (`jaxzoo.zoo.reader`) a stored block of models at a
time (`models_params`) and computes `MODEL_CHUNK` models at a time: memory depends on the block,
never on the zoo. Per-model results go into `jaxzoo.analysis.table2.ModelRows`.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from jaxzoo.analysis import table2 as analysis
from jaxzoo.export import Zoo
from jaxzoo.models import resnet
from jaxzoo.models.cnn import PatchConv
from jaxzoo.training.population import build_population
from jaxzoo.training.precision import compute_dtype_of, with_precision

MODEL_CHUNK = 64
IMAGE_BATCH = 4
RESNET_IMAGE_BATCH = 100  # test images per ResNet-18 forward call


def forward_functions(zoo: Zoo, activations: tuple[str, ...]):
    """Compiled (predict, features) over a chunk of models; images shared by all models.

    Features are the outputs of every conv and dense layer (before pooling and activation),
    in sorted module-path order (conv0.., fc0.. for the built-in CNNs). A population that mixes
    activations computes each one and keeps the model's own (analysis only runs forward)."""
    models = [zoo.model(activation) for activation in activations]
    is_layer = lambda module, _: isinstance(module, (PatchConv, nn.Dense, nn.Conv))

    def one(params, activation_index, x):
        outputs = [
            model.apply({"params": params}, x, 0, 0.0, train=False, capture_intermediates=is_layer) for model in models
        ]
        pick = lambda *options: functools.reduce(
            lambda chosen, i: jnp.where(activation_index == i, options[i], chosen), range(1, len(options)), options[0]
        )
        logits = pick(*(out[0] for out in outputs))
        layers = []
        for path, value in sorted(traverse_util.flatten_dict(outputs[0][1]["intermediates"]).items()):
            values = [traverse_util.flatten_dict(out[1]["intermediates"])[path][0] for out in outputs]
            layers.append(pick(*values).reshape(x.shape[0], -1))
        return logits, layers

    def predict(params, activation_index, batches):
        """batches [nb, b, ...] shared by the models -> class ids [M, nb * b]."""
        step = lambda _, x: (None, jax.vmap(lambda p, a: one(p, a, x)[0].argmax(-1))(params, activation_index))
        _, out = jax.lax.scan(step, None, batches)
        return jnp.moveaxis(out, 0, 1).reshape(out.shape[1], -1)

    features = jax.jit(jax.vmap(lambda p, a, x: one(p, a, x)[1], in_axes=(0, 0, None)))
    return jax.jit(predict), features


def models_params(
    zoo: Zoo, epoch: int, models: np.ndarray, collection: str = "params"
) -> Iterator[tuple[np.ndarray, dict]]:
    """(positions in `models`, their `collection` [b, ...]) for every stored block of the epoch
    that holds some of `models` (ascending zoo indices), one block read at a time: the memory of
    one block, whatever the zoo's size (a layout-1 epoch is one block: `python -m jaxzoo.upgrade`)."""
    for start, stop in zoo.checkpoints.stored_blocks(epoch):
        first, last = np.searchsorted(models, [start, stop])
        if first < last:
            block = zoo.checkpoints.params(epoch, collection=collection, models=(start, stop))
            yield np.arange(first, last), jax.tree.map(lambda a: a[models[first:last] - start], block)


def model_chunks(
    zoo: Zoo, epoch: int, models: np.ndarray, chunk: int, masked: bool = True
) -> Iterator[tuple[np.ndarray, dict]]:
    """`models_params` of the vector params (`Zoo.vector_params`: twins' masked weights, or their
    raw ones with masked=False), in chunks of at most `chunk` models."""
    for positions, params in models_params(zoo, epoch, models):
        for start in range(0, len(positions), chunk):
            part = slice(start, start + chunk)
            yield positions[part], zoo.vector_params(jax.tree.map(lambda a: a[part], params), masked)


def flat_parts(params: dict) -> np.ndarray:
    """Params [b, ...] -> [b, P] float32, the leaves side by side in tree order: not the flat
    vector's order, but the same numbers, so dot products and `WeightFacts` equal the vector's."""
    return np.concatenate([np.asarray(a, np.float32).reshape(len(a), -1) for a in jax.tree.leaves(params)], axis=1)


def weight_facts(zoo: Zoo, epoch: int) -> analysis.WeightFacts:
    """`analysis.WeightFacts` of every model's flat vector at `epoch`, a stored block at a time."""
    models = np.arange(zoo.checkpoints.num_models(epoch))
    facts = []
    for _, params in model_chunks(zoo, epoch, models, MODEL_CHUNK):
        if zoo.is_resnet:  # the facts do not depend on the order of the numbers
            facts.append(analysis.WeightFacts.of_tensors(jax.tree.leaves(params)))
        else:
            facts.append(analysis.WeightFacts.of(zoo.params_vectors(params)))
    return analysis.WeightFacts.concat(facts)


DOT_GROUP_BYTES = 384 * 2**20  # float32 params of a group of models held by `dot_products`; two at once
DOT_PART_BYTES = 64 * 2**20  # each group's float64 copy of the columns multiplied at once


def dot_products(zoo: Zoo, epoch: int, models: np.ndarray, group_bytes: int = DOT_GROUP_BYTES) -> np.ndarray:
    """[S, S] float64 dot products of the flat vectors of `models` (ascending zoo indices, S of
    them) at `epoch`, for pair distances of vectors too long to hold together.

    The models are read in groups of `group_bytes` of params, and each group pair's products
    summed in float64 over as many entries at a time as `DOT_PART_BYTES` allows: memory two
    groups, reads g(g+1)/2 groups for g groups (`Zoo.flat_vectors` order is not needed: a dot
    product ignores order). Measured on 192 MLPs of 1.86M parameters: 512 MiB groups joined by
    concatenation peaked at 3.3 GiB, and float64 parts of 2^20 columns at 2.2 GiB."""
    model_bytes = zoo.checkpoints.model_bytes(epoch, "params")
    groups = analysis.blocks(np.arange(len(models)), max(1, group_bytes // model_bytes))

    def read(group: np.ndarray) -> np.ndarray:
        out = np.empty((len(group), model_bytes // 4), np.float32)
        for positions, params in model_chunks(zoo, epoch, models[group], len(group)):
            out[positions] = flat_parts(params)
        return out

    dots = np.zeros((len(models), len(models)))
    for i, rows in enumerate(groups):
        x = read(rows)
        for cols in groups[i:]:
            y = x if cols is rows else read(cols)
            step = max(1, DOT_PART_BYTES // (8 * max(len(x), len(y))))
            product = sum(
                x[:, c : c + step].astype(np.float64) @ y[:, c : c + step].astype(np.float64).T
                for c in range(0, x.shape[1], step)
            )
            dots[np.ix_(rows, cols)], dots[np.ix_(cols, rows)] = product, product.T
            del y
    return dots


def image_batches(images: np.ndarray, size: int) -> np.ndarray:
    """images [N, ...] -> [ceil(N / size), size, ...], the last batch padded with zeros."""
    padded = np.concatenate([images, np.zeros((-len(images) % size, *images.shape[1:]), images.dtype)])
    return padded.reshape(-1, size, *images.shape[1:])


def write_grams(rows: analysis.ModelRows, positions: np.ndarray, features: list) -> int:
    """Writes per layer "gram0".. the packed Gram matrices of features [b, n, d] of the rows at
    `positions` (consecutive; `analysis.packed_grams`) -> the number of layers."""
    for k, layer in enumerate(features):
        rows.write(analysis.GRAM.format(k), int(positions[0]), analysis.packed_grams(np.asarray(layer)))
    return len(features)


def forward_passes(
    zoo: Zoo,
    epoch: int,
    models: np.ndarray,
    rows: analysis.ModelRows,
    test_images: np.ndarray,
    cka_images: int,
    weights: bool = True,
) -> int:
    """Forward passes of `models` (ascending zoo indices; row i of rows is models[i]) at `epoch`,
    `MODEL_CHUNK` at a time as the checkpoint's blocks are read (`model_chunks`). Writes into
    rows "predictions" [S, N] (class ids, the smallest integer type), per layer "gram0".. the
    packed centred Gram matrices of the first cka_images images, [S, n(n+1)/2] float32
    (`analysis.packed_grams`), and with `weights` the flat vectors "weights" [S, P] -> the number
    of layers. The features themselves are never kept."""
    population = build_population(zoo.table, zoo.config["population"])
    predict, features = forward_functions(zoo, population.activations)
    activation_index = population.arrays["activation_index"]
    # Small image batches run fastest on CPU (as in training's evaluation); pad to whole batches.
    n = len(test_images)
    batches = image_batches(test_images, IMAGE_BATCH)
    class_ids = np.min_scalar_type(zoo.num_classes - 1)
    layers = 0
    for positions, params in model_chunks(zoo, epoch, models, MODEL_CHUNK):
        a = activation_index[models[positions]]
        if weights:
            rows.write("weights", int(positions[0]), zoo.params_vectors(params))
        rows.write("predictions", int(positions[0]), np.asarray(predict(params, a, batches))[:, :n].astype(class_ids))
        layers = write_grams(rows, positions, features(params, a, test_images[:cka_images]))
    return layers


@functools.cache
def resnet_functions(num_classes: int, compute_dtype: str = "float32"):
    """Compiled (predict, features) of one ResNet-18 in eval mode (BatchNorm running statistics),
    as the training's evaluation. predict(variables, x [B, H, W, C]) -> class ids [B];
    features(variables, x [n, H, W, C]) -> per conv and fc layer (sorted module paths) its output
    before BatchNorm and activation, [n, d]."""
    model = resnet.ResNet18(num_classes, dtype=compute_dtype_of(compute_dtype))
    is_layer = lambda module, _: isinstance(module, (nn.Conv, nn.Dense))

    def features(variables, x):
        _, captured = model.apply(variables, x, train=False, capture_intermediates=is_layer)
        return [value.reshape(x.shape[0], -1) for value in jax.tree.leaves(captured["intermediates"])]

    predict = lambda variables, x: model.apply(variables, x, train=False).argmax(-1)
    return jax.jit(with_precision(predict, compute_dtype)), jax.jit(with_precision(features, compute_dtype))


def resnet_forward_passes(
    zoo: Zoo, epoch: int, models: np.ndarray, rows: analysis.ModelRows, test_images: np.ndarray, cka_images: int
) -> int:
    """`forward_passes` of a ResNet-18 zoo: one model at a time in eval mode (BatchNorm running
    statistics), a stored block at a time. Writes "predictions" and "gram0".., not the
    11M-number flat vectors -> the number of layers."""
    predict, features = resnet_functions(zoo.num_classes, zoo.config["training"].get("compute_dtype", "float32"))
    n = len(test_images)
    batches = image_batches(test_images, min(RESNET_IMAGE_BATCH, n))
    class_ids = np.min_scalar_type(zoo.num_classes - 1)
    layers = 0
    blocks = zip(models_params(zoo, epoch, models), models_params(zoo, epoch, models, "batch_stats"))
    for (positions, params), (_, stats) in blocks:
        for i, row in enumerate(positions):
            variables = jax.device_put(
                {"params": jax.tree.map(lambda a: a[i], params), "batch_stats": jax.tree.map(lambda a: a[i], stats)}
            )  # once per model
            predictions = np.concatenate([np.asarray(predict(variables, batch)) for batch in batches])[:n]
            rows.write("predictions", int(row), predictions[None].astype(class_ids))
            layers = write_grams(
                rows,
                positions[i : i + 1],
                [np.asarray(layer)[None] for layer in features(variables, test_images[:cka_images])],
            )
    return layers
