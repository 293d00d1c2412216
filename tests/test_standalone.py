"""A shared zoo is self-contained: model.py (jaxzoo/torch_models.py) and dataset.pt rebuild and
evaluate every trial with torch alone, and torch_models builds the keys and shapes export writes."""

import ast
import dataclasses
import functools
import inspect
import json
import os
import pathlib
import subprocess
import sys

import jax
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from ml_collections import ConfigDict  # noqa: E402

from jaxzoo import export  # noqa: E402
from jaxzoo.config import load_config_dataset  # noqa: E402
from jaxzoo.data import normalise  # noqa: E402
from jaxzoo.export import (
    bundle,
    torch_models,  # noqa: E402
)
from jaxzoo.models import ard, resnet
from jaxzoo.models.cnn import ARCHS  # noqa: E402
from jaxzoo.models.registry import arch_spec, params_shapes  # noqa: E402
from jaxzoo.models.registry import build_model as flax_model
from jaxzoo.models.torch_layout import module_sequence, torch_tensors  # noqa: E402

BLOCKED = ("jaxzoo", "jax", "jaxlib", "flax", "optax")
# Run with `python -E` (no PYTHONPATH) in the export folder; the blocked names cannot be imported.
PRELUDE = f"import sys\nfor name in {BLOCKED!r}:\n    sys.modules[name] = None\n"
EVALUATE = """
import importlib.util, json, pathlib, torch
from torch.utils.data import TensorDataset

spec = importlib.util.spec_from_file_location("zoo_model", "model.py")
zoo_model = importlib.util.module_from_spec(spec)
spec.loader.exec_module(zoo_model)
with torch.serialization.safe_globals([TensorDataset]):
    data = torch.load("dataset.pt")
images, labels = data["testset"].tensors
out = {"dataset_seed": data["dataset_seed"], "test": [list(images.shape), str(images.dtype), str(labels.dtype)],
       "trials": {}}
for trial in sorted(pathlib.Path("trials").glob("NN_tune_trainable_*")):
    params = json.loads((trial / "params.json").read_text())
    last = max(trial.glob("checkpoint_*"))
    model = zoo_model.build_model(params).eval()
    model.load_state_dict(torch.load(last / "checkpoints"), strict=True)
    with torch.no_grad():
        correct = int((model(images).argmax(1) == labels).sum())
    recorded = json.loads((trial / "result.json").read_text().splitlines()[-1])
    out["trials"][trial.name] = {"correct": correct, "test_acc": recorded["test_acc"], "epoch": last.name}
out["imported"] = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED_NAMES and sys.modules[m] is not None)
print(json.dumps(out))
"""


def run_isolated(code: str, cwd: pathlib.Path) -> dict:
    """Runs `code` in `python -E` (clean PYTHONPATH) in `cwd`; returns its last stdout line as JSON."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run(
        [sys.executable, "-E", "-c", code], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_exported_zoo_evaluates_with_torch_alone(tiny_zoo, tmp_path):
    """model.py + dataset.pt + the trial folders give each trial's recorded test accuracy in a
    process that cannot import jaxzoo, JAX, Flax or optax."""
    if "with_data" in inspect.signature(export.export).parameters:
        report = export.export(tiny_zoo, tmp_path / "out", formats="trials", with_data=True, log=None)
        target = pathlib.Path(report["out"])
    else:  # until export writes them itself
        report = export.export(tiny_zoo, tmp_path / "out", formats="trials", log=None)
        target = pathlib.Path(report["out"])
        bundle.write_model_file(target)
        bundle.write_training_data(export.read_zoo(tiny_zoo), target, None)
    assert (target / "model.py").read_text() == pathlib.Path(torch_models.__file__).read_text()

    # dataset.pt holds exactly what training saw: the configured splits, normalised, NCHW.
    zoo = export.read_zoo(tiny_zoo)
    dataset = load_config_dataset(ConfigDict(zoo.config))
    with torch.serialization.safe_globals([torch.utils.data.TensorDataset]):
        saved = torch.load(target / "dataset.pt")
    assert sorted(saved) == ["dataset_seed", "testset", "trainset", "valset"] and saved["dataset_seed"] == 42
    for split, key in (("train", "trainset"), ("val", "valset"), ("test", "testset")):
        images, labels = getattr(dataset, split)
        got_images, got_labels = saved[key].tensors
        assert got_images.dtype == torch.float32 and got_labels.dtype == torch.int64
        np.testing.assert_array_equal(
            got_images.numpy(), normalise(images, dataset.mean, dataset.std).transpose(0, 3, 1, 2)
        )
        np.testing.assert_array_equal(got_labels.numpy(), labels)

    out = run_isolated(PRELUDE + f"BLOCKED_NAMES = {BLOCKED!r}\n" + EVALUATE, target)
    assert out["imported"] == [] and out["dataset_seed"] == 42
    assert out["test"] == [[60, 1, 28, 28], "torch.float32", "torch.int64"]
    assert len(out["trials"]) == len(zoo.table) == 4
    n = out["test"][0][0]
    for name, trial in out["trials"].items():
        assert trial["epoch"] == f"checkpoint_{zoo.epochs[-1]:06d}", name
        assert abs(trial["correct"] / n - trial["test_acc"]) < 0.5 / n, (name, trial)


def flax_keys_and_shapes(
    model_config: dict, image_shape: tuple, classes: int, dropout: float, twin: bool = False
) -> list[tuple[str, tuple]]:
    """(state_dict key, shape) that jaxzoo's export writes for one model of this configuration."""
    if model_config["arch"] == "resnet18":
        init = functools.partial(resnet.init_resnet, num_classes=classes, image_shape=image_shape)
        variables = jax.tree.map(lambda a: np.zeros(a.shape, a.dtype), jax.eval_shape(init, jax.random.key(0)))
        return [(key, tuple(np.shape(a))) for key, a in resnet.torch_state_dict(variables).items()]
    model = flax_model(model_config, "relu", dropout > 0, "xla", image_shape, classes)
    params = jax.tree.map(lambda a: np.zeros(a.shape, np.float32), params_shapes(model, image_shape))
    if twin:
        params = jax.tree.map(np.asarray, ard.from_source(params))
    arch = arch_spec(model_config, image_shape[0], image_shape[-1], classes)
    return [(key, a.shape) for key, a in torch_tensors(params, arch, 0.0 if twin else dropout)]


REGISTRY = {
    "model::image_size": 28,
    "model::channels_in": 1,
    "model::o_dim": 10,
    "model::nlin": "gelu",
    "jaxzoo::num_classes": 10,
}


@pytest.mark.parametrize(
    "params,model_config,image_shape,twin",
    [
        ({"model::type": "CNN", "model::dropout": 0.0, "model::channels_in": 1}, {"arch": "cnn_s"}, (28, 28, 1), False),
        ({"model::type": "CNN", "model::dropout": 0.5, "model::channels_in": 3}, {"arch": "cnn_s"}, (28, 28, 3), False),
        (
            {"model::type": "CNN3", "model::dropout": 0.0, "model::channels_in": 3},
            {"arch": "cnn_m"},
            (32, 32, 3),
            False,
        ),
        (
            {
                "model::type": "CNN3",
                "model::dropout": 0.2,
                "model::channels_in": 3,
                "model::o_dim": 4,
                "jaxzoo::num_classes": 100,
            },
            {"arch": "cnn_m"},
            (32, 32, 3),
            False,
        ),
        (
            {"model::type": "CNN_ARD", "model::dropout": 0.5, "model::channels_in": 1},
            {"arch": "cnn_s"},
            (28, 28, 1),
            True,
        ),
        (
            {"model::type": "Resnet18", "model::channels_in": 1, "model::o_dim": 100, "jaxzoo::num_classes": 100},
            {"arch": "resnet18"},
            (8, 8, 1),
            False,
        ),
        (
            {
                **REGISTRY,
                "model::type": "jaxzoo:cnn",
                "model::convs": [[5, 3, True], [7, 4, False]],
                "model::widths": [12],
                "model::dropout": 0.5,
            },
            {"arch": "cnn", "convs": ((5, 3, True), (7, 4, False)), "widths": (12,)},
            (28, 28, 1),
            False,
        ),
        (
            {
                **REGISTRY,
                "model::type": "jaxzoo:mlp",
                "model::convs": [],
                "model::widths": [24, 16],
                "model::dropout": 0.0,
            },
            {"arch": "mlp", "widths": (24, 16)},
            (28, 28, 1),
            False,
        ),
    ],
    ids=["cnn_s", "cnn_s_dropout", "cnn_m", "cnn_m_100", "twin", "resnet18", "registry_cnn", "registry_mlp"],
)
def test_build_model_gives_the_exported_keys_and_shapes(params, model_config, image_shape, twin):
    params = {"model::o_dim": 10, "model::nlin": "relu", **params}
    classes = params.get("jaxzoo::num_classes", 10)
    want = flax_keys_and_shapes(model_config, image_shape, classes, params.get("model::dropout", 0.0), twin)
    got = [(key, tuple(t.shape)) for key, t in torch_models.build_model(params).state_dict().items()]
    assert got == want


def test_original_cnn_tables_agree_with_jaxzoo():
    """The one restated piece (see torch_models' docstring): CNN-s / CNN-m and the module order."""
    for name, layout in torch_models.ORIGINAL_CNNS.items():
        spec = ARCHS[name]
        assert layout.convs == tuple(dataclasses.astuple(c) for c in spec.convs)
        assert (layout.image_size, layout.hidden, layout.num_classes, layout.flat_features) == (
            spec.image_size,
            spec.hidden,
            spec.num_classes,
            spec.flat_features,
        )
        for dropout in (0.0, 0.5):
            assert layout.module_kinds(dropout) == module_sequence(spec, dropout), (name, dropout)


def test_models_that_cannot_be_rebuilt_are_refused():
    custom = {"model::type": "jaxzoo:custom", "model::module": "mypkg.nets:TinyNet", "model::kwargs": {}}
    with pytest.raises(ValueError, match="mypkg.nets:TinyNet .*cannot rebuild"):
        torch_models.build_model(custom)
    with pytest.raises(ValueError, match="model::type 'VGG' is not one of"):
        torch_models.build_model({"model::type": "VGG"})
    with pytest.raises(ValueError, match="no 'model::nlin'"):
        torch_models.build_model({"model::type": "CNN", "model::channels_in": 1, "model::o_dim": 10})


def test_torch_models_imports_only_torch_numpy_and_the_standard_library(tmp_path):
    tree = ast.parse(pathlib.Path(torch_models.__file__).read_text())
    imported = {
        alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names
    }
    imported |= {
        node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module
    }
    assert imported - sys.stdlib_module_names <= {"torch", "numpy"}, imported
    # Loaded from its file, as an export's model.py is: nothing of jaxzoo comes along.
    code = (
        "import importlib.util, json, sys\n"
        f"spec = importlib.util.spec_from_file_location('model', {str(torch_models.__file__)!r})\n"
        "spec.loader.exec_module(importlib.util.module_from_spec(spec))\n"
        f"print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {BLOCKED!r})))"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []
