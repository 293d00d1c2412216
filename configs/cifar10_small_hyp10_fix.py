"""CIFAR-10 small (CNN-s, 28 px) Hyp-10-fix zoo: 1,280 models, 50 epochs, batch 10 (original `tune_zoo_cifar10_small_hyperparameter_10_fixed_seeds`).

Grid: 4 activations x 4 inits x adam/sgd x lr {0.001} x wd {0.01, 0.001} x dropout {0, 0.5} x seeds 1..10.

Run:  python -m jaxzoo.train --config configs/cifar10_small_hyp10_fix.py --workdir runs/cifar10_small_hyp10_fix
Time: ~22 h on a 2-core CPU (measured: training 38k, evaluation 144k
model-samples/s with this zoo's factors; docs/benchmarks.md).
"""

from jaxzoo.config.paper_zoos import paper_zoo


def get_config():
    return paper_zoo("cifar10_small_hyp10_fix")
