"""ResNet-18 Seed zoo on CIFAR-100, 40k/10k/10k, crop+flip, batch 128, 60 epochs, max lr 0.1 (original `tune_zoo_cifar100_resnet18_kaiming_uniform`).

1,000 seeds, SGD momentum 0.9 + coupled L2 5e-4 under OneCycleLR (momentum cycle 0.95-0.85),
kaiming_uniform. Spread over devices and hosts: see README "ResNet-18 zoos".

Run:  python -m jaxzoo.train --config configs/cifar100_resnet18_seed.py --workdir runs/cifar100_resnet18_seed
"""

from jaxzoo.config.paper_zoos import paper_zoo


def get_config():
    return paper_zoo("cifar100_resnet18_seed")
