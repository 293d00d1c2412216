"""Shared fixtures: small configs and the embedded data, loaded once per session."""

import contextlib
import os
import pathlib
import subprocess
import tempfile

import pytest

# Preprocessed-data cache and CPU-kernel build of the test session (also seen by the CLI
# subprocesses), and one persistent JAX compilation cache, so that the many small CLI runs
# compile each program once per session.
_SESSION = tempfile.mkdtemp(prefix="jaxzoo-test-")
os.environ["JAXZOO_DATA_DIR"] = os.path.join(_SESSION, "data")
os.environ["JAXZOO_KERNEL_DIR"] = os.path.join(_SESSION, "kernels")
os.environ["JAX_COMPILATION_CACHE_DIR"] = os.path.join(_SESSION, "jax-cache")
os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0.5"

from jaxzoo.cli import use_cpu_compile_options  # noqa: E402  (after the environment above)
from jaxzoo.config import base_config  # noqa: E402

use_cpu_compile_options()  # in-process runs compile as the CLI runs they are compared with
from jaxzoo.data import load_dataset  # noqa: E402

# The files that take longest (ResNet-18 compilations, CLI runs, twin training), started first so
# the two xdist workers finish together rather than one running them alone at the end.
LONGEST_FILES = ("test_resnet_zoo.py", "test_sparsify.py", "test_reliability.py", "test_bad_inputs.py")


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(LONGEST_FILES)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: the rest keep their order


@pytest.fixture(scope="session")
def mnist_small():
    """mnist_5k cut to 120 examples per split (12 steps of 10 per epoch)."""
    return load_dataset("mnist_5k", 28, max_examples_per_split=120)


def small_zoo_config(**population):
    """A tiny mixed zoo on 120 examples per split, 2 epochs; population fields overridable."""
    config = base_config()
    config.name = "test_zoo"
    config.data.max_examples_per_split = 120
    config.training.num_epochs = 2
    config.runtime.progress = False
    config.runtime.async_checkpointing = True
    pop = config.population
    pop.num_seeds = 2
    pop.activation = ("tanh", "relu")
    pop.init = ("kaiming_uniform", "xavier_normal")
    pop.optimizer = ("adam", "sgd")
    pop.lr = (1e-3,)
    pop.weight_decay = (1e-3,)
    pop.dropout = (0.0, 0.5)
    for name, value in population.items():
        pop[name] = value
    return config


def tiny_zoo_config(num_epochs: int = 2):
    """4 models (tanh/relu x adam/sgd) on 60 examples per split."""
    config = small_zoo_config(init=("kaiming_uniform",), dropout=(0.0,), num_seeds=1)
    config.data.max_examples_per_split = 60
    config.training.num_epochs = num_epochs
    return config


@pytest.fixture(scope="session")
def tiny_zoo(tmp_path_factory):
    """A trained 4-model zoo (2 epochs) shared by the tests that only read a workdir."""
    from jaxzoo.train import train_and_evaluate

    workdir = tmp_path_factory.mktemp("tiny") / "zoo"
    train_and_evaluate(tiny_zoo_config(), workdir)
    return workdir


@pytest.fixture(scope="session")
def small_zoo(tmp_path_factory):
    """The trained `small_zoo_config()` zoo (32 models, 2 epochs) shared by the tests that read
    it (export, card, Table 3); tests that damage a workdir copy it first."""
    from jaxzoo.train import train_and_evaluate

    workdir = tmp_path_factory.mktemp("small") / "zoo"
    train_and_evaluate(small_zoo_config(), workdir)
    return workdir


def inr_zoo_config(style: str = "dwsnets"):
    """A small INR zoo: 24 mnist_5k images x 2 seeds, 60 steps of which 3 epochs, early stop at
    22 dB (19 dB on [-1, 1]): some models stop mid-run, some never. style 'dwsnets': 'xy' coordinates, +0.5,
    targets in [0, 1], zero sine biases; 'nfn': 'ij', no offset, targets in [-1, 1]."""
    from jaxzoo.inr.config import base_inr_config

    config = base_inr_config()
    config.name = f"test_inr_{style}"
    config.images.count = 24
    config.population.num_seeds = 2
    config.training.num_steps = 60
    config.training.steps_per_epoch = 20
    config.training.lr = 1e-3
    config.training.target_psnr = 22.0 if style == "dwsnets" else 19.0
    config.runtime.progress = False
    config.runtime.chunk_size = 16
    if style == "dwsnets":
        config.model.coordinates = "xy"
        config.model.output_offset = 0.5
        config.model.bias_init = "zero"
        config.model.last_init = "torch_default"
    else:
        config.model.coordinates = "ij"
        config.model.target_range = "symmetric"
    return config


@pytest.fixture(scope="session")
def inr_zoo(tmp_path_factory):
    """The trained `inr_zoo_config('dwsnets')` zoo (48 SIRENs), shared by the tests that read it."""
    from jaxzoo.train import train_and_evaluate

    workdir = tmp_path_factory.mktemp("inr") / "zoo"
    train_and_evaluate(inr_zoo_config("dwsnets"), workdir)
    return workdir


@pytest.fixture(scope="session")
def inr_zoo_nfn(tmp_path_factory):
    """The trained `inr_zoo_config('nfn')` zoo (48 SIRENs, 'ij', targets in [-1, 1])."""
    from jaxzoo.train import train_and_evaluate

    workdir = tmp_path_factory.mktemp("inr_nfn") / "zoo"
    train_and_evaluate(inr_zoo_config("nfn"), workdir)
    return workdir


def array_files(epoch_dir: pathlib.Path) -> list[pathlib.Path]:
    """The files that hold an epoch checkpoint's arrays (Orbax's OCDBT data files, `d/*`), in
    either checkpoint layout."""
    return sorted(p for p in epoch_dir.rglob("*") if p.is_file() and p.parent.name == "d")


@contextlib.contextmanager
def read_only(*folders: pathlib.Path):
    """Folders nobody may create files in, root included (root ignores modes: the immutable
    attribute instead, where the file system has it)."""
    for folder in folders:
        folder.mkdir(parents=True, exist_ok=True)
    done = []
    try:
        for folder in folders:
            if os.geteuid() == 0:
                if subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode:
                    pytest.skip("chattr +i is not available to make a folder read-only for root")
            else:
                folder.chmod(0o555)
            done.append(folder)
        yield folders[0] if len(folders) == 1 else folders
    finally:
        for folder in done:
            if os.geteuid() == 0:
                subprocess.run(["chattr", "-i", str(folder)], check=True)
            else:
                folder.chmod(0o755)
