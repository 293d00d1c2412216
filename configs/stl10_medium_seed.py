"""STL-10 medium (CNN-m, 32 px) Seed zoo: 1,000 models, 50 epochs, batch 10 (original `tune_zoo_stl_uniform_large`).

Grid: tanh, kaiming_uniform init, Adam lr 0.0001, wd 0.001, no dropout, seeds 1..1000.

Paper vs code (D3): the paper omits the max-pool after conv3; the code (followed here) has it.

Run:  python -m jaxzoo.train --config configs/stl10_medium_seed.py --workdir runs/stl10_medium_seed
Time: ~5 h on a 2-core CPU (measured: training 19k, evaluation 55k
model-samples/s with this zoo's factors; docs/benchmarks.md).
"""

from jaxzoo.config.paper_zoos import paper_zoo


def get_config():
    return paper_zoo("stl10_medium_seed")
