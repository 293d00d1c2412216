"""Reading a trained INR zoo: its config, model table, checkpoints and images, and the
reconstruction of images through its SIRENs (what exports and the card read)."""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import pathlib

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxzoo.config import check_recorded_dataset
from jaxzoo.data import describe_dataset
from jaxzoo.inr import siren
from jaxzoo.inr.config import is_inr
from jaxzoo.inr.images import InrImages, load_images
from jaxzoo.zoo import checkpoint

RECONSTRUCT_CHUNK = 256


@dataclasses.dataclass
class InrZoo:
    """A trained INR zoo: `table` rows (model_id, seed, image, split, split_index, label) in
    model order, the SIREN `spec`, and read access to every epoch's checkpoint."""

    path: pathlib.Path
    config: ml_collections.ConfigDict
    table: list[dict]
    spec: siren.SirenSpec
    image_shape: tuple[int, int, int]
    checkpoints: checkpoint.ZooCheckpoints
    dataset_record: dict  # the identity's record of the data (source, fingerprint)

    @property
    def name(self) -> str:
        return self.config.name

    def epochs(self) -> list[int]:
        """The epochs whose checkpoint is whole."""
        damaged = self.checkpoints.damaged()
        return [epoch for epoch in self.checkpoints.epochs() if epoch not in damaged]

    def last_epoch(self) -> int:
        epochs = self.epochs()
        if not epochs:
            raise checkpoint.WorkdirError(f"{self.path} has no whole checkpoint: train the zoo first")
        return epochs[-1]

    def params(self, epoch: int | None = None) -> dict:
        """An epoch's SIREN parameters, numpy [M, ...] ({'layer0': {'kernel', 'bias'}, ...})."""
        return self.checkpoints.params(self.last_epoch() if epoch is None else epoch)

    def metrics(self, epoch: int | None = None) -> dict[str, np.ndarray]:
        """An epoch's metrics [M]: mse, psnr, steps, steps_to_target, reached, diverged."""
        return self.checkpoints.metrics(self.last_epoch() if epoch is None else epoch)

    @functools.cached_property
    def images(self) -> InrImages:
        """The fitted images (read from the dataset the zoo was trained on)."""
        images = load_images(self.config)
        check_recorded_dataset(images.dataset, self.dataset_record, self.path)
        return images

    def target_images(self, rows: np.ndarray) -> np.ndarray:
        """float32 [n, H, W, C]: the images models `rows` fit, on the targets' scale."""
        position = {int(index): i for i, index in enumerate(self.images.image_index)}
        pixels = self.images.pixels[[position[self.table[int(r)]["image"]] for r in rows]]
        return siren.targets(pixels, self.config.model.target_range).reshape(len(rows), *self.image_shape)

    @property
    def coords(self) -> np.ndarray:
        height, width, _ = self.image_shape
        return siren.coordinates(height, width, self.config.model.coordinates)

    def reconstruct(self, params: dict, sine: str = "exact") -> np.ndarray:
        """float32 [n, H, W, C]: the images SIRENs `params` [n, ...] draw (targets' scale)."""
        forward = reconstruction_function(self.spec, sine)
        coords = jnp.asarray(self.coords)
        n = len(jax.tree.leaves(params)[0])
        out = []
        for start in range(0, n, RECONSTRUCT_CHUNK):
            block = jax.tree.map(lambda a: a[start : start + RECONSTRUCT_CHUNK], params)
            out.append(np.asarray(forward(block, coords)))
        return np.concatenate(out).reshape(n, *self.image_shape)


@functools.lru_cache(maxsize=8)
def reconstruction_function(spec: siren.SirenSpec, sine: str):
    sin = siren.sine_function(sine)
    return jax.jit(jax.vmap(lambda params, coords: siren.apply(spec, params, coords, sin), in_axes=(0, None)))


def is_inr_workdir(workdir: str | os.PathLike) -> bool:
    """Whether a workdir's config.json (read without checks) describes an INR zoo."""
    try:
        document = json.loads((pathlib.Path(workdir) / "config.json").read_text())
    except (OSError, ValueError):
        return False
    return isinstance(document, dict) and is_inr(document.get("config", {}))


def read_inr_zoo(workdir: str | os.PathLike) -> InrZoo:
    """The INR zoo trained in `workdir` (its config checked as `checkpoint.read_config` does)."""
    path = pathlib.Path(workdir).absolute()
    document = checkpoint.read_config(path)
    config = ml_collections.ConfigDict(document["config"])
    table = read_table(path)
    size = config.data.image_size
    dataset_record = document["identity"].get("dataset", {})
    channels = dataset_record.get("channels") or _channels(config)
    spec = siren.spec_from_config(config.model, channels)
    return InrZoo(path, config, table, spec, (size, size, channels), checkpoint.ZooCheckpoints(path), dataset_record)


def read_table(path: pathlib.Path) -> list[dict]:
    try:
        return checkpoint.parse_model_table((path / "models.json").read_text())
    except (OSError, ValueError):
        raise checkpoint.WorkdirError(
            f"{path / 'models.json'} is missing or unreadable: the workdir is damaged, "
            "train the zoo again in a new --workdir"
        ) from None


def _channels(config: ml_collections.ConfigDict) -> int:
    return describe_dataset(config.data.name).channels
