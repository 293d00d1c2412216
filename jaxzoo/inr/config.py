"""INR zoo configs: the base every INR preset overrides, and its validation at the boundary.

Sections: `data` (which dataset, where it lies), `images` (which of its images get a model),
`model` (the SIREN), `training` (steps, optimizer, early stop), `population` (seeds: k + 1
seeds fit every image k + 1 times from other random inits, NFN's augmentation copies) and
`runtime` (how to run, not what to fit). An epoch is `training.steps_per_epoch` steps: every
epoch is checkpointed, epoch 0 holds the fresh models.
"""

from __future__ import annotations

import ml_collections

from jaxzoo.config.base import INR, inr_identity  # noqa: F401  (inr_identity: re-exported)
from jaxzoo.config.checks import (
    MAX_MODELS,
    MAX_SEED,
    ConfigError,
    check,
    check_choices,
    check_int,
    check_seeds,
    is_number,
)
from jaxzoo.data import DATASETS, DEFAULT_VAL_FRACTION, SOURCES, describe_dataset
from jaxzoo.inr.siren import BIAS_INITS, COORDINATES, FIRST_INITS, LAST_INITS, SINES, TARGET_RANGES
from jaxzoo.training.optimizers import optimizer_entry

TASK = INR
IMAGE_SPLITS = ("train", "test")
INR_ARCHS = ("siren",)


def is_inr(config) -> bool:
    """Whether a config (ConfigDict or its JSON dict) describes an INR zoo."""
    return config.get("task", "classification") == TASK


def base_inr_config() -> ml_collections.ConfigDict:
    """One SIREN per MNIST image of the embedded mnist_5k (the SIREN paper's init, Adam)."""
    config = ml_collections.ConfigDict()
    config.task = TASK
    config.name = "inr"
    config.seed = 42  # zoo seed (recorded; each model's randomness comes from its seed and image)
    config.notes = ""  # the preset's source: what is known and what is chosen
    # Job-array mode: shard k of n fits the k-th block of models into <workdir>/shards/k-of-n
    # (join them with `python -m jaxzoo.merge`); not part of the zoo's identity.
    config.shard_index = 0
    config.num_shards = 1

    config.data = ml_collections.ConfigDict()
    config.data.name = "mnist_5k"
    config.data.image_size = 28
    config.data.source = "auto"
    config.data.raw_dir = ""
    config.data.tfds_dir = ""
    config.data.cache_dir = ""

    config.images = ml_collections.ConfigDict()
    # Source splits whose images get a model, in this order; image index = position in
    # train-then-test order (a source's own val split counts as train, after it).
    config.images.splits = ("train", "test")
    config.images.first = 0  # the first image (in that order) that gets a model
    config.images.count = 0  # how many images from `first` (0: all the rest)

    config.model = ml_collections.ConfigDict()
    config.model.arch = "siren"
    config.model.widths = (32, 32)  # hidden sine layers; then a linear layer to the channels
    config.model.w0_first = 30.0
    config.model.w0_hidden = 30.0
    config.model.first_init = "siren"  # siren: U(+-1/fan_in); sine: U(+-sqrt(6/fan_in)/w0_first)
    config.model.bias_init = "torch_default"  # sine layers' biases: torch_default U(+-1/sqrt(fan_in)) | zero
    config.model.last_init = "sine"  # sine: U(+-sqrt(6/fan_in)/w0_hidden); torch_default: U(+-1/sqrt(fan_in))
    config.model.output_offset = 0.0  # added to every output (DWSNets: 0.5)
    config.model.coordinates = "ij"  # ij: input (row, column); xy: (column, row)
    config.model.target_range = "unit"  # unit: pixels in [0, 1]; symmetric: in [-1, 1]

    config.training = ml_collections.ConfigDict()
    config.training.num_steps = 1000  # full-image steps per model at most
    config.training.steps_per_epoch = 100  # a checkpoint every this many steps
    config.training.optimizer = "adam"  # a name of jaxzoo.training.optimizers's registry (weight decay 0)
    config.training.lr = 1e-4
    config.training.target_psnr = 0.0  # dB; a model that reaches it stops and keeps its weights (0: never)

    config.population = ml_collections.ConfigDict()
    config.population.num_seeds = 1  # fits per image: seed first_seed + s for copy s
    config.population.first_seed = 0
    config.population.shared_init = False  # True: every image's model of a seed starts from one init

    config.runtime = ml_collections.ConfigDict()
    config.runtime.chunk_size = 0  # models per compiled call; 0: chosen per backend
    config.runtime.steps_per_call = 0  # steps per compiled call; 0: the whole epoch
    config.runtime.progress = True
    config.runtime.async_checkpointing = True
    config.runtime.sine = "auto"  # auto | polynomial | exact (jaxzoo.inr.siren.sine_function)
    return config


def _check_float(field: str, value, low: float, high: float, meaning: str = "") -> None:
    check(
        is_number(value) and low <= float(value) <= high,
        f"{field}={value!r} is out of range: use a number in [{low}, {high}]{meaning}",
    )


def validate_inr(config: ml_collections.ConfigDict) -> None:
    """Raises ConfigError naming the first impossible value and its fix."""
    known = set(base_inr_config().keys())
    unknown = sorted(set(config.keys()) - known)
    check(
        not unknown, f"{unknown[0] if unknown else ''}: not a field of an INR config; the sections are {sorted(known)}"
    )
    data, model, training, pop, rt = config.data, config.model, config.training, config.population, config.runtime
    check_int("num_shards", config.num_shards, 1, MAX_MODELS, " (1: no job array)")
    check_int("shard_index", config.shard_index, 0, config.num_shards - 1)
    if isinstance(data.name, str) and ":" not in data.name:
        check_choices("data.name", data.name, DATASETS)
    check_choices("data.source", data.source, SOURCES)
    info = describe_dataset(data.name, val_fraction=DEFAULT_VAL_FRACTION) if ":" not in str(data.name) else None
    if info is not None:
        check(
            info.accepts_size(data.image_size),
            f"data.image_size={data.image_size} is not a size of {info.name}: use {info.size_rule}",
        )
    splits = tuple(config.images.splits)
    check(
        len(splits) > 0 and len(set(splits)) == len(splits) and set(splits) <= set(IMAGE_SPLITS),
        f"images.splits={splits!r}: name each of {IMAGE_SPLITS} at most once, at least one",
    )
    check_int("images.first", config.images.first, 0, 2**31 - 1)
    check_int("images.count", config.images.count, 0, MAX_MODELS, " (0: all from images.first)")
    check_choices("model.arch", model.arch, INR_ARCHS)
    widths = tuple(model.widths)
    check(
        len(widths) >= 1 and all(isinstance(w, int) and not isinstance(w, bool) and 1 <= w <= 4096 for w in widths),
        f"model.widths={widths!r}: give one or more hidden widths, each an int in 1..4096",
    )
    _check_float("model.w0_first", model.w0_first, 1e-3, 1e4)
    _check_float("model.w0_hidden", model.w0_hidden, 1e-3, 1e4)
    check_choices("model.first_init", model.first_init, FIRST_INITS)
    check_choices("model.bias_init", model.bias_init, BIAS_INITS)
    check_choices("model.last_init", model.last_init, LAST_INITS)
    _check_float("model.output_offset", model.output_offset, -1e3, 1e3)
    check_choices("model.coordinates", model.coordinates, COORDINATES)
    check_choices("model.target_range", model.target_range, tuple(TARGET_RANGES))
    check_int("training.num_steps", training.num_steps, 1, 10**7)
    check_int(
        "training.steps_per_epoch", training.steps_per_epoch, 1, training.num_steps, " (at most training.num_steps)"
    )
    check(
        training.num_steps % training.steps_per_epoch == 0,
        f"training.steps_per_epoch={training.steps_per_epoch} does not divide training.num_steps="
        f"{training.num_steps}: choose a divisor, so every epoch has the same steps",
    )
    try:
        entry = optimizer_entry(training.optimizer)
    except ValueError as error:
        raise ConfigError(f"training.optimizer: {error}") from None
    check("lr" in entry.hyperparams, f"training.optimizer={training.optimizer!r} reads no learning rate")
    _check_float("training.lr", training.lr, 1e-12, 10.0)
    _check_float("training.target_psnr", training.target_psnr, 0.0, 200.0, " (dB; 0: no early stop)")
    check_seeds(pop.num_seeds, pop.first_seed)
    check(isinstance(pop.shared_init, bool), f"population.shared_init={pop.shared_init!r} must be True or False")
    check_int("seed", config.seed, 0, MAX_SEED, " (the zoo seed)")
    check_int("runtime.chunk_size", rt.chunk_size, 0, MAX_MODELS, " (0: automatic)")
    check_int(
        "runtime.steps_per_call",
        rt.steps_per_call,
        0,
        training.steps_per_epoch,
        " (0: the whole epoch; at most training.steps_per_epoch)",
    )
    check(
        rt.steps_per_call == 0 or training.steps_per_epoch % rt.steps_per_call == 0,
        f"runtime.steps_per_call={rt.steps_per_call} does not divide training.steps_per_epoch="
        f"{training.steps_per_epoch}: choose a divisor",
    )
    for flag in ("progress", "async_checkpointing"):
        check(isinstance(rt[flag], bool), f"runtime.{flag}={rt[flag]!r} must be True or False")
    check_choices("runtime.sine", rt.sine, SINES)
