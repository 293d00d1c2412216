"""DWSNets' Fashion-MNIST INR zoo: one SIREN per image (60,000 train + 10,000 test), 70,000
INRs, with DWSNets' INR class and recipe as for MNIST (what is known and what is inferred:
configs/inr_dwsnets_mnist.py). Export with `--format dwsnets_fmnist`.

Run:  python -m jaxzoo.train --config configs/inr_dwsnets_fmnist.py --workdir runs/inr_dwsnets_fmnist
Data: Fashion-MNIST on this machine first (`python -m jaxzoo.data info fashion_mnist`).
Time: at most 70,000 x 1,000 SIREN steps; see docs/benchmarks.md for this CPU and a GPU.
"""

from jaxzoo.inr.presets import dwsnets_zoo


def get_config():
    return dwsnets_zoo("inr_dwsnets_fmnist", "fashion_mnist")
