"""On-disk cache of preprocessed uint8 splits, shared by every zoo on the machine.

One folder per (source dataset, source, transform, format version) under the cache root
(`--config.data.cache_dir`, else $JAXZOO_DATA_DIR, else ~/.cache/jaxzoo). It holds
`<split>_images.npy`, `<split>_labels.npy` and `manifest.json` (shape, dtype, sha256 of each
file). A folder is written under a temporary name and renamed when complete, so a cache is
never half-written; every read checks the manifest. A cache that fails any check is an error
naming the file and the fix (delete the folder, run again), never rebuilt silently; the raw
files it came from are never touched. `check_writable` tells before any work whether a new
cache can be written; reading an existing one needs no write permission.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import pathlib
import shutil
import tempfile

import numpy as np

from jaxzoo.data.errors import DataUnavailableError, damaged, describe, exists, reading
from jaxzoo.host import destination_problem

FORMAT_VERSION = 2  # 2: Tiny-ImageNet classes in sorted wnid order


def cache_root(cache_dir: str = "") -> pathlib.Path:
    root = cache_dir or os.environ.get("JAXZOO_DATA_DIR") or pathlib.Path.home() / ".cache" / "jaxzoo"
    return pathlib.Path(root).expanduser().absolute()


def root_name(cache_dir: str = "") -> str:
    """How the user set the cache root, for messages: 'data.cache_dir /x', '$JAXZOO_DATA_DIR /x'."""
    setting = (
        "data.cache_dir"
        if cache_dir
        else "$JAXZOO_DATA_DIR"
        if os.environ.get("JAXZOO_DATA_DIR")
        else "the default data cache"
    )
    return f"{setting} {cache_root(cache_dir)}"


SET_ANOTHER = (
    "set --config.data.cache_dir (--cache_dir for `python -m jaxzoo.data`) or $JAXZOO_DATA_DIR to a writable folder"
)


def check_writable(cache_dir: str = "") -> pathlib.Path:
    """The cache root, once it is sure a cache can be written there (the root is a writable folder,
    or can be created in one); a one-line DataUnavailableError naming the folder otherwise."""
    root = cache_root(cache_dir)
    problem = destination_problem(root)
    if problem:
        raise DataUnavailableError(f"{root_name(cache_dir)} {problem}: {SET_ANOTHER}")
    return root


def cache_key(source_name: str, source: str, transform_tag: str) -> str:
    return f"{source_name}-{source}-{transform_tag}-v{FORMAT_VERSION}"


def sha256(path: pathlib.Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def write(folder: pathlib.Path, splits: dict[str, tuple[np.ndarray, np.ndarray]], meta: dict | None = None) -> None:
    """Writes the splits atomically (temporary folder, then rename); a failing write (disk full,
    permissions) is a one-line DataUnavailableError and leaves nothing behind. `meta` (JSON
    values, e.g. a declared class count) goes into the manifest under "meta" (`read_meta`)."""
    tmp = None
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = pathlib.Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
        manifest = {"format_version": FORMAT_VERSION, "files": {}}
        if meta:
            manifest["meta"] = meta
        for split, (images, labels) in splits.items():
            for kind, array in (("images", images), ("labels", labels)):
                name = f"{split}_{kind}.npy"
                np.save(tmp / name, array)
                manifest["files"][name] = {
                    "shape": list(array.shape),
                    "dtype": str(array.dtype),
                    "sha256": sha256(tmp / name),
                }
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1))
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(tmp, folder)
    except OSError as error:
        fix = f"free space there or {SET_ANOTHER}" if error.errno == errno.ENOSPC else SET_ANOTHER
        raise DataUnavailableError(f"cannot write the data cache {folder} ({describe(error)}): {fix}") from None
    finally:
        if tmp is not None and tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def present(folder: pathlib.Path) -> bool:
    """Whether `folder` holds a cache (its manifest); unreadable folders are a one-line error."""
    return exists(folder / "manifest.json")


def read(folder: pathlib.Path) -> dict[str, tuple[np.ndarray, np.ndarray]] | None:
    """The cached splits, None if absent; DataUnavailableError naming the file if damaged."""
    manifest_path = folder / "manifest.json"
    if not present(folder):
        return None
    fix = f"delete {folder} and run again to rebuild it"
    with reading(manifest_path, fix):
        files = json.loads(manifest_path.read_text())["files"]
        metas = {name: (tuple(meta["shape"]), str(meta["dtype"]), str(meta["sha256"])) for name, meta in files.items()}
    splits = sorted({name.rsplit("_", 1)[0] for name in metas})
    expected = {f"{split}_{kind}.npy" for split in splits for kind in ("images", "labels")}
    if set(metas) != expected or not {"train", "test"} <= set(splits):
        raise damaged(manifest_path, f"lists {sorted(metas)}, not images and labels of train and test", fix)
    arrays = {}
    for name, (shape, dtype, checksum) in metas.items():
        path = folder / name
        with reading(path, fix):
            array = np.load(path, allow_pickle=False)
            digest = sha256(path)
        if array.shape != shape or str(array.dtype) != dtype:
            raise damaged(path, f"shape {array.shape} {array.dtype}, the manifest says {shape} {dtype}", fix)
        if digest != checksum:
            raise damaged(path, "its sha256 differs from the manifest's", fix)
        arrays[name] = array
    for split in splits:
        if len(arrays[f"{split}_images.npy"]) != len(arrays[f"{split}_labels.npy"]):
            raise damaged(folder / f"{split}_labels.npy", f"not one label per image of {split}", fix)
    return {split: (arrays[f"{split}_images.npy"], arrays[f"{split}_labels.npy"]) for split in splits}


def read_meta(folder: pathlib.Path) -> dict:
    """The "meta" entry `write` stored in the manifest ({} if none); call after `read` checked it."""
    fix = f"delete {folder} and run again to rebuild it"
    with reading(folder / "manifest.json", fix):
        meta = json.loads((folder / "manifest.json").read_text()).get("meta", {})
        if not isinstance(meta, dict):
            raise ValueError(f"meta is a {type(meta).__name__}, not a dict")
    return meta


def fingerprint(folder: pathlib.Path) -> str:
    """A short id of a cache folder's content (from its manifest checksums)."""
    manifest = json.loads((folder / "manifest.json").read_text())
    joined = "".join(f"{k}:{v['sha256']}" for k, v in sorted(manifest["files"].items()))
    return hashlib.sha256(joined.encode()).hexdigest()[:16]
