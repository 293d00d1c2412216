"""The zoo workdir: identity checks, the model table, metrics, and Orbax epoch checkpoints.

Layout of a workdir:
  config.json      the resolved config (`identity_hash` marks which zoo this is)
  models.json      the model table: model_id -> seed and generating factors
  metrics.jsonl    one line per (epoch, model): train/val/test loss and accuracy, diverged
  checkpoints/E/   Orbax, one per epoch 0..E: `state` (params and optimizer state of the
                   whole population, leading axis = model_id) and `metrics` (JSON), and
                   `jaxzoo_files.json`, the epoch's seal: every file's size and CRC-32, written
                   once Orbax has committed the epoch and checked wherever the epoch is read
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import pathlib
import zlib
from collections.abc import Sequence
from typing import Any

import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
from orbax.checkpoint.checkpoint_managers import preservation_policy

from jaxzoo.config import comparable, config_kind, describe_difference, identity_hash
from jaxzoo.config import identity as identity_of
from jaxzoo.errors import UserError
from jaxzoo.training import distributed

log = logging.getLogger("jaxzoo")

# What a new zoo's workdir may already hold: the job-array shards a merge joins into it.
WORKDIR_NEIGHBOURS = ("shards",)
METRIC_NAMES = ("train_loss", "train_acc", "val_loss", "val_acc", "test_loss", "test_acc")


class WorkdirError(UserError):
    """The workdir cannot hold this zoo (unwritable, another zoo, corrupted checkpoint)."""


def prepare_workdir(
    workdir: str | os.PathLike, identity: dict, resolved: dict, table: list, write: bool = True
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
    _write_json_atomic(config_path, document)
    _write_json_atomic(path / "models.json", table)
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


def _write_json_atomic(path: pathlib.Path, data: Any) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, path)


def open_manager(workdir: pathlib.Path, async_save: bool) -> ocp.CheckpointManager:
    """An Orbax manager that keeps every epoch (PreserveAll); call `set_aside_damaged` first,
    since the manager reads every epoch's metrics when it opens."""
    options = ocp.CheckpointManagerOptions(
        preservation_policy=preservation_policy.PreserveAll(),
        enable_async_checkpointing=async_save,
        cleanup_tmp_directories=True,
    )
    return ocp.CheckpointManager(workdir / "checkpoints", options=options, item_names=("state", "metrics"))


def save_epoch(
    manager: ocp.CheckpointManager, epoch: int, state, metrics: dict[str, np.ndarray], wait: bool = True
) -> None:
    """Saves the population's state and metrics for `epoch`; with `wait`, waits for the commit.

    Without `wait` it returns once the state is copied off the devices (Orbax writes the files
    in its threads; the state's buffers may then be reused): call `wait_for_save` before the
    epoch is recorded in metrics.jsonl. Raises WorkdirError (disk full, folder gone) at this
    epoch, so that an epoch is recorded only once its checkpoint is on disk.
    """
    metrics_json = {name: np.asarray(values).tolist() for name, values in metrics.items()}
    if distributed.is_multiprocess():  # every process writes its block of one global state
        state = distributed.to_global(state)
    with _save_errors(manager, epoch):
        manager.save(
            epoch,
            args=ocp.args.Composite(state=ocp.args.StandardSave(state), metrics=ocp.args.JsonSave(metrics_json)),
        )
    if wait:
        wait_for_save(manager, epoch)


def wait_for_save(manager: ocp.CheckpointManager, epoch: int) -> None:
    """Waits until the checkpoint of `epoch` (the latest save) is committed, then the primary
    process seals it (`seal_epoch`); WorkdirError if either fails."""
    with _save_errors(manager, epoch):
        manager.wait_until_finished()
        if distributed.is_primary():
            seal_epoch(pathlib.Path(manager.directory) / str(epoch))


@contextlib.contextmanager
def _save_errors(manager: ocp.CheckpointManager, epoch: int):
    try:
        yield
    except Exception as error:  # Orbax wraps OSErrors of its writer threads in several types
        reason = next((e.strerror for e in _causes(error) if isinstance(e, OSError) and e.strerror), None)
        raise WorkdirError(
            f"saving the checkpoint of epoch {epoch} in {manager.directory} failed "
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


def epoch_damage(epoch_dir: pathlib.Path) -> str | None:
    """Why an epoch's checkpoint folder cannot be trusted, or None when its files are whole.

    A sealed epoch (`seal_epoch`) is checked file by file: present, same size, same CRC-32. An
    unsealed one only by its metrics JSON and state metadata; a damaged array file of an
    unsealed epoch shows when the state is restored.
    """
    metrics = epoch_dir / "metrics" / "metrics"
    state_metadata = epoch_dir / "state" / "_METADATA"
    for part in (metrics, state_metadata):
        if not part.is_file():
            return f"{part.relative_to(epoch_dir)} is missing"
    if is_sealed(epoch_dir):
        try:
            files = json.loads((epoch_dir / SEAL_FILE).read_text())["files"]
            expected = {name: (int(size), int(crc)) for name, (size, crc) in files.items()}
        except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError):
            return f"{SEAL_FILE} is unreadable"
        for name, (size, crc) in expected.items():
            part = epoch_dir / name
            if not part.is_file():
                return f"{name} is missing"
            if part.stat().st_size != size:
                return f"{name} has {part.stat().st_size} bytes, {size} when saved"
            if _file_checksum(part) != crc:
                return f"{name} changed since it was saved (CRC-32)"
    try:
        values = json.loads(metrics.read_text())
        if not isinstance(values, dict) or not all(isinstance(v, list) for v in values.values()):
            return "metrics/metrics is not a metrics table"
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return "metrics/metrics is unreadable"
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
    """Restores an unsealed epoch's state (every array read and decoded); seals it when whole,
    else says why not."""
    try:
        _restore_numpy(epoch_dir / "state")
    except Exception as error:  # Orbax raises many types for damaged files
        return f"state unreadable, {type(error).__name__}"
    seal_epoch(epoch_dir)
    return None


def restore_latest(manager: ocp.CheckpointManager, abstract_state) -> tuple[int, Any] | None:
    """-> (epoch, state) of the newest readable checkpoint, or None for a fresh workdir.

    A newest checkpoint whose state cannot be restored is set aside (see `set_aside`) and the
    one before it is tried.
    """
    if distributed.is_multiprocess():
        abstract_state = distributed.global_abstract(abstract_state)
    while (epoch := manager.latest_step()) is not None:
        try:
            restored = manager.restore(epoch, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract_state)))
        except Exception as error:  # Orbax raises many types for damaged files
            if distributed.is_multiprocess():  # the processes must agree: no unilateral moves
                raise WorkdirError(
                    f"checkpoint of epoch {epoch} in {manager.directory} is unreadable ({type(error).__name__}): "
                    f"move {manager.directory / str(epoch)} away to resume from epoch {epoch - 1}"
                ) from None
            set_aside(manager.directory.parent, [epoch], f"state unreadable, {type(error).__name__}")
            manager.reload()
            continue
        if distributed.is_multiprocess():
            restored = {"state": distributed.to_local(restored["state"])}
        return epoch, restored["state"]
    return None


def restore_metrics(directory: pathlib.Path, epoch: int) -> dict[str, np.ndarray]:
    """The metrics arrays [M] saved with an epoch's checkpoint under `directory` (checkpoints/)."""
    path = pathlib.Path(directory) / str(epoch) / "metrics" / "metrics"
    reason = epoch_damage(path.parent.parent)
    if reason:
        raise WorkdirError(
            f"checkpoint of epoch {epoch} in {directory} is damaged ({reason}): rerun the train command, "
            "which sets it aside and retrains it"
        )
    return {name: np.asarray(values) for name, values in json.loads(path.read_text()).items()}


def metrics_lines(epoch: int, model_ids: np.ndarray, metrics: dict[str, np.ndarray]) -> list[str]:
    """One JSON line per model for `epoch` (NaN is written as null); extra metrics follow."""
    lines = []
    present = [name for name in METRIC_NAMES if name in metrics]  # an INR zoo has others
    for i, model_id in enumerate(model_ids):
        row = {"epoch": epoch, "model_id": int(model_id)}
        for name in (*present, *sorted(set(metrics) - set(METRIC_NAMES) - {"diverged"})):
            value = float(metrics[name][i])
            row[name] = value if np.isfinite(value) else None
        row["diverged"] = bool(metrics["diverged"][i])
        lines.append(json.dumps(row))
    return lines


def rewrite_metrics_file(workdir: pathlib.Path, lines: list[str]) -> None:
    tmp = workdir / "metrics.jsonl.tmp"
    tmp.write_text("".join(line + "\n" for line in lines))
    os.replace(tmp, workdir / "metrics.jsonl")


def append_metrics(workdir: pathlib.Path, lines: list[str]) -> None:
    with open(workdir / "metrics.jsonl", "a") as f:
        f.write("".join(line + "\n" for line in lines))


def read_metrics(workdir: str | os.PathLike) -> list[dict]:
    """metrics.jsonl as a list of dicts (None where a value was not finite)."""
    with open(pathlib.Path(workdir) / "metrics.jsonl") as f:
        return [json.loads(line) for line in f if line.strip()]


class ZooCheckpoints:
    """Read-only access to a workdir's epoch checkpoints (no manager: nothing is written)."""

    def __init__(self, workdir: str | os.PathLike):
        self.directory = pathlib.Path(workdir).absolute() / "checkpoints"
        if not self.directory.is_dir():
            raise WorkdirError(f"{self.directory} does not exist: train the zoo first (python -m jaxzoo.train)")

    def epochs(self) -> list[int]:
        """The epochs with a checkpoint folder (see `damaged` for which of them are whole)."""
        return saved_epochs(self.directory)

    def damaged(self) -> dict[int, str]:
        """{epoch: why} for the checkpoint folders whose files are not whole."""
        reasons = {epoch: epoch_damage(self.directory / str(epoch)) for epoch in self.epochs()}
        return {epoch: reason for epoch, reason in reasons.items() if reason}

    def state(self, epoch: int | None = None) -> tuple[int, dict]:
        """-> (epoch, state as numpy arrays [M, ...]); the newest epoch by default."""
        epoch, path = self._state_path(epoch)
        try:
            state = _restore_numpy(path)
        except Exception as error:  # Orbax raises many types for damaged files
            raise WorkdirError(
                f"checkpoint of epoch {epoch} in {self.directory} is unreadable ({type(error).__name__}): "
                "rerun the train command, which sets it aside and retrains it"
            ) from None
        return epoch, state

    def param_paths(self, epoch: int, collection: str = "params") -> list[tuple[str, ...]]:
        """Key paths of the leaves of an epoch's `params` (or another collection of the state,
        e.g. 'batch_stats'), e.g. ('conv0', 'kernel'), read from the checkpoint's metadata (no
        array is read)."""
        _, path = self._state_path(epoch)
        with ocp.PyTreeCheckpointer() as reader:
            params = _saved_tree(reader, path)[collection]
        return [
            tuple(str(key.key) for key in keys)
            for keys, _ in jax.tree_util.tree_flatten_with_path(params, is_leaf=lambda leaf: hasattr(leaf, "shape"))[0]
        ]

    def params(self, epoch: int, leaves: Sequence[tuple[str, ...]] | None = None, collection: str = "params") -> dict:
        """An epoch's `params` (or another collection of the state, e.g. 'batch_stats') as numpy
        arrays [M, ...] and nothing else (no optimizer state): all its leaves, or only those at
        the given key paths (`param_paths`).

        Orbax's partial restore reads only the requested arrays, whatever process layout saved
        them. Each array is one compressed chunk of the whole population, so a block of models
        cannot be read without decoding the whole leaf: restore one leaf at a time to bound memory
        (a leaf of M models transiently takes twice its size).
        """
        epoch, path = self._state_path(epoch)
        leaves = self.param_paths(epoch, collection) if leaves is None else leaves
        item: dict = {}
        for keys in leaves:
            node = item
            for key in keys[:-1]:
                node = node.setdefault(key, {})
            node[keys[-1]] = ocp.RestoreArgs(restore_type=np.ndarray)
        try:
            with ocp.PyTreeCheckpointer() as reader:
                restored = reader.restore(
                    path,
                    args=ocp.args.PyTreeRestore(
                        item={collection: item}, restore_args={collection: item}, partial_restore=True
                    ),
                )
        except Exception as error:  # Orbax raises many types for damaged files
            raise WorkdirError(
                f"{collection} of epoch {epoch} in {self.directory} are unreadable ({type(error).__name__}): "
                "rerun the train command, which sets the checkpoint aside and retrains it"
            ) from None
        return jax.tree.map(np.asarray, restored[collection])

    def _state_path(self, epoch: int | None) -> tuple[int, pathlib.Path]:
        """-> (epoch, its state folder); the newest epoch for None; WorkdirError if it has none."""
        epochs = self.epochs()
        epoch = (epochs[-1] if epochs else None) if epoch is None else epoch
        if epoch is None or epoch not in epochs:
            raise WorkdirError(f"{self.directory} has no checkpoint for epoch {epoch}: epochs {epochs}")
        return epoch, self.directory / str(epoch) / "state"

    def metrics(self, epoch: int) -> dict[str, np.ndarray]:
        """The metrics arrays [M] saved with an epoch's checkpoint."""
        return restore_metrics(self.directory, epoch)

    def close(self) -> None:
        """Nothing to release (kept so readers can be used in try/finally)."""


def _restore_numpy(path: pathlib.Path) -> dict:
    """A saved state folder restored as numpy arrays, whatever process layout saved it."""
    with ocp.StandardCheckpointer() as reader:
        try:
            state = reader.restore(path)
        except (ValueError, TypeError):  # saved by several processes: restore onto this process's device
            tree = _saved_tree(reader, path)
            device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
            target = jax.tree.map(
                lambda leaf: jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=device),
                tree,
                is_leaf=lambda leaf: hasattr(leaf, "shape") and hasattr(leaf, "dtype"),
            )
            state = reader.restore(path, target)
    return jax.tree.map(np.asarray, state)


def _saved_tree(reader: ocp.AbstractCheckpointer, path: pathlib.Path):
    """The saved state's tree of array metadata (shape, dtype), whichever metadata type Orbax returns."""
    metadata = reader.metadata(path)
    tree = getattr(metadata, "item_metadata", metadata)
    return getattr(tree, "tree", tree)


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
