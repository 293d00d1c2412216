"""CIFAR-10 small (CNN-s, 28 px) Seed zoo: 1,000 models, 50 epochs, batch 10 (original `tune_zoo_cifar10_uniform_small`).

Grid: gelu, kaiming_uniform init, Adam lr 0.0001, wd 0.01, no dropout, seeds 1..1000.

Run:  python -m jaxzoo.train --config configs/cifar10_small_seed.py --workdir runs/cifar10_small_seed
Time: ~14 h on a 2-core CPU (measured: training 47k, evaluation 126k
model-samples/s with this zoo's factors; docs/benchmarks.md).
"""

from jaxzoo.config.paper_zoos import paper_zoo


def get_config():
    return paper_zoo("cifar10_small_seed")
