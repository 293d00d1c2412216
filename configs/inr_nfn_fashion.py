"""NFN's Fashion-MNIST SIREN zoo (`siren_fashion_wts`): one SIREN per image, 70,000 in
train-then-test order. NFN's code has no Fashion-MNIST recipe of its own: this is its MNIST
one on this dataset (what is known and what is chosen: configs/inr_nfn_mnist.py).
Export with `--format nfn`.

Run:  python -m jaxzoo.train --config configs/inr_nfn_fashion.py --workdir runs/inr_nfn_fashion
Data: Fashion-MNIST on this machine first (`python -m jaxzoo.data info fashion_mnist`).
Time: 70,000 x 1,000 SIREN steps; see docs/benchmarks.md for this CPU and a GPU.
"""

from jaxzoo.inr.presets import nfn_zoo


def get_config():
    return nfn_zoo("inr_nfn_fashion", "fashion_mnist", 28)
