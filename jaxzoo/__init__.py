"""jaxzoo: populations of small networks trained at once with JAX, every epoch kept.

The public API (imported on first use, so `import jaxzoo` stays light):

  base_config, train_and_evaluate        a zoo's config and its training run
  export, read_zoo, analyze              PyTorch / original-format export, the zoo reader, the zoo card
  load_dataset, describe_dataset         any dataset name (registry, tfds:, npz:, py:)
  FACTOR_TABLE                           the generating factors (jaxzoo.factors)
  OPTIMIZERS, register_optimizer         the optimizer registry (jaxzoo.optim)
  SCHEDULES                              per-model learning-rate schedules (jaxzoo.schedules)
  MODEL_ARCHS                            the model registry's names (jaxzoo.architectures)
"""

import importlib

_API = {
    "base_config": "jaxzoo.config",
    "train_and_evaluate": "jaxzoo.train",
    "export": "jaxzoo.export",
    "read_zoo": "jaxzoo.export",
    "analyze": "jaxzoo.analyze",
    "load_dataset": "jaxzoo.data",
    "describe_dataset": "jaxzoo.data",
    "FACTOR_TABLE": "jaxzoo.factors",
    "OPTIMIZERS": "jaxzoo.optim",
    "register_optimizer": "jaxzoo.optim",
    "SCHEDULES": "jaxzoo.schedules",
    "MODEL_ARCHS": "jaxzoo.architectures",
}
__all__ = sorted(_API)


def __getattr__(name: str):
    if name not in _API:
        raise AttributeError(f"module 'jaxzoo' has no attribute {name!r}")
    return getattr(importlib.import_module(_API[name]), name)
