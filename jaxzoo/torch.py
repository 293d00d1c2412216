"""PyTorch side of jaxzoo exports (needs torch): model definitions and a flat-vector Dataset.

`build_model(params_json)` returns a trial's network (the original's `module_list` CNNs, the
Variational Dropout twins, ResNet-18, and jaxzoo's `cnn` / `mlp` models in the same layout),
whose state_dict keys match the exported checkpoints for both dropout settings, so
`model.load_state_dict(torch.load(".../checkpoint_000050/checkpoints"), strict=True)` works.
The model classes are re-exported from `jaxzoo.export.torch_models`, the standalone file an export
ships as `model.py`.
`ZooVectorDataset` reads an exported flat-vector split like the original ModelDatasetBase in
vector mode: `data_in` [N, P], `properties` (lists per key), items (vector, properties); its
options standardise / noise_std / permute / tokens apply `jaxzoo.weights.loaders`' numpy transforms.
"""

from __future__ import annotations

import json
import pathlib

import numpy as np
import torch
from safetensors.torch import load_file

from jaxzoo.export.torch_models import (  # noqa: F401  (the model classes live in the standalone file)
    MODEL_TYPES,
    ORIGINAL_CNNS,
    TORCH_ACTIVATIONS,
    CNNLayout,
    Conv2dARD,
    LinearARD,
    ResNet18Cifar,
    ResNetBasicBlock,
    ZooCNN,
    ZooCNNARD,
    build_model,
    load_resnet18,
    registry_layout,
)
from jaxzoo.weights import loaders
from jaxzoo.weights.vectors import split_name


class ZooVectorDataset(torch.utils.data.Dataset):
    """One split of an exported flat-vector dataset (`<export>/vectors/<split>.safetensors`);
    `vectors_dir` is the export folder or its vectors/ folder.

    A drop-in for the original ModelDatasetBase's consumers: `data_in` [rows, P] float32,
    `properties` {key: list per row} with the original's keys (test_acc, train_acc, ggap,
    training_iteration, model::nlin, optim::lr, ...) beside jaxzoo's, and `__get_weights__()`.

    By default items are (row [P], properties) as read. An item's numeric properties are 0-d
    tensors, float32 as the weights (integers such as epoch and model_id int64), so a DataLoader
    batches them to [B] float32 / int64, the dtypes of `VectorLoader`'s batches; categorical ones
    are strings (`item_properties` holds them per key, [rows]). The options are those of
    `jaxzoo.weights.loaders.VectorLoader`, applied per item by its numpy `VectorTransform`: permute
    (random hidden-unit permutation), standardise (per layer, train statistics), noise_std /
    noise_mode, tokens (the item's first element is then {'weights', 'tokens' [T, D], 'mask'
    [T, D], 'layer_id' [T], 'position' [T]}). Random draws come from torch's generator (one seed
    per item), so `torch.manual_seed` and DataLoader workers' seeding govern them.
    `data_in` and `__get_weights__()` stay the rows as read.
    """

    def __init__(
        self,
        vectors_dir: str | pathlib.Path,
        split: str = "train",
        epochs: list[int] | None = None,
        *,
        standardise: bool = False,
        noise_std: float = 0.0,
        noise_mode: str = "relative",
        permute: bool = False,
        tokens: bool = False,
    ):
        split = split_name(split)
        folder = loaders.vectors_folder(vectors_dir)
        tensors = load_file(folder / f"{split}.safetensors")
        meta = json.loads((folder / f"{split}.json").read_text())
        keep = torch.ones(len(tensors["weights"]), dtype=torch.bool)
        if epochs is not None:
            loaders.check_epochs(folder, split, epochs, tensors["epoch"].numpy())
            keep = torch.isin(tensors["epoch"], torch.tensor(epochs))
        self.data_in = tensors["weights"][keep]
        index = np.flatnonzero(keep.numpy())
        self.properties = {name: tensors[name][keep].tolist() for name in meta["numeric_properties"]}
        numeric = loaders.batch_properties({name: tensors[name][keep].numpy() for name in meta["numeric_properties"]})
        self.item_properties = {name: torch.from_numpy(values) for name, values in numeric.items()}
        for name, values in meta["categorical_properties"].items():
            self.properties[name] = self.item_properties[name] = [values[i] for i in index]
        self.layout = meta["index_dict"]
        self.transform, self.stats = None, None
        if standardise or noise_std or permute or tokens:
            needs_stats = standardise or (noise_std > 0 and noise_mode == "relative")
            self.stats = loaders.read_standardisation(folder, self.layout) if needs_stats else None
            self.transform = loaders.VectorTransform(
                self.layout, self.stats, standardise, noise_std, noise_mode, permute, tokens
            )

    def __len__(self) -> int:
        return len(self.data_in)

    def __get_weights__(self) -> torch.Tensor:
        """All rows' flat vectors [rows, P], as the original dataset's method of this name."""
        return self.data_in

    def __getitem__(self, i: int):
        properties = {name: values[i] for name, values in self.item_properties.items()}
        if self.transform is None:
            return self.data_in[i], properties
        rng = np.random.default_rng(int(torch.randint(0, 2**62, (1,)).item()))
        out = self.transform(self.data_in[i : i + 1].numpy(), rng)
        if not self.transform.tokens:
            return torch.from_numpy(out["weights"][0]), properties
        return {k: torch.from_numpy(np.ascontiguousarray(v[0])) for k, v in out.items()}, properties
