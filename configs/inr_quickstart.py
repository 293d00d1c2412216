"""INR quickstart: one SIREN per image of the embedded mnist_5k (5,000 INRs), offline.

NFN's SIREN and conventions (2->32->32->1, w0 30, the SIREN paper's init, inputs (row, column),
pixels in [-1, 1]), so `--format all` exports it in NFN's layout too; this project's own quick
recipe: Adam lr 1e-3, at most 400 full-image steps, each model stopping at 30 dB PSNR, a
checkpoint every 50 steps. Measured: every image at 30 dB, in a median 166 steps (at most 291).

Run:  python -m jaxzoo.train --config configs/inr_quickstart.py --workdir runs/inr_quickstart
Time: about 2 minutes on a 2-core laptop CPU (measured 1 min 45 s; docs/benchmarks.md).
"""

from jaxzoo.inr.presets import nfn_zoo


def get_config():
    config = nfn_zoo("inr_quickstart", "mnist_5k", 28)
    config.training.num_steps = 400
    config.training.steps_per_epoch = 50
    config.training.lr = 1e-3
    config.training.target_psnr = 30.0
    config.notes = (
        "NFN's SIREN and conventions with this project's quick recipe (no published zoo to match): "
        "Adam 1e-3, at most 400 steps, stop at 30 dB."
    )
    return config
