"""CIFAR-10 medium (CNN-m, 32 px) Seed zoo: 1,000 models, 50 epochs, batch 10 (original `tune_zoo_cifar10_uniform_large`).

Grid: gelu, kaiming_uniform init, Adam lr 0.0001, wd 0.01, no dropout, seeds 1..1000.

Paper vs code (D3): the paper omits the max-pool after conv3; the code (followed here) has it.

Run:  python -m jaxzoo.train --config configs/cifar10_medium_seed.py --workdir runs/cifar10_medium_seed
Time: ~41 h on a 2-core CPU (measured: training 16k, evaluation 49k
model-samples/s with this zoo's factors; docs/benchmarks.md).
"""

from jaxzoo.config.paper_zoos import paper_zoo


def get_config():
    return paper_zoo("cifar10_medium_seed")
