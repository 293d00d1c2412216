"""The shipped zoos' model tables and identities never change (existing workdirs must resume).

The hashes were taken before the factor table and the registries replaced the fixed factors;
a change here means a workdir trained earlier would refuse its own config, or its models.json
would list other models.
"""

import hashlib
import importlib.util
import json
import pathlib

import pytest

from jaxzoo.config import identity, identity_hash
from jaxzoo.population import expand_grid

CONFIGS = pathlib.Path(__file__).resolve().parents[1] / "configs"

# config file: (identity hash, sha256[:16] of models.json's text, models)
GOLDEN = {
    "cifar100_resnet18_seed": ("54fc9ec354f7174a", "edf5ddeef5c10646", 1000),
    "cifar10_medium_hyp10_fix": ("5ca52ff37b96e12c", "a97a9bbe5eb1c4dc", 1280),
    "cifar10_medium_hyp10_rand": ("52e3779c66cf03b1", "b9661820b1590848", 1280),
    "cifar10_medium_seed": ("caed6e6989f119f3", "1e467f0a0d5048fa", 1000),
    "cifar10_resnet18_seed": ("3edb072ba1c53202", "724e973c8e70f860", 1000),
    "cifar10_small_hyp10_fix": ("5f55f417d1d91eb7", "a97a9bbe5eb1c4dc", 1280),
    "cifar10_small_hyp10_rand": ("4a816db5cd5a413d", "b9661820b1590848", 1280),
    "cifar10_small_seed": ("0f7e3bc21f015708", "1e467f0a0d5048fa", 1000),
    "default": ("b1d376d8241c1902", "9d0468c9cdfa3625", 1000),
    "fmnist_hyp10_fix": ("c2de8bac7445bcb3", "cfef85b263826d12", 2560),
    "fmnist_hyp10_rand": ("ab3e1c0271809c20", "0789e9c519b6d587", 2560),
    "fmnist_seed": ("e19d52c2a024b8e8", "9d0468c9cdfa3625", 1000),
    "mnist_hyp10_fix": ("dc37a43b0beb6191", "cfef85b263826d12", 2560),
    "mnist_hyp10_rand": ("8bf03a20132b5733", "0789e9c519b6d587", 2560),
    "mnist_seed": ("624256b3d435a178", "9d0468c9cdfa3625", 1000),
    "quickstart": ("d0742953243d4b6b", "85b0328565b7b2d3", 64),
    "resnet18_smoke": ("b82593ce9760201e", "6c1473bf09ec7fe2", 2),
    "stl10_medium_hyp10_fix": ("44c2f378485e6398", "14e7fefe04c25a2b", 2560),
    "stl10_medium_hyp10_rand": ("c0154ee524fa8172", "6808b35da506ef13", 2560),
    "stl10_medium_seed": ("d2183db3734a3741", "7a432652158695d4", 1000),
    "stl10_small_hyp10_fix": ("97165d1016f0bc55", "14e7fefe04c25a2b", 2560),
    "stl10_small_hyp10_rand": ("1f6c0d186326564a", "6808b35da506ef13", 2560),
    "stl10_small_seed": ("a450a0297fc262fc", "7a432652158695d4", 1000),
    "svhn_hyp10_fix": ("4a8adcdd3027336c", "b87e79283f9d2fd4", 4320),
    "svhn_hyp10_rand": ("a83bc68a5ae6bced", "8191aaa3cff34d15", 4320),
    "svhn_seed": ("361eb6414ab43a81", "e5904a624c1de6fc", 1000),
    "tinyimagenet_resnet18_seed": ("72ab017e61fd4cbc", "edf5ddeef5c10646", 1000),
    "usps_hyp10_fix": ("a0dd5a2f91f9e854", "14e7fefe04c25a2b", 2560),
    "usps_hyp10_rand": ("ce69bafdfa739a82", "6808b35da506ef13", 2560),
    "usps_seed": ("f1f5095ff1a9cd27", "58b06981dbce4a7c", 1000),
}


def load_config(name: str):
    spec = importlib.util.spec_from_file_location(f"golden_{name}", CONFIGS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config()


def test_every_shipped_config_is_covered():
    assert sorted(p.stem for p in CONFIGS.glob("*.py")) == sorted(GOLDEN)


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_model_table_and_identity_unchanged(name):
    config = load_config(name)
    table = expand_grid(config.population, config.seed)
    want_identity, want_table, want_models = GOLDEN[name]
    assert len(table) == want_models
    assert hashlib.sha256(json.dumps(table).encode()).hexdigest()[:16] == want_table
    assert identity_hash(identity(config)) == want_identity
