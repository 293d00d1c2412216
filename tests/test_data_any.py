"""Datasets outside the registry: npz:PATH, py:MODULE:FUNCTION (and the function), tfds:NAME."""

import re
import shutil
import types

import numpy as np
import pytest

from jaxzoo.data import (
    DATASETS,
    DataOptions,
    DataUnavailableError,
    custom,
    describe_dataset,
    is_registry_name,
    load_dataset,
    parse_name,
    splits,
)
from jaxzoo.data.load import cache_folder
from jaxzoo.data.preprocess import Transform, apply_transform


def make_splits():
    """60 train / 20 test random 12x12x3 uint8 images of 4 classes (every class present)."""
    rng = np.random.default_rng(7)
    return {
        "x_train": rng.integers(0, 256, (60, 12, 12, 3), dtype=np.uint8),
        "y_train": rng.permutation(np.arange(60) % 4),
        "x_test": rng.integers(0, 256, (20, 12, 12, 3), dtype=np.uint8),
        "y_test": rng.integers(0, 4, 20),
    }


def keras_tuple():
    arrays = make_splits()
    return (arrays["x_train"], arrays["y_train"][:, None]), (arrays["x_test"], arrays["y_test"][:, None])


def returns_list():
    return [1, 2, 3]


def raises():
    raise RuntimeError("no data here")


NOT_A_FUNCTION = 42


def options_for(tmp_path, name="cache"):
    return DataOptions(cache_dir=str(tmp_path / name), tfds_dir=str(tmp_path / "tfds"))


def manifests(tmp_path, name="cache"):
    return sorted(p.parent.name for p in (tmp_path / name).glob("*/manifest.json"))


def test_npz_round_trip_split_stats_identity_and_resize(tmp_path, monkeypatch):
    arrays = make_splits()
    path = tmp_path / "a" / "data.npz"
    path.parent.mkdir()
    np.savez(path, **arrays)
    options = options_for(tmp_path)
    ds = load_dataset(f"npz:{path}", 12, options=options)
    assert ds.source == "npz" and ds.name == f"npz:{path}" and ds.num_classes == 4
    assert ds.image_shape == (12, 12, 3) and ds.train[0].dtype == np.uint8 and ds.train[1].dtype == np.int32
    assert [len(s[1]) for s in (ds.train, ds.val, ds.test)] == [51, 9, 20]  # round(0.15 * 60) = 9
    train_idx, val_idx, _ = splits.train_val_split(60, 51, 9)  # the project's seed-42 rule
    np.testing.assert_array_equal(ds.train[0], arrays["x_train"][train_idx])
    np.testing.assert_array_equal(ds.val[0], arrays["x_train"][val_idx])
    np.testing.assert_array_equal(ds.val[1], arrays["y_train"][val_idx])
    np.testing.assert_array_equal(ds.test[0], arrays["x_test"])
    pixels = arrays["x_train"][train_idx].astype(np.float64) / 255
    np.testing.assert_allclose(ds.mean, pixels.mean(axis=(0, 1, 2)), rtol=1e-12)
    np.testing.assert_allclose(ds.std, pixels.std(axis=(0, 1, 2)), rtol=1e-12)
    assert all(type(v) is float for v in ds.mean + ds.std)

    info = describe_dataset(f"npz:{path}", options)
    assert info.split_sizes == (51, 9, 20) and info.channels == 3 and info.num_classes == 4
    assert info.mean == ds.mean and info.std == ds.std and info.resizable and info.image_sizes == (12,)
    assert info.accepts_size(12) and info.accepts_size(16) and not info.accepts_size(0) and not info.accepts_size(True)
    assert describe_dataset(f"npz:{path}", options, val_fraction=0.25).split_sizes == (45, 15, 20)
    assert describe_dataset(f"npz:{path}", options, val_fraction=0.16).split_sizes == (50, 10, 20)  # round(9.6)
    assert len(load_dataset(f"npz:{path}", 12, options=options, val_fraction=0).val[1]) == 0
    assert len(load_dataset(f"npz:{path}", 12, 5, options=options).train[1]) == 5

    # Served from the cache: the file is not parsed again.
    monkeypatch.setattr(custom, "check_splits", lambda *a: pytest.fail("read the npz again"))
    assert load_dataset(f"npz:{path}", 12, options=options).fingerprint == ds.fingerprint
    monkeypatch.undo()

    # The identity is the content: moving the file keeps it (and its cache), one pixel changes it.
    moved = tmp_path / "b" / "renamed.npz"
    moved.parent.mkdir()
    shutil.move(path, moved)
    before = manifests(tmp_path)
    assert load_dataset(f"npz:{moved}", 12, options=options).fingerprint == ds.fingerprint
    assert manifests(tmp_path) == before
    assert load_dataset(f"npz:{moved}", 12, options=options_for(tmp_path, "fresh")).fingerprint == ds.fingerprint
    arrays["x_train"][5, 3, 4, 1] ^= 1
    np.savez(moved, **arrays)
    assert load_dataset(f"npz:{moved}", 12, options=options).fingerprint != ds.fingerprint

    # Another size: the project's PIL bilinear resize, cached separately.
    big = load_dataset(f"npz:{moved}", 16, options=options)
    assert big.image_shape == (16, 16, 3)
    np.testing.assert_array_equal(big.train[0], apply_transform(arrays["x_train"][train_idx], Transform(resize=16)))
    assert any("resize16" in name for name in manifests(tmp_path))


def test_npz_with_val_grayscale_and_non_square(tmp_path):
    rng = np.random.default_rng(3)
    x_val, y_val = rng.integers(0, 256, (7, 10, 10), dtype=np.uint8), np.arange(7) % 3
    path = tmp_path / "gray.npz"
    np.savez_compressed(
        path,
        x_train=rng.integers(0, 256, (30, 10, 10), dtype=np.uint8),
        y_train=np.arange(30) % 3,
        x_test=rng.integers(0, 256, (9, 10, 10), dtype=np.uint8),
        y_test=np.arange(9) % 3,
        x_val=x_val,
        y_val=y_val,
        num_classes=np.int64(5),
    )
    ds = load_dataset(f"npz:{path}", 10, options=options_for(tmp_path), val_fraction=0.5)
    assert ds.image_shape == (10, 10, 1) and ds.num_classes == 5 and len(ds.train[1]) == 30  # val from the file
    np.testing.assert_array_equal(ds.val[0][..., 0], x_val)
    np.testing.assert_array_equal(ds.val[1], y_val)
    assert len(ds.mean) == 1 and describe_dataset(f"npz:{path}", options_for(tmp_path)).split_sizes == (30, 7, 9)

    wide = tmp_path / "wide.npz"
    np.savez(
        wide,
        x_train=rng.integers(0, 256, (8, 6, 9, 3), dtype=np.uint8),
        y_train=np.arange(8) % 2,
        x_test=rng.integers(0, 256, (4, 6, 9, 3), dtype=np.uint8),
        y_test=np.arange(4) % 2,
    )
    info = describe_dataset(f"npz:{wide}", options_for(tmp_path))
    assert info.image_sizes == () and info.accepts_size(6) and "any of 1..1024" in info.size_rule
    assert load_dataset(f"npz:{wide}", 6, options=options_for(tmp_path)).image_shape == (6, 6, 3)


def test_callable_by_name_and_object_give_the_same_dataset(tmp_path):
    options = options_for(tmp_path)
    by_name = load_dataset(f"py:{__name__}:make_splits", 12, options=options)
    by_object = load_dataset(make_splits, 12, options=options)
    assert by_name.source == by_object.source == "callable"
    assert by_name.name == by_object.name == f"py:{__name__}:make_splits"
    assert by_name.fingerprint == by_object.fingerprint and by_name.num_classes == 4
    for a, b in zip((by_name.train, by_name.val, by_name.test), (by_object.train, by_object.val, by_object.test)):
        np.testing.assert_array_equal(a[0], b[0])
        np.testing.assert_array_equal(a[1], b[1])
    assert describe_dataset(make_splits, options).split_sizes == (51, 9, 20)
    # Keras's load_data tuple with [N, 1] labels is the same data; an npz of it the same fingerprint.
    assert load_dataset(keras_tuple, 12, options=options).fingerprint == by_name.fingerprint
    np.savez(tmp_path / "same.npz", **make_splits())
    assert load_dataset(f"npz:{tmp_path / 'same.npz'}", 12, options=options).fingerprint == by_name.fingerprint


def test_tfds_any_dataset_under_mock_data(tmp_path):
    tfds = pytest.importorskip("tensorflow_datasets")
    options = options_for(tmp_path)
    with tfds.testing.mock_data(num_examples=40, policy=tfds.testing.MockPolicy.USE_CODE):
        ds = load_dataset("tfds:mnist", 28, options=options)
        info = describe_dataset("tfds:mnist", options)
        small = load_dataset("tfds:mnist", 14, options=options)
    assert ds.source == "tfds" and ds.num_classes == 10 and ds.image_shape == (28, 28, 1)
    assert [len(s[1]) for s in (ds.train, ds.val, ds.test)] == [34, 6, 40]
    assert info.split_sizes == (34, 6, 40) and info.num_classes == 10 and info.channels == 1
    assert small.image_shape == (14, 14, 1)
    assert any(name.startswith("tfds.mnist.") for name in manifests(tmp_path))
    # The cache serves without TFDS data (outside mock_data nothing is prepared in tfds_dir).
    assert load_dataset("tfds:mnist", 28, options=options).fingerprint == ds.fingerprint


def test_registry_names_are_unchanged(tmp_path):
    assert is_registry_name("cifar10") and not is_registry_name("npz:x.npz") and not is_registry_name(make_splits)
    assert describe_dataset("cifar10") is DATASETS["cifar10"] and not DATASETS["cifar10"].resizable
    assert parse_name("mnist_5k").form == "registry" and parse_name("tfds:mnist/3.0.1").target == "mnist/3.0.1"
    assert cache_folder(DATASETS["mnist_5k"], "embedded", 28, DataOptions()).name == "mnist_5k-embedded-native-v2"
    with pytest.raises(DataUnavailableError, match=r"is used at image sizes \(28,\), not 32"):
        load_dataset("mnist", 32)


def savez(tmp_path, name, **changes):
    arrays = {**make_splits(), **changes}
    path = tmp_path / name
    np.savez(path, **{k: v for k, v in arrays.items() if v is not None})
    return f"npz:{path}"


def not_prepared(tmp_path):
    pytest.importorskip("tensorflow_datasets")
    return "tfds:mnist"


def no_test_split(tmp_path, monkeypatch):
    tfds = pytest.importorskip("tensorflow_datasets")
    real = tfds.builder("mnist", data_dir=str(tmp_path / "tfds")).info
    info = types.SimpleNamespace(
        full_name="mnist/3.0.1",
        supervised_keys=("image", "label"),
        features=real.features,
        splits={"train": None, "validation": None},
    )
    monkeypatch.setattr(tfds, "builder", lambda *a, **k: types.SimpleNamespace(info=info, is_prepared=lambda: True))
    return "tfds:mnist"


def tfds_name(name):
    def make(tmp_path):
        pytest.importorskip("tensorflow_datasets")
        return f"tfds:{name}"

    return make


x = make_splits()
BAD = {
    "missing file": (lambda p: f"npz:{p / 'nope.npz'}", r"npz file .*nope.npz does not exist .*: give the path"),
    "text file named .npz": (
        lambda p: (p / "t.npz").write_text("hello") and f"npz:{p / 't.npz'}",
        r"t.npz is not a .npz \(not a zip archive\): write the arrays with numpy.savez",
    ),
    "missing y_test": (lambda p: savez(p, "m.npz", y_test=None), r"lacks y_test: it needs x_train"),
    "x_val without y_val": (lambda p: savez(p, "v.npz", x_val=x["x_test"]), r"lacks y_val"),
    "float32 images": (
        lambda p: savez(p, "f.npz", x_train=x["x_train"].astype(np.float32) / 255),
        r"x_train is float32, not uint8: convert the images to uint8 0..255",
    ),
    "int64 images": (lambda p: savez(p, "i.npz", x_test=x["x_test"].astype(np.int64)), r"x_test is int64, not uint8"),
    "labels 10 with 4 classes": (
        lambda p: savez(p, "c.npz", num_classes=np.int64(4), y_test=np.full(20, 10)),
        r"y_test holds label 10 but num_classes is 4: labels must be 0..3",
    ),
    "negative label": (
        lambda p: savez(p, "n.npz", y_train=np.r_[-1, x["y_train"][1:]]),
        r"y_train holds label -1, out of range: .*map the classes",
    ),
    "float labels": (
        lambda p: savez(p, "fl.npz", y_train=x["y_train"].astype(np.float32)),
        r"y_train is float32, not integers: give integer class indices",
    ),
    "one-hot labels": (
        lambda p: savez(p, "o.npz", y_test=np.eye(4, dtype=np.int64)[x["y_test"]]),
        r"y_test has shape \(20, 4\): labels need \[N\]",
    ),
    "mismatched lengths": (
        lambda p: savez(p, "l.npz", y_train=x["y_train"][:59]),
        r"x_train has 60 images but y_train 59 labels: give one label per image",
    ),
    "wrong ndim": (
        lambda p: savez(p, "d.npz", x_train=x["x_train"].reshape(60, -1)),
        r"x_train has shape \(60, 432\): images need \[N, H, W\]",
    ),
    "4 channels": (lambda p: savez(p, "rgba.npz", x_train=np.zeros((60, 12, 12, 4), np.uint8)), r"with C 1 or 3"),
    "empty split": (
        lambda p: savez(p, "e.npz", x_test=x["x_test"][:0], y_test=x["y_test"][:0]),
        r"the test split is empty .*: give every split at least one example",
    ),
    "shapes differ": (
        lambda p: savez(p, "s.npz", x_test=x["x_test"][:, :10, :10]),
        r"x_test images are 10x10x3, x_train's 12x12x3: give every split the same image shape",
    ),
    "constant channel": (
        lambda p: savez(p, "k.npz", x_train=np.full((60, 12, 12, 3), 7, np.uint8)),
        r"channel 0 of x_train is constant \(7\), its std is 0 .*: check the images",
    ),
    "callable returns a list": (
        lambda p: f"py:{__name__}:returns_list",
        r"returned a list, not a dict of splits: return \{'x_train'",
    ),
    "callable raises": (lambda p: f"py:{__name__}:raises", r"raised RuntimeError: no data here: fix the function"),
    "bad import path": (lambda p: "py:no_such_module_xyz:make", r"cannot import module 'no_such_module_xyz' .*: check"),
    "no such function": (lambda p: f"py:{__name__}:nothing", r"has no 'nothing' .*: name a function defined there"),
    "not a function": (
        lambda p: f"py:{__name__}:NOT_A_FUNCTION",
        r"NOT_A_FUNCTION is not a function \(type int\) .*: name a function",
    ),
    "py without function": (lambda p: "py:just_a_module", r"is not py:MODULE:FUNCTION: write it like"),
    "unknown prefix": (lambda p: "foo:bar", r"unknown dataset form 'foo:' in 'foo:bar': use a registry name or tfds:"),
    "unknown name": (lambda p: "imagenet", r"unknown dataset 'imagenet'; choose one of .* or tfds:NAME"),
    "tfds not prepared": (
        not_prepared,
        r"TFDS mnist/\S+ is not prepared in .*tfds.*: run `python -m jaxzoo.data "
        r"prepare tfds:mnist`",
    ),
    "tfds unknown": (tfds_name("no_such_tfds_xyz"), r"TFDS has no dataset 'no_such_tfds_xyz' .*: check the name"),
    "tfds not images": (tfds_name("imdb_reviews"), r"is not an image classification dataset .*: use one with an Image"),
    "tfds varying sizes": (tfds_name("tf_flowers"), r"has images of shape \(None, None, 3\) .*: resize them"),
    "tfds no test split": (
        no_test_split,
        r"TFDS mnist/3.0.1 has no 'test' split, only \['train', 'validation'\]: "
        r"jaxzoo takes",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_is_one_line_with_the_fix(case, tmp_path, monkeypatch):
    make, pattern = BAD[case]
    name = make(tmp_path) if make.__code__.co_argcount == 1 else make(tmp_path, monkeypatch)
    options = options_for(tmp_path)
    for call in (lambda: load_dataset(name, 12, options=options), lambda: describe_dataset(name, options)):
        with pytest.raises(DataUnavailableError) as error:
            call()
        message = str(error.value)
        assert "\n" not in message and len(message) < 400, message
        assert re.search(pattern, message), message
    assert manifests(tmp_path) == []  # nothing cached before the checks pass


def test_bad_options_and_sizes(tmp_path):
    name = savez(tmp_path, "ok.npz")
    options = options_for(tmp_path)
    with pytest.raises(DataUnavailableError, match=r"val_fraction=1.0 is out of range: use a number in \[0, 1\)"):
        load_dataset(name, 12, options=options, val_fraction=1.0)
    with pytest.raises(
        DataUnavailableError,
        match=r"is used at image sizes 12 \(native\) or any of 1..1024 "
        r"\(resized\), not 2000: set data.image_size",
    ):
        load_dataset(name, 2000, options=options)
    with pytest.raises(
        DataUnavailableError,
        match=r"data source 'raw' is for registry datasets; .*set "
        r"--config.data.source to 'auto'",
    ):
        load_dataset(name, 12, options=DataOptions(source="raw", cache_dir=str(tmp_path / "cache")))
