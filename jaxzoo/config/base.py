"""Zoo configs: the base config every zoo overrides, validation at the boundary, identity.

A config has the sections `data`, `model`, `training`, `population` (the grid of generating
factors) and `runtime` (how to run, not what to train). Everything outside `runtime` and
`training.num_epochs` defines the zoo: a workdir trained under one identity refuses another.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import pathlib

import ml_collections
from ml_collections import config_dict

from jaxzoo.config.checks import (
    MAX_MODELS,
    MAX_SEED,
    ConfigError,
    check,
    check_choices,
    check_int,
    check_numbers,
    check_seeds,
)
from jaxzoo.data import (
    DATASETS,
    DEFAULT_VAL_FRACTION,
    SOURCES,
    DataOptions,
    Dataset,
    DataUnavailableError,
    describe_dataset,
    is_registry_name,
    load_dataset,
)
from jaxzoo.models.cnn import ACTIVATIONS, INITS
from jaxzoo.models.cpu_conv import CONV_IMPLEMENTATIONS
from jaxzoo.models.registry import (
    MODEL_ARCHS,
    RESNET_ARCHS,
    ModelError,
    check_arch,
    import_object,
    is_custom,
    takes_dropout_rate,
)
from jaxzoo.training.augment import AUGMENTATIONS
from jaxzoo.training.factors import FACTOR_TABLE, OPTIMIZER_FACTORS, grid_factors, values_of
from jaxzoo.training.optimizers import check_optimizer, optimizer_entry
from jaxzoo.training.population import SEED_MODES
from jaxzoo.training.precision import COMPUTE_DTYPES
from jaxzoo.training.schedules import SCHEDULES, schedule_options

CLASSIFICATION = "classification"  # the task of every zoo but INR zoos (config.task)
INR = "inr"  # the task of INR zoos (jaxzoo.inr: one SIREN per image)
SCHEDULERS = ("none", "one_cycle")
STATE_PLACEMENTS = ("auto", "device", "host")
GROUP_PROGRAMS = ("auto", "split", "merged")  # runtime.group_programs (jaxzoo.training.plan)


def config_kind(config) -> str:
    """The kind of zoo a config (ConfigDict or its JSON dict) describes: its `task`."""
    return config.get("task", CLASSIFICATION)


def last_epoch(config) -> int:
    """The last epoch of a zoo (ConfigDict or its JSON dict): `training.num_epochs`, or for an
    INR zoo `training.num_steps // training.steps_per_epoch` (an epoch is that many steps)."""
    training = config["training"]
    if config_kind(config) == INR:
        return int(training["num_steps"]) // int(training["steps_per_epoch"])
    return int(training["num_epochs"])


def base_config() -> ml_collections.ConfigDict:
    """Defaults shared by every CNN zoo (the original's protocol)."""
    config = ml_collections.ConfigDict()
    config.name = "default"
    config.seed = 42  # zoo seed: draws the Hyp-10-rand seeds; model randomness uses model seeds
    # Job-array mode: shard k of n trains models k::n into <workdir>/shards/k-of-n (merge with
    # `python -m jaxzoo.merge`); with jax.distributed the processes split the zoo themselves.
    config.shard_index = 0
    config.num_shards = 1
    config.notes = ""  # where this zoo follows the original code against the paper

    config.original = ml_collections.ConfigDict()  # where the paper's zoo lies in the original
    config.original.experiment = ""
    config.original.net_dir = ""

    config.data = ml_collections.ConfigDict()
    config.data.name = "mnist_5k"
    config.data.image_size = 28
    config.data.max_examples_per_split = 0  # 0: whole splits; N: the first N of each (quick runs)
    config.data.source = "auto"  # auto | embedded | raw | tfds
    config.data.raw_dir = ""  # folder with the published files (source raw)
    config.data.tfds_dir = ""  # TFDS data_dir ('' : TFDS's default)
    config.data.cache_dir = ""  # preprocessed cache ('' : $JAXZOO_DATA_DIR or ~/.cache/jaxzoo)
    # Datasets beyond the registry: 'tfds:NAME', 'npz:PATH', 'py:package.module:function' (or the
    # function); without a val split of their own, val is this part of train (seed-42 split).
    config.data.val_fraction = DEFAULT_VAL_FRACTION

    config.model = ml_collections.ConfigDict()
    config.model.arch = "cnn_s"  # cnn_s | cnn_m | cnn | mlp | resnet18 (jaxzoo.models.registry)
    config.model.convs = ()  # cnn: ((features, kernel, pool), ...)
    config.model.widths = ()  # cnn, mlp: widths of the hidden fully connected layers
    config.model.module = ""  # your own Flax module, 'package.module:Class' (overrides arch)
    config.model.kwargs = ml_collections.ConfigDict()  # its constructor's arguments

    config.training = ml_collections.ConfigDict()
    config.training.num_epochs = 50
    config.training.batch_size = 10
    config.training.scheduler = "none"  # none | one_cycle (PyTorch OneCycleLR with momentum cycle)
    config.training.augmentation = "none"  # none | crop_flip | flip_rotate (on device, per model)
    # float32 (exact, as the original) | tensorfloat32 (GPU tensor cores) | bfloat16; params stay float32
    config.training.compute_dtype = "float32"
    # Options of the `schedule` factor's schedules, by name, e.g. {"step": {"gamma": 0.5}}.
    config.training.schedule_options = ml_collections.ConfigDict()

    config.population = ml_collections.ConfigDict()
    config.population.seed_mode = "range"
    config.population.num_seeds = 1000
    config.population.first_seed = 1
    config.population.activation = ("tanh",)
    config.population.init = ("uniform",)
    config.population.optimizer = ("adam",)
    config.population.lr = (3e-4,)
    config.population.weight_decay = (0.0,)
    config.population.dropout = (0.0,)
    config.population.momentum = 0.9  # SGD / RMSprop; a scalar is one value, a tuple a factor
    # Optional factors (jaxzoo.training.factors): () leaves one out of the grid (optimizer defaults apply).
    config.population.b1 = ()
    config.population.b2 = ()
    config.population.eps = ()
    config.population.alpha = ()
    config.population.schedule = ()  # constant | cosine | step | warmup_cosine | one_cycle
    config.population.train_fraction = ()  # share of the train split per model, in (0, 1]
    config.population.label_noise = ()  # probability of a flipped train label per model, in [0, 1)
    config.population.max_models = 0  # 0: the whole grid; N: its first N models

    config.runtime = ml_collections.ConfigDict()
    config.runtime.chunk_size = 0  # models per compiled call; 0: chosen from memory
    config.runtime.steps_per_call = 0  # training steps per compiled call; 0: chosen from memory
    config.runtime.eval_batch_size = 0  # images per evaluation batch (shared by all models); 0: auto
    config.runtime.progress = True
    # Orbax writes in its background threads; either way each epoch waits for its commit before
    # it is recorded in metrics.jsonl (a failed save stops the run at that epoch).
    config.runtime.async_checkpointing = True
    # CNN convolutions: 'auto' (the C++ kernel on CPU when it builds, else XLA), 'xla', 'cpu_kernel'.
    # Both compute the same sums; they differ by float rounding only.
    config.runtime.conv = "auto"
    # Where the population's state lives between compiled calls: 'device' (it never leaves the
    # accelerator inside an epoch), 'host' (numpy; each chunk goes to the device for its epoch) or
    # 'auto' (device on GPU/TPU when it fits in a quarter of the free memory, host on CPU).
    config.runtime.state_placement = "auto"
    # Static factors one program may compute per model (activation, dropout): 'auto' (a cost
    # model weighs compile time against step time: small zoos merge, large ones split),
    # 'split' (a program per value) or 'merged'. A model's numbers are the same either way.
    config.runtime.group_programs = "auto"
    return config


def validate(config: ml_collections.ConfigDict) -> None:
    """Raises ConfigError naming the first impossible value and its fix."""
    check_numbers(
        "data.val_fraction", (config.data.get("val_fraction", DEFAULT_VAL_FRACTION),), 0.0, 1.0, low_open=True
    )
    if isinstance(config.data.name, str) and ":" not in config.data.name:
        check_choices("data.name", config.data.name, DATASETS)
    check_choices("data.source", config.data.source, SOURCES)
    check_choices("model.arch", config.model.arch, MODEL_ARCHS)
    info = describe_dataset(
        config.data.name, data_options(config), config.data.get("val_fraction", DEFAULT_VAL_FRACTION)
    )
    check(
        info.accepts_size(config.data.image_size),
        f"data.image_size={config.data.image_size} is not a size of {info.name}: use {info.size_rule}",
    )
    training = config.training
    check_choices("training.scheduler", training.scheduler, SCHEDULERS)
    check_choices("training.augmentation", training.augmentation, AUGMENTATIONS)
    check_choices("training.compute_dtype", training.compute_dtype, COMPUTE_DTYPES)
    if is_custom(config.model):
        _validate_custom(config)
    if config.model.arch in RESNET_ARCHS and not is_custom(config.model):
        _validate_resnet(config)
    else:
        if not is_custom(config.model):
            try:
                check_arch(config.model, config.data.image_size)
            except ModelError as error:
                raise ConfigError(str(error)) from None
        for field, value, default in (
            ("scheduler", training.scheduler, "none"),
            ("augmentation", training.augmentation, "none"),
        ):
            check(
                value == default,
                f"training.{field}={value!r} is for ResNet zoos: set it to {default!r} "
                f"for model.arch={config.model.arch}",
            )
    check_int("seed", config.seed, 0, MAX_SEED, " (the zoo seed)")
    check_int("num_shards", config.num_shards, 1, MAX_MODELS, " (1: no job array)")
    check_int("shard_index", config.shard_index, 0, config.num_shards - 1)
    check_int("training.num_epochs", config.training.num_epochs, 1, 10_000)
    check_int("data.max_examples_per_split", config.data.max_examples_per_split, 0, 2**31 - 1, " (0: all)")
    train_size = info.split_sizes[0]
    if config.data.max_examples_per_split:
        train_size = min(train_size, config.data.max_examples_per_split)
    check(
        isinstance(config.training.batch_size, int) and 1 <= config.training.batch_size <= train_size,
        f"training.batch_size={config.training.batch_size!r} is out of range: use 1..{train_size} "
        f"(the {info.name} train split)",
    )
    if training.scheduler == "one_cycle":
        total_steps = config.training.num_epochs * math.ceil(train_size / config.training.batch_size)
        check(
            0.3 * total_steps - 1 > 0,
            f"OneCycle needs at least 4 optimizer steps, this run has {total_steps}: "
            "train more epochs or use a smaller training.batch_size",
        )
    pop = config.population
    check_choices("population.seed_mode", pop.seed_mode, SEED_MODES)
    check_seeds(pop.num_seeds, pop.first_seed)
    _validate_factors(config)
    grid_models = pop.num_seeds * math.prod(len(values_of(pop, name)) for name in grid_factors(pop))
    check_int(
        "population.max_models",
        pop.max_models,
        0,
        min(grid_models, MAX_MODELS),
        f" (0: all; the grid has {grid_models} models)",
    )
    check(
        pop.max_models or grid_models <= MAX_MODELS,
        f"the grid has {grid_models} models, more than jaxzoo trains in one zoo ({MAX_MODELS}): use fewer "
        "population.num_seeds or factor values, or set population.max_models",
    )
    rt = config.runtime
    check_int("runtime.chunk_size", rt.chunk_size, 0, MAX_MODELS, " (0: automatic)")
    check_int("runtime.steps_per_call", rt.steps_per_call, 0, 2**31 - 1, " (0: automatic)")
    check_int("runtime.eval_batch_size", rt.eval_batch_size, 0, 2**31 - 1, " (0: automatic)")
    for flag in ("progress", "async_checkpointing"):
        check(isinstance(rt[flag], bool), f"runtime.{flag}={rt[flag]!r} must be True or False")
    check(rt.conv in CONV_IMPLEMENTATIONS, f"runtime.conv={rt.conv!r} is unknown; choose one of {CONV_IMPLEMENTATIONS}")
    check_choices("runtime.state_placement", rt.get("state_placement", "auto"), STATE_PLACEMENTS)
    check_choices("runtime.group_programs", rt.get("group_programs", "auto"), GROUP_PROGRAMS)
    check(
        rt.conv != "cpu_kernel" or config.training.compute_dtype != "bfloat16",
        "training.compute_dtype='bfloat16' cannot run on runtime.conv='cpu_kernel' (float32 only): "
        "use runtime.conv='auto' or 'xla'",
    )


def _factor_choices(name: str) -> dict | tuple | None:
    return {"activation": ACTIVATIONS, "init": INITS, "schedule": SCHEDULES}.get(name)


def _validate_factors(config: ml_collections.ConfigDict) -> None:
    """Every factor of the table: a tuple of known names or of numbers in range."""
    pop = config.population
    unknown = sorted(set(pop) - {f.name for f in FACTOR_TABLE} - set(_POPULATION_SETTINGS))
    check(
        not unknown,
        f"population.{unknown[0] if unknown else ''} is not a factor: choose from "
        f"{[f.name for f in FACTOR_TABLE]} (jaxzoo.training.factors), or remove it",
    )
    for factor in FACTOR_TABLE:
        field = f"population.{factor.name}"
        value = pop.get(factor.name, ())
        scalar_ok = factor.name == "momentum"  # the original's scalar momentum
        if scalar_ok and not isinstance(value, (tuple, list)):
            check_numbers(field, (value,), factor.low, factor.high, factor.low_open)
            continue
        check(isinstance(value, (tuple, list)), f"{field}={value!r} must be a tuple of values, e.g. ({value!r},)")
        if factor.optional and not value:
            continue
        if factor.name == "optimizer":
            check(len(value) > 0, f"{field} is empty: give at least one value")
            for name in value:
                try:
                    check_optimizer(name)
                except ValueError as error:
                    raise ConfigError(f"{field}: {error}") from None
        elif factor.kind == "categorical":
            check_choices(field, value, _factor_choices(factor.name))
        elif factor.high_open:
            check_numbers(field, value, factor.low, factor.high, factor.low_open)
        else:
            check_numbers(field, value, factor.low, factor.high + 1e-12, factor.low_open)
    readers = {name for opt in pop.optimizer for name in optimizer_entry(opt).hyperparams}
    for name in OPTIMIZER_FACTORS:
        check(
            not values_of(pop, name) or name in readers,
            f"population.{name} is varied but no optimizer of the zoo reads it ({list(pop.optimizer)}): "
            f"remove it or add an optimizer that does",
        )
    for name, options in to_plain(config.training.get("schedule_options")).items():
        check(name in SCHEDULES, f"training.schedule_options has unknown schedule {name!r}: choose from {SCHEDULES}")
        try:
            schedule_options(name, options)
        except ValueError as error:
            raise ConfigError(f"training.schedule_options: {error}") from None
    fractions = values_of(pop, "train_fraction")
    check(
        not ("one_cycle" in values_of(pop, "schedule") and any(f < 1 for f in fractions)),
        "schedule one_cycle needs the same number of updates for every model: drop it, or the "
        "population.train_fraction values below 1",
    )


_POPULATION_SETTINGS = ("seed_mode", "num_seeds", "first_seed", "max_models")


def _validate_custom(config: ml_collections.ConfigDict) -> None:
    """A custom module: importable; the population's activation reaches it only through an
    `activation` field, and its dropout factor through a `dropout_rate` argument."""
    try:
        cls = import_object(config.model.module, "model.module")
    except ModelError as error:
        raise ConfigError(str(error)) from None
    fields = {f.name for f in dataclasses.fields(cls)} if dataclasses.is_dataclass(cls) else set()
    pop = config.population
    check(
        len(pop.activation) == 1 or "activation" in fields,
        "population.activation varies but model.module has no `activation` field: give it one "
        "(a name, e.g. 'relu') or use a single activation",
    )
    check(
        all(rate == 0 for rate in pop.dropout) or takes_dropout_rate(cls),
        "population.dropout reaches a custom module only through a `dropout_rate` argument of its __call__ "
        "(each model's rate): add one, or set population.dropout to (0.0,) and use nn.Dropout in model.module",
    )


def _validate_resnet(config: ml_collections.ConfigDict) -> None:
    """ResNet zoos follow the original's ResNet protocol: SGD, kaiming_uniform, no dropout."""
    pop = config.population
    for field, value, allowed in (
        ("optimizer", pop.optimizer, ("sgd",)),
        ("init", pop.init, ("kaiming_uniform",)),
        ("dropout", pop.dropout, (0.0,)),
    ):
        check(
            tuple(value) == allowed,
            f"population.{field}={tuple(value)!r} is not supported by model.arch={config.model.arch}: use {allowed!r}",
        )
    check(
        tuple(pop.activation) == ("relu",),
        f"population.activation={tuple(pop.activation)!r}: ResNet-18 uses ReLU, set population.activation=('relu',)",
    )


def to_json_dict(config: ml_collections.ConfigDict) -> dict:
    """The config as plain JSON data (tuples become lists; callables and classes their
    'module:qualname', a dataset function its 'py:module:qualname' name)."""
    data = json.loads(config.to_json(json_encoder_cls=_ConfigEncoder))
    if callable(config.data.name):
        data["data"]["name"] = f"py:{data['data']['name']}"
    return data


def to_plain(value) -> dict:
    """A ConfigDict (or dict) as a plain dict of plain values."""
    return value.to_dict() if isinstance(value, ml_collections.ConfigDict) else dict(value or {})


class _ConfigEncoder(config_dict.CustomJSONEncoder):
    def default(self, obj):
        if callable(obj) and hasattr(obj, "__qualname__"):
            return f"{obj.__module__}:{obj.__qualname__}"
        return super().default(obj)


# Fields added after zoos were first trained: at these values they are left out of the
# identity, so a zoo trained before they existed keeps its identity and resumes.
NEUTRAL_FIELDS = {
    "population": {"b1": [], "b2": [], "eps": [], "alpha": [], "schedule": [], "train_fraction": [], "label_noise": []},
    "training": {"schedule_options": {}},
    "model": {"convs": [], "widths": [], "module": "", "kwargs": {}},
    "data": {"val_fraction": DEFAULT_VAL_FRACTION},
}


LOCATION_FIELDS = ("raw_dir", "tfds_dir", "cache_dir")  # where data lies, not what it is


def identity(config: ml_collections.ConfigDict) -> dict:
    """What defines the zoo: the config without `runtime`, `notes`, shard fields, data paths and
    (without a schedule) `training.num_epochs`; an INR zoo's: `inr_identity`."""
    data = to_json_dict(config)
    if config_kind(data) == INR:
        return inr_identity(data)
    data.pop("runtime", None)
    data.pop("notes", None)  # prose about the zoo, corrected without making another zoo
    data.pop("shard_index", None)
    data.pop("num_shards", None)
    if config.training.scheduler == "none":  # a schedule over the whole run depends on its length
        data["training"].pop("num_epochs", None)
    for field in LOCATION_FIELDS:
        data["data"].pop(field, None)
    if data["data"]["name"].startswith("npz:"):  # the file's content is in the fingerprint, not its folder
        data["data"]["name"] = "npz:" + data["data"]["name"].replace("\\", "/").rsplit("/", 1)[-1]
    for section, fields in NEUTRAL_FIELDS.items():
        for field, neutral in fields.items():
            if data.get(section, {}).get(field, neutral) == neutral:
                data.get(section, {}).pop(field, None)
    if config.training.scheduler == "none" and values_of(config.population, "schedule") not in ((), ("constant",)):
        data["training"]["num_epochs"] = config.training.num_epochs  # the schedule spans the run
    return data


def inr_identity(data: dict) -> dict:
    """What defines an INR zoo (a JSON config): all but `runtime`, `notes` and data paths."""
    data = {key: value for key, value in data.items() if key not in ("runtime", "notes", "shard_index", "num_shards")}
    data["data"] = {key: value for key, value in data["data"].items() if key not in LOCATION_FIELDS}
    return data


def data_options(config: ml_collections.ConfigDict) -> DataOptions:
    return DataOptions(config.data.source, config.data.raw_dir, config.data.tfds_dir, config.data.cache_dir)


def dataset_identity(config: ml_collections.ConfigDict, dataset: Dataset) -> dict:
    """The identity's record of the data: its source and fingerprint, and for datasets beyond
    the registry what readers of the workdir cannot look up (channels, classes)."""
    record = {"source": dataset.source, "fingerprint": dataset.fingerprint}
    if not is_registry_name(config.data.name):
        record.update(channels=dataset.image_shape[-1], num_classes=dataset.num_classes)
    return record


def check_recorded_dataset(dataset: Dataset, record: dict, workdir: str | os.PathLike) -> Dataset:
    """`dataset` if it is the data the zoo in `workdir` was trained on (`record`: the identity's
    `dataset`, see `dataset_identity`), else DataUnavailableError: a reader of a workdir never
    evaluates on, or exports, data that changed after training. Ingested zoos record none."""
    recorded = record.get("fingerprint") or ""
    if recorded and dataset.fingerprint != recorded:
        raise DataUnavailableError(
            f"the data of the zoo in {pathlib.Path(workdir).absolute()} changed after training "
            f"({dataset.name}: fingerprint {dataset.fingerprint}, {recorded} when trained): restore the "
            "data it was trained on, or train a zoo on the new data in a new --workdir"
        )
    return dataset


def load_config_dataset(config: ml_collections.ConfigDict) -> Dataset:
    """The dataset a zoo config (or a workdir's stored config) trains on."""
    data = config.data
    return load_dataset(
        data.name,
        data.image_size,
        data.max_examples_per_split,
        data_options(config),
        val_fraction=data.get("val_fraction", DEFAULT_VAL_FRACTION),
    )


def comparable(stored_identity: dict) -> dict:
    """A stored identity as `identity` computes it today: identities written before `notes` left
    them still carry it."""
    return {key: value for key, value in stored_identity.items() if key != "notes"}


def identity_hash(identity_dict: dict) -> str:
    return hashlib.sha256(json.dumps(identity_dict, sort_keys=True).encode()).hexdigest()[:16]


def describe_difference(old: dict, new: dict, prefix: str = "") -> str:
    """The first field where two identities differ, as 'field: old -> new'."""
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            found = describe_difference(a, b, f"{prefix}{key}.")
            if found:
                return found
        elif a != b:
            return f"{prefix}{key}: {a!r} -> {b!r}"
    return ""
