"""Writers of files in the datasets' genuine published formats, filled with random images.

For tests and benchmarks of the raw readers; each writer returns the arrays it wrote, in the
order the reader must give them back.
"""

from __future__ import annotations

import bz2
import gzip
import io
import pathlib
import pickle
import tarfile
import zipfile

import numpy as np
from PIL import Image


def images(rng, n, h, w, c):
    return rng.integers(0, 256, size=(n, h, w, c), dtype=np.uint8)


def write_idx(path: pathlib.Path, array: np.ndarray, compress: bool) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    data = header + array.astype(np.uint8).tobytes()
    if compress:
        with gzip.open(str(path) + ".gz", "wb") as f:
            f.write(data)
    else:
        path.write_bytes(data)


def write_mnist(folder: pathlib.Path, rng, n_train: int, n_test: int, compress: bool = True):
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for split, prefix, n in (("train", "train", n_train), ("test", "t10k", n_test)):
        x, y = images(rng, n, 28, 28, 1), rng.integers(0, 10, n)
        write_idx(folder / f"{prefix}-images-idx3-ubyte", x[..., 0], compress)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte", y, compress)
        out[split] = (x, y)
    return out


def cifar_batch(x: np.ndarray, y: np.ndarray, label_key: str) -> bytes:
    data = x.transpose(0, 3, 1, 2).reshape(len(x), 3072)  # R plane, G plane, B plane
    return pickle.dumps({"data": data, label_key: [int(v) for v in y], "batch_label": "test"})


def write_cifar10(root: pathlib.Path, rng, per_batch: int, n_test: int, archive: bool = False):
    files, train_x, train_y = {}, [], []
    for i in range(1, 6):
        x, y = images(rng, per_batch, 32, 32, 3), rng.integers(0, 10, per_batch)
        files[f"data_batch_{i}"] = cifar_batch(x, y, "labels")
        train_x.append(x)
        train_y.append(y)
    tx, ty = images(rng, n_test, 32, 32, 3), rng.integers(0, 10, n_test)
    files["test_batch"] = cifar_batch(tx, ty, "labels")
    write_folder_or_tar(root, "cifar-10-batches-py", "cifar-10-python.tar.gz", files, archive)
    return {"train": (np.concatenate(train_x), np.concatenate(train_y)), "test": (tx, ty)}


def write_cifar100(root: pathlib.Path, rng, n_train: int, n_test: int, archive: bool = False):
    x, y = images(rng, n_train, 32, 32, 3), rng.integers(0, 100, n_train)
    tx, ty = images(rng, n_test, 32, 32, 3), rng.integers(0, 100, n_test)
    files = {"train": cifar_batch(x, y, "fine_labels"), "test": cifar_batch(tx, ty, "fine_labels")}
    write_folder_or_tar(root, "cifar-100-python", "cifar-100-python.tar.gz", files, archive)
    return {"train": (x, y), "test": (tx, ty)}


def write_folder_or_tar(root, folder, archive_name, files: dict[str, bytes], archive: bool):
    root.mkdir(parents=True, exist_ok=True)
    if not archive:
        (root / folder).mkdir(exist_ok=True)
        for name, data in files.items():
            (root / folder / name).write_bytes(data)
        return
    with tarfile.open(root / archive_name, "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(f"{folder}/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def write_svhn(folder: pathlib.Path, rng, n_train: int, n_test: int):
    from scipy import io as scipy_io

    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for split, n in (("train", n_train), ("test", n_test)):
        x, digits = images(rng, n, 32, 32, 3), rng.integers(0, 10, n)
        stored = np.where(digits == 0, 10, digits).astype(np.uint8)[:, None]  # 10 means digit 0
        scipy_io.savemat(folder / f"{split}_32x32.mat", {"X": x.transpose(1, 2, 3, 0), "y": stored})
        out[split] = (x, digits)
    return out


def write_usps(folder: pathlib.Path, rng, n_train: int, n_test: int):
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for name, split, n in (("usps.bz2", "train", n_train), ("usps.t.bz2", "test", n_test)):
        values = rng.uniform(-1, 1, size=(n, 256)).astype(np.float32)
        labels = rng.integers(0, 10, n)
        lines = [
            f"{label + 1} " + " ".join(f"{j + 1}:{v:.6f}" for j, v in enumerate(row))
            for label, row in zip(labels, values)
        ]
        with bz2.open(folder / name, "wt") as f:
            f.write("\n".join(lines) + "\n")
        expected = ((np.round(values, 6).reshape(-1, 16, 16) + 1) / 2 * 255).astype(np.uint8)[..., None]
        out[split] = (expected, labels)
    return out


def write_stl10(folder: pathlib.Path, rng, n_train: int, n_test: int):
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for split, n in (("train", n_train), ("test", n_test)):
        x, y = images(rng, n, 96, 96, 3), rng.integers(0, 10, n)
        # The binary holds each channel column-major: [N, C, W, H] in row-major bytes.
        (folder / f"{split}_X.bin").write_bytes(x.transpose(0, 3, 2, 1).tobytes())
        (folder / f"{split}_y.bin").write_bytes((y + 1).astype(np.uint8).tobytes())
        out[split] = (x, y)
    return out


def jpeg_bytes(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=100, subsampling=0)
    return buffer.getvalue()


def blocky_image(rng) -> np.ndarray:
    """64x64x3 of constant 8x8 blocks: JPEG (q100, no subsampling) keeps it almost exactly."""
    return np.kron(images(rng, 1, 8, 8, 3)[0], np.ones((8, 8, 1), np.uint8))


def write_tiny_imagenet(root: pathlib.Path, rng, wnids, per_class: int, n_val: int, as_zip: bool = False):
    """The tiny-imagenet-200 layout with wnids.txt in the given order; the splits returned are
    what torchvision's ImageFolder gives: classes numbered (and train images listed) in sorted
    wnid order."""
    files = {"wnids.txt": ("\n".join(wnids) + "\n").encode()}
    train_x, train_y = [], []
    for label, wnid in enumerate(sorted(wnids)):  # ImageFolder's sample order
        for i in range(per_class):
            image = blocky_image(rng)
            files[f"train/{wnid}/images/{wnid}_{i}.JPEG"] = jpeg_bytes(image)
            train_x.append(image)
            train_y.append(label)
    val_x, val_y, annotations = [], [], []
    for i in range(n_val):
        wnid = wnids[int(rng.integers(0, len(wnids)))]
        label = sorted(wnids).index(wnid)
        image = blocky_image(rng)
        files[f"val/images/val_{i}.JPEG"] = jpeg_bytes(image)
        annotations.append(f"val_{i}.JPEG\t{wnid}\t0\t0\t63\t63")
        val_x.append(image)
        val_y.append(label)
    files["val/val_annotations.txt"] = ("\n".join(annotations) + "\n").encode()
    root.mkdir(parents=True, exist_ok=True)
    if as_zip:
        with zipfile.ZipFile(root / "tiny-imagenet-200.zip", "w") as archive:
            for name, data in files.items():
                archive.writestr(f"tiny-imagenet-200/{name}", data)
    else:
        for name, data in files.items():
            path = root / "tiny-imagenet-200" / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
    return {"train": (np.stack(train_x), np.array(train_y)), "test": (np.stack(val_x), np.array(val_y))}
