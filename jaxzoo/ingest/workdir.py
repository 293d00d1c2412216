"""Writes what a reader read into a jaxzoo workdir; `ingest(...)` picks the reader by the source's files.

The workdir is written as training writes one (config.json with the zoo's identity, models.json,
metrics.jsonl, one Orbax checkpoint per epoch holding the population's params [M, ...] and the
epoch's metrics), so `python -m jaxzoo.analyze`, `jaxzoo.benchmark`, `jaxzoo.export` and
`jaxzoo.read_zoo` read it like a trained zoo. The checkpoints hold no optimizer state (the
sources' is not converted); ingest.json records where the zoo came from.

Datasets: `--dataset NAME` (any jaxzoo data.name), else what the source says (`trials`,
`small_cnn_zoo`). Nothing is loaded: the data is needed only by the commands that evaluate models
(analyze).

Memory: a block of models at a time (`jaxzoo.zoo.blocks.READ_BYTES` of params, read from the
source and written as checkpoint blocks), whatever the zoo's size.

Incomplete models (a checkpoint or result line missing) are left out, named in one log line and
in ingest.json (`left_out`: name and reason). Bad input (a damaged zip, missing fields, nothing
complete, tensors that do not fit the model type, mixed architectures, a workdir holding another
zoo without --overwrite) ends with one line naming the file and the fix; the zoo is written into
a hidden folder next to the workdir and moved into place when complete, so nothing is left in
the workdir on failure.
"""

from __future__ import annotations

import json
import pathlib
import shutil
import time

import numpy as np
from ml_collections import ConfigDict

from jaxzoo.config import describe_difference, identity, to_json_dict
from jaxzoo.data import parse_name
from jaxzoo.errors import UserError
from jaxzoo.host import check_destination, move_into_place
from jaxzoo.ingest.common import IngestError, Plan, open_source
from jaxzoo.ingest.small_cnn_zoo import small_cnn_zoo_files, small_cnn_zoo_plan
from jaxzoo.ingest.trials import trials_plan
from jaxzoo.zoo import blocks, checkpoint
from jaxzoo.zoo.reader import read_zoo

PROVENANCE = "ingest.json"


def workdir_status(target: pathlib.Path, zoo_identity: dict, overwrite: bool) -> str:
    """'fresh', 'same' (it holds this zoo, complete) or 'replace'; IngestError when it may not be written."""
    if target.exists() and not target.is_dir():
        raise IngestError(f"--workdir {target} is a file: choose another --workdir")
    if not target.exists() or not any(target.iterdir()):
        return "fresh"
    if not any((target / name).exists() for name in ("config.json", "checkpoints", "metrics.jsonl")):
        raise IngestError(f"--workdir {target} exists and is not a jaxzoo workdir: choose another --workdir")
    try:
        existing = checkpoint.read_config(target)["identity"]
    except UserError:
        existing = None
    if existing == zoo_identity:
        try:
            read_zoo(target)
            return "same"
        except UserError:
            pass
    if not overwrite:
        what = describe_difference(existing, zoo_identity) if existing else "unreadable config.json"
        raise IngestError(
            f"--workdir {target} holds another zoo ({what or 'unfinished'}): pass --overwrite to "
            "replace it, or choose another --workdir"
        )
    return "replace"


def write_workdir(plan: Plan, target: pathlib.Path, overwrite: bool, log) -> dict:
    """Writes the plan's zoo into `target` through a hidden sibling folder (moved into place when
    complete; removed on failure) -> the report."""
    resolved = to_json_dict(plan.config)
    zoo_identity = identity(ConfigDict(resolved))
    zoo_identity["dataset"] = plan.dataset_record
    report = {"workdir": str(target), "format": plan.format, "models": len(plan.table), "epochs": plan.num_epochs + 1}
    if workdir_status(target, zoo_identity, overwrite) == "same":
        log(f"{target} already holds this zoo: nothing to do")
        return {**report, "written": 0}
    partial = target.parent / f".{target.name}.ingest-partial"
    created = next((p for p in reversed((target.parent, *target.parent.parents)) if not p.exists()), None)
    shutil.rmtree(partial, ignore_errors=True)
    try:
        checkpoint.prepare_workdir(partial, zoo_identity, resolved, plan.table)
        model_ids = np.array([row["model_id"] for row in plan.table])
        writer = checkpoint.open_writer(partial, async_save=False)
        model_bytes = blocks.bytes_per_model(plan.read_epoch(0, (0, 1))[0])
        size = blocks.models_per_read(model_bytes)
        try:
            for epoch in range(plan.num_epochs + 1):
                start = time.time()
                writer.begin(epoch, nbytes=model_bytes * len(model_ids))
                parts = []
                for first in range(0, len(model_ids), size):  # a block of models at a time
                    state, metrics = plan.read_epoch(epoch, (first, min(first + size, len(model_ids))))
                    writer.write_models(epoch, first, state)
                    parts.append(metrics)
                    del state
                metrics = {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}
                writer.write_metrics(epoch, metrics)
                writer.wait(epoch)
                lines = checkpoint.metrics_lines(epoch, model_ids, metrics)
                if epoch == 0:
                    checkpoint.rewrite_metrics_file(partial, lines)
                else:
                    checkpoint.append_metrics(partial, lines)
                log(f"epoch {epoch}/{plan.num_epochs}: {len(model_ids)} models in {time.time() - start:.1f} s")
        finally:
            writer.close()
        (partial / PROVENANCE).write_text(json.dumps(plan.provenance, indent=1))
        move_into_place(partial, target)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        if created is not None:
            shutil.rmtree(created, ignore_errors=True)
        raise
    return {**report, "written": plan.num_epochs + 1}


def ingest(source, workdir, dataset: str | None = None, overwrite: bool = False, log=print) -> dict:
    """Ingests the published zoo at `source` (trial folders, their .zip, or a Small CNN Zoo folder)
    into the jaxzoo workdir `workdir`; returns a report {workdir, format, models, epochs, written,
    seconds}. `dataset` overrides the data.name found in the source; `overwrite` replaces a
    workdir that holds another zoo. `log` receives progress lines (None: silent)."""
    log = log or (lambda message: None)
    start = time.time()
    target = pathlib.Path(workdir).absolute()
    check_destination(target, "workdir")
    if dataset is not None:
        try:
            parse_name(dataset)
        except UserError as error:
            raise IngestError(f"--dataset: {error}") from None
    path = pathlib.Path(source).absolute()
    files = small_cnn_zoo_files(path) if path.is_dir() else None
    if files is not None:
        log(f"reading the Small CNN Zoo in {path} ...")
        plan = small_cnn_zoo_plan(path, files, dataset, log)
        report = write_workdir(plan, target, overwrite, log)
    else:
        handle = open_source(path)
        try:
            log(f"reading the trial folders in {path} ...")
            plan = trials_plan(handle, dataset, log)
            report = write_workdir(plan, target, overwrite, log)
        finally:
            handle.close()
    report["seconds"] = time.time() - start
    return report
