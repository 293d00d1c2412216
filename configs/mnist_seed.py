"""MNIST Seed zoo: 1,000 models, 50 epochs, batch 10 (original `tune_zoo_mnist_uniform`).

Grid: tanh, uniform init, Adam lr 0.0003, wd 0, no dropout, seeds 1..1000.

Run:  python -m jaxzoo.train --config configs/mnist_seed.py --workdir runs/mnist_seed
Time: ~8 h on a 2-core CPU (measured: training 95k, evaluation 242k
model-samples/s with this zoo's factors; docs/benchmarks.md).
"""

from jaxzoo.config.paper_zoos import paper_zoo


def get_config():
    return paper_zoo("mnist_seed")
