"""STL-10 small (CNN-s, 28 px) Hyp-10-rand zoo: 2,560 models, 50 epochs, batch 10 (original `tune_zoo_stl_small_hyperparameter_10_random_seeds`).

Grid: 4 activations x 4 inits x adam/sgd x lr {0.001, 0.0001} x wd {0.01, 0.001} x dropout {0, 0.5} x 10 random seeds per grid point.

Run:  python -m jaxzoo.train --config configs/stl10_small_hyp10_rand.py --workdir runs/stl10_small_hyp10_rand
Time: ~6 h on a 2-core CPU (measured: training 40k, evaluation 159k
model-samples/s with this zoo's factors; docs/benchmarks.md).
"""

from jaxzoo.config.paper_zoos import paper_zoo


def get_config():
    return paper_zoo("stl10_small_hyp10_rand")
