"""DWSNets' MNIST INR zoo: one SIREN per MNIST image (60,000 train + 10,000 test), 70,000 INRs.

Source: the DWSNets code (Navon et al., ICML 2023), its INR class and its authors' fitting
recipe given in the project's issue tracker (the fitting script itself was never released).
Known from the code: 2->32->32->1, sine w0 30 after both hidden layers (the first layer too:
the class's `is_first` flag is never set, so the first layer gets U(+-sqrt(6/2)/30), not the
SIREN paper's U(+-1/2)), zero sine biases, a last nn.Linear with PyTorch's default init, +0.5
added to the output, inputs (x, y) = (column, row) from np.meshgrid(linspace(-1, 1, 28)).
Known from the recipe: Adam lr 5e-4, MSE, 1,000 steps, early stop at PSNR 40.
Inferred: pixels in [0, 1] (ToTensor, no Normalize; the +0.5 offset centres them), full-image
steps, PSNR against a data range of 1. Export with `--format dwsnets_mnist`.

Run:  python -m jaxzoo.train --config configs/inr_dwsnets_mnist.py --workdir runs/inr_dwsnets_mnist
Data: MNIST on this machine first (`python -m jaxzoo.data info mnist`).
Time: about 70,000 x 1,000 SIREN steps; see docs/benchmarks.md for this CPU and a GPU.
"""

from jaxzoo.inr.presets import dwsnets_zoo


def get_config():
    return dwsnets_zoo("inr_dwsnets_mnist", "mnist")
