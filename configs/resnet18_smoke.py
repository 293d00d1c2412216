"""ResNet-18 smoke zoo: 2 seeds on 8 px embedded MNIST digits, 2 epochs, the ResNet path.

OneCycle SGD, BatchNorm statistics, per-epoch checkpoints: a check that a machine runs ResNet
zoos before launching a real one (about 2 minutes on a 2-core CPU). No augmentation: a 4-pixel
crop would cut away half of an 8-pixel digit (with it, 3 epochs reach 17% test accuracy,
without it 97%); the tests run this config with `training.augmentation=crop_flip`.

Run:  python -m jaxzoo.train --config configs/resnet18_smoke.py --workdir runs/resnet18_smoke
"""

from jaxzoo.config.paper_zoos import resnet_zoo


def get_config():
    config = resnet_zoo("cifar10_resnet18_seed")
    config.name = "resnet18_smoke"
    config.original.experiment = config.original.net_dir = ""
    config.data.name = "mnist_5k"
    config.data.image_size = 8
    config.data.max_examples_per_split = 1000
    config.training.augmentation = "none"
    config.training.num_epochs = 2
    config.training.batch_size = 64
    config.population.num_seeds = 2
    return config
