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

from jaxzoo.inr.config import base_inr_config

DATASET, IMAGE_SIZE, COUNT = "mnist", 28, 60000


def get_config():
    config = base_inr_config()
    config.name = "inr_nfn_mnist"
    config.data.name = DATASET
    config.data.image_size = IMAGE_SIZE
    config.images.splits = ("train", "test")
    config.images.count = COUNT
    config.model.widths = (32, 32)
    config.model.w0_first = 30.0
    config.model.w0_hidden = 30.0
    config.model.first_init = "siren"
    config.model.bias_init = "torch_default"
    config.model.last_init = "sine"
    config.model.output_offset = 0.0
    config.model.coordinates = "ij"
    config.model.target_range = "symmetric"
    config.training.num_steps = 1000
    config.training.steps_per_epoch = 100
    config.training.optimizer = "adam"
    config.training.lr = 5e-4
    config.training.target_psnr = 0.0
    config.notes = ("NFN's SIREN and layout as its code has them ('ij' inputs, targets in [-1, 1], no offset). "
                    "The optimizer and steps were not published: Adam 5e-4 for 1,000 steps is this project's choice.")
    return config
