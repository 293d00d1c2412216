"""jaxzoo.weights.loaders: batches of an export's flat vectors, standardisation, noise, tokens, permutations."""

import importlib.util
import json

import numpy as np
import pytest

from jaxzoo import export
from jaxzoo.errors import UserError
from jaxzoo.weights import loaders


@pytest.fixture(scope="module")
def vectors(small_zoo, tmp_path_factory):
    """The small zoo's vectors folder (32 CNN-s models x epochs 0..2) and load_vectors of it."""
    root = tmp_path_factory.mktemp("loaders")
    export.export(small_zoo, root, "vectors", log=None)
    folder = next(root.glob("*/vectors"))
    return folder, export.load_vectors(folder)


def layer_parts(index_dict):
    for layer in loaders.layers(index_dict):
        yield slice(layer.start, layer.bias_start), slice(layer.bias_start, layer.end)


def test_plain_loader_gives_every_row_once_per_pass(vectors):
    folder, splits = vectors
    train = splits["train"]
    loader = loaders.VectorLoader(folder.parent, "train", batch_size=7, seed=3)
    assert len(loader) == -(-len(train.weights) // 7)
    first = []
    for number in range(2):
        batches = list(loader)
        rows = np.concatenate([b["weights"] for b in batches])
        keys = np.stack(
            [np.concatenate([b["model_id"] for b in batches]), np.concatenate([b["epoch"] for b in batches])], 1
        )
        assert rows.shape == train.weights.shape and rows.dtype == np.float32
        order = np.lexsort(keys.T[::-1])
        expected = np.lexsort(np.stack([train.properties["epoch"], train.properties["model_id"]]))
        np.testing.assert_array_equal(rows[order], train.weights[expected])  # same rows, each once
        np.testing.assert_array_equal(
            np.concatenate([b["activation"] for b in batches])[order],
            np.asarray(train.properties["activation"])[expected],
        )
        first.append(keys)
    assert not np.array_equal(first[0], first[1])  # each pass a new order
    # unshuffled: file order; drop_last; epoch selection
    plain = loaders.VectorLoader(folder, "val", batch_size=5, shuffle=False)
    np.testing.assert_array_equal(np.concatenate([b["weights"] for b in plain]), splits["val"].weights)
    dropped = loaders.VectorLoader(folder, "val", batch_size=5, drop_last=True)
    assert len(dropped) == len(splits["val"].weights) // 5 and all(len(b["weights"]) == 5 for b in dropped)
    last = loaders.VectorLoader(folder, "test", epochs=[2], batch_size=100, shuffle=False)
    keep = splits["test"].properties["epoch"] == 2
    (batch,) = list(last)
    np.testing.assert_array_equal(batch["weights"], splits["test"].weights[keep])
    assert set(batch["epoch"].tolist()) == {2}


def test_standardisation_uses_train_statistics_and_the_file(vectors, tmp_path):
    folder, splits = vectors
    train = splits["train"]
    loader = loaders.VectorLoader(folder, "train", batch_size=1000, shuffle=False, standardise=True)
    (batch,) = list(loader)
    for w, b in layer_parts(train.index_dict):
        assert abs(batch["weights"][:, w].mean()) < 1e-4 and batch["weights"][:, w].std() == pytest.approx(1, abs=1e-3)
        if train.weights[:, b].std() > 0:
            part = batch["weights"][:, b]
            assert abs(part.mean()) < 1e-4 and part.std() == pytest.approx(1, abs=1e-3)
    np.testing.assert_allclose(
        loaders.unstandardise(batch["weights"], train.index_dict, loader.stats), train.weights, atol=1e-5
    )
    # the file, when present, is what the loader uses (also for val)
    path = loaders.write_standardisation(folder)
    stats = json.loads(path.read_text())
    assert stats == loaders.layer_statistics(train)  # json keeps floats exactly
    assert len(stats["layers"]) == len(train.index_dict["idx_start"])
    stats["layers"][0]["weight_mean"] += 1.0
    path.write_text(json.dumps(stats))
    try:
        (val,) = list(loaders.VectorLoader(folder, "val", batch_size=1000, shuffle=False, standardise=True))
        w = next(layer_parts(train.index_dict))[0]
        expected = (splits["val"].weights[:, w] - stats["layers"][0]["weight_mean"]) / stats["layers"][0]["weight_std"]
        np.testing.assert_allclose(val["weights"][:, w], expected, rtol=1e-5, atol=1e-5)
    finally:
        path.unlink()


@pytest.mark.parametrize("mode", ["relative", "absolute"])
def test_noise_has_the_set_std(vectors, mode):
    folder, splits = vectors
    train = splits["train"]
    loader = loaders.VectorLoader(folder, "train", batch_size=1000, shuffle=False, noise_std=0.1, noise_mode=mode)
    (batch,) = list(loader)
    delta = batch["weights"] - train.weights
    assert (delta != 0).mean() > 0.99
    for (w, b), stats in zip(layer_parts(train.index_dict), loaders.layer_statistics(train)["layers"]):
        scale = stats["weight_std"] if mode == "relative" else 1.0
        assert delta[:, w].std() == pytest.approx(0.1 * scale, rel=0.05) and abs(delta[:, w].mean()) < 0.01 * scale
    (again,) = list(loader)
    assert not np.array_equal(again["weights"], batch["weights"])  # fresh noise each pass
    (repeat,) = list(
        loaders.VectorLoader(folder, "train", batch_size=1000, shuffle=False, noise_std=0.1, noise_mode=mode)
    )
    np.testing.assert_array_equal(repeat["weights"], batch["weights"])  # the same seed repeats


def test_tokens_reassemble_to_the_vectors(vectors):
    folder, splits = vectors
    train = splits["train"]
    index = train.index_dict
    (batch,) = list(loaders.VectorLoader(folder, "train", batch_size=1000, shuffle=False, tokens=True))
    tokens, mask = batch["tokens"], batch["mask"]
    units = sum(index["kernel_no"])
    width = max(c * k for c, k in zip(index["channels_in"], index["kernel_size"])) + 1
    assert tokens.shape == (len(train.weights), units, width) and mask.shape == tokens.shape
    assert mask[0].sum() == train.weights.shape[1] and not tokens[~mask].any()
    np.testing.assert_array_equal(loaders.detokenize(tokens, index), train.weights)
    # token t of layer l, unit u: that unit's kernel row then its bias
    layer = loaders.layers(index)[1]
    t = index["kernel_no"][0] + 2
    assert batch["layer_id"][0, t] == 1 and batch["position"][0, t] == 2
    row = train.weights[5]
    np.testing.assert_array_equal(
        tokens[5, t, : layer.fan_in], row[layer.start + 2 * layer.fan_in : layer.start + 3 * layer.fan_in]
    )
    assert tokens[5, t, layer.fan_in] == row[layer.bias_start + 2]
    assert np.bincount(batch["layer_id"][0]).tolist() == list(index["kernel_no"])


def test_torch_dataset_gives_the_numpy_rows(vectors):
    torch = pytest.importorskip("torch")
    from jaxzoo.torch import ZooVectorDataset

    folder, splits = vectors
    plain = ZooVectorDataset(folder, "val", epochs=[1, 2])
    (batch,) = list(loaders.VectorLoader(folder, "val", epochs=[1, 2], batch_size=1000, shuffle=False))
    np.testing.assert_array_equal(plain.__get_weights__().numpy(), batch["weights"])
    assert plain[3][1]["model_id"] == batch["model_id"][3] and isinstance(plain[3][0], torch.Tensor)
    std = ZooVectorDataset(folder, "val", epochs=[1, 2], standardise=True, tokens=True)
    (numpy_std,) = list(
        loaders.VectorLoader(
            folder, "val", epochs=[1, 2], batch_size=1000, shuffle=False, standardise=True, tokens=True
        )
    )
    item, properties = std[4]
    np.testing.assert_allclose(item["weights"].numpy(), numpy_std["weights"][4], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(item["tokens"].numpy(), numpy_std["tokens"][4], rtol=1e-6, atol=1e-6)
    assert item["mask"].shape == item["tokens"].shape and properties["epoch"] in (1, 2)
    np.testing.assert_array_equal(std.__get_weights__().numpy(), plain.__get_weights__().numpy())  # unchanged
    torch.manual_seed(0)
    noisy = ZooVectorDataset(folder, "val", noise_std=0.1)
    assert not torch.equal(noisy[0][0], noisy.data_in[0])
    loader = torch.utils.data.DataLoader(std, batch_size=4)
    first, _ = next(iter(loader))
    assert first["tokens"].shape[0] == 4


def test_validation_is_the_val_split_everywhere(vectors):
    """Hugging Face names val.parquet `validation`: every reader takes that name for `val`."""
    folder, splits = vectors
    assert len(splits["val"].weights)
    (val,) = list(loaders.VectorLoader(folder, "val", batch_size=1000, shuffle=False))
    (validation,) = list(loaders.VectorLoader(folder, "validation", batch_size=1000, shuffle=False))
    np.testing.assert_array_equal(validation["weights"], val["weights"])
    np.testing.assert_array_equal(export.load_vectors_split(folder, "validation").weights, splits["val"].weights)
    if importlib.util.find_spec("torch"):
        from jaxzoo.torch import ZooVectorDataset

        np.testing.assert_array_equal(
            ZooVectorDataset(folder, "validation").__get_weights__().numpy(), splits["val"].weights
        )


def test_bad_input_fails_in_one_line(vectors, tmp_path):
    torch_module = pytest.importorskip("jaxzoo.torch")
    folder, splits = vectors
    resnet = tmp_path / "resnet"
    resnet.mkdir()
    train = splits["train"]
    layout = {"tensors": [{"key": "w", "offset": 0, "shape": [train.weights.shape[1]]}]}
    rows = export.VectorSplit(train.weights[:4], {"epoch": train.properties["epoch"][:4]}, layout)
    export.save_vector_split(resnet, "train", rows, {"rows": 4}, {"epochs": [0, 1, 2]})
    cases = [
        (lambda: loaders.VectorLoader(folder, "valid"), "unknown split"),
        (lambda: loaders.VectorLoader(folder, "train", epochs=[2, 9]), "epochs [9] are not in"),
        (lambda: loaders.VectorLoader(resnet, "train"), "per-tensor layout"),
        (lambda: loaders.VectorLoader(tmp_path, "train"), "holds no flat vectors"),
        (lambda: loaders.VectorLoader(folder, "train", noise_std=-1), "noise_std"),
        (lambda: loaders.VectorLoader(folder, "train", noise_std=0.1, noise_mode="gauss"), "noise_mode"),
        (lambda: loaders.VectorLoader(folder, "train", batch_size=0), "batch_size"),
        (lambda: torch_module.ZooVectorDataset(folder, "valid"), "unknown split"),
        (lambda: torch_module.ZooVectorDataset(folder, "train", epochs=[9]), "epochs [9] are not in"),
        (lambda: torch_module.ZooVectorDataset(resnet, "train", tokens=True), "per-tensor layout"),
    ]
    for make, words in cases:
        with pytest.raises(UserError) as error:
            make()
        assert isinstance(error.value, loaders.LoaderError) and words in str(error.value)
        assert "\n" not in str(error.value)


@pytest.mark.skipif(
    importlib.util.find_spec("jaxzoo.weights.symmetry") is None, reason="jaxzoo.weights.symmetry is not there yet"
)
def test_permutation_shuffles_hidden_units_only(vectors):
    folder, splits = vectors
    train = splits["train"]
    index = train.index_dict
    (batch,) = list(loaders.VectorLoader(folder, "train", batch_size=1000, shuffle=False, permute=True))
    rows, original = batch["weights"], train.weights
    assert not np.array_equal(rows, original)
    parts = list(layer_parts(index))
    for w, b in parts:  # each layer holds the same values, moved
        np.testing.assert_array_equal(np.sort(rows[:, b], 1), np.sort(original[:, b], 1))
        np.testing.assert_array_equal(np.sort(rows[:, w], 1), np.sort(original[:, w], 1))
    np.testing.assert_array_equal(rows[:, parts[-1][1]], original[:, parts[-1][1]])  # output units stay
    # standardised + permuted = permuted + standardised (per-layer statistics are permutation invariant)
    (both,) = list(
        loaders.VectorLoader(folder, "train", batch_size=1000, shuffle=False, permute=True, standardise=True)
    )
    stats = loaders.layer_statistics(train)
    np.testing.assert_allclose(both["weights"], loaders.standardise(rows, index, stats), rtol=1e-5, atol=1e-5)


def test_train_statistics_past_the_read_budget_merge_chunks_of_rows(vectors, monkeypatch):
    """A train split larger than `READ_BYTES` is read a few rows at a time (here 4, a ragged last
    chunk); its per-layer means and stds equal the whole split's up to float64 rounding."""
    folder, splits = vectors
    whole = loaders.layer_statistics(splits["train"])
    size = splits["train"].weights.shape[1]
    monkeypatch.setattr(loaders, "READ_BYTES", 4 * 8 * size)
    assert len(splits["train"].weights) % 4 and loaders.train_statistics(folder)["rows"] == whole["rows"]
    streamed = loaders.train_statistics(folder)
    for got, want in zip(streamed["layers"], whole["layers"], strict=True):
        assert got["layer"] == want["layer"]
        for key in ("weight_mean", "weight_std", "bias_mean", "bias_std"):
            assert got[key] == pytest.approx(want[key], rel=1e-9, abs=1e-12), key


def test_train_statistics_of_a_truncated_split_name_the_file(vectors, tmp_path, monkeypatch):
    import shutil

    from jaxzoo.weights.vectors import VectorFileError

    folder = shutil.copytree(vectors[0], tmp_path / "vectors")
    monkeypatch.setattr(loaders, "READ_BYTES", 1)  # the by-rows path
    path = folder / "train.safetensors"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(VectorFileError, match="train.safetensors is truncated: export the zoo again"):
        loaders.train_statistics(folder)
