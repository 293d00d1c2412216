"""Job-array shards of a zoo: where shard k of n trains (`<workdir>/shards/<k>-of-<n>`, the k-th
contiguous block of the model table) and the merge that joins them into one workdir, written
as a zoo like any other (config.json, models.json, metrics.jsonl, one checkpoint per epoch
with every model in model_id order). Rerunning the merge continues where an interrupted one
stopped.
"""

from __future__ import annotations

import json
import os
import pathlib
import re
from collections.abc import Iterator

import numpy as np

from jaxzoo.config import comparable, last_epoch
from jaxzoo.errors import UserError
from jaxzoo.host import removed_on_failure
from jaxzoo.training import distributed
from jaxzoo.zoo import checkpoint

SHARDS_FOLDER = "shards"
SHARD_NAME = re.compile(r"^(\d+)-of-(\d+)$")  # the folder of shard k of n: "<k>-of-<n>"


def shard_workdir(workdir: str | os.PathLike, index: int, count: int) -> str:
    """Where job-array shard `index` of `count` trains: <workdir>/shards/<index>-of-<count>."""
    return os.path.join(os.fspath(workdir), SHARDS_FOLDER, f"{index}-of-{count}")


def shard_part(config, table: list[dict], workdir: str | os.PathLike, zoo_identity: dict) -> tuple[list[dict], str]:
    """What a job-array shard trains (`config.num_shards` > 1, any zoo kind): its contiguous
    block of the model table, in <workdir>/shards/<k>-of-<n>, its identity marked with the shard
    (`zoo_identity` is updated); the whole table in `workdir` otherwise."""
    if config.num_shards <= 1:
        return table, os.fspath(workdir)
    if distributed.is_multiprocess():
        raise distributed.PartitionError(
            "num_shards > 1 with jax.distributed: use one of them (processes split the zoo themselves)"
        )
    table = table[distributed.block(len(table), config.shard_index, config.num_shards)]
    if not table:
        raise distributed.PartitionError(
            f"shard {config.shard_index} of {config.num_shards} has no models: use fewer shards than models"
        )
    zoo_identity["shard"] = [config.shard_index, config.num_shards]
    return table, shard_workdir(workdir, config.shard_index, config.num_shards)


class MergeError(UserError):
    """Shards that cannot be merged yet (the message names the missing piece)."""


def find_shards(workdir: pathlib.Path) -> list[pathlib.Path]:
    """DIR/shards/<k>-of-<n> in shard order; MergeError when one is missing or counts differ."""
    folder = workdir / SHARDS_FOLDER
    found = {}
    for path in folder.iterdir() if folder.is_dir() else ():
        match = SHARD_NAME.match(path.name)
        if match:
            found[(int(match[1]), int(match[2]))] = path
    if not found:
        raise MergeError(
            f"{folder} holds no shards: train them with --config.shard_index=K --config.num_shards=N "
            f"--workdir {workdir}"
        )
    counts = {n for _, n in found}
    if len(counts) > 1:
        raise MergeError(f"{folder} mixes shard counts {sorted(counts)}: keep the shards of one job array")
    count = counts.pop()
    missing = [k for k in range(count) if (k, count) not in found]
    if missing:
        raise MergeError(
            f"shards {missing} of {count} are missing in {folder}: train them "
            f"(--config.shard_index={missing[0]} --config.num_shards={count})"
        )
    return [found[(k, count)] for k in range(count)]


def merge(workdir: str, log=print) -> dict:
    """Merges DIR/shards/* into DIR; returns {'models', 'epochs', 'written'}."""
    log = log or (lambda message: None)
    path = pathlib.Path(workdir).absolute()
    shards = find_shards(path)
    documents = [checkpoint.read_config(shard) for shard in shards]
    identities = [{k: v for k, v in comparable(d["identity"]).items() if k != "shard"} for d in documents]
    for shard, other in zip(shards[1:], identities[1:]):
        if other != identities[0]:
            difference = checkpoint.describe_difference(identities[0], other)
            raise MergeError(f"{shard} belongs to another zoo than {shards[0]} ({difference}): remove it")
    config = dict(documents[0]["config"], shard_index=0, num_shards=1)
    num_epochs = last_epoch(config)
    readers = [checkpoint.ZooCheckpoints(shard) for shard in shards]
    try:
        for shard, reader in zip(shards, readers):
            missing = sorted(set(range(num_epochs + 1)) - set(reader.epochs()))
            if missing:
                raise MergeError(
                    f"{shard} lacks epochs {missing[:5]} of 0..{num_epochs}: rerun that shard's train "
                    "command to finish it"
                )
            damaged = reader.damaged()
            if damaged:
                summary = checkpoint.damage_summary(damaged)
                raise MergeError(
                    f"{shard} has {summary}: rerun that shard's train command, {checkpoint.RETRAINS_DAMAGED}"
                )
        # Each shard's table is checked here and read again, a shard at a time, as models.json is
        # written: the merged table is never whole in memory (0.4 KB per CNN-s model).
        model_ids = np.concatenate([[row["model_id"] for row in shard_table(shard)] for shard in shards])
        table = (row for shard in shards for row in shard_table(shard))
        parts = [path / name for name in ("config.json", "models.json", "metrics.jsonl", "checkpoints", "damaged")]
        with removed_on_failure(*parts):  # every shard is checked above; a failure past here undoes the merge
            target = checkpoint.prepare_workdir(path, identities[0], config, table)
            checkpoint.set_aside_damaged(target)
            writer = checkpoint.open_writer(target, async_save=False)
            written = merge_epochs(writer, readers, len(model_ids), num_epochs, log)
            checkpoint.rewrite_metrics_file(target, merged_metrics_lines(readers, num_epochs, model_ids))
    finally:
        for reader in readers:
            reader.close()
    return {"models": len(model_ids), "epochs": num_epochs + 1, "written": written, "workdir": str(target)}


def shard_table(shard: pathlib.Path) -> list[dict]:
    """A shard's models.json; MergeError if it is unreadable."""
    try:
        table = checkpoint.parse_model_table((shard / "models.json").read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise MergeError(
            f"{shard / 'models.json'} is unreadable ({type(error).__name__}): rerun that shard's train command"
        ) from None
    if not (isinstance(table, list) and all(isinstance(row, dict) and "model_id" in row for row in table)):
        raise MergeError(f"{shard / 'models.json'} is not a model table: rerun that shard's train command")
    return table


def merge_epochs(writer, readers, num_models: int, num_epochs: int, log) -> int:
    """Writes every epoch the target lacks (the shards' blocks in model_id order: layout-2 blocks
    copied as files, a layout-1 shard read and written in blocks); returns the number of epochs
    written."""
    written = 0
    try:
        done = set(checkpoint.saved_epochs(writer.directory))
        for epoch in range(num_epochs + 1):
            if epoch in done:
                continue
            writer.begin(epoch, merged_metrics(readers, epoch), sum(shard_bytes(reader, epoch) for reader in readers))
            offset = 0
            for reader in readers:
                for block in reader.stored_blocks(epoch):
                    target = (offset + block[0], offset + block[1])
                    if reader.layout(epoch) == 2:
                        writer.copy_block(epoch, reader.block_folder(epoch, block), target)
                    else:
                        writer.write_models(epoch, target[0], reader.read(epoch, block))
                offset += reader.num_models(epoch)
            writer.wait(epoch)
            written += 1
            log(f"epoch {epoch}: {num_models} models")
    finally:
        writer.close()
    return written


def merged_metrics(readers, epoch: int) -> dict[str, np.ndarray]:
    """An epoch's metrics arrays [M] of every shard, in model_id order."""
    parts = [reader.metrics(epoch) for reader in readers]
    return {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}


def merged_metrics_lines(readers, num_epochs: int, model_ids: np.ndarray) -> Iterator[str]:
    """The merged zoo's metrics.jsonl lines, one epoch at a time."""
    for epoch in range(num_epochs + 1):
        yield from checkpoint.metrics_lines(epoch, model_ids, merged_metrics(readers, epoch))


def shard_bytes(reader: checkpoint.ZooCheckpoints, epoch: int) -> int:
    """Bytes a shard's epoch takes on disk (what its merged copy needs)."""
    folder = reader.directory / str(epoch)
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())
