"""NFN's CIFAR-10 SIREN zoo (`siren_cifar_wts`): one SIREN per CIFAR-10 image, 60,000 (50,000
train, then 10,000 test), colour at 32x32: 2->32->32->3, with NFN's MNIST recipe otherwise (what
is known and what is chosen: configs/inr_nfn_mnist.py). Export with `--format nfn`.

Run:  python -m jaxzoo.train --config configs/inr_nfn_cifar10.py --workdir runs/inr_nfn_cifar10
Data: CIFAR-10 on this machine first (`python -m jaxzoo.data info cifar10`).
Time: 60,000 x 1,000 steps of a 1,024-pixel SIREN; see docs/benchmarks.md for this CPU and a GPU.
"""

from jaxzoo.inr.presets import nfn_zoo


def get_config():
    return nfn_zoo("inr_nfn_cifar10", "cifar10", 32)
