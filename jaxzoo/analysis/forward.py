"""Forward passes and weights of a zoo's models, chunk by chunk: what the card (Table 2:
agreement, CKA, weight statistics) and Table 3 (weight statistics) both read.

Every function takes a `Zoo` (`jaxzoo.zoo.reader`) and the viable models' rows
(`jaxzoo.analysis.table2.ModelRows`); models come `MODEL_CHUNK` at a time, never all at once.
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


def param_leaf(zoo: Zoo, epoch: int, path: tuple[str, ...]) -> np.ndarray:
    """One leaf [M, ...] of an epoch's params (nothing else is read; Orbax decodes a leaf whole,
    so restoring one at a time bounds the memory to one leaf of the population)."""
    return traverse_util.flatten_dict(zoo.checkpoints.params(epoch, [path]))[path]


def restore_params(zoo: Zoo, epoch: int, rows: analysis.ModelRows) -> list[tuple[str, ...]]:
    """Puts an epoch's params into rows leaf by leaf (named by `param_name`) -> their key paths."""
    paths = zoo.checkpoints.param_paths(epoch)
    for path in paths:
        rows.put(param_name(path), param_leaf(zoo, epoch, path))
    return paths


def param_name(path: tuple[str, ...]) -> str:
    return "params/" + "/".join(path)


def params_block(zoo: Zoo, rows: analysis.ModelRows, paths: list[tuple[str, ...]], index: slice | np.ndarray) -> dict:
    """The params of the models `index` from rows (`restore_params`): the masked weights for twins."""
    return zoo.vector_params(traverse_util.unflatten_dict({path: rows.read(param_name(path), index) for path in paths}))


def model_chunks(
    zoo: Zoo, rows: analysis.ModelRows, paths: list[tuple[str, ...]], chunk: int
) -> Iterator[tuple[slice, dict]]:
    """(models, their params [b, ...]) for every `chunk` consecutive models, from rows (`restore_params`)."""
    for start in range(0, rows.count, chunk):
        index = slice(start, min(start + chunk, rows.count))
        yield index, params_block(zoo, rows, paths, index)


def vector_chunk(rows: analysis.ModelRows, paths: list[tuple[str, ...]]) -> int:
    """Models per chunk whose params and a working copy of them fit the rows' budget (ResNet-18:
    45 MB per model, so 2 models per chunk under the default 256 MB)."""
    model_bytes = sum(rows.row_bytes(param_name(path)) for path in paths)
    return max(1, rows.budget // (2 * model_bytes))


def image_batches(images: np.ndarray, size: int) -> np.ndarray:
    """images [N, ...] -> [ceil(N / size), size, ...], the last batch padded with zeros."""
    padded = np.concatenate([images, np.zeros((-len(images) % size, *images.shape[1:]), images.dtype)])
    return padded.reshape(-1, size, *images.shape[1:])


def write_grams(rows: analysis.ModelRows, start: int, features: list) -> int:
    """Writes per layer "gram0".. the packed Gram matrices of features [b, n, d] of the models
    start.. (`analysis.packed_grams`) -> the number of layers."""
    for k, layer in enumerate(features):
        rows.write(analysis.GRAM.format(k), start, analysis.packed_grams(np.asarray(layer)))
    return len(features)


def forward_passes(
    zoo: Zoo, rows: analysis.ModelRows, paths: list[tuple[str, ...]], test_images: np.ndarray, cka_images: int
) -> int:
    """Forward passes of all models, `MODEL_CHUNK` at a time, on params from rows (`restore_params`);
    writes into rows "weights" [M, P] (flat vectors), "predictions" [M, N] (class ids, the smallest
    integer type) and per layer "gram0".. the packed centred Gram matrices of the first cka_images
    images, [M, n(n+1)/2] float32 (`analysis.packed_grams`) -> the number of layers. The features
    themselves are never kept."""
    population = build_population(zoo.table, zoo.config["population"])
    predict, features = forward_functions(zoo, population.activations)
    activation_index = population.arrays["activation_index"]
    # Small image batches run fastest on CPU (as in training's evaluation); pad to whole batches.
    n = len(test_images)
    batches = image_batches(test_images, IMAGE_BATCH)
    class_ids = np.min_scalar_type(zoo.num_classes - 1)
    layers = 0
    for chunk, params in model_chunks(zoo, rows, paths, MODEL_CHUNK):
        a = activation_index[chunk]
        rows.write("weights", chunk.start, zoo.params_vectors(params))
        rows.write("predictions", chunk.start, np.asarray(predict(params, a, batches))[:, :n].astype(class_ids))
        layers = write_grams(rows, chunk.start, features(params, a, test_images[:cka_images]))
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
    zoo: Zoo,
    rows: analysis.ModelRows,
    paths: list[tuple[str, ...]],
    stats: dict,
    test_images: np.ndarray,
    cka_images: int,
) -> tuple[int, analysis.WeightFacts]:
    """`forward_passes` of a ResNet-18 zoo: one model at a time in eval mode (running statistics
    `stats` [M, ...]), params from rows by chunks of models (`vector_chunk`). Writes "predictions"
    and "gram0".., not the 11M-number flat vectors -> (the number of layers, the `WeightFacts` of
    the flat vectors, `Zoo.flat_vectors`, from the params leaves: the same numbers in another order)."""
    predict, features = resnet_functions(zoo.num_classes, zoo.config["training"].get("compute_dtype", "float32"))
    n = len(test_images)
    batches = image_batches(test_images, min(RESNET_IMAGE_BATCH, n))
    class_ids = np.min_scalar_type(zoo.num_classes - 1)
    facts, layers = [], 0
    for chunk, params in model_chunks(zoo, rows, paths, vector_chunk(rows, paths)):
        facts.append(analysis.WeightFacts.of_tensors(jax.tree.leaves(params)))
        for model in range(chunk.start, chunk.stop):
            variables = jax.device_put(
                {
                    "params": jax.tree.map(lambda a: a[model - chunk.start], params),
                    "batch_stats": jax.tree.map(lambda a: a[model], stats),
                }
            )  # once per model
            predictions = np.concatenate([np.asarray(predict(variables, batch)) for batch in batches])[:n]
            rows.write("predictions", model, predictions[None].astype(class_ids))
            layers = write_grams(
                rows, model, [np.asarray(layer)[None] for layer in features(variables, test_images[:cka_images])]
            )
    return layers, analysis.WeightFacts.concat(facts)
