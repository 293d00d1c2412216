"""Raw readers on files in the genuine formats, TFDS under mock_data, transforms, splits, cache."""

import subprocess
import sys

import numpy as np
import pytest

from jaxzoo.data import DATASETS, DataOptions, DataUnavailableError, load_dataset, raw, splits, tfds_source
from jaxzoo.data import cache as data_cache
from jaxzoo.data import synthetic as rawfiles
from jaxzoo.data.preprocess import Transform, apply_transform, center_crop_box


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def assert_splits_equal(got, expected):
    assert set(got) == set(expected)
    for split in expected:
        np.testing.assert_array_equal(got[split][0], expected[split][0])
        np.testing.assert_array_equal(got[split][1], expected[split][1])
        assert got[split][0].dtype == np.uint8 and got[split][0].ndim == 4


@pytest.mark.parametrize("compress", [True, False])
def test_mnist_idx(tmp_path, rng, compress):
    expected = rawfiles.write_mnist(tmp_path / "MNIST" / "raw", rng, 30, 12, compress)
    assert_splits_equal(raw.READERS["mnist"](tmp_path), expected)


def test_mnist_and_fashion_mnist_side_by_side(tmp_path, rng):
    mnist = rawfiles.write_mnist(tmp_path / "MNIST" / "raw", rng, 5, 3)
    fashion = rawfiles.write_mnist(tmp_path / "FashionMNIST" / "raw", rng, 6, 4)
    assert_splits_equal(raw.READERS["mnist"](tmp_path), mnist)
    assert_splits_equal(raw.READERS["fashion_mnist"](tmp_path), fashion)


@pytest.mark.parametrize("archive", [False, True])
def test_cifar10_pickles(tmp_path, rng, archive):
    expected = rawfiles.write_cifar10(tmp_path, rng, 4, 5, archive)
    got = raw.READERS["cifar10"](tmp_path)
    assert_splits_equal(got, expected)


def test_cifar100_fine_labels(tmp_path, rng):
    expected = rawfiles.write_cifar100(tmp_path, rng, 9, 4, archive=True)
    assert_splits_equal(raw.READERS["cifar100"](tmp_path), expected)


def test_svhn_mat_maps_label_10_to_digit_0(tmp_path, rng):
    expected = rawfiles.write_svhn(tmp_path / "SVHN", rng, 25, 7)
    got = raw.READERS["svhn"](tmp_path)
    assert_splits_equal(got, expected)
    assert 0 in got["train"][1] and got["train"][1].max() <= 9


def test_usps_libsvm(tmp_path, rng):
    expected = rawfiles.write_usps(tmp_path, rng, 12, 5)
    got = raw.READERS["usps"](tmp_path)
    assert_splits_equal(got, expected)
    assert got["train"][0].shape == (12, 16, 16, 1)


def test_stl10_binary_is_transposed_like_torchvision(tmp_path, rng):
    expected = rawfiles.write_stl10(tmp_path / "stl10_binary", rng, 3, 2)
    assert_splits_equal(raw.READERS["stl10"](tmp_path), expected)


@pytest.mark.parametrize("as_zip", [False, True])
def test_tiny_imagenet_folder_and_zip(tmp_path, rng, as_zip):
    wnids = ["n02124075", "n01443537", "n01641577"]  # wnids.txt is not sorted; class ids are
    expected = rawfiles.write_tiny_imagenet(tmp_path, rng, wnids, per_class=3, n_val=4, as_zip=as_zip)
    got = raw.READERS["tiny_imagenet"](tmp_path)
    for split in ("train", "test"):
        np.testing.assert_array_equal(got[split][1], expected[split][1])
        assert got[split][0].shape == expected[split][0].shape
        assert np.abs(got[split][0].astype(int) - expected[split][0]).max() <= 3  # JPEG q100


def test_damaged_and_missing_files_name_the_file(tmp_path, rng):
    rawfiles.write_mnist(tmp_path / "MNIST" / "raw", rng, 10, 4, compress=False)
    images_path = tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte"
    images_path.write_bytes(images_path.read_bytes()[:-50])
    with pytest.raises(DataUnavailableError, match=f"{images_path} is damaged .*header says"):
        raw.READERS["mnist"](tmp_path)

    labels = tmp_path / "l" / "MNIST" / "raw"
    rawfiles.write_mnist(labels, rng, 10, 4, compress=False)
    bad_labels = np.full(10, 12, np.uint8)
    rawfiles.write_idx(labels / "train-labels-idx1-ubyte", bad_labels, compress=False)
    with pytest.raises(DataUnavailableError, match="labels outside 0..9"):
        raw.READERS["mnist"](tmp_path / "l")

    (tmp_path / "c" / "cifar-10-batches-py").mkdir(parents=True)
    (tmp_path / "c" / "cifar-10-batches-py" / "data_batch_1").write_bytes(b"garbage")
    with pytest.raises(DataUnavailableError, match="data_batch_1 is damaged"):
        raw.READERS["cifar10"](tmp_path / "c")

    with pytest.raises(DataUnavailableError, match=r"svhn: none of \['train_32x32.mat'\] found under"):
        raw.READERS["svhn"](tmp_path / "empty")


def test_transforms_against_hand_computed_values():
    # PIL grayscale: L = (19595 R + 38470 G + 7471 B + 2^15) >> 16 (ITU-R 601-2, rounded)
    rgb = np.zeros((1, 32, 32, 3), np.uint8)
    rgb[0, :, :] = (200, 100, 50)
    gray = apply_transform(rgb, Transform(grayscale=True, center_crop=28))
    assert gray.shape == (1, 28, 28, 1)
    assert int(gray[0, 0, 0, 0]) == (19595 * 200 + 38470 * 100 + 7471 * 50 + 32768) >> 16 == 124
    # torchvision CenterCrop: offsets round((H - size) / 2)
    assert center_crop_box(32, 32, 28) == (2, 2, 30, 30)
    assert center_crop_box(33, 31, 28) == (2, 2, 30, 30)
    marked = np.zeros((1, 32, 32, 1), np.uint8)
    marked[0, 2, 2, 0] = 255
    assert apply_transform(marked, Transform(center_crop=28))[0, 0, 0, 0] == 255
    # PIL bilinear downscale by 2 (antialiased): output 0 weights inputs 0,1,2 by .75,.75,.25
    ramp = np.tile(np.array([0, 40, 80, 120], np.uint8), (4, 1))[None, ..., None]
    small = apply_transform(ramp, Transform(resize=2))
    assert small.shape == (1, 2, 2, 1)
    assert int(small[0, 0, 0, 0]) == round((0 * 0.75 + 40 * 0.75 + 80 * 0.25) / 1.75)


def test_small_cnn_zoo_gs_entries_average_the_channels(tmp_path, rng):
    # The Small CNN Zoo's generator: one channel, tf.reduce_mean over R, G, B (of [0, 1] values,
    # then [-1, 1]: Normalize 0.5 of the mean is the mean of the normalised channels).
    pixel = np.array([[[[200, 100, 51]]]], np.uint8)
    assert int(apply_transform(pixel, Transform(channel_mean=True))[0, 0, 0, 0]) == 117  # 351 / 3
    assert Transform(channel_mean=True).tag == "mean"
    svhn = rawfiles.write_svhn(tmp_path / "raw" / "SVHN", rng, 20, 6)
    cifar = rawfiles.write_cifar10(tmp_path / "raw", rng, 4, 6)
    options = DataOptions(source="raw", raw_dir=str(tmp_path / "raw"), cache_dir=str(tmp_path / "cache"))
    for name, written in (("svhn_gs", svhn), ("cifar10_gs", cifar)):
        info = DATASETS[name]
        assert (info.channels, info.image_sizes, info.mean, info.std) == (1, (32,), (0.5,), (0.5,))
        data = load_dataset(name, 32, options=options, strict_sizes=False)
        assert data.image_shape == (32, 32, 1) and data.train[0].dtype == np.uint8
        x, y = written["test"]
        expected = np.floor(x.astype(np.int64).sum(-1, keepdims=True) / 3 + 0.5)  # no ties: sums / 3
        np.testing.assert_array_equal(data.test[0], expected.astype(np.uint8))
        np.testing.assert_array_equal(data.test[1], y)
    assert sorted(p.name.split("-")[2] for p in (tmp_path / "cache").iterdir()) == ["mean", "mean"]


def test_stored_split_permutations_are_torchs():
    torch = pytest.importorskip("torch")
    for n in (5000, 7291, 50000, 60000, 73257):
        expected = torch.randperm(n, generator=torch.Generator().manual_seed(42)).numpy()
        np.testing.assert_array_equal(splits.stored_permutation(n), expected)


def test_split_sizes_disjoint_and_numpy_fallback(monkeypatch):
    train, val, method = splits.train_val_split(60000, 50000, 10000)
    assert method == "torch" and len(train) == 50000 and len(val) == 10000
    assert len(np.union1d(train, val)) == 60000
    monkeypatch.setattr(splits, "torch_permutation", lambda n, seed=42: None)
    train2, val2, method2 = splits.train_val_split(1234, 1000, 234)
    assert method2 == "numpy" and len(np.union1d(train2, val2)) == 1234
    again = splits.train_val_split(1234, 1000, 234)
    np.testing.assert_array_equal(again[0], train2)
    with pytest.raises(ValueError, match="do not add up"):
        splits.train_val_split(100, 80, 10)


def test_raw_source_end_to_end_with_cache(tmp_path, rng, monkeypatch):
    written = rawfiles.write_usps(tmp_path / "raw", rng, 70, 20)
    options = DataOptions(source="raw", raw_dir=str(tmp_path / "raw"), cache_dir=str(tmp_path / "cache"))
    first = load_dataset("usps", 28, options=options, strict_sizes=False)
    assert first.source == "raw" and first.image_shape == (28, 28, 1) and first.train[0].dtype == np.uint8
    assert len(first.train[1]) + len(first.val[1]) == 70 and len(first.test[1]) == 20
    np.testing.assert_array_equal(first.test[1], written["test"][1])
    # The val part follows the protocol's fraction (1291 of 7291) of a torch/numpy permutation.
    assert len(first.val[1]) == round(70 * 1291 / 7291)

    calls = []
    original = raw.READERS["usps"]
    monkeypatch.setitem(raw.READERS, "usps", lambda d: calls.append(d) or original(d))
    second = load_dataset("usps", 28, options=options, strict_sizes=False)
    assert calls == [] and second.fingerprint == first.fingerprint  # served from the cache
    np.testing.assert_array_equal(second.train[0], first.train[0])

    # A changed transform is another cache entry: the source is read again.
    changed = DATASETS["usps"].__class__(
        **{**DATASETS["usps"].__dict__, "transforms": {28: Transform(resize=28, center_crop=14)}}
    )
    monkeypatch.setitem(DATASETS, "usps", changed)
    third = load_dataset("usps", 28, options=options, strict_sizes=False)
    assert len(calls) == 1 and third.fingerprint != first.fingerprint

    with pytest.raises(DataUnavailableError, match="has 70 train images, the protocol needs 7291"):
        load_dataset("usps", 28, options=DataOptions("raw", str(tmp_path / "raw"), "", str(tmp_path / "c2")))
    assert not (tmp_path / "c2").exists() or not any((tmp_path / "c2").glob("*/manifest.json"))


def test_damaged_cache_is_reported_and_never_half_written(tmp_path, rng, monkeypatch):
    rawfiles.write_usps(tmp_path / "raw", rng, 30, 10)
    options = DataOptions(source="raw", raw_dir=str(tmp_path / "raw"), cache_dir=str(tmp_path / "cache"))
    load_dataset("usps", 28, options=options, strict_sizes=False)
    (folder,) = (tmp_path / "cache").iterdir()
    images = folder / "train_images.npy"
    data = bytearray(images.read_bytes())
    data[-1] ^= 0xFF
    images.write_bytes(bytes(data))
    with pytest.raises(DataUnavailableError) as error:
        load_dataset("usps", 28, options=options, strict_sizes=False)
    assert f"file {images} is damaged (its sha256 differs from the manifest's): delete {folder}" in str(error.value)

    def failing_save(path, array):
        raise OSError("disk full")

    monkeypatch.setattr(data_cache.np, "save", failing_save)
    other = DataOptions(source="raw", raw_dir=str(tmp_path / "raw"), cache_dir=str(tmp_path / "cache2"))
    with pytest.raises(DataUnavailableError, match="cannot write the data cache .*cache2.* disk full"):
        load_dataset("usps", 28, options=other, strict_sizes=False)
    assert list((tmp_path / "cache2").iterdir()) == []


def test_tfds_source_under_mock_data(tmp_path):
    tfds = pytest.importorskip("tensorflow_datasets")
    options = DataOptions(source="tfds", cache_dir=str(tmp_path / "cache"))
    with tfds.testing.mock_data(num_examples=40, policy=tfds.testing.MockPolicy.USE_CODE):
        small = load_dataset("cifar10", 28, options=options, strict_sizes=False)
        medium = load_dataset("cifar10", 32, options=options, strict_sizes=False)
        svhn = load_dataset("svhn", 28, options=options, strict_sizes=False)
    assert small.source == "tfds" and small.image_shape == (28, 28, 3) and medium.image_shape == (32, 32, 3)
    assert len(small.train[1]) + len(small.val[1]) == 40 and len(small.test[1]) == 40
    assert svhn.image_shape == (28, 28, 1) and svhn.train[0].dtype == np.uint8
    assert len(list((tmp_path / "cache").glob("*/manifest.json"))) == 3
    assert tfds_source.original_order(["train_10", "train_2", "train_00001"]).tolist() == [2, 1, 0]
    assert tfds_source.original_order(["a", "b"]) is None


def test_data_cli_list_info_and_errors(tmp_path):
    env_cache = ["--cache_dir", str(tmp_path / "cache")]
    run = lambda *args: subprocess.run(
        [sys.executable, "-m", "jaxzoo.data", *args], capture_output=True, text=True, timeout=120
    )
    listing = run("list", *env_cache)
    assert listing.returncode == 0
    rows = [line for line in listing.stdout.splitlines() if line.startswith("| ") and "dataset" not in line]
    assert len(rows) == len(DATASETS)
    assert any(line.startswith("| mnist_5k | 8x8x1, 28x28x1 | 10 | 3500/750/750 | embedded") for line in rows)
    prepared = run("prepare", "mnist_5k", *env_cache)
    assert prepared.returncode == 0 and "3500/750/750" in prepared.stdout
    assert "28px/embedded" in run("list", *env_cache).stdout
    info = run("info", "svhn", *env_cache)
    assert info.returncode == 0 and "gray-crop28" in info.stdout and "svhn_cropped" in info.stdout
    missing = run("prepare", "usps", *env_cache)
    assert (
        missing.returncode == 2
        and "usps is not in TFDS" in missing.stderr
        and len(missing.stderr.strip().splitlines()) == 1
    )
    unknown = run("info", "imagenet")
    assert unknown.returncode == 2 and "unknown dataset 'imagenet'" in unknown.stderr
