"""Checkpoint layout 2 (each epoch stored in blocks of models): block reads against whole
reads, the upgrade of a layout-1 workdir made by 13083a5 (tests/fixtures/13083a5), exports of a
zoo in blocks against f4818c0's bytes, streamed exports that never read more than a block,
training and resuming in blocks, the crash-safe swap, and the free-space check."""

from __future__ import annotations

import gc
import json
import os
import pathlib
import shutil

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest
from conftest import array_files, tiny_zoo_config
from safetensors.numpy import save_file
from test_compat import EXPORTS, export_problems

from jaxzoo import host
from jaxzoo.errors import UserError
from jaxzoo.export import export
from jaxzoo.train import train_and_evaluate
from jaxzoo.upgrade import main as upgrade_main
from jaxzoo.weights.vectors import SAFETENSORS_DTYPES, write_safetensors
from jaxzoo.zoo import blocks, checkpoint
from jaxzoo.zoo.shards import merge, shard_workdir
from jaxzoo.zoo.upgrade import upgrade

LAYOUT1 = pathlib.Path(__file__).resolve().parent / "fixtures" / "13083a5" / "quickstart"  # 8 models, epochs 0..2


def assert_same_tree(got, want) -> None:
    assert jax.tree.structure(got) == jax.tree.structure(want)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
        assert a.dtype == b.dtype and a.shape == b.shape
        np.testing.assert_array_equal(a, b)


def block_bytes(workdir: pathlib.Path, models: int) -> int:
    """The BLOCK_BYTES that stores `models` models of this zoo per block."""
    return models * blocks.bytes_per_model(checkpoint.ZooCheckpoints(workdir).read(0, (0, 1)))


@pytest.fixture(scope="module")
def upgraded(tmp_path_factory):
    """The 13083a5 zoo upgraded in blocks of 3 models (0-3, 3-6 and a ragged 6-8)."""
    workdir = shutil.copytree(LAYOUT1, tmp_path_factory.mktemp("layout") / "zoo")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(blocks, "BLOCK_BYTES", block_bytes(LAYOUT1, 3))
        report = upgrade(workdir, log=None)
    return workdir, report


def test_upgrade_rewrites_every_epoch_in_blocks_and_reads_equal_whole_reads(upgraded):
    workdir, report = upgraded
    assert report["written"] == report["epochs"] == 3
    old, new = checkpoint.ZooCheckpoints(LAYOUT1), checkpoint.ZooCheckpoints(workdir)
    for epoch in range(3):
        assert (old.layout(epoch), new.layout(epoch)) == (1, 2)
        assert new.stored_blocks(epoch) == [(0, 3), (3, 6), (6, 8)]
        whole = old.read(epoch)
        assert_same_tree(new.read(epoch), whole)
        for start, stop in [(0, 3), (2, 7), (5, 6), (7, 8), (0, 8)]:
            rows = jax.tree.map(lambda a, start=start, stop=stop: a[start:stop], whole)
            assert_same_tree(new.read(epoch, (start, stop)), rows)
            assert_same_tree(old.read(epoch, (start, stop)), rows)
            assert_same_tree(new.params(epoch, models=(start, stop)), rows["params"])
        assert_same_tree(new.metrics(epoch), old.metrics(epoch))
        assert new.param_paths(epoch) == old.param_paths(epoch)
    for name in ("config.json", "models.json", "metrics.jsonl"):
        assert (workdir / name).read_bytes() == (LAYOUT1 / name).read_bytes()
    assert (checkpoint.workdir_layout(workdir), checkpoint.workdir_layout(LAYOUT1)) == (2, 1)
    assert not [p for p in (workdir / "checkpoints").iterdir() if p.name.startswith(".")]
    assert upgrade(workdir, log=None)["written"] == 0  # nothing left to rewrite


@pytest.mark.parametrize("name", ["quickstart-all-full", "quickstart-vectors-epochs"])
def test_exports_of_a_zoo_in_blocks_have_f4818c0s_bytes(upgraded, tmp_path, name, monkeypatch):
    """Every format (optimizer states of all epochs, dataset.pt, the epoch and threshold
    filters) exported from 3-model blocks, read 3 models at a time (a ragged last read): the
    bytes f4818c0 wrote from one whole-population checkpoint. No read covers more models."""
    workdir = shutil.copytree(upgraded[0], tmp_path / "zoo")
    read, widest = checkpoint.ZooCheckpoints.read, []

    def spied(self, epoch, models=None, leaves=None):
        start, stop = (0, self.num_models(epoch)) if models is None else models
        widest.append(stop - start)
        return read(self, epoch, models, leaves)

    monkeypatch.setattr(checkpoint.ZooCheckpoints, "read", spied)
    monkeypatch.setattr(blocks, "READ_BYTES", block_bytes(LAYOUT1, 3))
    flags = EXPORTS[name]["flags"]
    options = dict(zip(flags[::2], flags[1::2]))
    keywords = {"formats": options["--format"], "with_data": "--with_data" in flags}
    if "--epochs" in options:
        keywords["epochs"] = [int(epoch) for epoch in options["--epochs"].split(",")]
    if "--threshold" in options:
        keywords["threshold"] = float(options["--threshold"])
    if "--optimizer_state" in options:
        keywords["optimizer_state"] = options["--optimizer_state"]
    export(workdir, tmp_path / "out", log=None, **keywords)
    assert export_problems(name, tmp_path / "out") == []
    assert widest and max(widest) <= 3, f"reads of {max(widest)} models"


def test_upgrade_command_survives_an_interrupted_swap(tmp_path, capsys):
    """Killed between moving the old epoch 1 aside and putting the new one in place: readers see
    epoch 1 missing, the next upgrade (or train) puts the old folder back, and finishes."""
    workdir = shutil.copytree(LAYOUT1, tmp_path / "zoo")
    directory = workdir / "checkpoints"
    os.replace(directory / "1", directory / f"{checkpoint.REPLACED_PREFIX}1")
    (directory / f"{checkpoint.PARTIAL_PREFIX}1" / "blocks").mkdir(parents=True)
    assert checkpoint.saved_epochs(directory) == [0, 2]
    assert upgrade_main(["--workdir", str(workdir)]) == 0
    assert "3 of 3 epochs rewritten in blocks" in capsys.readouterr().out
    assert sorted(p.name for p in directory.iterdir()) == ["0", "1", "2"]
    assert_same_tree(checkpoint.ZooCheckpoints(workdir).read(1), checkpoint.ZooCheckpoints(LAYOUT1).read(1))


def test_upgrade_refuses_a_damaged_epoch_and_changes_nothing(tmp_path, capsys):
    workdir = shutil.copytree(LAYOUT1, tmp_path / "zoo")
    metrics = workdir / "checkpoints" / "1" / "metrics" / "metrics"
    metrics.write_text(metrics.read_text().replace("0", "1", 1))  # same size, another CRC-32
    before = sorted(str(p.relative_to(workdir)) for p in workdir.rglob("*"))
    assert upgrade_main(["--workdir", str(workdir)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "epoch 1: metrics/metrics changed since it was saved" in err[0]
    assert "rerun its train command" in err[0]
    assert sorted(str(p.relative_to(workdir)) for p in workdir.rglob("*")) == before


def test_upgrade_refuses_a_torn_unsealed_epoch_before_writing_anything(tmp_path, capsys):
    """f4818c0's zoo (no seals) with epoch 1's largest array file cut in half."""
    workdir = shutil.copytree(LAYOUT1.parents[1] / "f4818c0" / "quickstart", tmp_path / "zoo")
    torn = max(array_files(workdir / "checkpoints" / "1"), key=lambda p: p.stat().st_size)
    torn.write_bytes(torn.read_bytes()[: torn.stat().st_size // 2])
    before = {p: p.read_bytes() for p in workdir.rglob("*") if p.is_file()}
    assert upgrade_main(["--workdir", str(workdir)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "damaged checkpoints (epoch 1: state unreadable" in err[0]
    assert {p: p.read_bytes() for p in workdir.rglob("*") if p.is_file()} == before


@pytest.fixture(scope="module")
def trained_in_blocks(tmp_path_factory, tiny_zoo):
    """The tiny zoo trained in blocks of 3 models (4 models: 0-3, 3-4), stopped after epoch 1
    and resumed to epoch 2 from its blocks."""
    workdir = tmp_path_factory.mktemp("blocks") / "zoo"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(blocks, "BLOCK_BYTES", block_bytes(tiny_zoo, 3))
        train_and_evaluate(tiny_zoo_config(num_epochs=1), workdir)
        train_and_evaluate(tiny_zoo_config(num_epochs=2), workdir)
    return workdir


def test_training_in_blocks_gives_the_same_zoo(trained_in_blocks, tiny_zoo):
    reader, reference = checkpoint.ZooCheckpoints(trained_in_blocks), checkpoint.ZooCheckpoints(tiny_zoo)
    for epoch in range(3):
        assert reader.stored_blocks(epoch) == [(0, 3), (3, 4)]
        assert_same_tree(reader.read(epoch), reference.read(epoch))
    assert checkpoint.read_metrics(trained_in_blocks) == checkpoint.read_metrics(tiny_zoo)
    assert checkpoint.workdir_layout(trained_in_blocks) == 2


def key_order(tree):
    """A tree's containers with their keys in order, leaves by type: what equal trees share."""
    if isinstance(tree, dict):
        return [(key, key_order(value)) for key, value in tree.items()]
    if isinstance(tree, (list, tuple)):
        return [type(tree).__name__, *map(key_order, tree)]
    return type(tree).__name__


def test_block_reads_equal_orbaxs_restore_and_keep_nothing_resident(trained_in_blocks):
    """Block reads go to TensorStore directly; they give what Orbax's own restore gives (tree,
    key order, dtypes, values), for layout-1 and layout-2 checkpoints with optax states, and
    leave no Python objects behind (each Orbax restore kept ~7 per array through TensorStore's
    spec JSON)."""
    folders = [
        LAYOUT1 / "checkpoints" / "2" / blocks.LAYOUT1_STATE,
        trained_in_blocks / "checkpoints" / "2" / "blocks" / "0-3",
    ]
    for folder in folders:
        with ocp.StandardCheckpointer() as reader:
            want = jax.tree.map(np.asarray, reader.restore(folder))
        got = blocks.restore(folder)
        assert_same_tree(got, want)
        assert key_order(got) == key_order(want)
        paths = [("params", *keys) for keys in blocks.leaf_paths(want["params"])]
        assert_same_tree(blocks.restore(folder, paths)["params"], want["params"])
    gc.collect()
    before = len(gc.get_objects())
    for _ in range(10):
        blocks.restore(folders[1])
    gc.collect()
    assert len(gc.get_objects()) - before < 100


def test_a_damaged_block_is_refused_when_read_and_the_others_still_read(trained_in_blocks, tmp_path):
    workdir = shutil.copytree(trained_in_blocks, tmp_path / "zoo")
    (data,) = [p for p in (workdir / "checkpoints" / "2" / "blocks" / "3-4").rglob("*") if p.parent.name == "d"][-1:]
    data.write_bytes(bytes(data.stat().st_size))  # zeroed, same size: only the CRC-32 shows it
    reader = checkpoint.ZooCheckpoints(workdir)
    assert reader.damaged() == {}  # opening checks sizes; each block's checksums when it is read
    assert_same_tree(reader.read(2, (0, 3)), checkpoint.ZooCheckpoints(trained_in_blocks).read(2, (0, 3)))
    with pytest.raises(checkpoint.WorkdirError, match=r"epoch 2: blocks/3-4/.* changed since it was saved"):
        reader.read(2, (2, 4))
    assert list(checkpoint.ZooCheckpoints(workdir).damaged(checksums=True)) == [2]


def test_too_little_disk_space_stops_before_the_epoch_is_written(tiny_zoo, tmp_path, monkeypatch):
    """Resuming to epoch 3 with 1 KiB free: one line naming the bytes and the folder; epochs 0..2
    and metrics.jsonl stay as they were, and nothing half-written is left (config.json records
    the raised num_epochs, as any resume does)."""
    workdir = shutil.copytree(tiny_zoo, tmp_path / "zoo")
    before = {p: p.read_bytes() for p in workdir.rglob("*") if p.is_file() and p.name != "config.json"}
    monkeypatch.setattr(host, "free_bytes", lambda path: 1024)
    with pytest.raises(
        host.DiskSpaceError, match=r"the checkpoint of epoch 3 needs [\d,]+ bytes in .*checkpoints and 1,024 are free"
    ):
        train_and_evaluate(tiny_zoo_config(num_epochs=3), workdir)
    assert {p: p.read_bytes() for p in workdir.rglob("*") if p.is_file() and p.name != "config.json"} == before
    assert sorted(p.name for p in (workdir / "checkpoints").iterdir()) == ["0", "1", "2"]


def test_merge_copies_shard_blocks_as_files(tmp_path):
    """Two job-array shards in blocks are merged by copying their block folders (renamed to
    the merged model range), byte for byte."""
    config = tiny_zoo_config(num_epochs=1)
    config.num_shards = 2
    for index in range(2):
        config.shard_index = index
        train_and_evaluate(config, tmp_path / "zoo")
    report = merge(tmp_path / "zoo", log=None)
    assert report["models"] == 4 and report["written"] == 2
    merged = checkpoint.ZooCheckpoints(tmp_path / "zoo")
    for epoch in range(2):
        assert merged.stored_blocks(epoch) == [(0, 2), (2, 4)]
        for index, (start, stop) in enumerate([(0, 2), (2, 4)]):
            shard = (
                pathlib.Path(shard_workdir(tmp_path / "zoo", index, 2)) / "checkpoints" / str(epoch) / "blocks" / "0-2"
            )
            copy = tmp_path / "zoo" / "checkpoints" / str(epoch) / "blocks" / f"{start}-{stop}"
            files = sorted(p.relative_to(shard) for p in shard.rglob("*") if p.is_file())
            assert files == sorted(p.relative_to(copy) for p in copy.rglob("*") if p.is_file())
            assert all((shard / f).read_bytes() == (copy / f).read_bytes() for f in files)
    assert json.loads((tmp_path / "zoo" / "checkpoints" / "1" / "metrics" / "metrics").read_text())["test_acc"]
    # models.json and metrics.jsonl, written a shard and an epoch at a time, hold the shards' rows.
    shards = [pathlib.Path(shard_workdir(tmp_path / "zoo", index, 2)) for index in range(2)]
    rows = [row for shard in shards for row in json.loads((shard / "models.json").read_text())]
    assert (tmp_path / "zoo" / "models.json").read_text() == json.dumps(rows, indent=1)
    lines = [json.loads(line) for shard in shards for line in (shard / "metrics.jsonl").read_text().splitlines()]
    assert checkpoint.read_metrics(tmp_path / "zoo") == sorted(lines, key=lambda r: (r["epoch"], r["model_id"]))


@pytest.mark.parametrize(
    "table",
    [[], [{"model_id": 0}], [{"model_id": 0, "lr": 1e-3, "widths": [8, [2, {}], []], "note": "a\nb", "x": None}] * 2],
)
def test_model_table_written_a_row_at_a_time_has_json_dumps_bytes(tmp_path, table):
    checkpoint.write_model_table(tmp_path / "models.json", iter(table))
    assert (tmp_path / "models.json").read_text() == json.dumps(table, indent=1)


def test_an_export_that_does_not_fit_the_disk_or_the_data_limit_writes_nothing(upgraded, tmp_path, monkeypatch):
    workdir = shutil.copytree(upgraded[0], tmp_path / "zoo")
    out = tmp_path / "out"
    monkeypatch.setattr(host, "free_bytes", lambda path: 1024)
    with pytest.raises(
        host.DiskSpaceError, match=r"the export \(vectors\) needs [\d,]+ bytes in .*out/quickstart and 1,024"
    ):
        export(workdir, out, formats="vectors", log=None)
    monkeypatch.undo()
    with pytest.raises(UserError, match=r"dataset.pt would hold 0.0 GiB .* more than --data_limit_gib 1e-06: raise it"):
        export(workdir, out, formats="vectors", with_data=True, data_limit_gib=1e-6, log=None)
    assert not out.exists() and not (workdir / "exports.json").exists()


def test_streamed_safetensors_have_the_bytes_of_safetensors_own_writer(tmp_path):
    """`write_safetensors` (tensors written chunk by chunk) against safetensors' `save_file`:
    every dtype it knows, empty and 1-3 dimensional tensors, names that sort across dtypes."""
    rng = np.random.default_rng(0)
    for trial in range(12):
        tensors = {}
        for i, dtype in enumerate(rng.choice(list(SAFETENSORS_DTYPES), size=int(rng.integers(1, 8)))):
            shape = tuple(int(n) for n in rng.integers(0, 5, size=int(rng.integers(1, 4))))
            tensors[f"t{int(rng.integers(0, 100))}_{i}:é"] = (rng.normal(size=shape) * 10).astype(dtype)
        save_file(tensors, str(tmp_path / "theirs"))
        chunked = {name: (a.dtype, a.shape, np.array_split(a, 3)) for name, a in tensors.items()}
        write_safetensors(tmp_path / "ours", chunked)
        assert (tmp_path / "ours").read_bytes() == (tmp_path / "theirs").read_bytes(), trial
