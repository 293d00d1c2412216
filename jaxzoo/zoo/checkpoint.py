"""The zoo workdir: identity checks, the model table, metrics, and Orbax epoch checkpoints.

Layout of a workdir:
  config.json      the resolved config (`identity_hash` marks which zoo this is)
  models.json      the model table: model_id -> seed and generating factors
  metrics.jsonl    one line per (epoch, model): train/val/test loss and accuracy, diverged
  layout.json      {"checkpoint_layout": 2} when every epoch is stored in blocks of models
  checkpoints/E/   one folder per epoch 0..E: `metrics/metrics` (JSON, [M] per name), the
                   state (params and optimizer state, leading axis = model_id) as Orbax
                   checkpoints of blocks of models, `blocks/<start>-<stop>` (layout 2,
                   `jaxzoo.zoo.blocks`; layout 1, before 2026-12-07: one checkpoint `state`),
                   and `jaxzoo_files.json`, the epoch's seal: every file's size and CRC-32,
                   written when the epoch is committed and checked wherever it is read
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import logging
import os
import pathlib
import shutil
import sys
import zlib
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp

from jaxzoo import host
from jaxzoo.config import comparable, config_kind, describe_difference, identity_hash
from jaxzoo.config import identity as identity_of
from jaxzoo.errors import UserError
from jaxzoo.training import distributed
from jaxzoo.zoo import blocks
from jaxzoo.zoo.trees import tree_concat, tree_take

log = logging.getLogger("jaxzoo")

# What a new zoo's workdir may already hold: the job-array shards a merge joins into it.
WORKDIR_NEIGHBOURS = ("shards",)
METRIC_NAMES = ("train_loss", "train_acc", "val_loss", "val_acc", "test_loss", "test_acc")


class WorkdirError(UserError):
    """The workdir cannot hold this zoo (unwritable, another zoo, corrupted checkpoint)."""


def prepare_workdir(
    workdir: str | os.PathLike, identity: dict, resolved: dict, table: Iterable[dict], write: bool = True
) -> pathlib.Path:
    """Creates the workdir or checks that it holds this zoo; writes config.json and models.json.

    Raises WorkdirError before anything is written when the workdir holds another zoo. With
    `write=False` only checks (the other processes of a distributed run).
    """
    path = pathlib.Path(workdir).absolute()
    config_path = path / "config.json"
    if config_path.exists():
        existing_identity = comparable(read_config(path)["identity"])
        kinds = [kind.get("task", "classification") for kind in (existing_identity, identity)]
        if kinds[0] != kinds[1]:
            names = {"inr": "an INR zoo", "classification": "a classification zoo"}
            raise WorkdirError(
                f"workdir {path} holds {names.get(kinds[0], kinds[0])} and the config describes "
                f"{names.get(kinds[1], kinds[1])}: choose another workdir"
            )
        if existing_identity != identity:
            raise WorkdirError(
                f"workdir {path} holds another zoo ({describe_difference(existing_identity, identity)}): "
                "choose another workdir, or rerun with that zoo's config to resume it"
            )
    elif path.exists() and not path.is_dir():
        raise WorkdirError(f"workdir {path} is a file: choose another workdir")
    elif (path / "checkpoints").exists() or (path / "metrics.jsonl").exists():
        raise WorkdirError(f"workdir {path} holds a zoo without config.json: choose another workdir")
    elif path.is_dir() and (others := sorted(p.name for p in path.iterdir() if p.name not in WORKDIR_NEIGHBOURS)):
        raise WorkdirError(
            f"workdir {path} holds other files ({', '.join(others[:3])}{', ...' if len(others) > 3 else ''}) "
            "and no zoo: choose a new or empty folder"
        )
    if not write:
        return path
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".write_probe"
        probe.write_text("")
        probe.unlink()
    except OSError as error:
        raise WorkdirError(f"workdir {path} is not writable ({error.strerror}): choose another workdir") from None
    document = {"identity_hash": identity_hash(identity), "identity": identity, "config": resolved}
    new_zoo = not config_path.exists()
    _write_json_atomic(config_path, document)
    if new_zoo:  # every epoch will be written in blocks
        write_layout(path)
    write_model_table(path / "models.json", table)
    return path


def workdir_kind(workdir: str | os.PathLike) -> str | None:
    """The kind of zoo a workdir's config.json (read without checks) holds; None without one."""
    try:
        document = json.loads((pathlib.Path(workdir) / "config.json").read_text())
    except (OSError, ValueError):
        return None
    return config_kind(document.get("config", {})) if isinstance(document, dict) else None


def read_config(workdir: str | os.PathLike) -> dict:
    """A workdir's config.json, after checking that it still describes the zoo trained there.

    The stored identity must hash to `identity_hash` and follow from the stored config, so an
    edited config.json (say, another `data.name`) is refused instead of mislabelling exports.
    """
    path = pathlib.Path(workdir).absolute() / "config.json"
    try:
        document = json.loads(path.read_text())
        stored, config = document["identity"], document["config"]
        recomputed = identity_of(ml_collections.ConfigDict(config))
    except (FileNotFoundError, NotADirectoryError):
        raise WorkdirError(
            f"{path.parent} is not a jaxzoo workdir (no config.json): pass the --workdir of a trained zoo"
        ) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, AttributeError, ValueError):
        raise WorkdirError(
            f"{path} is not a jaxzoo config (unreadable or incomplete): choose another workdir"
        ) from None
    recomputed.update({key: stored[key] for key in ("dataset", "shard") if key in stored})
    if identity_hash(stored) != document.get("identity_hash") or recomputed != comparable(stored):
        difference = describe_difference(comparable(stored), recomputed) or "identity_hash"
        raise WorkdirError(
            f"{path} was edited after training ({difference}): restore it as training wrote it, "
            "or train the changed zoo in a new --workdir"
        )
    return document


LAYOUT_FILE = "layout.json"


def write_layout(workdir: pathlib.Path) -> None:
    """Records that every epoch of the workdir is stored in layout 2 (`jaxzoo.zoo.blocks`)."""
    _write_json_atomic(workdir / LAYOUT_FILE, {"checkpoint_layout": blocks.LAYOUT_VERSION})


def workdir_layout(workdir: str | os.PathLike) -> int:
    """2 when the workdir records that every epoch is in blocks (`write_layout`), else 1: made
    before 2026-12-07, whose epochs `python -m jaxzoo.upgrade` rewrites in blocks."""
    try:
        return int(json.loads((pathlib.Path(workdir) / LAYOUT_FILE).read_text())["checkpoint_layout"])
    except (OSError, ValueError, KeyError, TypeError):
        return 1


def write_model_table(path: pathlib.Path, rows: Iterable[dict]) -> None:
    """models.json from rows that may come one at a time: the bytes of
    `json.dump(list(rows), f, indent=1)`, a row encoded at a time."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "w") as f:
        count = 0
        for count, row in enumerate(rows, 1):  # a list item at indent level 1: one more space per line
            f.write(("[\n " if count == 1 else ",\n ") + json.dumps(row, indent=1).replace("\n", "\n "))
        f.write("\n]" if count else "[]")
    os.replace(tmp, path)


def _write_json_atomic(path: pathlib.Path, data: Any) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "w") as f:  # written as encoded: models.json's text is never whole in memory
        json.dump(data, f, indent=1)
    os.replace(tmp, path)


class EpochWriter:
    """Writes a workdir's epoch checkpoints in layout 2 (`jaxzoo.zoo.blocks`): every process
    writes the blocks of its own models into checkpoints/.partial-E, then the primary seals
    the folder and renames it to checkpoints/E, so an epoch folder is always complete and a
    killed save leaves the epochs before it. With `async_save`, `save_epoch` returns once the
    state is on the host and the blocks are written while the next epoch trains."""

    def __init__(self, workdir: pathlib.Path, async_save: bool, block_bytes: int | None = None):
        self.directory = pathlib.Path(workdir).absolute() / "checkpoints"
        self.block_bytes = block_bytes
        self._executor = concurrent.futures.ThreadPoolExecutor(1) if async_save else None
        self._pending: tuple[int, concurrent.futures.Future | None] | None = None
        if distributed.is_primary():
            recover_interrupted(self.directory)
        distributed.barrier("jaxzoo-partial-epochs-removed")

    def partial(self, epoch: int) -> pathlib.Path:
        return self.directory / f"{PARTIAL_PREFIX}{epoch}"

    def begin(self, epoch: int, metrics: dict[str, np.ndarray] | None = None, nbytes: int = 0) -> pathlib.Path:
        """Starts epoch `epoch` in checkpoints/.partial-E, with its metrics (all models [M]) or
        without (`write_metrics` before the commit). DiskSpaceError first when fewer than
        `nbytes` (this process's arrays) are free."""
        if self._pending is not None:
            self.wait(self._pending[0])
        host.check_free_space(self.directory, nbytes, f"the checkpoint of epoch {epoch}")
        partial = self.partial(epoch)
        with _save_errors(self.directory, epoch):
            (partial / blocks.BLOCKS_FOLDER).mkdir(parents=True, exist_ok=True)
        self._pending = (epoch, None)
        if metrics is not None:
            self.write_metrics(epoch, metrics)
        return partial

    def write_metrics(self, epoch: int, metrics: dict[str, np.ndarray]) -> None:
        """The primary writes a begun epoch's metrics/metrics ([M] per name, JSON)."""
        if distributed.is_primary():
            with _save_errors(self.directory, epoch):
                (self.partial(epoch) / "metrics").mkdir(exist_ok=True)
                with open(self.partial(epoch) / "metrics" / "metrics", "w") as f:  # json.dumps(metrics)'s
                    f.write("{")  # text, one metric's list at a time (~60 MB at once for 128,000 models)
                    for i, (name, values) in enumerate(metrics.items()):
                        f.write(f"{', ' if i else ''}{json.dumps(name)}: {json.dumps(np.asarray(values).tolist())}")
                    f.write("}")

    def write_models(self, epoch: int, start: int, tree) -> None:
        """Writes models [start, start + n) of a begun epoch (numpy leaves [n, ...]) in blocks."""
        stop = start + len(jax.tree.leaves(tree)[0])
        with _save_errors(self.directory, epoch):
            for first, last in blocks.block_ranges(start, stop, blocks.bytes_per_model(tree), self.block_bytes):
                rows = slice(first - start, last - start)
                blocks.write_block(self.partial(epoch), (first, last), jax.tree.map(lambda a: a[rows], tree))

    def copy_block(self, epoch: int, source: pathlib.Path, block: tuple[int, int]) -> None:
        """Copies a stored block folder (layout 2, e.g. a job-array shard's) into a begun epoch as
        models `block`: its files as they are, never its arrays in memory."""
        with _save_errors(self.directory, epoch):
            shutil.copytree(source, self.partial(epoch) / blocks.BLOCKS_FOLDER / blocks.block_name(block))

    def save(self, epoch: int, state, metrics: dict[str, np.ndarray]) -> None:
        """Starts writing `epoch` (state: this process's models [m, ...]; metrics: all [M])."""
        state = jax.device_get(state)  # on the host: the devices' buffers may be reused at once
        num_models = len(next(iter(metrics.values())))
        models = distributed.process_block(num_models) if distributed.is_multiprocess() else slice(0, num_models)
        self.begin(epoch, metrics, blocks.bytes_per_model(state) * (models.stop - models.start))
        if self._executor is None:
            self.write_models(epoch, models.start, state)
        else:
            self._pending = (epoch, self._executor.submit(self.write_models, epoch, models.start, state))

    def wait(self, epoch: int) -> None:
        """Waits for the blocks of `epoch` (the latest begun), then commits it: sealed and in place."""
        if self._pending is None or self._pending[0] != epoch:
            return
        _, future = self._pending
        self._pending = None
        with _save_errors(self.directory, epoch):
            if future is not None:
                future.result()
            distributed.barrier(f"jaxzoo-epoch-{epoch}-written")
            if distributed.is_primary():
                seal_epoch(self.partial(epoch))
                target = self.directory / str(epoch)
                if target.exists():  # an upgrade: the old folder goes once the new one is in place
                    replaced = self.directory / f"{REPLACED_PREFIX}{epoch}"
                    os.replace(target, replaced)
                    os.replace(self.partial(epoch), target)
                    host.remove(replaced)
                else:
                    os.replace(self.partial(epoch), target)
            distributed.barrier(f"jaxzoo-epoch-{epoch}-committed")

    def close(self) -> None:
        """Waits for a pending save (a failed one raises WorkdirError) and stops the writer thread."""
        try:
            if self._pending is not None:
                self.wait(self._pending[0])
        finally:
            if self._executor is not None:
                self._executor.shutdown()


PARTIAL_PREFIX = ".partial-"  # checkpoints/.partial-E: epoch E being written
REPLACED_PREFIX = ".replaced-"  # checkpoints/.replaced-E: epoch E's old folder during an upgrade


def recover_interrupted(directory: pathlib.Path) -> None:
    """Undoes what a killed save or upgrade left in checkpoints/: unfinished epochs are removed,
    and an old epoch folder whose replacement never got in place is put back."""
    for stale in directory.glob(f"{PARTIAL_PREFIX}*"):
        host.remove(stale)
    for replaced in directory.glob(f"{REPLACED_PREFIX}*"):
        target = directory / replaced.name[len(REPLACED_PREFIX) :]
        if target.exists():
            host.remove(replaced)
        else:
            os.replace(replaced, target)


def open_writer(workdir: pathlib.Path, async_save: bool) -> EpochWriter:
    """The epoch writer of a workdir (call `set_aside_damaged` first); removes what a killed
    save left."""
    return EpochWriter(workdir, async_save)


def save_epoch(writer: EpochWriter, epoch: int, state, metrics: dict[str, np.ndarray], wait: bool = True) -> None:
    """Saves the population's state (this process's models) and metrics (all models) for
    `epoch`; with `wait`, waits for the commit.

    Without `wait` it returns once the state is on the host (the blocks are written by the
    writer's thread; the state's device buffers may be reused): call `wait_for_save` before
    the epoch is recorded in metrics.jsonl. Raises WorkdirError (disk full, folder gone) at
    this epoch, so that an epoch is recorded only once its checkpoint is on disk, and
    DiskSpaceError, before writing, when the disk has less room than the epoch's arrays.
    """
    writer.save(epoch, state, metrics)
    if wait:
        wait_for_save(writer, epoch)


def wait_for_save(writer: EpochWriter, epoch: int) -> None:
    """Waits until the checkpoint of `epoch` (the latest save) is written, then commits it:
    sealed (`seal_epoch`) and renamed into place by the primary; WorkdirError if either fails."""
    writer.wait(epoch)


@contextlib.contextmanager
def _save_errors(directory: pathlib.Path, epoch: int):
    try:
        yield
    except UserError:
        raise
    except Exception as error:  # Orbax wraps OSErrors of its writer threads in several types
        reason = next((e.strerror for e in _causes(error) if isinstance(e, OSError) and e.strerror), None)
        raise WorkdirError(
            f"saving the checkpoint of epoch {epoch} in {directory} failed "
            f"({reason or type(error).__name__}): free space or fix the folder, then rerun the same command "
            f"to resume after epoch {epoch - 1}"
        ) from None


def _causes(error: BaseException):
    """The error and the chain of exceptions behind it."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        yield error
        error = error.__cause__ or error.__context__


def saved_epochs(directory: pathlib.Path) -> list[int]:
    """Epoch folders under `directory` (Orbax's unfinished temporary folders excluded)."""
    if not directory.is_dir():
        return []
    return sorted(int(p.name) for p in directory.iterdir() if p.name.isdigit() and p.is_dir())


SEAL_FILE = "jaxzoo_files.json"
_READ_BLOCK = 1 << 24  # bytes per read while checksumming (16 MiB)


def _file_checksum(path: pathlib.Path) -> int:
    """CRC-32 of a file, read in blocks (zlib's runs at ~1 GB/s: a fraction of the restore's cost)."""
    crc = 0
    with open(path, "rb") as f:
        while block := f.read(_READ_BLOCK):
            crc = zlib.crc32(block, crc)
    return crc


def seal_epoch(epoch_dir: pathlib.Path) -> None:
    """Writes the seal of a committed epoch: {relative path: [bytes, CRC-32]} of every file in it.

    Call after Orbax's commit (`wait_for_save`) and before the epoch is recorded in
    metrics.jsonl. An epoch without a seal (saved by older jaxzoo, or the process died between
    the commit and the seal) is verified by restoring it (`verify_unsealed`).
    """
    files = {
        str(path.relative_to(epoch_dir)): [path.stat().st_size, _file_checksum(path)]
        for path in sorted(epoch_dir.rglob("*"))
        if path.is_file() and path.name != SEAL_FILE
    }
    _write_json_atomic(epoch_dir / SEAL_FILE, {"version": 1, "files": files})


def is_sealed(epoch_dir: pathlib.Path) -> bool:
    return (epoch_dir / SEAL_FILE).is_file()


def seal_problem(epoch_dir: pathlib.Path, prefix: str = "", checksums: bool = True) -> str | None:
    """Why the sealed files of an epoch (those under `prefix`, e.g. 'blocks/0-550/') are not as
    saved (missing, another size, with `checksums` another CRC-32), or None."""
    try:
        files = json.loads((epoch_dir / SEAL_FILE).read_text())["files"]
        expected = {name: (int(size), int(crc)) for name, (size, crc) in files.items()}
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError):
        return f"{SEAL_FILE} is unreadable"
    for name, (size, crc) in expected.items():
        if not name.startswith(prefix):
            continue
        part = epoch_dir / name
        if not part.is_file():
            return f"{name} is missing"
        if part.stat().st_size != size:
            return f"{name} has {part.stat().st_size} bytes, {size} when saved"
        if checksums and _file_checksum(part) != crc:
            return f"{name} changed since it was saved (CRC-32)"
    return None


def epoch_damage(epoch_dir: pathlib.Path, checksums: bool = True) -> str | None:
    """Why an epoch's checkpoint folder cannot be trusted, or None when its files are whole.

    A sealed epoch (`seal_epoch`) is checked file by file: present, same size and, with
    `checksums`, same CRC-32 (readers check a block's checksums when they read it). A layout-2
    epoch (`jaxzoo.zoo.blocks`) is always sealed and its blocks must cover models 0..M-1. An
    unsealed layout-1 epoch only by its metrics JSON and state metadata; a damaged array file
    of it shows when the state is restored.
    """
    metrics = epoch_dir / "metrics" / "metrics"
    stored = blocks.stored_blocks(epoch_dir)
    if stored is not None and not is_sealed(epoch_dir):
        return f"{SEAL_FILE} is missing"
    state_metadata = epoch_dir / blocks.LAYOUT1_STATE / "_METADATA"
    for part in (metrics,) if stored is not None else (metrics, state_metadata):
        if not part.is_file():
            return f"{part.relative_to(epoch_dir)} is missing"
    if is_sealed(epoch_dir) and (problem := seal_problem(epoch_dir, checksums=checksums)):
        return problem
    try:
        values = json.loads(metrics.read_text())
        if not isinstance(values, dict) or not all(isinstance(v, list) for v in values.values()):
            return "metrics/metrics is not a metrics table"
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return "metrics/metrics is unreadable"
    if stored is not None:
        num_models = len(next(iter(values.values()), []))
        expected = 0
        for start, stop in stored:
            if start != expected:
                return f"{blocks.BLOCKS_FOLDER}/ lacks models {expected}..{start - 1}"
            expected = stop
        if expected != num_models:
            return f"{blocks.BLOCKS_FOLDER}/ holds models 0..{expected - 1} of {num_models}"
        return None
    try:
        json.loads(state_metadata.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return "state/_METADATA is unreadable"
    return None


def damage_summary(damaged: dict[int, str]) -> str:
    """'damaged checkpoints (epochs [1, 2]; epoch 1: why)' for `ZooCheckpoints.damaged()`."""
    epoch, reason = next(iter(damaged.items()))
    return f"damaged checkpoints (epochs {sorted(damaged)}; epoch {epoch}: {reason})"


# What rerunning train does with damaged epochs (`set_aside_damaged`), as messages say it.
RETRAINS_DAMAGED = "which sets them aside with every later epoch and retrains them"


def set_aside(workdir: pathlib.Path, epochs: list[int], reason: str) -> None:
    """Moves epoch folders out of checkpoints/ into <workdir>/damaged/ (kept, never deleted)."""
    damaged = workdir / "damaged"
    damaged.mkdir(exist_ok=True)
    for epoch in epochs:
        target, n = damaged / str(epoch), 1
        while target.exists():
            target, n = damaged / f"{epoch}.{n}", n + 1
        os.replace(workdir / "checkpoints" / str(epoch), target)
    log.info(
        "checkpoint of epoch %d is damaged (%s): moved %s to %s; resuming from epoch %d",
        epochs[0],
        reason,
        "it" if len(epochs) == 1 else f"epochs {epochs[0]}..{epochs[-1]}",
        damaged,
        epochs[0] - 1,
    )


def set_aside_damaged(workdir: pathlib.Path) -> None:
    """Before training resumes: the first damaged epoch and every later one go to damaged/.

    Every epoch is checked: sealed ones against their seal, unsealed ones (older jaxzoo, or a
    crash between commit and seal) by restoring their state, and sealed when whole, so a
    damaged middle epoch is retrained with the epochs after it instead of trusted.
    """
    epochs = saved_epochs(workdir / "checkpoints")
    for i, epoch in enumerate(epochs):
        epoch_dir = workdir / "checkpoints" / str(epoch)
        reason = epoch_damage(epoch_dir)
        if reason is None and not is_sealed(epoch_dir):
            reason = verify_unsealed(epoch_dir)
        if reason:
            set_aside(workdir, epochs[i:], reason)
            return


def verify_unsealed(epoch_dir: pathlib.Path) -> str | None:
    """Restores an unsealed (layout-1) epoch's state (every array read and decoded); seals it
    when whole, else says why not."""
    try:
        blocks.restore(epoch_dir / blocks.LAYOUT1_STATE)
    except Exception as error:  # Orbax raises many types for damaged files
        return f"state unreadable, {type(error).__name__}"
    seal_epoch(epoch_dir)
    return None


def restore_latest(writer: EpochWriter, abstract_state) -> tuple[int, Any] | None:
    """-> (epoch, this process's state, structured as `abstract_state`) of the newest readable
    checkpoint, or None for a fresh workdir.

    A newest checkpoint whose state cannot be restored is set aside (see `set_aside`) and the
    one before it is tried.
    """
    while epochs := saved_epochs(writer.directory):
        epoch = epochs[-1]
        try:
            state = restore_state(writer.directory / str(epoch), abstract_state)
        except Exception as error:  # Orbax raises many types for damaged files
            if distributed.is_multiprocess():  # the processes must agree: no unilateral moves
                raise WorkdirError(
                    f"checkpoint of epoch {epoch} in {writer.directory} is unreadable ({type(error).__name__}): "
                    f"move {writer.directory / str(epoch)} away to resume from epoch {epoch - 1}"
                ) from None
            set_aside(writer.directory.parent, [epoch], f"state unreadable, {type(error).__name__}")
            continue
        return epoch, state
    return None


def restore_state(epoch_dir: pathlib.Path, abstract_state):
    """This process's models of a saved epoch, as numpy arrays in `abstract_state`'s structure."""
    stored = blocks.stored_blocks(epoch_dir)
    if stored is None:  # layout 1: one global array per leaf
        target = distributed.global_abstract(abstract_state) if distributed.is_multiprocess() else abstract_state
        with ocp.StandardCheckpointer() as reader:
            state = reader.restore(epoch_dir / blocks.LAYOUT1_STATE, target)
        return distributed.to_local(state) if distributed.is_multiprocess() else jax.tree.map(np.asarray, state)
    num_models = stored[-1][1]
    models = distributed.process_block(num_models) if distributed.is_multiprocess() else slice(0, num_models)
    parts = []
    for block in stored:
        rows = slice(max(models.start, block[0]) - block[0], min(models.stop, block[1]) - block[0])
        if rows.stop > rows.start:
            parts.append(tree_take(blocks.restore_like(blocks.block_folder(epoch_dir, block), abstract_state), rows))
    return tree_concat(parts)


def restore_metrics(directory: pathlib.Path, epoch: int) -> dict[str, np.ndarray]:
    """The metrics arrays [M] saved with an epoch's checkpoint under `directory` (checkpoints/)."""
    path = pathlib.Path(directory) / str(epoch) / "metrics" / "metrics"
    epoch_dir = path.parent.parent
    reason = epoch_damage(epoch_dir, checksums=False)
    if reason is None and is_sealed(epoch_dir):
        reason = seal_problem(epoch_dir, "metrics/")
    if reason:
        raise WorkdirError(
            f"checkpoint of epoch {epoch} in {directory} is damaged ({reason}): rerun the train command, "
            "which sets it aside and retrains it"
        )
    return {name: np.asarray(values) for name, values in json.loads(path.read_text()).items()}


def metrics_lines(epoch: int, model_ids: np.ndarray, metrics: dict[str, np.ndarray]) -> Iterator[str]:
    """One JSON line per model for `epoch` (NaN is written as null); extra metrics follow. Lines
    are made as they are written (~250 bytes per model: 32 MB for 128,000 models at once)."""
    present = [name for name in METRIC_NAMES if name in metrics]  # an INR zoo has others
    names = (*present, *sorted(set(metrics) - set(METRIC_NAMES) - {"diverged"}))
    for i, model_id in enumerate(model_ids):
        row = {"epoch": epoch, "model_id": int(model_id)}
        for name in names:
            value = float(metrics[name][i])
            row[name] = value if np.isfinite(value) else None
        row["diverged"] = bool(metrics["diverged"][i])
        yield json.dumps(row)


def parse_model_table(text: str) -> list:
    """models.json's text as the model table (one dict per model), every key and string value
    interned: a factor's value ('tanh', 'adam') is then one object shared by all models, which
    halves the table (550 to ~300 bytes per CNN-s model)."""
    return json.loads(text, object_pairs_hook=_interned_row)


def _interned_row(pairs: list[tuple[str, Any]]) -> dict:
    return {sys.intern(key): sys.intern(value) if isinstance(value, str) else value for key, value in pairs}


def rewrite_metrics_file(workdir: pathlib.Path, lines: Iterable[str]) -> None:
    """Replaces metrics.jsonl with `lines`, written as they come (a generator keeps a zoo's
    lines, ~250 bytes per model and epoch, out of memory)."""
    tmp = workdir / "metrics.jsonl.tmp"
    with open(tmp, "w") as f:
        for line in lines:
            f.write(line + "\n")
    os.replace(tmp, workdir / "metrics.jsonl")


def saved_metrics_lines(directory: pathlib.Path, epochs: Iterable[int], model_ids: np.ndarray) -> Iterator[str]:
    """metrics.jsonl's lines for the given epochs, from the metrics saved with each checkpoint
    under `directory` (checkpoints/), one epoch at a time."""
    for epoch in epochs:
        yield from metrics_lines(epoch, model_ids, restore_metrics(directory, epoch))


def append_metrics(workdir: pathlib.Path, lines: Iterable[str]) -> None:
    with open(workdir / "metrics.jsonl", "a") as f:
        for line in lines:
            f.write(line + "\n")


def read_metrics(workdir: str | os.PathLike) -> list[dict]:
    """metrics.jsonl as a list of dicts (None where a value was not finite)."""
    with open(pathlib.Path(workdir) / "metrics.jsonl") as f:
        return [json.loads(line) for line in f if line.strip()]


class ZooCheckpoints:
    """Read-only access to a workdir's epoch checkpoints, by blocks of models.

    `read(epoch, models)` reads only the stored blocks that hold `models` (layout 2) and checks
    each block's seal before its first read; a layout-1 epoch is one block of all models.
    """

    def __init__(self, workdir: str | os.PathLike):
        self.directory = pathlib.Path(workdir).absolute() / "checkpoints"
        if not self.directory.is_dir():
            raise WorkdirError(f"{self.directory} does not exist: train the zoo first (python -m jaxzoo.train)")
        self._verified: set[tuple[int, str]] = set()
        self._trees: dict[pathlib.Path, Any] = {}

    def epochs(self) -> list[int]:
        """The epochs with a checkpoint folder (see `damaged` for which of them are whole)."""
        return saved_epochs(self.directory)

    def damaged(self, checksums: bool = False) -> dict[int, str]:
        """{epoch: why} for the checkpoint folders whose files are not whole: missing files and
        sizes, and with `checksums` every file's CRC-32 (else each block's when it is read)."""
        reasons = {epoch: epoch_damage(self.directory / str(epoch), checksums) for epoch in self.epochs()}
        return {epoch: reason for epoch, reason in reasons.items() if reason}

    def layout(self, epoch: int) -> int:
        """The checkpoint layout of an epoch: 1 (one Orbax checkpoint) or 2 (blocks of models)."""
        return 1 if blocks.stored_blocks(self._epoch_dir(epoch)) is None else 2

    def num_models(self, epoch: int) -> int:
        stored = blocks.stored_blocks(self._epoch_dir(epoch))
        if stored is not None:
            return stored[-1][1]
        return int(jax.tree.leaves(self._metadata(epoch))[0].shape[0])

    def model_bytes(self, epoch: int, collection: str | None = None) -> int:
        """Bytes of one model's state (or of one collection, e.g. 'params') at an epoch, from the
        checkpoint's metadata (no array is read)."""
        tree = self._metadata(epoch)
        return blocks.bytes_per_model(tree if collection is None else tree[collection])

    def stored_blocks(self, epoch: int) -> list[tuple[int, int]]:
        """The blocks of models [start, stop) as stored (layout 1: one block of all models)."""
        stored = blocks.stored_blocks(self._epoch_dir(epoch))
        return stored if stored is not None else [(0, self.num_models(epoch))]

    def model_blocks(self, epoch: int, size: int | None = None) -> list[tuple[int, int]]:
        """Blocks of models [start, stop) to read in turn: the stored blocks, or `size` models each."""
        if size is None:
            return self.stored_blocks(epoch)
        num_models = self.num_models(epoch)
        return [(start, min(start + size, num_models)) for start in range(0, num_models, size)]

    def block_folder(self, epoch: int, block: tuple[int, int]) -> pathlib.Path:
        """The folder of a stored layout-2 block, once its files are checked against the seal."""
        folder = blocks.block_folder(self._epoch_dir(epoch), block)
        self._check(epoch, folder)
        return folder

    def read(
        self,
        epoch: int,
        models: tuple[int, int] | None = None,
        leaves: Sequence[tuple[str, ...]] | None = None,
    ) -> dict:
        """Models [start, stop) (all by default) of an epoch's state as numpy arrays [n, ...]:
        every leaf, or only those at the given key paths (e.g. ('params', 'conv0', 'kernel'))."""
        epoch_dir = self._epoch_dir(epoch)
        stored = blocks.stored_blocks(epoch_dir)
        start, stop = (0, self.num_models(epoch)) if models is None else models
        parts = []
        for block in [None] if stored is None else stored:
            first, last = (0, self.num_models(epoch)) if block is None else block
            if last <= start or first >= stop:
                continue
            folder = blocks.block_folder(epoch_dir, block)
            self._check(epoch, folder)
            try:
                tree = blocks.restore(folder, leaves)
            except Exception as error:  # Orbax raises many types for damaged files
                raise WorkdirError(
                    f"checkpoint of epoch {epoch} in {self.directory} is unreadable ({type(error).__name__}): "
                    "rerun the train command, which sets it aside and retrains it"
                ) from None
            parts.append(tree_take(tree, slice(max(start, first) - first, min(stop, last) - first)))
        return tree_concat(parts) if len(parts) > 1 else parts[0]

    def state(self, epoch: int | None = None) -> tuple[int, dict]:
        """-> (epoch, state of every model as numpy arrays [M, ...]); the newest epoch by default."""
        epoch = self._epoch(epoch)
        return epoch, self.read(epoch)

    def param_paths(self, epoch: int, collection: str = "params") -> list[tuple[str, ...]]:
        """Key paths of the leaves of an epoch's `params` (or another collection of the state,
        e.g. 'batch_stats'), e.g. ('conv0', 'kernel'), read from the checkpoint's metadata (no
        array is read)."""
        return blocks.leaf_paths(self._metadata(epoch)[collection])

    def params(
        self,
        epoch: int,
        leaves: Sequence[tuple[str, ...]] | None = None,
        collection: str = "params",
        models: tuple[int, int] | None = None,
    ) -> dict:
        """An epoch's `params` (or another collection of the state, e.g. 'batch_stats') as numpy
        arrays [n, ...] and nothing else (no optimizer state): all its leaves, or only those at
        the given key paths (`param_paths`); every model, or models [start, stop).

        Only the requested arrays of the blocks that hold the models are read
        (`blocks.read_arrays`), whatever process layout saved them; read one leaf or one block
        at a time to bound memory.
        """
        epoch = self._epoch(epoch)
        leaves = self.param_paths(epoch, collection) if leaves is None else leaves
        try:
            return self.read(epoch, models, [(collection, *keys) for keys in leaves])[collection]
        except WorkdirError:
            raise
        except Exception as error:  # Orbax raises many types for damaged files
            raise WorkdirError(
                f"{collection} of epoch {epoch} in {self.directory} are unreadable ({type(error).__name__}): "
                "rerun the train command, which sets the checkpoint aside and retrains it"
            ) from None

    def metrics(self, epoch: int) -> dict[str, np.ndarray]:
        """The metrics arrays [M] saved with an epoch's checkpoint."""
        return restore_metrics(self.directory, epoch)

    def close(self) -> None:
        """Nothing to release (kept so readers can be used in try/finally)."""

    def _epoch(self, epoch: int | None) -> int:
        """The epoch (the newest for None); WorkdirError if it has no checkpoint."""
        epochs = self.epochs()
        epoch = (epochs[-1] if epochs else None) if epoch is None else epoch
        if epoch is None or epoch not in epochs:
            raise WorkdirError(f"{self.directory} has no checkpoint for epoch {epoch}: epochs {epochs}")
        return epoch

    def _epoch_dir(self, epoch: int | None) -> pathlib.Path:
        return self.directory / str(self._epoch(epoch))

    def _metadata(self, epoch: int):
        """The saved tree (shapes, dtypes) of an epoch's first block; no array is read."""
        epoch_dir = self._epoch_dir(epoch)
        stored = blocks.stored_blocks(epoch_dir)
        folder = blocks.block_folder(epoch_dir, stored[0] if stored else None)
        if folder not in self._trees:  # read once per reader: every `params` call asks for it
            self._trees[folder] = blocks.saved_tree(folder)
        return self._trees[folder]

    def _check(self, epoch: int, folder: pathlib.Path) -> None:
        """Checks a block's files against the epoch's seal (CRC-32), once per reader."""
        key = (epoch, folder.name)
        epoch_dir = folder.parent if folder.name == blocks.LAYOUT1_STATE else folder.parent.parent
        if key in self._verified or not is_sealed(epoch_dir):
            return
        prefix = str(folder.relative_to(epoch_dir)) + "/"
        if problem := seal_problem(epoch_dir, prefix):
            summary = damage_summary({epoch: problem})
            raise WorkdirError(f"{self.directory.parent} has {summary}: rerun the train command, {RETRAINS_DAMAGED}")
        self._verified.add(key)


def load_state(workdir: str | os.PathLike, epoch: int | None = None) -> tuple[int, dict]:
    """-> (epoch, state) of a zoo workdir as numpy arrays [M, ...]; the newest epoch by default.

    The state is restored without a target (a checkpoint written by several processes onto
    this process's first device): `state['params'][layer]['kernel'|'bias']`.
    """
    reader = ZooCheckpoints(workdir)
    try:
        return reader.state(epoch)
    finally:
        reader.close()
