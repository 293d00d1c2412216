"""ResNet-18 smoke zoo: 2 seeds on 8 px embedded MNIST digits, 2 epochs, the full ResNet path.

OneCycle SGD, random crop + flip on device, BatchNorm statistics, per-epoch checkpoints: a
check that a machine runs ResNet zoos before launching a real one (about a minute on a CPU).

Run:  python -m jaxzoo.train --config configs/resnet18_smoke.py --workdir runs/resnet18_smoke
"""

from jaxzoo.paper_zoos import resnet_zoo


def get_config():
    config = resnet_zoo("cifar10_resnet18_seed")
    config.name = "resnet18_smoke"
    config.original.experiment = config.original.net_dir = ""
    config.data.name = "mnist_5k"
    config.data.image_size = 8
    config.data.max_examples_per_split = 500
    config.training.num_epochs = 2
    config.training.batch_size = 64
    config.population.num_seeds = 2
    return config
