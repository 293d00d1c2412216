"""Shared fixtures: small configs and the embedded data, loaded once per session."""

import os
import tempfile

import pytest

from jaxzoo.config import base_config
from jaxzoo.data import load_dataset

# Preprocessed-data cache of the test session (also seen by the CLI subprocesses).
os.environ["JAXZOO_DATA_DIR"] = tempfile.mkdtemp(prefix="jaxzoo-test-cache-")


@pytest.fixture(scope="session")
def mnist_small():
    """mnist_5k cut to 120 examples per split (12 steps of 10 per epoch)."""
    return load_dataset("mnist_5k", 28, max_examples_per_split=120)


def small_zoo_config(**population):
    """A tiny mixed zoo on 120 examples per split, 2 epochs; population fields overridable."""
    config = base_config()
    config.name = "test_zoo"
    config.data.max_examples_per_split = 120
    config.training.num_epochs = 2
    config.runtime.progress = False
    config.runtime.async_checkpointing = True
    pop = config.population
    pop.num_seeds = 2
    pop.activation = ("tanh", "relu")
    pop.init = ("kaiming_uniform", "xavier_normal")
    pop.optimizer = ("adam", "sgd")
    pop.lr = (1e-3,)
    pop.weight_decay = (1e-3,)
    pop.dropout = (0.0, 0.5)
    for name, value in population.items():
        pop[name] = value
    return config
