"""Splitting a zoo over processes (jax.distributed) and over job-array shards.

Models never talk to each other, so each process trains its own contiguous block of the
model table on its local devices, with no collective in the training program. The processes
meet only to save: each epoch's state becomes one global array over a mesh of one device per
process, and Orbax writes every process's block into the same checkpoint of the shared
workdir. Job-array shards (no coordinator) train the same blocks into their own workdirs,
which `python -m jaxzoo.merge` joins.
"""

from __future__ import annotations

import logging
import os
import threading

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from jaxzoo.cli import error_exit
from jaxzoo.errors import UserError

log = logging.getLogger("jaxzoo")
JAX_DEADLINE_MARGIN_S = 60  # JAX's own deadline comes this long after the watchdog's


class PartitionError(UserError):
    """A population that cannot be split as asked."""


def block(size: int, index: int, count: int) -> slice:
    """The contiguous block of models [start, stop) that part `index` of `count` trains."""
    return slice(index * size // count, (index + 1) * size // count)


def process_block(size: int) -> slice:
    """This process's models; every process must hold as many (one global array per epoch)."""
    count = jax.process_count()
    if size % count:
        raise PartitionError(
            f"the population of {size} models does not split evenly over {count} processes: use a process "
            "count that divides it, or job-array shards (--config.num_shards)"
        )
    return block(size, jax.process_index(), count)


def is_multiprocess() -> bool:
    return jax.process_count() > 1


def is_primary() -> bool:
    return jax.process_index() == 0


def _save_sharding() -> NamedSharding:
    """Axis 0 over one device per process, in process order."""
    firsts = {}
    for device in sorted(jax.devices(), key=lambda d: (d.process_index, d.id)):
        firsts.setdefault(device.process_index, device)
    mesh = Mesh(np.array([firsts[p] for p in sorted(firsts)]), ("processes",))
    return NamedSharding(mesh, PartitionSpec("processes"))


def to_global(tree):
    """Process-local numpy arrays [m, ...] -> global arrays [m * processes, ...] (for saving)."""
    sharding = _save_sharding()
    return jax.tree.map(lambda a: jax.make_array_from_process_local_data(sharding, np.asarray(a)), tree)


def global_abstract(abstract_local):
    """ShapeDtypeStructs of a process-local state -> those of the global state (for restoring)."""
    sharding, count = _save_sharding(), jax.process_count()
    return jax.tree.map(
        lambda a: jax.ShapeDtypeStruct((a.shape[0] * count, *a.shape[1:]), a.dtype, sharding=sharding),
        abstract_local,
    )


def to_local(tree):
    """Global arrays -> this process's block as numpy."""
    return jax.tree.map(lambda a: np.asarray(a.addressable_shards[0].data), tree)


def gather_metrics(metrics: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Every process's metrics [m] -> the whole population's [m * processes], on every process.

    Gathered as their bytes: JAX (64-bit types off) would make float64 metrics float32, and a
    2-process zoo's metrics then differed from a 1-process zoo's (measured: every train_loss)."""
    if not is_multiprocess():
        return metrics
    gathered = {}
    for name, values in metrics.items():
        values = np.ascontiguousarray(values)
        words = values.view(np.uint8).reshape(len(values), values.dtype.itemsize)
        whole = np.asarray(multihost_utils.process_allgather(words, tiled=True))
        gathered[name] = np.ascontiguousarray(whole).reshape(-1).view(values.dtype)
    return gathered


def barrier(name: str) -> None:
    if is_multiprocess():
        multihost_utils.sync_global_devices(name)


def initialize(coordinator_address: str, num_processes: int, process_id: int, timeout_seconds: int = 300) -> None:
    """jax.distributed.initialize; explicit arguments, or cluster auto-detection when empty.

    Says in the log what it waits for; raises PartitionError (one line) on impossible
    arguments, when no cluster is found, or when the peers do not arrive in `timeout_seconds`.
    """
    if timeout_seconds < 1:
        raise PartitionError(f"--distributed_timeout={timeout_seconds} must be at least 1 second")
    if coordinator_address:
        host, _, port = coordinator_address.rpartition(":")
        if not host or not port.isdigit() or not 1 <= int(port) <= 65535:
            raise PartitionError(
                f"--coordinator_address={coordinator_address} is not host:port: give process 0's host and a "
                "free port, e.g. --coordinator_address=10.0.0.1:1234"
            )
        if num_processes < 1 or not 0 <= process_id < num_processes:
            raise PartitionError(
                f"--process_id={process_id} with --num_processes={num_processes}: use "
                f"num_processes >= 1 and process_id in 0..{max(num_processes - 1, 0)}"
            )
        kwargs = {"coordinator_address": coordinator_address, "num_processes": num_processes, "process_id": process_id}
        log.info(
            "waiting up to %d s for %d processes at %s (this is process %d; --distributed_timeout sets the wait)",
            timeout_seconds,
            num_processes,
            coordinator_address,
            process_id,
        )
    else:
        kwargs = {}  # the cluster's environment names the processes (SLURM, TPU pods, ...)
    fix = (
        "pass --coordinator_address=host:port --num_processes=N --process_id=i"
        if not coordinator_address
        else "start every process with the same --coordinator_address and --num_processes, or raise "
        "--distributed_timeout"
    )
    # JAX aborts the whole process (a C++ check failure, dozens of lines) when its own deadline
    # passes, so a watchdog ends the wait first, with one line and exit code 2.
    joined = threading.Event()
    threading.Thread(
        target=_exit_unless_joined,
        daemon=True,
        args=(
            joined,
            timeout_seconds,
            f"--distributed: not every process joined within {timeout_seconds} s: {fix}",
        ),
    ).start()
    # CPU processes need a collectives library (no effect on GPU/TPU); set before any backend starts.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    try:
        jax.distributed.initialize(initialization_timeout=timeout_seconds + JAX_DEADLINE_MARGIN_S, **kwargs)
    except Exception as error:  # jax raises ValueError (no cluster) or runtime errors (refused)
        reason = " ".join(str(error).split())[:200]
        raise PartitionError(
            f"--distributed could not join the job ({type(error).__name__}: {reason}): {fix}"
        ) from None
    finally:
        joined.set()
    log.info("joined: process %d of %d", jax.process_index(), jax.process_count())


def _exit_unless_joined(joined: threading.Event, timeout_seconds: float, message: str) -> None:
    if not joined.wait(timeout_seconds):
        os._exit(error_exit(message))
