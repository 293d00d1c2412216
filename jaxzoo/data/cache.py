"""On-disk cache of preprocessed uint8 splits, shared by every zoo on the machine.

One folder per (source dataset, source, transform, format version) under the cache root
(`--config.data.cache_dir`, else $JAXZOO_DATA_DIR, else ~/.cache/jaxzoo). It holds
`<split>_images.npy`, `<split>_labels.npy` and `manifest.json` (shape, dtype, sha256 of each
file). A folder is written under a temporary name and renamed when complete, so a cache is
never half-written; every read checks the manifest.
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import shutil
import tempfile

import numpy as np

from jaxzoo.data.registry import DataUnavailableError

FORMAT_VERSION = 1


def cache_root(cache_dir: str = "") -> pathlib.Path:
    root = cache_dir or os.environ.get("JAXZOO_DATA_DIR") or pathlib.Path.home() / ".cache" / "jaxzoo"
    return pathlib.Path(root).expanduser().absolute()


def cache_key(source_name: str, source: str, transform_tag: str) -> str:
    return f"{source_name}-{source}-{transform_tag}-v{FORMAT_VERSION}"


def sha256(path: pathlib.Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def write(folder: pathlib.Path, splits: dict[str, tuple[np.ndarray, np.ndarray]]) -> None:
    """Writes the splits atomically (temporary folder, then rename)."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = pathlib.Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        manifest = {"format_version": FORMAT_VERSION, "files": {}}
        for split, (images, labels) in splits.items():
            for kind, array in (("images", images), ("labels", labels)):
                name = f"{split}_{kind}.npy"
                np.save(tmp / name, array)
                manifest["files"][name] = {
                    "shape": list(array.shape), "dtype": str(array.dtype), "sha256": sha256(tmp / name)
                }
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1))
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(tmp, folder)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def read(folder: pathlib.Path) -> dict[str, tuple[np.ndarray, np.ndarray]] | None:
    """The cached splits, None if absent; DataUnavailableError naming the file if damaged."""
    manifest_path = folder / "manifest.json"
    if not manifest_path.exists():
        return None
    fix = f"delete {folder} and run again to rebuild it"
    try:
        manifest = json.loads(manifest_path.read_text())
        files = manifest["files"]
    except (json.JSONDecodeError, KeyError, TypeError):
        raise DataUnavailableError(f"cache manifest {manifest_path} is damaged: {fix}") from None
    arrays = {}
    for name, meta in files.items():
        path = folder / name
        try:
            array = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as error:
            raise DataUnavailableError(f"cache file {path} is unreadable ({error}): {fix}") from None
        if list(array.shape) != meta["shape"] or str(array.dtype) != meta["dtype"]:
            raise DataUnavailableError(
                f"cache file {path} has shape {array.shape} {array.dtype}, the manifest says "
                f"{tuple(meta['shape'])} {meta['dtype']}: {fix}"
            )
        if sha256(path) != meta["sha256"]:
            raise DataUnavailableError(f"cache file {path} fails its checksum: {fix}")
        arrays[name] = array
    splits = sorted({name.rsplit("_", 1)[0] for name in files})
    return {split: (arrays[f"{split}_images.npy"], arrays[f"{split}_labels.npy"]) for split in splits}


def fingerprint(folder: pathlib.Path) -> str:
    """A short id of a cache folder's content (from its manifest checksums)."""
    manifest = json.loads((folder / "manifest.json").read_text())
    joined = "".join(f"{k}:{v['sha256']}" for k, v in sorted(manifest["files"].items()))
    return hashlib.sha256(joined.encode()).hexdigest()[:16]
