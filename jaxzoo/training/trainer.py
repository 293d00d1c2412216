"""`train_and_evaluate(config, workdir)`: trains (or resumes) a classification zoo.

The library entry point of `python -m jaxzoo.train` (as the flax examples' `train.py`): the
config is validated, the dataset loaded and the workdir checked before anything is written;
then the zoo's `ZooRun` trains epoch by epoch, each checkpointed (`jaxzoo.training.loop`).
Rerunning the same call resumes from the last complete epoch.
"""

from __future__ import annotations

import logging
import os
import pathlib
from typing import Any

import jax
import ml_collections

from jaxzoo.config import ConfigError, dataset_identity, identity, load_config_dataset, to_json_dict, validate
from jaxzoo.host import check_destination
from jaxzoo.models.registry import ModelError, check_custom_model
from jaxzoo.training import distributed
from jaxzoo.training.loop import train_in_workdir
from jaxzoo.training.population import build_population, expand_grid
from jaxzoo.training.run import ZooRun
from jaxzoo.zoo.shards import shard_part

log = logging.getLogger("jaxzoo")


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str | os.PathLike) -> dict[str, Any]:
    """Trains (or resumes) the classification zoo of `config` in `workdir`.

    Returns {"epoch", "metrics" (the last epoch's, [M] per name), "workdir"}. Raises
    UserError subclasses on bad input before anything in the workdir is changed. A job-array
    shard (`config.num_shards` > 1) trains its block of models in `<workdir>/shards/<i>-of-<n>`.
    """
    validate(config)
    check_destination(pathlib.Path(workdir), "workdir")
    table = expand_grid(config.population, config.seed)
    dataset = load_config_dataset(config)
    try:
        check_custom_model(config.model, dataset.image_shape, dataset.num_classes)
    except ModelError as error:
        raise ConfigError(str(error)) from None
    zoo_identity = identity(config)
    zoo_identity["dataset"] = dataset_identity(config, dataset)
    table, workdir = shard_part(config, table, workdir, zoo_identity)  # a job-array shard: its block
    population = build_population(table[distributed.process_block(len(table))], config.population)

    def make_run(path: pathlib.Path) -> ZooRun:
        log.info("zoo %s: writing to %s", config.name, path)
        log.info(
            "data %s from %s: train/val/test %d/%d/%d",
            dataset.name,
            dataset.source,
            len(dataset.train[1]),
            len(dataset.val[1]),
            len(dataset.test[1]),
        )
        run = ZooRun(config, population, dataset)
        log.info(
            "zoo %s: %d models (process %d of %d: %d) in %d group(s) compiled apart, %d chunk(s) of up to %d on %d "
            "device(s), %d steps/epoch, %d per call",
            config.name,
            len(table),
            jax.process_index(),
            jax.process_count(),
            population.size,
            len(run.groups),
            len(run.chunks),
            run.plan.chunk_size,
            jax.local_device_count(),
            run.steps_per_epoch,
            run.plan.steps_per_call,
        )
        if run.group_plan is not None:
            log.info(run.group_plan.describe())
        return run

    num_epochs = config.training.num_epochs
    path, metrics = train_in_workdir(
        workdir,
        zoo_identity,
        to_json_dict(config),
        table,
        make_run,
        num_epochs,
        async_save=config.runtime.async_checkpointing,
        show_progress=config.runtime.progress,
    )
    return {"epoch": num_epochs, "metrics": metrics, "workdir": str(path)}
