"""STL-10 small (CNN-s, 28 px) Seed zoo: 1,000 models, 50 epochs, batch 10 (original `tune_zoo_stl_small_uniform`).

Grid: tanh, kaiming_uniform init, Adam lr 0.0001, wd 0.001, no dropout, seeds 1..1000.

Run:  python -m jaxzoo.train --config configs/stl10_small_seed.py --workdir runs/stl10_small_seed
Time: ~2 h on a 2-core CPU (measured: training 58k, evaluation 153k
model-samples/s with this zoo's factors; docs/benchmarks.md).
"""

from jaxzoo.config.paper_zoos import paper_zoo


def get_config():
    return paper_zoo("stl10_small_seed")
