"""ResNet-18 Seed zoo on Tiny-ImageNet 64 px, 100k/-/10k (no val), flip+rotate 20, batch 128, 60 epochs, max lr 0.1 (original `tune_zoo_tinyimagenet_resnet18_kaiming_uniform`).

1,000 seeds, SGD momentum 0.9 + coupled L2 5e-4 under OneCycleLR (momentum cycle 0.95-0.85),
kaiming_uniform. Spread over devices and hosts: see README "ResNet-18 zoos".

Run:  python -m jaxzoo.train --config configs/tinyimagenet_resnet18_seed.py --workdir runs/tinyimagenet_resnet18_seed
"""

from jaxzoo.config.paper_zoos import paper_zoo


def get_config():
    return paper_zoo("tinyimagenet_resnet18_seed")
