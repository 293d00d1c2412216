"""The paper's Table 1 zoos (24 CNN, 3 ResNet-18), with the original code's values.

Each `configs/<zoo>.py` returns `paper_zoo("<zoo>")`. Where the paper and the original code
disagree, the code wins and `config.notes` says so.
"""

from __future__ import annotations

import ml_collections

from jaxzoo.config.base import base_config

HYP_ACTIVATIONS = ("tanh", "relu", "sigmoid", "gelu")
HYP_INITS = ("uniform", "normal", "kaiming_uniform", "kaiming_normal")

COMMON_NOTES = (
    "Follows the original code (ModelZooDataset @efccaf3): val is recorded every epoch (the "
    "shipped tensor loader never built one, C1); the workdir keeps the optimizer state of every "
    "epoch, and the export writes the last epoch's (as the paper) or every epoch's with "
    "--optimizer_state all (as the code; D4); "
    "model randomness comes from the model seed through JAX keys, so runs match the original "
    "in distribution, not bitwise. Labels such as C1 and D4 are those of docs/protocol.md."
)

# dataset, image size, arch, original Seed experiment, original Hyp experiment prefix, net_dir
FAMILIES = {
    "mnist": ("mnist", 28, "cnn_s", "tune_zoo_mnist_uniform", "tune_zoo_mnist_", "zoos/MNIST"),
    "fmnist": ("fashion_mnist", 28, "cnn_s", "tune_zoo_f_mnist_uniform", "tune_zoo_f_mnist_", "zoos/F_MNIST"),
    "svhn": ("svhn", 28, "cnn_s", "tune_zoo_svhn_uniform", "tune_zoo_svhn_", "zoos/SVHN"),
    "usps": ("usps", 28, "cnn_s", "tune_zoo_usps_uniform", "tune_zoo_usps_", "zoos/USPS"),
    "cifar10_small": (
        "cifar10",
        28,
        "cnn_s",
        "tune_zoo_cifar10_uniform_small",
        "tune_zoo_cifar10_small_",
        "zoos/CIFAR10/small",
    ),
    "cifar10_medium": (
        "cifar10",
        32,
        "cnn_m",
        "tune_zoo_cifar10_uniform_large",
        "tune_zoo_cifar10_large_",
        "zoos/CIFAR10/large",
    ),
    "stl10_small": ("stl10", 28, "cnn_s", "tune_zoo_stl_small_uniform", "tune_zoo_stl_small_", "zoos/STL-10/small"),
    "stl10_medium": ("stl10", 32, "cnn_m", "tune_zoo_stl_uniform_large", "tune_zoo_stl_large_", "zoos/STL-10/large"),
}

# Seed zoos: activation, init, lr, weight decay (Adam, dropout 0, seeds 1..1000).
SEED_ZOOS = {
    "mnist": ("tanh", "uniform", 3e-4, 0.0),
    "fmnist": ("tanh", "uniform", 3e-4, 0.0),
    "svhn": ("tanh", "uniform", 3e-3, 0.0),
    "usps": ("tanh", "uniform", 3e-4, 1e-3),
    "cifar10_small": ("gelu", "kaiming_uniform", 1e-4, 1e-2),
    "cifar10_medium": ("gelu", "kaiming_uniform", 1e-4, 1e-2),
    "stl10_small": ("tanh", "kaiming_uniform", 1e-4, 1e-3),
    "stl10_medium": ("tanh", "kaiming_uniform", 1e-4, 1e-3),
}

# Hyp zoos: optimizers, lrs, weight decays, dropouts (x 4 activations x 4 inits x 10 seeds).
HYP_ZOOS = {
    "mnist": (("adam", "sgd"), (1e-3, 1e-4), (1e-3, 1e-4), (0.0, 0.5)),
    "fmnist": (("adam", "sgd"), (1e-3, 1e-4), (1e-3, 1e-4), (0.0, 0.5)),
    "svhn": (("sgd",), (1e-2, 1e-3, 1e-4), (0.0, 1e-3, 1e-1), (0.0, 0.3, 0.5)),
    "usps": (("adam", "sgd"), (1e-3, 1e-4), (1e-2, 1e-3), (0.0, 0.5)),
    "cifar10_small": (("adam", "sgd"), (1e-3,), (1e-2, 1e-3), (0.0, 0.5)),
    "cifar10_medium": (("adam", "sgd"), (1e-3,), (1e-2, 1e-3), (0.0, 0.5)),
    "stl10_small": (("adam", "sgd"), (1e-3, 1e-4), (1e-2, 1e-3), (0.0, 0.5)),
    "stl10_medium": (("adam", "sgd"), (1e-3, 1e-4), (1e-2, 1e-3), (0.0, 0.5)),
}

FAMILY_NOTES = {
    "svhn_hyp": (
        "D1: the paper gives Adam+SGD, lr {1e-3,1e-4}, wd {1e-3,1e-4,0}; the code (followed "
        "here) uses SGD only, lr {1e-2,1e-3,1e-4}, wd {0,1e-3,1e-1}: 4,320 models, which makes "
        "the paper's total of 50,360."
    ),
    "medium": "D3: the paper's Table 4 omits the max-pool after conv3; the code has it (60 inputs to fc0).",
    "svhn": "SVHN is grayscale, centre-cropped to 28 px (the Seed script's data, used by all SVHN zoos; C2).",
}

KINDS = ("seed", "hyp10_fix", "hyp10_rand")
ORIGINAL_KIND = {
    "seed": "uniform",
    "hyp10_fix": "hyperparameter_10_fixed_seeds",
    "hyp10_rand": "hyperparameter_10_random_seeds",
}

CNN_PAPER_ZOOS = tuple(f"{family}_{kind}" for family in FAMILIES for kind in KINDS)

# ResNet-18 Seed zoos (rows 25-27): dataset, image size, OneCycle max lr, batch, epochs,
# original experiment, net_dir, augmentation.
RESNET_ZOOS = {
    "cifar10_resnet18_seed": (
        "cifar10_resnet",
        32,
        0.05,
        256,
        50,
        "tune_zoo_cifar10_resnet18_kaiming_uniform",
        "zoos/CIFAR10/resnet19/kaiming_uniform",
        "crop_flip",
    ),
    "cifar100_resnet18_seed": (
        "cifar100",
        32,
        0.1,
        128,
        60,
        "tune_zoo_cifar100_resnet18_kaiming_uniform",
        "zoos/CIFAR100/resnet18/kaiming_uniform",
        "crop_flip",
    ),
    "tinyimagenet_resnet18_seed": (
        "tiny_imagenet",
        64,
        0.1,
        128,
        60,
        "tune_zoo_tinyimagenet_resnet18_kaiming_uniform",
        "zoos/TinyImageNet/resnet18/kaiming_uniform",
        "flip_rotate",
    ),
}

RESNET_NOTES = (
    "ResNet-18 as the original code: CIFAR stem (3x3, stride 1, no max-pool), kaiming_uniform on "
    "every conv and linear weight, fc bias 0.01; SGD momentum 0.9 with coupled L2 5e-4 under "
    "PyTorch's OneCycleLR, whose momentum cycle 0.95 -> 0.85 -> 0.95 overrides the 0.9 "
    "(the paper gives lr '1e-4*': the code's max lr is followed). The last partial batch "
    "of an epoch is trained at its real size, as PyTorch's DataLoader. Differences from the "
    "original: augmentation runs on the device from the model seed (per model and step), and "
    "val and train-at-epoch-0 metrics use un-augmented images (the original evaluated them on "
    "the augmented train dataset)."
)

PAPER_ZOOS = CNN_PAPER_ZOOS + tuple(RESNET_ZOOS)


# What the original scripts wrote into params.json beyond the factors (per experiment; the
# values are the scripts' own, unused ones included: the CNNs ignore o_dim and use_bias).
SCRIPT_RECORDS = {
    "training::start_epoch": 1,
    "training::output_epoch": 1,
    "training::val_epochs": 1,
    "training::idx_out": 500,
    "training::checkpoint_dir": None,
}
O_DIM_4 = ("tune_zoo_mnist_uniform", "tune_zoo_f_mnist_uniform", "tune_zoo_svhn_uniform")
NO_USE_BIAS = ("tune_zoo_mnist_", "tune_zoo_f_mnist_", "tune_zoo_svhn_")  # Hyp scripts without the key
INTEGER_DROPOUT_ZERO = (
    "tune_zoo_cifar10_uniform_",
    "tune_zoo_cifar10_small_h",
    "tune_zoo_cifar10_large_h",
    "tune_zoo_stl_small_h",
    "tune_zoo_stl_large_h",
    "tune_zoo_usps_h",
)


def recorded_params(experiment: str, params: dict) -> dict:
    """A trial's params.json (original keys) as the original script of paper zoo `experiment`
    recorded it: o_dim, use_bias (absent from the MNIST/F-MNIST/SVHN Hyp scripts), training::*,
    and a zero the script wrote as the integer 0. Other zoos' params come back unchanged."""
    known = {original_experiment(f, k) for f in FAMILIES for k in KINDS} | {z[5] for z in RESNET_ZOOS.values()}
    if experiment not in known:
        return params
    params = {**params, **SCRIPT_RECORDS}
    if experiment in O_DIM_4:
        params["model::o_dim"] = 4
    if experiment.startswith(NO_USE_BIAS) and "hyperparameter" in experiment:
        params.pop("model::use_bias", None)
    else:
        params["model::use_bias"] = False  # recorded, never read: every layer has a bias
    if experiment.startswith(INTEGER_DROPOUT_ZERO) and params.get("model::dropout") == 0:
        params["model::dropout"] = 0
    if experiment.startswith("tune_zoo_svhn_hyperparameter") and params.get("optim::wd") == 0:
        params["optim::wd"] = 0
    if "resnet18" in experiment:
        params.update({"training::loss": "nll", "testloader::workers": 3})
    return params


def original_experiment(family: str, kind: str) -> str:
    """The original's experiment folder name (irregular spellings included)."""
    _, _, _, seed_experiment, hyp_prefix, _ = FAMILIES[family]
    if kind == "seed":
        return seed_experiment
    suffix = ORIGINAL_KIND[kind]
    return hyp_prefix + (suffix[:-1] if family == "usps" else suffix)  # USPS says "seed"


def paper_zoo(name: str) -> ml_collections.ConfigDict:
    """The config of the paper's zoo `name` (e.g. 'svhn_seed', 'mnist_hyp10_fix')."""
    if name not in PAPER_ZOOS:
        raise ValueError(f"unknown paper zoo {name!r}; choose one of {PAPER_ZOOS}")
    if name in RESNET_ZOOS:
        return resnet_zoo(name)
    family, kind = next((f, k) for f in FAMILIES for k in KINDS if name == f"{f}_{k}")
    dataset, image_size, arch, _, _, net_dir = FAMILIES[family]
    config = base_config()
    config.name = name
    config.data.name = dataset
    config.data.image_size = image_size
    config.model.arch = arch
    config.training.num_epochs = 50
    config.training.batch_size = 10
    config.original.experiment = original_experiment(family, kind)
    config.original.net_dir = net_dir
    pop = config.population
    notes = [COMMON_NOTES]
    if kind == "seed":
        activation, init, lr, weight_decay = SEED_ZOOS[family]
        pop.seed_mode, pop.num_seeds, pop.first_seed = "range", 1000, 1
        pop.activation, pop.init, pop.optimizer = (activation,), (init,), ("adam",)
        pop.lr, pop.weight_decay, pop.dropout = (lr,), (weight_decay,), (0.0,)
    else:
        optimizers, lrs, weight_decays, dropouts = HYP_ZOOS[family]
        pop.seed_mode = "range" if kind == "hyp10_fix" else "random"
        pop.num_seeds, pop.first_seed = 10, 1
        pop.activation, pop.init, pop.optimizer = HYP_ACTIVATIONS, HYP_INITS, optimizers
        pop.lr, pop.weight_decay, pop.dropout = lrs, weight_decays, dropouts
        pop.momentum = 0.9
        if family == "svhn":
            notes.append(FAMILY_NOTES["svhn_hyp"])
    if family == "svhn":
        notes.append(FAMILY_NOTES["svhn"])
    if arch == "cnn_m":
        notes.append(FAMILY_NOTES["medium"])
    config.notes = " ".join(notes)
    return config


def resnet_zoo(name: str) -> ml_collections.ConfigDict:
    """One of the three ResNet-18 Seed zoos: 1,000 seeds, OneCycle SGD, on-device augmentation."""
    dataset, image_size, max_lr, batch, epochs, experiment, net_dir, augmentation = RESNET_ZOOS[name]
    config = base_config()
    config.name = name
    config.data.name = dataset
    config.data.image_size = image_size
    config.model.arch = "resnet18"
    config.training.num_epochs = epochs
    config.training.batch_size = batch
    config.training.scheduler = "one_cycle"
    config.training.augmentation = augmentation
    config.original.experiment = experiment
    config.original.net_dir = net_dir
    pop = config.population
    pop.seed_mode, pop.num_seeds, pop.first_seed = "range", 1000, 1
    pop.activation, pop.init, pop.optimizer = ("relu",), ("kaiming_uniform",), ("sgd",)
    pop.lr, pop.weight_decay, pop.dropout, pop.momentum = (max_lr,), (5e-4,), (0.0,), 0.9
    notes = [RESNET_NOTES]
    if dataset == "tiny_imagenet":
        notes.append(
            "Tiny-ImageNet: the official val set is the test split and there is no val split "
            "(val metrics are null), as the original."
        )
    config.notes = " ".join(notes)
    return config


# ------------------------------------------------- the Small CNN Zoo (Unterthiner et al. 2020)
# Its presets (configs/small_cnn_zoo_*.py): the paper's sampled ranges as grids, since a jaxzoo
# population is a grid of factor values times seeds. What comes from where: the architecture,
# batch size, input scaling, grayscale (channel mean), dropout placement, L2 on kernels only and
# evaluation are the generator's training script; the checkpoints, epochs, seed 42 and train
# fractions its README; the ranges of lr, L2, dropout, init std, activation and optimizer are the
# paper's description as we know it, not confirmed against its text (neither the script nor the
# README fixes them; the paper's second version lowered the largest learning rate): check them
# before relying on the presets' ranges.
SMALL_CNN_ZOO_MODULE = "small_cnn_zoo"
# The published zoo's checkpoints (epochs); pass them as `epochs` to export a zoo trained for 86
# epochs as the published one was.
PUBLISHED_STEPS = (0, 1, 2, 3, 20, 40, 60, 80, 86)
PRESET_DATA = {  # published dataset -> (jaxzoo dataset, image size, what differs in the input)
    "mnist": (
        "mnist",
        28,
        "MNIST: 50,000 train images (jaxzoo cuts 10,000 for val; the original trained on all 60,000), "
        "normalised with MNIST's mean and std rather than to [-1, 1].",
    ),
    "fashion_mnist": (
        "fashion_mnist",
        28,
        "Fashion-MNIST: 50,000 train images (10,000 cut for val; the original trained on all 60,000), "
        "scaled to [-1, 1] as the original.",
    ),
    "cifar10": (
        "cifar10_gs",
        32,
        "CIFAR-10-GS: 32 px, one channel the mean of R, G, B scaled to [-1, 1] as the original (jaxzoo "
        "caches it rounded to uint8: within 1/255 of the original's float mean); 42,000 train images "
        "(8,000 cut for val; the original 50,000).",
    ),
    "svhn_cropped": (
        "svhn_gs",
        32,
        "SVHN-GS: 32 px, one channel the mean of R, G, B scaled to [-1, 1] as the original (jaxzoo caches "
        "it rounded to uint8: within 1/255 of the original's float mean); 60,000 train images (13,257 cut "
        "for val; the original 73,257).",
    ),
}
PRESET_NOTES = (
    "The Small CNN Zoo (Unterthiner et al. 2020, 'Predicting Neural Network Accuracy from Weights') "
    "regenerated with jaxzoo: its CNN (model.module small_cnn_zoo), 86 epochs, batch 512 (the training "
    "script's default; jaxzoo keeps an epoch's last, smaller batch, the original dropped it), Keras's optimizer defaults (SGD without momentum, RMSprop rho 0.9 as alpha, "
    "epsilon 1e-7; TF's Adam adds epsilon to the uncorrected sqrt(v), PyTorch's to the corrected one). "
    "The original drew each of ~30,000 models' hyperparameters at random (the ranges below follow the "
    "paper's description and are not confirmed against its text); a jaxzoo population is a grid, "
    "so each range is a few points across it, times 5 seeds drawn at random (the original: seed 42 for "
    "every model): optimizer {adam, rmsprop, sgd}; learning rate log-uniform [5e-4, 5e-2] -> 5 points; "
    "Keras L2 coefficient c log-uniform [1e-8, 1e-2] -> {1e-8, 1e-6, 1e-4, 1e-2}, as weight_decay 2c "
    "(the same gradient 2c * w on the kernels, but jaxzoo also decays the biases, Keras did not); "
    "activation {relu, tanh}; dropout uniform [0, 0.7] after each of the three convolutions -> "
    "{0, 0.35, 0.7} (the module applies each model's rate); train fraction {0.1, 0.25, 0.5, 1} "
    "(jaxzoo draws the subset from each model's seed; the original took the first examples of a "
    "1,024-buffer shuffle with seed 42). Inits: jaxzoo has no orthogonal, RandomNormal or "
    "TruncatedNormal init and no init std (the original's init_std, log-uniform [1e-3, 0.5], applied to "
    "those), and its normal inits are untruncated (Keras's he_normal and glorot_normal are truncated): "
    "the zoo uses xavier_normal, xavier_uniform (Keras glorot_uniform), kaiming_normal and "
    "kaiming_uniform (Keras he_uniform); biases start at 0.01 (the original: zeros). Recorded losses are "
    "the cross-entropy (the original's included the L2 penalty), train loss and accuracy are running values "
    "over the epoch (the original evaluated the train set after the epoch). Every epoch is kept; "
    "`write_small_cnn_zoo(..., epochs=PUBLISHED_STEPS)` writes the published checkpoints 0, 1, 2, 3, 20, "
    "40, 60, 80, 86."
)


def published_zoo_config(dataset: str) -> ml_collections.ConfigDict:
    """The preset of the Small CNN Zoo of `dataset` ('mnist', 'fashion_mnist', 'cifar10',
    'svhn_cropped'); `notes` says what differs from the original.

    Grid: optimizer {adam, rmsprop, sgd} x lr 5 points in [5e-4, 5e-2] x L2 {1e-8, 1e-6, 1e-4,
    1e-2} (as weight_decay 2c) x activation {relu, tanh} x 4 inits x train fraction {0.1, 0.25,
    0.5, 1} x dropout {0, 0.35, 0.7} x 5 random seeds: 28,800 small_cnn_zoo models, 86 epochs,
    batch 512. The original drew ~30,000 models' hyperparameters from these ranges at random
    (ranges as the paper describes them, not confirmed against its text; batch size, scaling and
    grayscale from the generator's training script; checkpoints and train fractions from its
    README).
    Size: 100-200 GB of checkpoints (87 epochs of params and optimizer state: 19,880 bytes of
    params per model, 59,660 with Adam's state); the export of the 9 published epochs is
    28,800 x 9 rows of 4,970 float32, 5.2 GB.
    Time: not measured at full size. The first 64 models for 2 epochs of mnist_5k (3,500 train
    images) took 227 s on a shared 2-core CPU, compile and evaluation included; that rate scaled
    to 28,800 models x 86 epochs x ~50,000 images is about two CPU-years: train it on a GPU, or a
    part of it."""
    name, image_size, data_notes = PRESET_DATA[dataset]
    config = base_config()
    config.name = f"small_cnn_zoo_{name}"  # the preset's file name: small_cnn_zoo_svhn_gs, ...
    config.data.name, config.data.image_size = name, image_size
    config.model.module = SMALL_CNN_ZOO_MODULE
    config.training.num_epochs = PUBLISHED_STEPS[-1]
    config.training.batch_size = 512
    pop = config.population
    pop.seed_mode, pop.num_seeds, pop.first_seed = "random", 5, 1
    pop.activation = ("relu", "tanh")
    pop.init = ("xavier_normal", "xavier_uniform", "kaiming_normal", "kaiming_uniform")
    pop.optimizer = ("adam", "rmsprop", "sgd")
    pop.lr = (5e-4, 1.6e-3, 5e-3, 1.6e-2, 5e-2)
    pop.weight_decay = (2e-8, 2e-6, 2e-4, 2e-2)  # 2c for Keras's l2(c), c in {1e-8, 1e-6, 1e-4, 1e-2}
    pop.dropout = (0.0, 0.35, 0.7)  # uniform [0, 0.7] in the original; the module takes each model's rate
    pop.train_fraction = (0.1, 0.25, 0.5, 1.0)
    pop.momentum = 0.0  # Keras's SGD and RMSprop
    pop.alpha = (0.9,)  # Keras's RMSprop rho
    pop.eps = (1e-7,)  # Keras's Adam and RMSprop epsilon
    config.notes = f"{PRESET_NOTES} {data_notes}"
    return config
