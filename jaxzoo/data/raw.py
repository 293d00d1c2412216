"""Readers for the datasets' published file formats, from a directory the user points to.

Each reader returns {'train': (uint8 [N, H, W, C], int64 labels [N]), 'test': (...)} in the
order torchvision reads them (the order the original's split indices refer to). Files are
found under `raw_dir`, in the dataset's usual folder (e.g. `MNIST/raw`, `cifar-10-batches-py`)
or directly in it. Missing files raise DataUnavailableError naming them; every read runs in
`errors.reading(path)`, so a damaged file (whatever the parser raises) or a wrong shape gives
the one message `file X is damaged (...): delete it and download it again` (errors.damaged).

| dataset | files |
|---|---|
| mnist, fashion_mnist | train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-* (.gz or not) |
| cifar10 | cifar-10-batches-py/ (data_batch_1..5, test_batch) or cifar-10-python.tar.gz |
| cifar100 | cifar-100-python/ (train, test) or cifar-100-python.tar.gz |
| svhn | train_32x32.mat, test_32x32.mat |
| usps | usps.bz2, usps.t.bz2 |
| stl10 | stl10_binary/ (train_X.bin, train_y.bin, test_X.bin, test_y.bin) |
| tiny_imagenet | tiny-imagenet-200/ or tiny-imagenet-200.zip |
"""

from __future__ import annotations

import bz2
import gzip
import io
import pathlib
import pickle
import tarfile
import zipfile
from collections.abc import Callable

import numpy as np
from PIL import Image

from jaxzoo.data.errors import DOWNLOAD_AGAIN, DataUnavailableError, damaged, exists, reading

Splits = dict[str, tuple[np.ndarray, np.ndarray]]

# Folders a dataset's files usually sit in (torchvision's and the archives' names).
FOLDERS = {
    "mnist": ("MNIST/raw", "MNIST", "mnist"),
    "fashion_mnist": ("FashionMNIST/raw", "FashionMNIST", "fashion_mnist", "fashion-mnist"),
    "cifar10": ("cifar-10-batches-py",),
    "cifar100": ("cifar-100-python",),
    "svhn": ("SVHN", "svhn"),
    "usps": ("USPS", "usps"),
    "stl10": ("stl10_binary", "STL10/stl10_binary"),
    "tiny_imagenet": ("tiny-imagenet-200",),
}


def find(raw_dir: pathlib.Path, dataset: str, names: tuple[str, ...]) -> pathlib.Path | None:
    """The first of `names` in the dataset's usual folders under raw_dir, or in raw_dir itself."""
    for folder in (*FOLDERS.get(dataset, ()), "."):
        for name in names:
            path = raw_dir / folder / name
            if exists(path):
                return path
    return None


def require(raw_dir: pathlib.Path, dataset: str, *names: str) -> pathlib.Path:
    path = find(raw_dir, dataset, names)
    if path is None:
        raise DataUnavailableError(
            f"{dataset}: none of {list(names)} found under {raw_dir} (or its {', '.join(FOLDERS[dataset])} "
            "folders): put the published files there or point --config.data.raw_dir at them"
        )
    return path


def check_labels(
    path, labels: np.ndarray, num_classes: int, count: int, fix: str = DOWNLOAD_AGAIN, what: str = ""
) -> np.ndarray:
    if labels.shape != (count,):
        raise damaged(path, f"{labels.shape[0] if labels.ndim else 0} labels for {count} images", fix, what)
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise damaged(path, f"labels outside 0..{num_classes - 1}", fix, what)
    return labels.astype(np.int64)


# --- MNIST / Fashion-MNIST: IDX -------------------------------------------------------------


def read_idx(path: pathlib.Path) -> np.ndarray:
    """An IDX file of unsigned bytes (.gz or not) as an array of its declared shape."""
    opener = gzip.open if path.suffix == ".gz" else open
    with reading(path), opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise damaged(path, "not an IDX file of unsigned bytes")
    ndim = data[3]
    if len(data) < 4 + 4 * ndim:
        raise damaged(path, f"{len(data)} bytes, shorter than the header of a {ndim}-d IDX file")
    dims = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(dims)):
        raise damaged(path, f"header says {dims} = {int(np.prod(dims))} bytes, file has {body.size}")
    return body.reshape(dims)


def read_mnist_like(raw_dir: pathlib.Path, dataset: str) -> Splits:
    splits = {}
    for split, prefix in (("train", "train"), ("test", "t10k")):
        names = lambda kind: (f"{prefix}-{kind}", f"{prefix}-{kind}.gz")
        images_path = require(raw_dir, dataset, *names("images-idx3-ubyte"))
        labels_path = require(raw_dir, dataset, *names("labels-idx1-ubyte"))
        images = read_idx(images_path)
        if images.ndim != 3 or images.shape[1:] != (28, 28):
            raise damaged(images_path, f"images of shape {images.shape[1:]}, expected 28x28")
        labels = check_labels(labels_path, read_idx(labels_path), 10, len(images))
        splits[split] = (images[..., None], labels)
    return splits


# --- CIFAR-10 / CIFAR-100: python pickles ---------------------------------------------------

# A batch with where it came from: (batch, file, what, fix) as errors.damaged takes them.
Batch = tuple[dict, pathlib.Path, str, str]


def cifar_batches(raw_dir: pathlib.Path, dataset: str, folder: str, archive: str, names: list[str]) -> list[Batch]:
    """The pickled batches `names`, from the extracted folder or the .tar.gz archive."""
    if exists(raw_dir / folder) and (raw_dir / folder).is_dir():
        batches = []
        for name in names:
            path = raw_dir / folder / name
            if not exists(path):
                raise DataUnavailableError(f"{path} is missing: extract {archive} again")
            fix = f"delete it and extract {archive} again"
            with reading(path, fix):
                batches.append((pickle.loads(path.read_bytes(), encoding="latin1"), path, "", fix))
        return batches
    archive_path = require(raw_dir, dataset, archive)
    batches = []
    with reading(archive_path), tarfile.open(archive_path, "r:gz") as tar:
        for name in names:
            what = f"member {folder}/{name}"
            with reading(archive_path, what=what):
                batch = pickle.loads(tar.extractfile(f"{folder}/{name}").read(), encoding="latin1")
            batches.append((batch, archive_path, what, DOWNLOAD_AGAIN))
    return batches


def cifar_arrays(batches: list[Batch], label_key: str, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    images, labels = [], []
    for batch, path, what, fix in batches:
        with reading(path, fix, what):
            data = np.asarray(batch["data"], dtype=np.uint8)
            batch_labels = np.asarray(batch[label_key])
        if data.ndim != 2 or data.shape[1] != 3072:
            raise damaged(path, f"data of shape {data.shape}, expected [N, 3072]", fix, what)
        images.append(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
        labels.append(check_labels(path, batch_labels, num_classes, len(data), fix, what))
    return np.concatenate(images), np.concatenate(labels)


def read_cifar10(raw_dir: pathlib.Path) -> Splits:
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    batches = cifar_batches(raw_dir, "cifar10", "cifar-10-batches-py", "cifar-10-python.tar.gz", names)
    return {"train": cifar_arrays(batches[:5], "labels", 10), "test": cifar_arrays(batches[5:], "labels", 10)}


def read_cifar100(raw_dir: pathlib.Path) -> Splits:
    batches = cifar_batches(raw_dir, "cifar100", "cifar-100-python", "cifar-100-python.tar.gz", ["train", "test"])
    return {
        "train": cifar_arrays(batches[:1], "fine_labels", 100),
        "test": cifar_arrays(batches[1:], "fine_labels", 100),
    }


# --- SVHN: .mat ------------------------------------------------------------------------------


def read_svhn(raw_dir: pathlib.Path) -> Splits:
    from scipy import io as scipy_io

    splits = {}
    for split in ("train", "test"):
        path = require(raw_dir, "svhn", f"{split}_32x32.mat")
        with reading(path):
            mat = scipy_io.loadmat(path)
            x, labels = mat["X"], np.asarray(mat["y"]).astype(np.int64).reshape(-1)
        if x.ndim != 4 or x.shape[:3] != (32, 32, 3):
            raise damaged(path, f"X of shape {x.shape}, expected [32, 32, 3, N]")
        labels[labels == 10] = 0  # SVHN stores digit 0 as label 10
        splits[split] = (np.ascontiguousarray(x.transpose(3, 0, 1, 2)), check_labels(path, labels, 10, x.shape[3]))
    return splits


# --- USPS: bz2 libsvm ----------------------------------------------------------------------


def read_usps(raw_dir: pathlib.Path) -> Splits:
    splits = {}
    for split, name in (("train", "usps.bz2"), ("test", "usps.t.bz2")):
        path = require(raw_dir, "usps", name)
        with reading(path), bz2.open(path, "rt") as f:
            rows = [line.split() for line in f if line.strip()]
            values = np.asarray([[item.split(":")[-1] for item in row[1:]] for row in rows], dtype=np.float32)
            labels = np.asarray([int(float(row[0])) - 1 for row in rows], dtype=np.int64)
        if values.ndim != 2 or values.shape[1] != 256:
            raise damaged(path, f"{values.shape[1] if values.ndim == 2 else '?'} values per line, expected 256")
        images = ((values.reshape(-1, 16, 16) + 1) / 2 * 255).astype(np.uint8)  # as torchvision
        splits[split] = (images[..., None], check_labels(path, labels, 10, len(images)))
    return splits


# --- STL-10: binary --------------------------------------------------------------------------


def read_stl10(raw_dir: pathlib.Path) -> Splits:
    splits = {}
    for split in ("train", "test"):
        x_path = require(raw_dir, "stl10", f"{split}_X.bin")
        y_path = require(raw_dir, "stl10", f"{split}_y.bin")
        with reading(x_path):
            raw = np.fromfile(x_path, dtype=np.uint8)
        if raw.size % (3 * 96 * 96):
            raise damaged(x_path, f"{raw.size} bytes is not a whole number of 3x96x96 images")
        # Stored column-major per channel: torchvision transposes H and W.
        images = raw.reshape(-1, 3, 96, 96).transpose(0, 3, 2, 1)
        with reading(y_path):
            labels = np.fromfile(y_path, dtype=np.uint8).astype(np.int64) - 1
        splits[split] = (np.ascontiguousarray(images), check_labels(y_path, labels, 10, len(images)))
    return splits


# --- Tiny-ImageNet: folder or zip ------------------------------------------------------------


class _Tree:
    """Read access to tiny-imagenet-200 as a folder or inside its zip; errors name the file
    (the image in the folder, the zip and its member)."""

    ZIP_FIX = DOWNLOAD_AGAIN
    FOLDER_FIX = "delete it and extract tiny-imagenet-200.zip again"

    def __init__(self, raw_dir: pathlib.Path):
        folder = find(raw_dir, "tiny_imagenet", ("wnids.txt",))
        if folder is not None:
            self.root, self.zip = folder.parent, None
            self.names = None
            return
        archive = require(raw_dir, "tiny_imagenet", "tiny-imagenet-200.zip", "wnids.txt")
        with reading(archive):
            self.zip = zipfile.ZipFile(archive)
            self.names = set(self.zip.namelist())
        self.root = archive

    def where(self, relative: str) -> tuple[pathlib.Path, str, str]:
        """(file, what, fix) for errors.damaged/reading about `relative`."""
        if self.zip is None:
            return self.root / relative, "", self.FOLDER_FIX
        return self.root, f"member tiny-imagenet-200/{relative}", self.ZIP_FIX

    def read(self, relative: str) -> bytes:
        path, what, fix = self.where(relative)
        if self.zip is None:
            if not exists(path):
                raise DataUnavailableError(f"{path} is missing: extract tiny-imagenet-200.zip again")
            with reading(path, fix):
                return path.read_bytes()
        name = f"tiny-imagenet-200/{relative}"
        if name not in self.names:
            raise DataUnavailableError(f"{self.root} lacks {name}: delete it and download it again")
        with reading(path, fix, what):
            return self.zip.read(name)

    def text(self, relative: str) -> str:
        path, what, fix = self.where(relative)
        data = self.read(relative)
        with reading(path, fix, what):
            return data.decode()

    def list(self, prefix: str) -> list[str]:
        if self.zip is None:
            return sorted(str(p.relative_to(self.root)) for p in (self.root / prefix).glob("*") if p.is_file())
        start = f"tiny-imagenet-200/{prefix}/"
        return sorted(n[len("tiny-imagenet-200/") :] for n in self.names if n.startswith(start) and not n.endswith("/"))

    def image(self, relative: str) -> np.ndarray:
        """A 64x64 RGB image as uint8 [64, 64, 3]."""
        path, what, fix = self.where(relative)
        data = self.read(relative)
        with reading(path, fix, what):
            image = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), dtype=np.uint8)
        if image.shape != (64, 64, 3):
            raise damaged(path, f"image of shape {image.shape}, expected 64x64", fix, what)
        return image


def read_tiny_imagenet(raw_dir: pathlib.Path) -> Splits:
    """Classes in sorted wnid order (torchvision's ImageFolder, and the original's Tiny-ImageNet
    reader); train from train/<wnid>/images, test = the official val."""
    tree = _Tree(raw_dir)
    wnids = sorted(tree.text("wnids.txt").split())
    index = {wnid: i for i, wnid in enumerate(wnids)}
    images, labels = [], []
    for wnid in wnids:
        for name in tree.list(f"train/{wnid}/images"):
            images.append(tree.image(name))
            labels.append(index[wnid])
    val_images, val_labels = [], []
    annotations = "val/val_annotations.txt"
    for number, line in enumerate(tree.text(annotations).splitlines(), 1):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) < 2 or fields[1] not in index:
            path, what, fix = tree.where(annotations)
            raise damaged(path, f"line {number} names no class of wnids.txt", fix, what)
        val_images.append(tree.image(f"val/images/{fields[0]}"))
        val_labels.append(index[fields[1]])
    if not images or not val_images:
        raise DataUnavailableError(f"{tree.root} holds no Tiny-ImageNet images: download tiny-imagenet-200.zip again")
    return {
        "train": (np.stack(images), np.asarray(labels, np.int64)),
        "test": (np.stack(val_images), np.asarray(val_labels, np.int64)),
    }


READERS: dict[str, Callable[[pathlib.Path], Splits]] = {
    "mnist": lambda d: read_mnist_like(d, "mnist"),
    "fashion_mnist": lambda d: read_mnist_like(d, "fashion_mnist"),
    "cifar10": read_cifar10,
    "cifar100": read_cifar100,
    "svhn": read_svhn,
    "usps": read_usps,
    "stl10": read_stl10,
    "tiny_imagenet": read_tiny_imagenet,
}

# One file whose presence says the raw source can probably serve the dataset.
MARKERS = {
    "mnist": ("train-images-idx3-ubyte", "train-images-idx3-ubyte.gz"),
    "fashion_mnist": ("train-images-idx3-ubyte", "train-images-idx3-ubyte.gz"),
    "cifar10": ("data_batch_1", "cifar-10-python.tar.gz"),
    "cifar100": ("train", "cifar-100-python.tar.gz"),
    "svhn": ("train_32x32.mat",),
    "usps": ("usps.bz2",),
    "stl10": ("train_X.bin",),
    "tiny_imagenet": ("wnids.txt", "tiny-imagenet-200.zip"),
}


def available(raw_dir: str, source_name: str) -> bool:
    return bool(raw_dir) and find(pathlib.Path(raw_dir), source_name, MARKERS[source_name]) is not None
