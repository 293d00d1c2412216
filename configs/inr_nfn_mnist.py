"""NFN's MNIST SIREN zoo (`siren_mnist_wts`): one SIREN per image of the first 60,000 MNIST
images in train-then-test order (the NFN authors' MNIST zoo covers 60,000 of the 70,000).

Source: the NFN code (Zhou et al., NeurIPS 2023), its SIREN (Sitzmann et al.'s) and data loader.
Known from the code: 2->32->32->1, first and hidden w0 30, outermost layer linear, the SIREN
paper's init (first layer U(+-1/2), then U(+-sqrt(6/fan_in)/30)), PyTorch's default biases, no
output offset, inputs (row, column) from torch.meshgrid's default 'ij' indexing, targets in
[-1, 1] (ToTensor + Normalize(0.5, 0.5)), files net{idx}.pth with idx the image's position in
train-then-test order, one folder per class.
Not published, chosen here: the optimizer and steps (Adam lr 5e-4, 1,000 full-image steps, no
early stop). Augmentation copies (NFN's randinit_smaller_aug{k}: the same images refitted from
other random inits): set population.num_seeds = k + 1. Export with `--format nfn`.

Run:  python -m jaxzoo.train --config configs/inr_nfn_mnist.py --workdir runs/inr_nfn_mnist
Data: MNIST on this machine first (`python -m jaxzoo.data info mnist`).
Time: about 60,000 x 1,000 SIREN steps; see docs/benchmarks.md for this CPU and a GPU.
"""

from jaxzoo.inr.presets import nfn_zoo


def get_config():
    return nfn_zoo("inr_nfn_mnist", "mnist", 28, count=60000)
