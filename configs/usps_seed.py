"""USPS Seed zoo: 1,000 models, 50 epochs, batch 10 (original `tune_zoo_usps_uniform`).

Grid: tanh, uniform init, Adam lr 0.0003, wd 0.001, no dropout, seeds 1..1000.

Run:  python -m jaxzoo.train --config configs/usps_seed.py --workdir runs/usps_seed
Time: ~60 min on a 2-core CPU (measured: training 100k, evaluation 248k
model-samples/s with this zoo's factors; docs/benchmarks.md).
"""

from jaxzoo.config.paper_zoos import paper_zoo


def get_config():
    return paper_zoo("usps_seed")
