"""Fashion-MNIST Hyp-10-rand zoo: 2,560 models, 50 epochs, batch 10 (original `tune_zoo_f_mnist_hyperparameter_10_random_seeds`).

Grid: 4 activations x 4 inits x adam/sgd x lr {0.001, 0.0001} x wd {0.001, 0.0001} x dropout {0, 0.5} x 10 random seeds per grid point.

Run:  python -m jaxzoo.train --config configs/fmnist_hyp10_rand.py --workdir runs/fmnist_hyp10_rand
Time: ~38 h on a 2-core CPU (measured: training 51k, evaluation 239k
model-samples/s with this zoo's factors; docs/benchmarks.md).
"""

from jaxzoo.config.paper_zoos import paper_zoo


def get_config():
    return paper_zoo("fmnist_hyp10_rand")
