"""INR quickstart: one SIREN per image of the embedded mnist_5k (5,000 INRs), offline.

SIREN 2->32->32->1 (w0 30, the SIREN paper's init: first layer U(+-1/2), then
U(+-sqrt(6/fan_in)/30)), pixels in [0, 1], Adam lr 1e-3, at most 300 full-image steps, each
model stopping at 30 dB PSNR; a checkpoint every 50 steps.

Run:  python -m jaxzoo.train --config configs/inr_quickstart.py --workdir runs/inr_quickstart
Time: about 3 minutes on a 2-core laptop CPU (measured: see docs/benchmarks.md).
"""

from jaxzoo.inr.config import base_inr_config


def get_config():
    config = base_inr_config()
    config.name = "inr_quickstart"
    config.data.name = "mnist_5k"
    config.images.splits = ("train", "test")
    config.training.num_steps = 300
    config.training.steps_per_epoch = 50
    config.training.lr = 1e-3
    config.training.target_psnr = 30.0
    config.notes = ("A quick zoo of this project's own recipe (no published zoo to match): the SIREN paper's "
                    "init and Adam at 1e-3 reach 30 dB on most MNIST digits in about 150 steps.")
    return config
