"""Checkpoint layout 2: an epoch's population state stored in blocks of models.

Each block `blocks/<start>-<stop>/` of an epoch folder is an Orbax checkpoint of models
[start, stop): the state's tree, every leaf [stop - start, ...]. A block is sized so that its
state is about `BLOCK_BYTES`, so reading any models reads (and decodes) only their blocks:
memory follows the block, never the zoo. Layout 1 (jaxzoo before 2026-12-07) stored the whole
population as one checkpoint, `state/`, every leaf one compressed chunk of all models; it is
read here as a single block [0, M).

Functions here know folders and trees only; the workdir, seals and damage live in
`jaxzoo.zoo.checkpoint`.
"""

from __future__ import annotations

import asyncio
import json
import os
import pathlib
import re
from collections.abc import Sequence

import jax
import numpy as np
import orbax.checkpoint as ocp
import tensorstore as ts
from orbax.checkpoint._src.serialization import ocdbt_utils  # as Orbax's numpy handler uses them
from orbax.checkpoint._src.serialization import tensorstore_utils as ts_utils

LAYOUT_VERSION = 2  # what training, merge, ingest and upgrade write
BLOCKS_FOLDER = "blocks"
LAYOUT1_STATE = "state"  # layout 1: the whole population in one checkpoint
# Bytes of state per block: 16 MiB holds ~550 CNN-s models with Adam (30 KB each) and reads
# back in ~20 ms (one model of a 100,000-model zoo), while a 1,000-model zoo of 10 KB models
# is still one block. A model bigger than this is a block of its own.
BLOCK_BYTES = 16 * 2**20
# Bytes of arrays a reader holds at once (an export's block of models, all the epochs it needs):
# what bounds the memory of export, analysis and merge whatever the zoo's size.
READ_BYTES = 256 * 2**20
_BLOCK_NAME = re.compile(r"^(\d+)-(\d+)$")

Block = tuple[int, int]  # models [start, stop)


def bytes_per_model(tree) -> int:
    """Bytes of one model's share of a population tree (every leaf [M, ...])."""
    return sum(int(np.prod(np.shape(leaf)[1:])) * np.dtype(leaf.dtype).itemsize for leaf in jax.tree.leaves(tree))


def block_ranges(start: int, stop: int, model_bytes: int, block_bytes: int | None = None) -> list[Block]:
    """Models [start, stop) cut into blocks of about `block_bytes` (`BLOCK_BYTES`) of state."""
    size = max(1, (BLOCK_BYTES if block_bytes is None else block_bytes) // max(1, model_bytes))
    return [(a, min(a + size, stop)) for a in range(start, stop, size)]


def models_per_read(model_bytes: int) -> int:
    """How many models a reader takes at once when each costs `model_bytes` (`READ_BYTES`)."""
    return max(1, READ_BYTES // max(1, model_bytes))


def block_name(block: Block) -> str:
    return f"{block[0]}-{block[1]}"


def stored_blocks(epoch_dir: pathlib.Path) -> list[Block] | None:
    """The blocks of a layout-2 epoch folder in model order; None for a layout-1 folder."""
    folder = epoch_dir / BLOCKS_FOLDER
    if not folder.is_dir():
        return None
    found = [_BLOCK_NAME.match(p.name) for p in folder.iterdir()]
    return sorted((int(m[1]), int(m[2])) for m in found if m)


def _process_local() -> ocp.options.MultiprocessingOptions:
    """Orbax options for a checkpoint one process reads or writes alone (each process its own
    blocks), so Orbax's barriers wait for no other process."""
    index = jax.process_index()
    return ocp.options.MultiprocessingOptions(
        primary_host=index, active_processes={index}, barrier_sync_key_prefix=f"jaxzoo-blocks-{index}"
    )


class _ProcessNumpyHandler(ocp.type_handlers.NumpyHandler):
    """Orbax's numpy handler, writing from the process that saves: Orbax's own treats numpy
    arrays as replicated and writes them from process 0 only, while here each process of a
    distributed run writes the blocks of its own models."""

    async def _background_serialize(self, values, infos, args) -> None:
        writes = []
        for value, info, arg in zip(values, infos, args):
            await info.await_path_creation()
            spec = ts_utils.build_array_write_spec(
                info=info,
                arg=arg,
                global_shape=value.shape,
                local_shape=value.shape,
                dtype=value.dtype,
                use_ocdbt=info.is_ocdbt_checkpoint,
                process_index=ocdbt_utils.get_process_index_for_subdir(
                    use_ocdbt=info.is_ocdbt_checkpoint, override_ocdbt_process_id=self._override_ocdbt_process_id
                ),
                metadata_key=self._metadata_key,
            )
            writes.append(self._open_and_write(value, spec.json, info.ts_context))
        await asyncio.gather(*writes)


def _standard() -> ocp.StandardCheckpointer:
    return ocp.StandardCheckpointer(multiprocessing_options=_process_local())


def _pytree() -> ocp.Checkpointer:
    options = _process_local()
    return ocp.Checkpointer(
        ocp.PyTreeCheckpointHandler(multiprocessing_options=options), multiprocessing_options=options
    )


def _writer() -> ocp.AbstractCheckpointer:
    """One process's block writer: Orbax's standard one, or in a distributed run one whose
    numpy arrays are written by this process (`_ProcessNumpyHandler`)."""
    if jax.process_count() == 1:
        return _standard()
    options = _process_local()
    registry = ocp.type_handlers.create_type_handler_registry((np.ndarray, _ProcessNumpyHandler()))
    handler = ocp.PyTreeCheckpointHandler(multiprocessing_options=options, type_handler_registry=registry)
    return ocp.Checkpointer(handler, multiprocessing_options=options)


def write_block(epoch_dir: pathlib.Path, block: Block, tree) -> None:
    """Writes models `block` of a population tree (numpy leaves [stop - start, ...]) into
    epoch_dir/blocks/<start>-<stop> (Orbax, committed when this returns)."""
    with _writer() as writer:
        writer.save(epoch_dir / BLOCKS_FOLDER / block_name(block), tree)


def block_folder(epoch_dir: pathlib.Path, block: Block | None) -> pathlib.Path:
    """The checkpoint folder of a stored block; block None is layout 1's whole-population state."""
    return epoch_dir / LAYOUT1_STATE if block is None else epoch_dir / BLOCKS_FOLDER / block_name(block)


def restore(path: pathlib.Path, leaves: Sequence[tuple[str, ...]] | None = None):
    """A stored checkpoint (a block, or layout 1's state) as numpy arrays: every leaf (Orbax's
    restore, which rebuilds the saved tree), or only those at the given key paths as nested
    dicts (read straight from the checkpoint's Zarr arrays, `read_arrays`)."""
    if leaves is None:
        return _restore_all(path)
    item: dict = {}
    for keys, array in zip(leaves, read_arrays(path, leaves)):
        node = item
        for key in keys[:-1]:
            node = node.setdefault(key, {})
        node[keys[-1]] = array
    return item


def read_arrays(path: pathlib.Path, leaves: Sequence[tuple[str, ...]]) -> list[np.ndarray]:
    """The arrays at the given key paths of an Orbax checkpoint folder, read concurrently with
    TensorStore through one shared context (`_read_context`).

    Orbax's partial restore reads the same arrays, but each restore opens a context of its own
    and converts every array's spec to JSON, and with tensorstore 0.1.86 that leaves about
    0.6 MB per restore resident: the ~3,000 block reads of a ResNet-18 zoo's analysis grew it
    by 2 GiB. Reading here keeps memory flat and is ~25% faster (measured on 20 blocks of
    64 arrays, 45 MB each).
    """
    path = pathlib.Path(path).absolute()
    saved = json.loads((path / "_METADATA").read_text())
    driver = "zarr3" if saved.get("use_zarr3") else "zarr"
    opened = []
    for keys in leaves:
        name = ".".join(keys)  # Orbax names a leaf's array by its key path joined with dots
        if saved.get("use_ocdbt", True):
            kvstore = {"driver": "ocdbt", "base": {"driver": "file", "path": f"{path}/"}, "path": f"{name}/"}
        else:
            kvstore = {"driver": "file", "path": f"{path / name}/"}
        spec = {"driver": driver, "kvstore": kvstore}
        opened.append(ts.open(spec, open=True, read=True, context=_read_context()))
    reads = [store.result().read() for store in opened]
    return [np.asarray(read.result()) for read in reads]


_CONTEXTS: dict[int, ts.Context] = {}


def _read_context() -> ts.Context:
    """This process's TensorStore context for block reads, without a chunk cache (every block is
    read once per use); one per process, as a context's threads do not survive a fork."""
    return _CONTEXTS.setdefault(os.getpid(), ts.Context({"cache_pool": {"total_bytes_limit": 0}}))


def restore_like(path: pathlib.Path, like):
    """A stored checkpoint as numpy arrays in the structure of `like` (a tree of arrays or
    ShapeDtypeStructs whose leaves may have another leading size), e.g. optax's named tuples."""
    device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    size = int(jax.tree.leaves(saved_tree(path), is_leaf=lambda leaf: hasattr(leaf, "shape"))[0].shape[0])
    target = jax.tree.map(lambda leaf: jax.ShapeDtypeStruct((size, *leaf.shape[1:]), leaf.dtype, sharding=device), like)
    with _standard() as reader:
        return jax.tree.map(np.asarray, reader.restore(path, target))


def _restore_all(path: pathlib.Path) -> dict:
    """Every array of a stored checkpoint in its saved tree, whatever process layout saved it:
    read with `read_arrays` when the checkpoint's `_METADATA` describes the tree in the terms
    jaxzoo's states use (dicts, lists, None and empty containers), else by Orbax."""
    structure = _saved_structure(json.loads((path / "_METADATA").read_text())["tree_metadata"])
    if structure is not None:
        tree, leaves = structure
        arrays = read_arrays(path, leaves)
        return jax.tree.map(lambda index: arrays[index], tree)
    with _standard() as reader:
        try:
            state = reader.restore(path)
        except (ValueError, TypeError):  # saved by several processes: restore onto this process's device
            device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
            target = jax.tree.map(
                lambda leaf: jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=device),
                saved_tree(path),
                is_leaf=lambda leaf: hasattr(leaf, "shape") and hasattr(leaf, "dtype"),
            )
            state = reader.restore(path, target)
    return jax.tree.map(np.asarray, state)


_EMPTY = {"None": lambda: None, "Dict": dict, "List": list, "Tuple": tuple}  # Orbax's empty values
_SEQUENCE_KEY, _DICT_KEY = 1, 2  # Orbax's key types in `_METADATA`


def _saved_structure(entries: dict) -> tuple[dict, list[tuple[str, ...]]] | None:
    """From a checkpoint's `_METADATA` tree entries: (the tree Orbax restores, each array leaf
    its index in the list of the arrays' key paths; that list), or None for a tree with other
    node kinds (named tuples, custom nodes), which Orbax then restores."""
    root: dict = {}
    leaves = []
    for entry in entries.values():
        keys, value = entry["key_metadata"], entry["value_metadata"]
        if any(key["key_type"] not in (_SEQUENCE_KEY, _DICT_KEY) for key in keys):
            return None
        node = root
        for key in keys[:-1]:
            node = node.setdefault((key["key_type"], key["key"]), {})
        if value.get("skip_deserialize"):
            if value["value_type"] not in _EMPTY:
                return None
            node[(keys[-1]["key_type"], keys[-1]["key"])] = _EMPTY[value["value_type"]]()
        else:
            node[(keys[-1]["key_type"], keys[-1]["key"])] = len(leaves)
            leaves.append(tuple(key["key"] for key in keys))
    return _containers(root), leaves


def _containers(node):
    """`_saved_structure`'s nodes keyed (key type, key) as Orbax's lists and dicts."""
    if not isinstance(node, dict) or not node:
        return node
    if all(kind == _SEQUENCE_KEY for kind, _ in node):
        return [_containers(node[key]) for key in sorted(node, key=lambda key: int(key[1]))]
    return {key: _containers(child) for (_, key), child in node.items()}


def saved_tree(path: pathlib.Path):
    """A stored checkpoint's tree of array metadata (shape, dtype); no array is read."""
    with _pytree() as reader:
        metadata = reader.metadata(path)
    tree = getattr(metadata, "item_metadata", metadata)
    return getattr(tree, "tree", tree)


def leaf_paths(tree) -> list[tuple[str, ...]]:
    """Key paths of a (metadata) tree's array leaves, e.g. ('params', 'conv0', 'kernel')."""
    flat = jax.tree_util.tree_flatten_with_path(tree, is_leaf=lambda leaf: hasattr(leaf, "shape"))[0]
    return [tuple(str(key.key) for key in keys) for keys, _ in flat]
