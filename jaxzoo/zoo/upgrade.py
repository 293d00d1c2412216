"""Rewrites a workdir made before checkpoint layout 2 (2026-12-07) in blocks of models.

Epoch by epoch, oldest first: the epoch is read whole (layout 1 stores each array as one chunk
of all models, so one epoch is in memory at a time), written in blocks into
checkpoints/.partial-E, read back and compared bit for bit, sealed, and swapped with the old
folder. A killed upgrade leaves every epoch readable in one layout or the other; rerunning it
continues. Identity, metrics and exports stay exactly as they were.
"""

from __future__ import annotations

import pathlib
import time
from collections.abc import Callable

import jax
import numpy as np

from jaxzoo.errors import UserError
from jaxzoo.zoo import blocks, checkpoint


class UpgradeError(UserError):
    """A workdir that cannot be upgraded (the message names the problem and the fix)."""


def upgrade(workdir: str | pathlib.Path, log: Callable[[str], None] | None = print) -> dict:
    """Rewrites every layout-1 epoch of `workdir` in layout 2 and records the layout; returns
    {'workdir', 'epochs', 'written', 'bytes'}."""
    log = log or (lambda message: None)
    path = pathlib.Path(workdir).absolute()
    checkpoint.read_config(path)  # a jaxzoo workdir, unedited
    reader = checkpoint.ZooCheckpoints(path)
    checkpoint.recover_interrupted(reader.directory)
    damaged = reader.damaged(checksums=True)
    if damaged:
        raise UpgradeError(
            f"{path} has {checkpoint.damage_summary(damaged)}: rerun its train command, "
            f"{checkpoint.RETRAINS_DAMAGED}, then upgrade"
        )
    old = [epoch for epoch in reader.epochs() if reader.layout(epoch) == 1]
    for epoch in old:  # an unsealed (older) epoch shows damage only when restored: before any write
        if not checkpoint.is_sealed(reader.directory / str(epoch)):
            try:
                blocks.restore(blocks.block_folder(reader.directory / str(epoch), None))
            except Exception as error:  # Orbax raises many types for damaged files
                raise UpgradeError(
                    f"{path} has damaged checkpoints (epoch {epoch}: state unreadable, {type(error).__name__}): "
                    f"rerun its train command, {checkpoint.RETRAINS_DAMAGED}, then upgrade"
                ) from None
    writer = checkpoint.open_writer(path, async_save=False)
    written = 0
    try:
        for epoch in old:
            start = time.time()
            state, metrics = reader.read(epoch), reader.metrics(epoch)
            writer.begin(epoch, metrics, blocks.bytes_per_model(state) * reader.num_models(epoch))
            writer.write_models(epoch, 0, state)
            _check_written(writer.partial(epoch), state, epoch)
            writer.wait(epoch)
            written += 1
            log(f"epoch {epoch}: {reader.num_models(epoch)} models in blocks ({time.time() - start:.1f} s)")
    finally:
        writer.close()
    checkpoint.write_layout(path)
    size = sum(p.stat().st_size for p in reader.directory.rglob("*") if p.is_file())
    return {"workdir": str(path), "epochs": len(reader.epochs()), "written": written, "bytes": size}


def _check_written(partial: pathlib.Path, state: dict, epoch: int) -> None:
    """Reads the new blocks back and compares them with the state they were written from."""
    for block in blocks.stored_blocks(partial):
        stored = blocks.restore(blocks.block_folder(partial, block))
        expected = jax.tree.map(lambda a: a[block[0] : block[1]], state)
        same = jax.tree.structure(stored) == jax.tree.structure(expected) and all(
            a.dtype == b.dtype and np.array_equal(a, b, equal_nan=True)
            for a, b in zip(jax.tree.leaves(stored), jax.tree.leaves(expected))
        )
        if not same:
            raise UpgradeError(
                f"epoch {epoch}'s block {blocks.block_name(block)} reads back differently from what was "
                "written: check the disk, then rerun the upgrade (the old epoch is kept)"
            )
