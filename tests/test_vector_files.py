"""The files of one export read back by their users: file modes, the flat-vector dataset from
either folder with its dtypes, and the two dataset.pt files with torch.load's defaults."""

import os
import re
import stat

import numpy as np
import pytest

from jaxzoo import export
from jaxzoo.errors import UserError
from jaxzoo.export import bundle
from jaxzoo.weights import loaders

torch = pytest.importorskip("torch")
from jaxzoo.torch import ZooVectorDataset  # noqa: E402  (needs torch)

UMASK = 0o027  # not the usual 0o022: a mode fixed in the code (0o600, 0o644) shows


@pytest.fixture(scope="module")
def exported(tiny_zoo, tmp_path_factory):
    """The tiny zoo exported in every format with --with_data under umask 0o027: (experiment
    folder, the export's log lines)."""
    root = tmp_path_factory.mktemp("vector_files")
    lines = []
    previous = os.umask(UMASK)
    try:
        export.export(tiny_zoo, root, "all", log=lines.append, with_data=True)
    finally:
        os.umask(previous)
    return root / "test_zoo", lines


def test_every_exported_file_has_the_umask_mode(exported):
    out, _ = exported
    files = [p for p in out.rglob("*") if p.is_file()]
    names = {p.relative_to(out).as_posix() for p in files}
    assert {"vectors/train.safetensors", "vectors/dataset.pt", "dataset.pt", "model.py", "export.json"} <= names
    assert any(name.startswith("parquet/") for name in names) and any(name.startswith("trials/") for name in names)
    assert not [name for name in names if name.endswith(".partial")]
    modes = {p.relative_to(out).as_posix(): stat.S_IMODE(p.stat().st_mode) for p in files}
    assert {name: oct(mode) for name, mode in modes.items() if mode != 0o666 & ~UMASK} == {}
    folders = {p.relative_to(out).as_posix(): stat.S_IMODE(p.stat().st_mode) for p in out.rglob("*") if p.is_dir()}
    assert {name: oct(mode) for name, mode in folders.items() if mode != 0o777 & ~UMASK} == {}


def test_vector_dataset_takes_the_export_or_its_vectors_and_batches_float32(exported, tmp_path):
    out, _ = exported
    from_root, from_vectors = ZooVectorDataset(out, "train"), ZooVectorDataset(out / "vectors", "train")
    assert torch.equal(from_root.data_in, from_vectors.data_in) and from_root.properties == from_vectors.properties
    assert len(from_root) > 0
    with pytest.raises(
        loaders.LoaderError, match=f"{re.escape(str(tmp_path))} holds no flat vectors .*its vectors/ folder"
    ):
        ZooVectorDataset(tmp_path, "train")
    with pytest.raises(UserError, match=f"{re.escape(str(tmp_path))} holds no flat vectors"):
        export.load_vectors(tmp_path)
    # an item's numeric properties: float32 beside the float32 weights, integers int64, as the loader's
    weights, properties = next(iter(torch.utils.data.DataLoader(from_root, batch_size=len(from_root))))
    (batch,) = list(loaders.VectorLoader(out, "train", batch_size=len(from_root), shuffle=False))
    assert weights.dtype == torch.float32 and batch["weights"].dtype == np.float32
    np.testing.assert_array_equal(weights.numpy(), batch["weights"])
    for name, values in batch.items():
        if name == "weights":
            continue
        if values.dtype.kind == "U":
            assert properties[name] == values.tolist(), name
            continue
        assert properties[name].numpy().dtype == values.dtype, name
        np.testing.assert_array_equal(properties[name].numpy(), values, name)
    assert batch["lr"].dtype == np.float32 and batch["test_acc"].dtype == np.float32
    assert batch["epoch"].dtype == np.int64 and batch["model_id"].dtype == np.int64


def test_dataset_files_load_with_the_documented_calls(exported):
    out, lines = exported
    vectors = torch.load(out / "vectors" / "dataset.pt")  # torch's defaults: weights_only=True
    splits = export.load_vectors(out)
    for split, data in splits.items():
        np.testing.assert_array_equal(vectors[split]["weights"].numpy(), data.weights)
        np.testing.assert_array_equal(vectors[split]["properties"]["epoch"].numpy(), data.properties["epoch"])
    # --with_data's dataset.pt keeps the original's layout; its documented call reads it
    scope = {"torch": torch, "path": out / "dataset.pt"}
    exec(bundle.DATA_FILE_LOAD, scope)
    data = scope["data"]
    assert set(data) == {"trainset", "valset", "testset", "dataset_seed"} and data["dataset_seed"] == 42
    images, labels = data["trainset"].tensors
    assert isinstance(data["trainset"], torch.utils.data.TensorDataset) and len(data["testset"]) == 60
    assert images.dtype == torch.float32 and images.shape[1:] == (1, 28, 28) and labels.dtype == torch.int64
    assert any(bundle.DATA_FILE_LOAD in line for line in lines)
