"""Grid expansion, seeds, and every config in configs/ expanding and validating."""

import importlib.util
import pathlib

import numpy as np
import pytest

from jaxzoo.config import ConfigError, base_config, identity, validate
from jaxzoo.config.paper_zoos import PAPER_ZOOS, PRESET_DATA
from jaxzoo.training.population import build_population, expand_grid

CONFIG_DIR = pathlib.Path(__file__).resolve().parents[1] / "configs"
EXPECTED_MODELS = {"seed": 1000, "svhn_hyp": 4320, "cifar10_hyp": 1280, "hyp": 2560}


def load_config(path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config()


@pytest.mark.parametrize(
    "path", sorted(p for p in CONFIG_DIR.glob("*.py") if not p.stem.startswith("inr_")), ids=lambda p: p.stem
)
def test_every_config_expands_and_validates(path):
    config = load_config(path)
    validate(config)
    table = expand_grid(config.population, config.seed)
    assert len(table) >= (2 if path.stem == "resnet18_smoke" else 64)
    assert [row["model_id"] for row in table] == list(range(len(table)))
    presets = [f"small_cnn_zoo_{name}" for name, _, _ in PRESET_DATA.values()]
    assert path.stem in (*PAPER_ZOOS, *presets, "quickstart", "default", "resnet18_smoke")
    assert path.stem not in presets or config.name == path.stem


def test_paper_zoo_sizes_total_the_papers_cnn_count():
    counts = {}
    for name in PAPER_ZOOS:
        config = load_config(CONFIG_DIR / f"{name}.py")
        counts[name] = len(expand_grid(config.population, config.seed))
    assert len(counts) == 27
    assert counts["svhn_hyp10_fix"] == 4320 and counts["cifar10_medium_hyp10_rand"] == 1280
    assert counts["mnist_seed"] == 1000 and counts["stl10_small_hyp10_fix"] == 2560
    assert counts["cifar10_resnet18_seed"] == counts["tinyimagenet_resnet18_seed"] == 1000
    assert sum(counts.values()) == 50_360  # the paper's total


def test_resnet_zoos_follow_the_original_code():
    c10, c100, tiny = (
        load_config(CONFIG_DIR / f"{n}_resnet18_seed.py") for n in ("cifar10", "cifar100", "tinyimagenet")
    )
    assert (c10.population.lr, c10.training.batch_size, c10.training.num_epochs) == ((0.05,), 256, 50)
    assert (c100.population.lr, c100.training.batch_size, c100.training.num_epochs) == ((0.1,), 128, 60)
    assert (tiny.data.image_size, tiny.training.augmentation, c10.training.augmentation) == (
        64,
        "flip_rotate",
        "crop_flip",
    )
    assert all(c.training.scheduler == "one_cycle" and c.population.weight_decay == (5e-4,) for c in (c10, c100, tiny))
    assert "max lr is followed" in c10.notes and "no val split" in tiny.notes


def test_seed_modes():
    config = load_config(CONFIG_DIR / "mnist_hyp10_fix.py")
    fixed = expand_grid(config.population, config.seed)
    assert sorted({row["seed"] for row in fixed}) == list(range(1, 11))
    assert [row["seed"] for row in fixed[:256]] == [1] * 256  # seeds are the outer loop
    config.population.seed_mode = "random"
    rand = expand_grid(config.population, config.seed)
    seeds = [row["seed"] for row in rand]
    assert len(set(seeds)) > 2500 and all(0 <= s < 1_000_000 for s in seeds)
    assert seeds == [row["seed"] for row in expand_grid(config.population, config.seed)]
    assert seeds != [row["seed"] for row in expand_grid(config.population, config.seed + 1)]


def test_max_models_and_population_arrays():
    config = load_config(CONFIG_DIR / "mnist_hyp10_fix.py")
    config.population.max_models = 300
    table = expand_grid(config.population, config.seed)
    assert len(table) == 300
    assert all(row["seed"] == 1 for row in table[:256]) and table[256]["seed"] == 2
    population = build_population(table)
    assert population.size == 300
    assert population.activations == ("gelu", "relu", "sigmoid", "tanh")
    row = table[17]
    assert population.activations[population.arrays["activation_index"][17]] == row["activation"]
    assert population.optimizers[population.arrays["optimizer_index"][17]] == row["optimizer"]
    assert np.isclose(population.arrays["lr"][17], row["lr"])
    assert population.uses_dropout


@pytest.mark.parametrize(
    "field,value,fragment",
    [
        ("population.activation", ("tanh", "swish"), "unknown population.activation 'swish'"),
        ("population.init", ("he",), "unknown population.init 'he'"),
        ("population.optimizer", ("adamx",), "population.optimizer: unknown optimizer 'adamx'"),
        ("population.lr", (0.0,), "population.lr value 0.0 is out of range"),
        ("population.lr", (float("nan"),), "population.lr value nan is out of range"),
        ("population.dropout", (1.0,), "population.dropout value 1.0 is out of range"),
        ("population.dropout", (-0.1,), "population.dropout value -0.1 is out of range"),
        ("training.batch_size", 0, "training.batch_size=0 is out of range"),
        ("training.batch_size", 4000, "training.batch_size=4000 is out of range"),
        ("training.num_epochs", 0, "training.num_epochs=0 is out of range"),
        ("data.name", "imagenet", "unknown data.name 'imagenet'"),
        ("model.arch", "resnet50", "unknown model.arch 'resnet50'"),
        ("data.image_size", 32, "data.image_size=32 is not a size of mnist_5k"),
    ],
)
def test_validation_names_the_field(field, value, fragment):
    config = base_config()
    section, name = field.split(".")
    config[section][name] = value
    with pytest.raises(ConfigError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        validate(config)


def test_arch_and_image_size_must_agree():
    config = base_config()
    config.data.name, config.data.image_size, config.model.arch = "cifar10", 28, "cnn_m"
    with pytest.raises(ConfigError, match="cnn_m needs 32px"):
        validate(config)


def test_identity_ignores_runtime_and_epochs_only():
    a, b = base_config(), base_config()
    b.runtime.chunk_size, b.training.num_epochs = 17, 3
    assert identity(a) == identity(b)
    b.population.lr = (1e-2,)
    assert identity(a) != identity(b)
