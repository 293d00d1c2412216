"""STL-10 medium (CNN-m, 32 px) Hyp-10-fix zoo: 2,560 models, 50 epochs, batch 10 (original `tune_zoo_stl_large_hyperparameter_10_fixed_seeds`).

Grid: 4 activations x 4 inits x adam/sgd x lr {0.001, 0.0001} x wd {0.01, 0.001} x dropout {0, 0.5} x seeds 1..10.

Paper vs code (D3): the paper omits the max-pool after conv3; the code (followed here) has it.

Run:  python -m jaxzoo.train --config configs/stl10_medium_hyp10_fix.py --workdir runs/stl10_medium_hyp10_fix
Time: ~17 h on a 2-core CPU (measured: training 14k, evaluation 50k
model-samples/s with this zoo's factors; docs/benchmarks.md).
"""

from jaxzoo.config.paper_zoos import paper_zoo


def get_config():
    return paper_zoo("stl10_medium_hyp10_fix")
