"""The zoo reader: a trained classification zoo's workdir as a `Zoo` (config, model table,
metrics of every epoch, checkpoints on demand) and what its models are in PyTorch's terms
(state_dict keys and layouts, flat vectors, the vector layout). Exports, the card, Table 3,
twins and ingest read zoos through it.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import pathlib

import jax
import numpy as np
from ml_collections import ConfigDict

from jaxzoo.config import CLASSIFICATION, check_recorded_dataset, config_kind, load_config_dataset
from jaxzoo.data import DATASETS, Dataset
from jaxzoo.errors import UserError
from jaxzoo.models import ard, resnet
from jaxzoo.models.registry import (
    RESNET_ARCHS,
    arch_spec,
    build_model,
    custom_torch_tensors,
    is_custom,
    param_order,
    params_shapes,
)
from jaxzoo.models.torch_layout import flat_vectors, index_dict, torch_tensors
from jaxzoo.zoo import blocks, checkpoint


class ZooReadError(UserError):
    """The workdir is not a finished zoo that can be read (the message names the problem and the fix)."""


@dataclasses.dataclass
class Zoo:
    """A trained zoo read from its workdir: config, model table, metrics [epoch][name] -> [M]."""

    workdir: pathlib.Path
    config: dict
    identity_hash: str
    table: list[dict]
    epochs: list[int]
    metrics: dict[int, dict[str, np.ndarray]]
    checkpoints: checkpoint.ZooCheckpoints
    dataset_facts: dict  # channels, num_classes, image_size of the images the zoo trained on
    dataset_record: dict  # the identity's record of the data (source, fingerprint)
    loaded_dataset: Dataset | None = dataclasses.field(default=None, repr=False)  # `dataset()`, once read

    def dataset(self) -> Dataset:
        """The data the zoo was trained on, loaded from its config once per reader;
        DataUnavailableError if it changed since (another fingerprint)."""
        if self.loaded_dataset is None:
            loaded = load_config_dataset(ConfigDict(self.config))
            self.loaded_dataset = check_recorded_dataset(loaded, self.dataset_record, self.workdir)
        return self.loaded_dataset

    @property
    def is_resnet(self) -> bool:
        return self.config["model"]["arch"] in RESNET_ARCHS and not self.is_custom

    @property
    def is_custom(self) -> bool:
        return is_custom(self.config["model"])

    @property
    def arch(self):
        """The ArchSpec of a built-in CNN / MLP zoo."""
        return arch_spec(self.config["model"], self.image_shape[0], self.channels_in, self.num_classes)

    @property
    def num_classes(self) -> int:
        return self.dataset_facts["num_classes"]

    @property
    def channels_in(self) -> int:
        return self.dataset_facts["channels"]

    @property
    def image_shape(self) -> tuple[int, int, int]:
        size = self.config["data"]["image_size"]
        return (size, size, self.channels_in)

    def model(self, activation: str):
        """The Flax model of the zoo's models with `activation` (eval mode: no dropout)."""
        return build_model(self.config["model"], activation, False, "xla", self.image_shape, self.num_classes)

    @functools.cached_property
    def param_order(self) -> list[tuple[str, ...]]:
        return param_order(self.model(self.table[0]["activation"]), self.image_shape)

    def params_torch(self, params: dict, dropout: float = 0.0, lead: int = 1) -> list[tuple[str, np.ndarray]]:
        """(state_dict key, array in PyTorch layout) of params with `lead` leading axes."""
        if self.is_custom:
            return custom_torch_tensors(self.model(self.table[0]["activation"]), params, self.param_order, lead)
        return list(torch_tensors(params, self.arch, dropout))

    def torch_arrays(self, state: dict, dropout: float = 0.0) -> list[tuple[str, np.ndarray]]:
        """(state_dict key, population array [M, ...] in PyTorch layout) in state_dict order."""
        if self.is_resnet:  # torchvision keys, BatchNorm statistics included
            return list(resnet.torch_state_dict(state).items())
        return self.params_torch(state["params"], dropout)

    def flat_vectors(self, state: dict, masked: bool = True) -> np.ndarray:
        """[M, P] float32 flat vectors of the population (ResNet: trainable parameters only;
        twins: the masked weights, or the raw ones with masked=False)."""
        if self.is_resnet:
            return resnet.flat_vectors(state["params"])
        return self.params_vectors(self.vector_params(state["params"], masked))

    def params_vectors(self, params: dict) -> np.ndarray:
        """Population params -> [M, P] float32: the export's tensors flattened in state_dict order."""
        if not self.is_custom:
            return flat_vectors(params, self.arch)
        parts = [np.ascontiguousarray(a).reshape(a.shape[0], -1) for _, a in self.params_torch(params)]
        return np.concatenate(parts, axis=1).astype(np.float32)

    def vector_layout(self) -> dict:
        """index_dict.json: the original's per-layer map (built-in CNN / MLP), or {'tensors': [{key,
        offset, shape}]} (ResNet, custom modules)."""
        if self.is_resnet:
            return {"tensors": resnet.index_map(self.num_classes, self.channels_in)}
        if self.is_custom:
            template = jax.tree.map(
                lambda a: np.zeros((1, *a.shape), np.float32),
                params_shapes(self.model(self.table[0]["activation"]), self.image_shape),
            )
            tensors, offset = [], 0
            for key, array in self.params_torch(template):
                tensors.append({"key": key, "offset": offset, "shape": list(array.shape[1:])})
                offset += int(np.prod(array.shape[1:]))
            return {"tensors": tensors}
        return index_dict(self.arch, self.channels_in)

    @property
    def experiment(self) -> str:
        return self.config.get("original", {}).get("experiment") or self.config["name"]

    def state(self, epoch: int) -> dict:
        """Every model's state at `epoch` (numpy [M, ...]); readers of big zoos take `model_blocks`."""
        return self.checkpoints.state(epoch)[1]

    def model_blocks(self, epochs: int = 1, collection: str | None = None) -> list[tuple[int, int]]:
        """Blocks of models [start, stop) to read in turn, sized so that `epochs` epochs of a
        block's state (or of one collection, e.g. 'params') fit `blocks.READ_BYTES`."""
        model_bytes = self.checkpoints.model_bytes(self.epochs[0], collection) * epochs
        return self.checkpoints.model_blocks(self.epochs[0], blocks.models_per_read(model_bytes))

    @property
    def is_twin(self) -> bool:
        """A sparsified (Variational Dropout) twin zoo: ARD keys, no dropout modules."""
        return "sparsify" in self.config

    def layout_dropout(self, row: dict) -> float:
        return 0.0 if self.is_twin else row["dropout"]

    @property
    def has_val(self) -> bool:
        """Whether the zoo recorded val metrics (Tiny-ImageNet has no val split)."""
        return bool(np.isfinite(self.metrics[self.epochs[0]]["val_acc"]).any())

    def vector_params(self, params: dict, masked: bool = True) -> dict:
        """Params whose flat vectors are taken: for twins the kernels and biases, masked (log alpha
        >= 3 set to 0) unless masked=False; their log sigma^2 are not part of the vector."""
        if not self.is_twin:
            return params
        if not masked:
            return {name: {"kernel": layer["kernel"], "bias": layer["bias"]} for name, layer in params.items()}
        return jax.tree.map(np.asarray, ard.masked_params(params))


def dataset_facts(document: dict) -> dict:
    """Channels, classes and image size of a workdir's data: the registry's, or what training
    recorded in the identity for other datasets."""
    data = document["config"]["data"]
    recorded = document["identity"].get("dataset", {})
    if data["name"] in DATASETS:
        info = DATASETS[data["name"]]
        return {"channels": info.channels, "num_classes": info.num_classes, "image_size": data["image_size"]}
    return {"channels": recorded["channels"], "num_classes": recorded["num_classes"], "image_size": data["image_size"]}


def read_zoo(workdir: str | os.PathLike) -> Zoo:
    """Reads a workdir; ZooReadError if it is not a finished zoo (missing or damaged epochs)."""
    path = pathlib.Path(workdir).absolute()
    document = checkpoint.read_config(path)
    if config_kind(document["config"]) != CLASSIFICATION:  # Table 3, twins and merges are for classification zoos
        raise ZooReadError(
            f"{path} holds an INR zoo: analyse it with `python -m jaxzoo.analyze` (its card predicts "
            "the class from weights) and export it with `python -m jaxzoo.export`"
        )
    try:
        table = checkpoint.parse_model_table((path / "models.json").read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ZooReadError(
            f"{path / 'models.json'} is unreadable ({type(error).__name__}): pass the --workdir "
            "of a trained zoo, or rerun its train command to rewrite it"
        ) from None
    num_epochs = document["config"]["training"]["num_epochs"]
    checkpoints = checkpoint.ZooCheckpoints(path)
    damaged = checkpoints.damaged()
    if damaged:
        summary = checkpoint.damage_summary(damaged)
        raise ZooReadError(f"{path} has {summary}: rerun the train command, {checkpoint.RETRAINS_DAMAGED}")
    steps = checkpoints.epochs()
    missing = sorted(set(range(num_epochs + 1)) - set(steps))
    if missing:
        raise ZooReadError(
            f"{path} lacks epochs {missing[:5]}{'...' if len(missing) > 5 else ''} of 0..{num_epochs}: "
            "finish training first (rerun the same train command to resume)"
        )
    metrics = {epoch: checkpoints.metrics(epoch) for epoch in range(num_epochs + 1)}
    return Zoo(
        path,
        document["config"],
        document["identity_hash"],
        table,
        list(range(num_epochs + 1)),
        metrics,
        checkpoints,
        dataset_facts(document),
        document["identity"].get("dataset", {}),
    )
