"""The zoo workdir: identity checks, the model table, metrics, and Orbax epoch checkpoints.

Layout of a workdir:
  config.json      the resolved config (`identity_hash` marks which zoo this is)
  models.json      the model table: model_id -> seed and generating factors
  metrics.jsonl    one line per (epoch, model): train/val/test loss and accuracy, diverged
  checkpoints/E/   Orbax, one per epoch 0..E: `state` (params and optimizer state of the
                   whole population, leading axis = model_id) and `metrics` (JSON)
"""

from __future__ import annotations

import json
import os
import pathlib
from typing import Any

import numpy as np
import jax
import orbax.checkpoint as ocp
from orbax.checkpoint.checkpoint_managers import preservation_policy

from jaxzoo import distributed
from jaxzoo.config import describe_difference, identity_hash
from jaxzoo.errors import UserError

METRIC_NAMES = ("train_loss", "train_acc", "val_loss", "val_acc", "test_loss", "test_acc")


class WorkdirError(UserError):
    """The workdir cannot hold this zoo (unwritable, another zoo, corrupted checkpoint)."""


def prepare_workdir(workdir: str | os.PathLike, identity: dict, resolved: dict, table: list,
                    write: bool = True) -> pathlib.Path:
    """Creates the workdir or checks that it holds this zoo; writes config.json and models.json.

    Raises WorkdirError before anything is written when the workdir holds another zoo. With
    `write=False` only checks (the other processes of a distributed run).
    """
    path = pathlib.Path(workdir).absolute()
    config_path = path / "config.json"
    if config_path.exists():
        try:
            existing = json.loads(config_path.read_text())
            existing_identity = existing["identity"]
        except (json.JSONDecodeError, KeyError, TypeError):
            raise WorkdirError(
                f"{config_path} is not a jaxzoo config: choose another --workdir"
            ) from None
        if existing_identity != identity:
            raise WorkdirError(
                f"workdir {path} holds another zoo ({describe_difference(existing_identity, identity)}): "
                "choose another --workdir, or rerun with that zoo's config to resume it"
            )
    elif path.exists() and not path.is_dir():
        raise WorkdirError(f"workdir {path} is a file: choose another --workdir")
    elif (path / "checkpoints").exists() or (path / "metrics.jsonl").exists():
        raise WorkdirError(f"workdir {path} holds a zoo without config.json: choose another --workdir")
    if not write:
        return path
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".write_probe"
        probe.write_text("")
        probe.unlink()
    except OSError as error:
        raise WorkdirError(f"workdir {path} is not writable ({error.strerror}): choose another --workdir") from None
    document = {"identity_hash": identity_hash(identity), "identity": identity, "config": resolved}
    _write_json_atomic(config_path, document)
    _write_json_atomic(path / "models.json", table)
    return path


def _write_json_atomic(path: pathlib.Path, data: Any) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, path)


def open_manager(workdir: pathlib.Path, async_save: bool) -> ocp.CheckpointManager:
    """An Orbax manager that keeps every epoch (PreserveAll)."""
    options = ocp.CheckpointManagerOptions(
        preservation_policy=preservation_policy.PreserveAll(),
        enable_async_checkpointing=async_save,
        cleanup_tmp_directories=True,
    )
    return ocp.CheckpointManager(workdir / "checkpoints", options=options, item_names=("state", "metrics"))


def save_epoch(manager: ocp.CheckpointManager, epoch: int, state, metrics: dict[str, np.ndarray]) -> None:
    """Saves the population's state and metrics for `epoch` (async; arrays must not change)."""
    metrics_json = {name: np.asarray(values).tolist() for name, values in metrics.items()}
    if distributed.is_multiprocess():  # every process writes its block of one global state
        state = distributed.to_global(state)
    manager.save(
        epoch,
        args=ocp.args.Composite(state=ocp.args.StandardSave(state), metrics=ocp.args.JsonSave(metrics_json)),
    )


def restore_latest(manager: ocp.CheckpointManager, abstract_state) -> tuple[int, Any] | None:
    """-> (epoch, state) of the newest complete checkpoint, or None for a fresh workdir."""
    epoch = manager.latest_step()
    if epoch is None:
        return None
    if distributed.is_multiprocess():
        abstract_state = distributed.global_abstract(abstract_state)
    try:
        restored = manager.restore(
            epoch, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract_state))
        )
        if distributed.is_multiprocess():
            restored = {"state": distributed.to_local(restored["state"])}
    except Exception as error:  # Orbax raises many types for damaged files
        raise WorkdirError(
            f"checkpoint of epoch {epoch} in {manager.directory} is unreadable "
            f"({type(error).__name__}): move {manager.directory / str(epoch)} away to resume from epoch {epoch - 1}"
        ) from None
    return epoch, restored["state"]


def restore_metrics(manager: ocp.CheckpointManager, epoch: int) -> dict[str, np.ndarray]:
    try:
        restored = manager.restore(epoch, args=ocp.args.Composite(metrics=ocp.args.JsonRestore()))
        return {name: np.asarray(values) for name, values in restored["metrics"].items()}
    except Exception as error:
        raise WorkdirError(
            f"metrics of epoch {epoch} in {manager.directory} are unreadable ({type(error).__name__}): "
            f"move {manager.directory / str(epoch)} away to resume from epoch {epoch - 1}"
        ) from None


def metrics_lines(epoch: int, model_ids: np.ndarray, metrics: dict[str, np.ndarray]) -> list[str]:
    """One JSON line per model for `epoch` (NaN is written as null); extra metrics follow."""
    lines = []
    for i, model_id in enumerate(model_ids):
        row = {"epoch": epoch, "model_id": int(model_id)}
        for name in (*METRIC_NAMES, *sorted(set(metrics) - set(METRIC_NAMES) - {"diverged"})):
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
    """Read-only access to a workdir's epoch checkpoints, through one Orbax manager."""

    def __init__(self, workdir: str | os.PathLike):
        directory = pathlib.Path(workdir).absolute() / "checkpoints"
        if not directory.is_dir():
            raise WorkdirError(f"{directory} does not exist: train the zoo first (python -m jaxzoo.train)")
        options = ocp.CheckpointManagerOptions(read_only=True)
        self.manager = ocp.CheckpointManager(directory, options=options, item_names=("state", "metrics"))

    def epochs(self) -> list[int]:
        """The epochs with a complete checkpoint."""
        return sorted(self.manager.all_steps())

    def state(self, epoch: int | None = None) -> tuple[int, dict]:
        """-> (epoch, state as numpy arrays [M, ...]); the newest epoch by default."""
        epoch = self.manager.latest_step() if epoch is None else epoch
        if epoch is None or epoch not in self.manager.all_steps():
            raise WorkdirError(f"{self.manager.directory} has no checkpoint for epoch {epoch}: epochs {self.epochs()}")
        try:
            try:
                restored = self.manager.restore(epoch, args=ocp.args.Composite(state=ocp.args.StandardRestore()))
            except (ValueError, TypeError):  # saved by several processes: restore onto this process's device
                target = self._local_target(epoch)
                restored = self.manager.restore(epoch, args=ocp.args.Composite(state=ocp.args.StandardRestore(target)))
                restored = {"state": jax.tree.map(np.asarray, restored["state"])}
        except Exception as error:  # Orbax raises many types for damaged files
            raise WorkdirError(
                f"checkpoint of epoch {epoch} in {self.manager.directory} is unreadable ({type(error).__name__}): "
                "retrain from the epoch before (move it away and rerun the train command)"
            ) from None
        return epoch, restored["state"]

    def _local_target(self, epoch: int):
        """The saved tree's shapes on this process's first device (whatever topology saved it)."""
        metadata = ocp.StandardCheckpointer().metadata(self.manager.directory / str(epoch) / "state")
        tree = getattr(metadata, "item_metadata", metadata)
        tree = getattr(tree, "tree", tree)
        device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
        return jax.tree.map(lambda leaf: jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=device), tree,
                            is_leaf=lambda leaf: hasattr(leaf, "shape") and hasattr(leaf, "dtype"))

    def metrics(self, epoch: int) -> dict[str, np.ndarray]:
        """The metrics arrays [M] saved with an epoch's checkpoint."""
        return restore_metrics(self.manager, epoch)

    def close(self) -> None:
        self.manager.close()


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
