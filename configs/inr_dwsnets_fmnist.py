"""DWSNets' Fashion-MNIST INR zoo: one SIREN per image (60,000 train + 10,000 test), 70,000 INRs.

Source: the DWSNets code (Navon et al., ICML 2023), its INR class and its authors' fitting
recipe given in the project's issue tracker (the fitting script itself was never released).
Known from the code: 2->32->32->1, sine w0 30 after both hidden layers (the first layer too:
the class's `is_first` flag is never set, so the first layer gets U(+-sqrt(6/2)/30), not the
SIREN paper's U(+-1/2)), zero sine biases, a last nn.Linear with PyTorch's default init, +0.5
added to the output, inputs (x, y) = (column, row) from np.meshgrid(linspace(-1, 1, 28)).
Known from the recipe (the same for both datasets): Adam lr 5e-4, MSE, 1,000 steps, early stop at PSNR 40.
Inferred: pixels in [0, 1] (ToTensor, no Normalize; the +0.5 offset centres them), full-image
steps, PSNR against a data range of 1. Export with `--format dwsnets_fmnist`.

Run:  python -m jaxzoo.train --config configs/inr_dwsnets_fmnist.py --workdir runs/inr_dwsnets_fmnist
Data: MNIST on this machine first (`python -m jaxzoo.data info fashion_mnist`).
Time: about 70,000 x 1,000 SIREN steps; see docs/benchmarks.md for this CPU and a GPU.
"""

from jaxzoo.inr.config import base_inr_config


def get_config():
    config = base_inr_config()
    config.name = "inr_dwsnets_fmnist"
    config.data.name = "fashion_mnist"
    config.images.splits = ("train", "test")
    config.model.widths = (32, 32)
    config.model.w0_first = 30.0
    config.model.w0_hidden = 30.0
    config.model.first_init = "sine"
    config.model.bias_init = "zero"
    config.model.last_init = "torch_default"
    config.model.output_offset = 0.5
    config.model.coordinates = "xy"
    config.model.target_range = "unit"
    config.training.num_steps = 1000
    config.training.steps_per_epoch = 100
    config.training.optimizer = "adam"
    config.training.lr = 5e-4
    config.training.target_psnr = 40.0
    config.notes = ("DWSNets' INR class as its code has it (first layer U(+-sqrt(6/2)/30) since is_first is never "
                    "set; zero sine biases; last layer PyTorch default; +0.5; 'xy' inputs) and its authors' recipe "
                    "(Adam 5e-4, 1,000 steps, stop at 40 dB). Inferred: pixels in [0, 1], full-image steps.")
    return config
