"""SVHN Hyp-10-rand zoo: 4,320 models, 50 epochs, batch 10 (original `tune_zoo_svhn_hyperparameter_10_random_seeds`).

Grid: 4 activations x 4 inits x sgd x lr {0.01, 0.001, 0.0001} x wd {0, 0.001, 0.1} x dropout {0, 0.3, 0.5} x 10 random seeds per grid point.

Paper vs code (D1): the paper gives Adam+SGD, lr {1e-3,1e-4}, wd {1e-3,1e-4,0}; this
follows the code: SGD only, lr {1e-2,1e-3,1e-4}, wd {0,1e-3,1e-1}.

Run:  python -m jaxzoo.train --config configs/svhn_hyp10_rand.py --workdir runs/svhn_hyp10_rand
Time: ~76 h on a 2-core CPU (measured: training 55k, evaluation 245k
model-samples/s with this zoo's factors; docs/benchmarks.md).
"""

from jaxzoo.config.paper_zoos import paper_zoo


def get_config():
    return paper_zoo("svhn_hyp10_rand")
