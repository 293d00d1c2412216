"""Quickstart zoo: 64 CNN-s models on the embedded MNIST subset (mnist_5k), 5 epochs.

Mixes 4 activations x 2 inits x 2 optimizers x 4 seeds: 8 groups (activation x optimizer)
compiled apart, inits and seeds varying per model inside each.

Run:  python -m jaxzoo.train --config configs/quickstart.py --workdir runs/quickstart
Time: about 36 seconds on a 2-core laptop CPU (compile included; measured 36 s, and 27 s with
its programs in the compile cache).
"""

from jaxzoo.config import base_config


def get_config():
    config = base_config()
    config.name = "quickstart"
    config.data.name = "mnist_5k"
    config.model.arch = "cnn_s"
    config.training.num_epochs = 5
    config.population.seed_mode = "range"
    config.population.num_seeds = 4
    config.population.activation = ("tanh", "relu", "sigmoid", "gelu")
    config.population.init = ("kaiming_uniform", "kaiming_normal")
    config.population.optimizer = ("adam", "sgd")
    config.population.lr = (1e-3,)
    config.population.weight_decay = (1e-4,)
    config.population.dropout = (0.0,)
    return config
