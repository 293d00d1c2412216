"""What both readers share: IngestError, the sources (a folder or a .zip, read through relative
posix paths), the Plan a reader returns for `workdir.write_workdir`, and the helpers that fill the
zoo's config, model table and metrics."""

from __future__ import annotations

import dataclasses
import json
import math
import pathlib
import zipfile
from collections.abc import Callable

import numpy as np
from ml_collections import ConfigDict

from jaxzoo.data import DATASETS, is_registry_name, parse_name
from jaxzoo.errors import UserError
from jaxzoo.training.factors import FACTOR_TABLE, FACTORS_BY_NAME, fixed_value
from jaxzoo.training.optimizers import optimizer_entry
from jaxzoo.training.run import diverged


class IngestError(UserError):
    """A source that cannot be ingested (the message names the file and the fix)."""


# --------------------------------------------------------------------------------------------
# Sources: a folder or a zip archive, read through relative posix paths.


class Source:
    """A source folder or .zip, its files addressed by posix paths relative to its root."""

    def __init__(self, path: pathlib.Path):
        self.path = path

    def where(self, rel: str) -> str:
        """How messages name a file of the source."""
        return str(self.path / rel) if rel else str(self.path)

    def is_file(self, rel: str) -> bool:
        raise NotImplementedError

    def dirs(self, rel: str) -> list[str]:
        """The subfolders of `rel` (relative paths, sorted)."""
        raise NotImplementedError

    def read(self, rel: str) -> bytes:
        raise NotImplementedError

    def close(self) -> None:
        pass


class FolderSource(Source):
    def is_file(self, rel: str) -> bool:
        return (self.path / rel).is_file()

    def dirs(self, rel: str) -> list[str]:
        folder = self.path / rel
        if not folder.is_dir():
            return []
        return sorted(join(rel, p.name) for p in folder.iterdir() if p.is_dir())

    def read(self, rel: str) -> bytes:
        try:
            return (self.path / rel).read_bytes()
        except OSError as error:
            raise IngestError(
                f"{self.where(rel)} is unreadable ({error.strerror or type(error).__name__}): "
                "restore the file or remove its trial from the source"
            ) from None


class ZipSource(Source):
    def __init__(self, path: pathlib.Path):
        super().__init__(path)
        try:
            self.zip = zipfile.ZipFile(path)
            names = self.zip.namelist()
        except (zipfile.BadZipFile, OSError, EOFError, ValueError) as error:
            raise IngestError(
                f"{path} is not a readable zip archive ({type(error).__name__}): download it again, "
                "or pass the unpacked folder"
            ) from None
        self.files = {name.rstrip("/") for name in names if not name.endswith("/")}
        self.folders: dict[str, set[str]] = {}
        for name in self.files:
            parts = name.split("/")
            for depth in range(len(parts) - 1):
                self.folders.setdefault("/".join(parts[:depth]), set()).add("/".join(parts[: depth + 1]))

    def where(self, rel: str) -> str:
        return f"{self.path}:{rel}" if rel else str(self.path)

    def is_file(self, rel: str) -> bool:
        return rel in self.files

    def dirs(self, rel: str) -> list[str]:
        return sorted(self.folders.get(rel, ()))

    def read(self, rel: str) -> bytes:
        try:
            return self.zip.read(rel)
        except Exception as error:  # BadZipFile (CRC), zlib.error, EOFError, OSError: a damaged member
            raise IngestError(
                f"{self.where(rel)} is damaged in the archive ({type(error).__name__}): download the archive again"
            ) from None

    def close(self) -> None:
        self.zip.close()


def join(*parts: str) -> str:
    return "/".join(p for p in parts if p)


def parent(rel: str) -> str:
    return rel.rsplit("/", 1)[0] if "/" in rel else ""


def open_source(path: pathlib.Path) -> Source:
    if not path.exists():
        raise IngestError(
            f"--source {path} does not exist: pass a trial folder (or its .zip) or a Small CNN Zoo folder"
        )
    if path.is_dir():
        return FolderSource(path)
    return ZipSource(path)


def is_trial(source: Source, folder: str) -> bool:
    """A trial folder: it holds params.json or result.json (whose lines carry the config)."""
    return source.is_file(join(folder, "params.json")) or source.is_file(join(folder, "result.json"))


SEARCH_DEPTH = 4  # folder levels searched for the trials: <dataset>/<experiment>/trials/<trial>
SEARCH_FOLDERS = 2000  # folders listed at one level at most (a source is a zoo, not a disk)


def locate_trials(source: Source) -> tuple[str, list[str], list[str]]:
    """-> (the folder holding the trials, trial folders, other subfolders there): the shallowest
    folder whose subfolders include trials, found by one breadth-first search over a folder or a
    zip alike (an experiment folder, its trials/, an export, or `<dataset>/<experiment>/` in an
    archive). Two such folders at that depth: IngestError naming them."""
    level = [""]
    for _ in range(SEARCH_DEPTH + 1):
        found, deeper = [], []
        for base in level:
            folders = source.dirs(base)
            trials = [d for d in folders if is_trial(source, d)]
            if trials:
                found.append((base, trials, [d for d in folders if d not in trials]))
            else:
                deeper += folders
        if len(found) > 1:
            names = ", ".join(source.where(base) for base, _, _ in found[:3])
            raise IngestError(
                f"{source.where('')} holds trial folders in {len(found)} experiments ({names}"
                f"{' ...' if len(found) > 3 else ''}): pass one experiment folder (unpack the archive)"
            )
        if found:
            return found[0]
        if not deeper or len(deeper) > SEARCH_FOLDERS:
            break
        level = deeper
    raise IngestError(
        f"{source.where('')} holds no trial folders (subfolders with params.json or result.json) and no "
        "Small CNN Zoo files (weights.npy, metrics.csv, layout.csv): pass an experiment folder, its "
        "trials/ folder or its .zip"
    )


def report_left_out(left_out: list[dict], total: int, unit: str, where: str, log) -> None:
    """One log line for the incomplete models a source's zoo leaves out (`left_out`: [{'name',
    'reason'}] of `total`), naming the first few; IngestError when none of them is complete."""
    if not left_out:
        return
    first = "; ".join(f"{item['name']}: {item['reason']}" for item in left_out[:3])
    more = " ..." if len(left_out) > 3 else ""
    if len(left_out) >= total:
        raise IngestError(f"{where}: none of its {total} {unit} is complete ({first}{more}): restore the missing files")
    log(f"left out {len(left_out)} of {total} {unit} that are incomplete ({first}{more}); ingest.json lists them")


def read_json(source: Source, rel: str, what: str = "restore it or remove its trial from the source"):
    try:
        return json.loads(source.read(rel).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise IngestError(f"{source.where(rel)} is not valid JSON ({type(error).__name__}): {what}") from None


# --------------------------------------------------------------------------------------------
# Zoo documents shared by both formats.


@dataclasses.dataclass
class Plan:
    """What is written: the config, the model table and each epoch's (state, metrics)."""

    format: str
    config: ConfigDict
    dataset_record: dict  # the identity's `dataset` entry
    table: list[dict]
    num_epochs: int
    # (epoch, models [start, stop)) -> (their state [stop - start, ...], their metrics [stop - start])
    read_epoch: Callable[[int, tuple[int, int]], tuple[dict, dict[str, np.ndarray]]]
    provenance: dict


def population_config(pop: ConfigDict, table: list[dict], momentum: list[float | None]) -> None:
    """Sets the population's factors to the values the models use (sorted, distinct), its seeds,
    and `momentum` from the models' values (None: not recorded): the one value, a tuple factor
    when it varies, the config's 0.9 when no model records one."""
    for factor in FACTOR_TABLE:
        if factor.name == "momentum":
            continue
        values = sorted({row[factor.name] for row in table if factor.name in row})
        pop[factor.name] = tuple(values)
    values = sorted({m for m in momentum if m is not None})
    if len(values) > 1:
        pop.momentum = tuple(values)
        for row, value in zip(table, momentum):
            row["momentum"] = values[0] if value is None else value
    elif values:
        pop.momentum = values[0]
    seeds = sorted({row["seed"] for row in table})
    contiguous = seeds == list(range(seeds[0], seeds[0] + len(seeds)))
    pop.seed_mode = "range" if contiguous else "random"
    pop.num_seeds, pop.first_seed = len(seeds), seeds[0] if contiguous else 1


def optional_factor(rows: list[dict], name: str, values: list) -> None:
    """Adds an optional factor to the rows when some model's value is not the default."""
    if all(v is None for v in values):
        return
    defaults = [
        fixed_value(None, name, row["optimizer"])
        if name in ("b1", "b2", "eps", "alpha")
        else FACTORS_BY_NAME[name].default
        for row in rows
    ]
    if all(v is None or v == d for v, d in zip(values, defaults)):
        return
    for row, value, default in zip(rows, values, defaults):
        row[name] = value if value is not None else default


def check_dataset(name: str, image_size: int, channels: int, num_classes: int, where: str) -> None:
    """IngestError unless a registry dataset serves `image_size` px with the models' channels and classes."""
    try:
        parse_name(name)
    except UserError as error:
        raise IngestError(f"--dataset: {error}") from None
    if not is_registry_name(name):
        return
    info = DATASETS[name]
    if not info.accepts_size(image_size):
        raise IngestError(
            f"dataset {name} is not served at {image_size} px, the size of the models in {where}: "
            "pass --dataset with a dataset of that size"
        )
    if info.channels != channels or info.num_classes != num_classes:
        raise IngestError(
            f"the models in {where} take {channels}-channel images and give {num_classes} classes, "
            f"dataset {name} has {info.channels} channels and {info.num_classes} classes: pass "
            "--dataset with the dataset they were trained on"
        )


def dataset_record(name: str, channels: int, num_classes: int, fmt: str) -> dict:
    """The identity's data record: where the zoo came from; channels and classes for datasets
    beyond the registry (readers cannot look them up)."""
    record = {"source": f"ingest:{fmt}", "fingerprint": ""}
    if not is_registry_name(name):
        record.update(channels=channels, num_classes=num_classes)
    return record


def with_divergence(state: dict, metrics: dict[str, np.ndarray], recorded: np.ndarray | None = None) -> dict:
    """The metrics [M] with `diverged` as training flags it (a non-finite parameter or train loss);
    a train loss the source has no record of (`recorded` False) does not count."""
    train_loss = metrics["train_loss"] if recorded is None else np.where(recorded, metrics["train_loss"], 0.0)
    return {**metrics, "diverged": diverged(state, train_loss)}


def check_known(row: dict, activations, where: str, keys: tuple[str, str]) -> None:
    """IngestError unless the row's activation is in `activations` and its optimizer in the
    registry; `keys` name the two fields as the source calls them."""
    if row["activation"] not in activations:
        raise IngestError(
            f"{where} has {keys[0]} {row['activation']!r}, which jaxzoo's model does not have "
            f"({sorted(activations)}): ingest another zoo"
        )
    try:
        optimizer_entry(row["optimizer"])
    except ValueError:
        raise IngestError(
            f"{where} has {keys[1]} {row['optimizer']!r}, which is not in jaxzoo's optimizer registry "
            "(jaxzoo.training.optimizers): ingest another zoo"
        ) from None


def as_float(
    value, where: str, what: str, low: float = -math.inf, high: float = math.inf, finite: bool = True
) -> float:
    """A number read from a published file: NaN where it is missing (None or ''), else a number
    in [low, high], finite unless `finite` is False (a diverged model's loss is NaN or inf);
    IngestError naming the file and field for anything else (text, a value out of range)."""
    if value is None or value == "":
        return math.nan
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise IngestError(f"{where}: {what} is {value!r}, not a number: restore the file") from None
    if not finite and not math.isfinite(number):
        return number
    if not (math.isfinite(number) and low <= number <= high):
        bounds = f" in [{low:g}, {high:g}]" if math.isfinite(low) or math.isfinite(high) else ""
        raise IngestError(f"{where}: {what} is {value!r}, not a finite number{bounds}: restore the file")
    return number


def as_int(value, where: str, what: str, low: int, high: int) -> int | None:
    """An integer read from a published file (None where it is missing); IngestError otherwise."""
    number = as_float(value, where, what, low, high)
    if math.isnan(number):
        return None
    if not number.is_integer():
        raise IngestError(f"{where}: {what} is {value!r}, not an integer: restore the file")
    return int(number)
