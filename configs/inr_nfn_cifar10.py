"""NFN's CIFAR-10 SIREN zoo (`siren_cifar_wts`): one SIREN per CIFAR-10 image, 60,000 (50,000
train, then 10,000 test), colour at 32x32: 2->32->32->3.

Source: the NFN code (Zhou et al., NeurIPS 2023), its SIREN (Sitzmann et al.'s) and data loader.
Known from the code: 2->32->32->3, first and hidden w0 30, outermost layer linear, the SIREN
paper's init (first layer U(+-1/2), then U(+-sqrt(6/fan_in)/30)), PyTorch's default biases, no
output offset, inputs (row, column) from torch.meshgrid's default 'ij' indexing, targets in
[-1, 1] (ToTensor + Normalize(0.5, 0.5)), files net{idx}.pth with idx the image's position in
train-then-test order, one folder per class.
Not published, chosen here: the optimizer and steps (Adam lr 5e-4, 1,000 full-image steps, no
early stop). Augmentation copies (NFN's randinit_smaller_aug{k}: the same images refitted from
other random inits): set population.num_seeds = k + 1. Export with `--format nfn`.

Run:  python -m jaxzoo.train --config configs/inr_nfn_cifar10.py --workdir runs/inr_nfn_cifar10
Data: CIFAR-10 on this machine first (`python -m jaxzoo.data info cifar10`).
Time: about 60,000 x 1,000 SIREN steps; see docs/benchmarks.md for this CPU and a GPU.
"""

from jaxzoo.inr.presets import nfn_zoo


def get_config():
    return nfn_zoo("inr_nfn_cifar10", "cifar10", 32)
