"""jaxzoo: populations of small networks trained at once with JAX, every epoch kept.

Commands (`python -m jaxzoo.<command>`): train, analyze, export, benchmark, sparsify, merge,
ingest, data, upgrade. The library lives in folders, each listing its public names in `__init__`:

  config/    base config, validation, identity, the paper's zoos
  data/      datasets: registry, sources (embedded, raw files, TFDS), transforms, cache, splits
  models/    model registry, the CNN family, ResNet-18, ARD layers, CPU convolution kernel
  training/  factors, population, optimizers, schedules, precision, plan, steps, run, loop, twins
  zoo/       workdir, checkpoints in blocks of models, the zoo reader, shards, upgrade
  export/    trial folders, flat vectors, Parquet, the PyTorch models an export ships
  ingest/    published zoos (ModelZooDataset trials, the Small CNN Zoo) into workdirs
  weights/   flat-vector files, loaders for training on weights, weight-space symmetries
  analysis/  Table 2 metrics, forward passes, the zoo card, Table 3, figures
  inr/       INR (SIREN) zoos, built on the above
  kinds/     the zoo kinds (classification, INR) and what each command runs for them

The public API below is imported on first use, so `import jaxzoo` stays light; no name is also
a submodule (`jaxzoo.export` is the export package, `jaxzoo.export_zoo` its function):

  base_config, train_and_evaluate        a zoo's config and its training run
  export_zoo, analyze_zoo, read_zoo      export (any zoo kind), the zoo card, the zoo reader
  load_dataset, describe_dataset         any dataset name (registry, tfds:, npz:, py:)
  FACTOR_TABLE                           the generating factors
  OPTIMIZERS, register_optimizer         the optimizer registry
  SCHEDULES                              per-model learning-rate schedules
  MODEL_ARCHS                            the model registry's names

Modules that moved into the folders stay importable under their old names for one release
(`jaxzoo.symmetry` is `jaxzoo.weights.symmetry`, ...), with a DeprecationWarning.
"""

import importlib
import importlib.abc
import importlib.util
import sys
import warnings

_API = {
    "base_config": ("jaxzoo.config", "base_config"),
    "train_and_evaluate": ("jaxzoo.kinds.train", "train_and_evaluate"),
    "export_zoo": ("jaxzoo.kinds.export", "export"),
    "analyze_zoo": ("jaxzoo.kinds.analyze", "analyze"),
    "read_zoo": ("jaxzoo.zoo.reader", "read_zoo"),
    "load_dataset": ("jaxzoo.data", "load_dataset"),
    "describe_dataset": ("jaxzoo.data", "describe_dataset"),
    "FACTOR_TABLE": ("jaxzoo.training.factors", "FACTOR_TABLE"),
    "OPTIMIZERS": ("jaxzoo.training.optimizers", "OPTIMIZERS"),
    "register_optimizer": ("jaxzoo.training.optimizers", "register_optimizer"),
    "SCHEDULES": ("jaxzoo.training.schedules", "SCHEDULES"),
    "MODEL_ARCHS": ("jaxzoo.models.registry", "MODEL_ARCHS"),
}
__all__ = sorted(_API)

# Old module paths (before the library moved into folders) -> where the module lives now.
MOVED_MODULES = {
    "jaxzoo.architectures": "jaxzoo.models.registry",
    "jaxzoo.resnet": "jaxzoo.models.resnet",
    "jaxzoo.ard": "jaxzoo.models.ard",
    "jaxzoo.cpu_conv": "jaxzoo.models.cpu_conv",
    "jaxzoo.layout": "jaxzoo.models.torch_layout",
    "jaxzoo.factors": "jaxzoo.training.factors",
    "jaxzoo.population": "jaxzoo.training.population",
    "jaxzoo.optim": "jaxzoo.training.optimizers",
    "jaxzoo.schedules": "jaxzoo.training.schedules",
    "jaxzoo.augment": "jaxzoo.training.augment",
    "jaxzoo.precision": "jaxzoo.training.precision",
    "jaxzoo.steps": "jaxzoo.training.steps",
    "jaxzoo.resnet_steps": "jaxzoo.training.resnet_steps",
    "jaxzoo.loop": "jaxzoo.training.loop",
    "jaxzoo.distributed": "jaxzoo.training.distributed",
    "jaxzoo.checkpoint": "jaxzoo.zoo.checkpoint",
    "jaxzoo.parquet": "jaxzoo.export.parquet",
    "jaxzoo.bundle": "jaxzoo.export.bundle",
    "jaxzoo.torch_models": "jaxzoo.export.torch_models",
    "jaxzoo.loaders": "jaxzoo.weights.loaders",
    "jaxzoo.symmetry": "jaxzoo.weights.symmetry",
    "jaxzoo.plots": "jaxzoo.analysis.plots",
    "jaxzoo.paper_zoos": "jaxzoo.config.paper_zoos",
}


class _MovedModuleFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Imports an old module path as the module at its new place (the same module object)."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname not in MOVED_MODULES:
            return None
        return importlib.util.spec_from_loader(fullname, self)

    def create_module(self, spec):
        warnings.warn(
            f"{spec.name} moved to {MOVED_MODULES[spec.name]}; the old path goes in the next release",
            DeprecationWarning,
            stacklevel=2,
        )
        return importlib.import_module(MOVED_MODULES[spec.name])

    def exec_module(self, module):
        """Nothing to run: the module at its new place is already imported."""


sys.meta_path.append(_MovedModuleFinder())


def __getattr__(name: str):
    if name not in _API:
        raise AttributeError(f"module 'jaxzoo' has no attribute {name!r}")
    module, attribute = _API[name]
    return getattr(importlib.import_module(module), attribute)
