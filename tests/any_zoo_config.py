"""A zoo of the user's own, in one file: a Flax MLP defined here, AdamW and RMSprop, cosine
schedules, per-model train subsets and label noise (trained by tests/test_any_zoo.py).

Run:  PYTHONPATH=tests python -m jaxzoo.train --config tests/any_zoo_config.py
"""

import flax.linen as nn

from jaxzoo.config import base_config

ACTIVATIONS = {"relu": nn.relu, "tanh": nn.tanh}


class TinyMLP(nn.Module):
    """Flattened image -> Dense(hidden) -> activation -> Dense(classes).

    The flatten is NHWC (JAX's layout): a PyTorch twin permutes NCHW images first."""

    hidden: int = 16
    activation: str = "relu"  # receives the population's `activation` factor
    num_classes: int = 10  # receives the dataset's class count

    @nn.compact
    def __call__(self, x, train: bool = False):
        x = x.reshape(x.shape[0], -1)
        x = ACTIVATIONS[self.activation](nn.Dense(self.hidden, name="hidden")(x))
        return nn.Dense(self.num_classes, name="out")(x)


def get_config():
    config = base_config()
    config.name = "any_zoo"
    config.data.name = "mnist_5k"
    config.data.max_examples_per_split = 100
    config.model.module = "any_zoo_config:TinyMLP"  # this file, importable from tests/
    config.model.kwargs.hidden = 12
    config.training.num_epochs = 2
    config.training.batch_size = 16
    config.runtime.progress = False
    pop = config.population
    pop.num_seeds = 2
    pop.activation = ("relu", "tanh")
    pop.init = ("kaiming_uniform",)
    pop.optimizer = ("adamw", "rmsprop")
    pop.lr = (3e-3,)
    pop.weight_decay = (1e-2,)
    pop.dropout = (0.0,)
    pop.momentum = 0.5  # RMSprop's (AdamW reads b1, b2, eps at PyTorch's defaults)
    pop.schedule = ("cosine",)
    pop.train_fraction = (0.6, 1.0)
    pop.label_noise = (0.0, 0.25)
    return config
