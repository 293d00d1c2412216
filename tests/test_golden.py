"""The shipped zoos' model tables and identities never change (existing workdirs must resume).

The model tables were taken before the factor table and the registries replaced the fixed
factors; a change here means a workdir trained earlier would refuse its own config, or its
models.json would list other models. The identity hashes were retaken when `notes` (prose) left
the identity, the rest of each identity unchanged; workdirs written before still carry notes in
their stored identity, and are compared without them (`test_identity_written_with_notes_still_matches`).
"""

import hashlib
import importlib.util
import json
import pathlib

import pytest

from jaxzoo.config import identity, identity_hash
from jaxzoo.training.population import expand_grid
from jaxzoo.zoo import checkpoint

CONFIGS = pathlib.Path(__file__).resolve().parents[1] / "configs"

# config file: (identity hash, sha256[:16] of models.json's text, models)
GOLDEN = {
    "cifar100_resnet18_seed": ("378a1e4511f3af11", "edf5ddeef5c10646", 1000),
    "cifar10_medium_hyp10_fix": ("446b90c064fb600b", "a97a9bbe5eb1c4dc", 1280),
    "cifar10_medium_hyp10_rand": ("bcb440b21acbf69b", "b9661820b1590848", 1280),
    "cifar10_medium_seed": ("710d79807e302a91", "1e467f0a0d5048fa", 1000),
    "cifar10_resnet18_seed": ("d15e2d7c5c1400bc", "724e973c8e70f860", 1000),
    "cifar10_small_hyp10_fix": ("5c4ef171b86550bd", "a97a9bbe5eb1c4dc", 1280),
    "cifar10_small_hyp10_rand": ("791ce7a76bced2e0", "b9661820b1590848", 1280),
    "cifar10_small_seed": ("807461167d85a4ac", "1e467f0a0d5048fa", 1000),
    "default": ("3fe460bfe4ecbf38", "9d0468c9cdfa3625", 1000),
    "fmnist_hyp10_fix": ("8e021392f2d113d7", "cfef85b263826d12", 2560),
    "fmnist_hyp10_rand": ("06643511f7c66734", "0789e9c519b6d587", 2560),
    "fmnist_seed": ("b2985821c0003a53", "9d0468c9cdfa3625", 1000),
    "mnist_hyp10_fix": ("dbca8df765ef61f6", "cfef85b263826d12", 2560),
    "mnist_hyp10_rand": ("bfee283e9ea0dc90", "0789e9c519b6d587", 2560),
    "mnist_seed": ("75bc6330b33fb9b8", "9d0468c9cdfa3625", 1000),
    "quickstart": ("f2e8cc50535f0118", "85b0328565b7b2d3", 64),
    "resnet18_smoke": ("c185144f3ebb7a64", "6c1473bf09ec7fe2", 2),
    "stl10_medium_hyp10_fix": ("1c19e0beb40bb20c", "14e7fefe04c25a2b", 2560),
    "stl10_medium_hyp10_rand": ("77b6ed586a2c1f65", "6808b35da506ef13", 2560),
    "stl10_medium_seed": ("d9a5a9225f1bd7e9", "7a432652158695d4", 1000),
    "stl10_small_hyp10_fix": ("dfc1700f87e701dd", "14e7fefe04c25a2b", 2560),
    "stl10_small_hyp10_rand": ("cc0b860d0f72335c", "6808b35da506ef13", 2560),
    "stl10_small_seed": ("01b75a170747a2c2", "7a432652158695d4", 1000),
    "svhn_hyp10_fix": ("8cd660e5cdded8e0", "b87e79283f9d2fd4", 4320),
    "svhn_hyp10_rand": ("2a43252e4638e2c1", "8191aaa3cff34d15", 4320),
    "svhn_seed": ("48714dda07caa943", "e5904a624c1de6fc", 1000),
    # the Small CNN Zoo's presets: one grid of 28,800 models, four datasets
    "small_cnn_zoo_cifar10_gs": ("172ecd655b281bbc", "a1ad6a9ec42032d7", 28800),
    "small_cnn_zoo_fashion_mnist": ("eca359f17e53731f", "a1ad6a9ec42032d7", 28800),
    "small_cnn_zoo_mnist": ("e95926bb924bb55a", "a1ad6a9ec42032d7", 28800),
    "small_cnn_zoo_svhn_gs": ("3bf78aa707e422cb", "a1ad6a9ec42032d7", 28800),
    "tinyimagenet_resnet18_seed": ("a3094cd2e2e21c5f", "edf5ddeef5c10646", 1000),
    "usps_hyp10_fix": ("02a8bbd9dd6a98c2", "14e7fefe04c25a2b", 2560),
    "usps_hyp10_rand": ("990ddb871abc06c2", "6808b35da506ef13", 2560),
    "usps_seed": ("440165223f8a0503", "58b06981dbce4a7c", 1000),
}

# INR presets: identity hash (their model table depends on the dataset's images)
INR_GOLDEN = {
    "inr_dwsnets_fmnist": "811455ab26eb5720",
    "inr_dwsnets_mnist": "e7fa0c72efa26be4",
    "inr_nfn_cifar10": "7ffaf93fc7fbfaa4",
    "inr_nfn_fashion": "cd1f5a092fc0f2d6",
    "inr_nfn_mnist": "96cfe5ed7705b1b1",
    "inr_quickstart": "479ea2bd6deac32f",
}


def load_config(name: str):
    spec = importlib.util.spec_from_file_location(f"golden_{name}", CONFIGS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config()


def test_every_shipped_config_is_covered():
    assert sorted(p.stem for p in CONFIGS.glob("*.py")) == sorted([*GOLDEN, *INR_GOLDEN])


@pytest.mark.parametrize("name", sorted(INR_GOLDEN))
def test_inr_preset_identity_unchanged(name):
    assert identity_hash(identity(load_config(name))) == INR_GOLDEN[name]


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_model_table_and_identity_unchanged(name):
    config = load_config(name)
    table = expand_grid(config.population, config.seed)
    want_identity, want_table, want_models = GOLDEN[name]
    assert len(table) == want_models
    assert hashlib.sha256(json.dumps(table).encode()).hexdigest()[:16] == want_table
    assert identity_hash(identity(config)) == want_identity


def test_identity_written_with_notes_still_matches(tmp_path):
    """A workdir written while notes were part of the identity is read and resumed as before."""
    config = load_config("quickstart")
    current = identity(config)
    old = {**current, "notes": "prose of an earlier release"}
    document = {
        "identity_hash": identity_hash(old),
        "identity": old,
        "config": json.loads(json.dumps(config.to_dict())),
    }
    (tmp_path / "config.json").write_text(json.dumps(document))
    assert checkpoint.read_config(tmp_path)["identity"] == old
    checkpoint.prepare_workdir(tmp_path, current, document["config"], [], write=False)  # no "another zoo"
    changed = {**current, "seed": current["seed"] + 1}
    with pytest.raises(checkpoint.WorkdirError, match="holds another zoo"):
        checkpoint.prepare_workdir(tmp_path, changed, document["config"], [], write=False)
