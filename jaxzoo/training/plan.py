"""How a population is cut for the devices: models per compiled call (chunks), training steps
per call and evaluation batch, from the config or, where it says 0, from the platform and its
free memory; and the compiled calls of an epoch."""

from __future__ import annotations

import dataclasses
import itertools
import math

import jax
import numpy as np

from jaxzoo import host
from jaxzoo.models.cnn import ARCHS, MERGEABLE_ACTIVATIONS, ArchSpec

# On CPU the per-model path is memory-bound: 8 models per device and call, one device per
# core, ran fastest (docs/benchmarks.md). An accelerator takes the whole population (up to
# 4,096 models, or what fits) in one call.
DEFAULT_CHUNK_PER_DEVICE = {"cpu": 8, "gpu": 4096, "tpu": 4096}
# Images per evaluation batch. A split's loss is summed batch by batch, so the batch size must
# not depend on the chunk or the devices (else the metrics do): small on CPU (32 per model ran
# fastest: 35k images/s against 21k at 256 for one model), large on accelerators.
MAX_EVAL_BATCH = {"cpu": 32, "gpu": 1024, "tpu": 1024}
# Bytes of gathered training images per compiled call (what sets the steps per call).
GATHER_BYTES_PER_CALL = {"cpu": 64 << 20, "gpu": 1 << 30, "tpu": 1 << 30}


@dataclasses.dataclass(frozen=True)
class RunPlan:
    chunk_size: int  # models per compiled call (a multiple of the device count)
    steps_per_call: int  # training steps per compiled call
    eval_batch_size: int  # images per evaluation batch


def activation_floats_per_image(arch: ArchSpec, channels: int) -> int:
    """Floats one image produces in a forward pass (patches and layer outputs)."""
    size, total = arch.image_size, 0
    for conv in arch.convs:
        out = size - conv.kernel + 1
        total += out * out * (conv.kernel**2 * channels + 2 * conv.features)
        size = out // 2 if conv.pool else out
        channels = conv.features
    return total + sum(arch.hidden) * 2 + arch.num_classes


def available_memory_bytes() -> int:
    """Free memory of the first local device (accelerators), else of the host."""
    device = jax.local_devices()[0]
    stats = device.memory_stats() if device.platform != "cpu" else None
    if stats and "bytes_limit" in stats:
        return int(stats["bytes_limit"] - stats.get("bytes_in_use", 0))
    return host.available_memory_bytes()


def plan_run(
    config,
    population_size: int,
    arch: ArchSpec,
    image_shape,
    num_train: int,
    platform: str | None = None,
    memory_bytes: int | None = None,
) -> RunPlan:
    """Chunk size, steps per call and eval batch from the config, or when 0 from the devices:
    their `platform` (cpu, gpu, tpu) and free `memory_bytes` (default: the local ones')."""
    n_devices = jax.local_device_count()
    platform = platform or jax.local_devices()[0].platform
    platform = platform if platform in DEFAULT_CHUNK_PER_DEVICE else "gpu"
    budget = (memory_bytes or available_memory_bytes()) // 4
    per_image = activation_floats_per_image(arch, image_shape[-1]) * 4
    batch = config.training.batch_size
    chunk = config.runtime.chunk_size
    if not chunk:
        per_model = 3 * batch * per_image + 64 * 1024  # fwd+bwd activations, state, slack
        default = DEFAULT_CHUNK_PER_DEVICE[platform] * n_devices
        # A CPU shares its memory with everything else: a quarter of the budget there.
        share = 4 if platform == "cpu" else 1
        chunk = max(1, min(population_size, default, budget // (share * per_model)))
    chunk = n_devices * math.ceil(chunk / n_devices)
    steps_per_epoch = math.ceil(num_train / batch)
    steps = config.runtime.steps_per_call
    if not steps:
        image_bytes = math.prod(image_shape) * 4
        gather_bytes = min(GATHER_BYTES_PER_CALL[platform], budget // 4)
        target = max(1, min(steps_per_epoch, gather_bytes // (chunk * batch * image_bytes)))
        divisors = [d for d in range(max(1, target // 2), target + 1) if steps_per_epoch % d == 0]
        steps = divisors[-1] if divisors else target
    steps = min(steps, steps_per_epoch)
    # Only memory may lower it (where a chunk's batches would not fit: then it depends on the chunk).
    eval_batch = config.runtime.eval_batch_size or max(
        1, min(MAX_EVAL_BATCH[platform], budget // (4 * chunk * per_image))
    )
    return RunPlan(chunk, steps, eval_batch)


# Static factors that one program can compute per model (`plan_groups`): the activation (each
# model applies its own of the group's set, the others computed and discarded; only
# `MERGEABLE_ACTIVATIONS`, the others keep programs of their own) and dropout (rate 0 keeps
# every unit: bitwise the numbers of a program without dropout).
MERGEABLE = ("activation", "dropout")
# The cost model's figures, measured with CNN-s on MNIST 28x28 on 2 CPU cores
# (scripts/bench_compile.py; docs/benchmarks.md). Compile: serial seconds of a train program (one
# activation, no dropout), what each further activation adds to it, its factor with dropout (the
# masks' random bits), the evaluation programs of one activation set, an optimizer's init program,
# and the speed-up of compiling 4 programs at once. Training: seconds per model-sample, and the
# share of a step a merged factor adds (per further activation computed: 128 Hyp-shaped models
# trained 12% slower with tanh, sigmoid and ReLU merged, GELU apart; dropout's masks, for the
# models that have none).
TRAIN_COMPILE_S = 0.77
ACTIVATION_COMPILE_S = 0.11
DROPOUT_COMPILE_FACTOR = 1.8
EVAL_COMPILE_S = 0.55
INIT_COMPILE_S = 0.78
COMPILE_PARALLELISM = 1.2
MODEL_SAMPLE_S = 1 / 50_000
MERGED_ACTIVATION_COST = 0.1
DROPOUT_COST = 0.2


@dataclasses.dataclass(frozen=True)
class GroupPlan:
    """Which static factors are computed per model inside one program (`merged`), how it was
    chosen ('auto': the cost model; else the user's runtime.group_programs), and the cost
    model's estimate of every candidate: {merged: (train programs, compile s, training s)}."""

    merged: tuple[str, ...]
    chosen_by: str
    estimates: dict[tuple[str, ...], tuple[int, float, float]]

    def describe(self) -> str:
        """The log line: the choice and its estimate, beside the split one's."""
        programs, compile_s, train_s = self.estimates[self.merged]
        what = "+".join(self.merged) + " computed per model" if self.merged else "every static factor compiled apart"
        text = (
            f"programs: {what} ({self.chosen_by}): {programs} train program(s), "
            f"est. {compile_s:.0f} s compile + {train_s:.0f} s training"
        )
        if self.merged:
            split = self.estimates[()]
            text += f"; split: {split[0]}, est. {split[1]:.0f} s + {split[2]:.0f} s"
        return text


def plan_groups(config, population, arch: ArchSpec | None, channels: int, num_train: int) -> GroupPlan:
    """Chooses the static factors to merge (`MERGEABLE`) for this population.

    Each candidate costs its compile time (a train program per group, evaluation per activation
    set, init per optimizer) plus its training time (`MODEL_SAMPLE_S` per model-sample, scaled
    by the architecture's activations, plus what merging adds to each step); the cheapest wins.
    Merging saves compile time and costs step time, so small zoos merge and large ones split;
    the choice never changes a model's numbers. `runtime.group_programs` forces 'split' or
    'merged'. A custom module (`arch` None) has one activation per program: it never merges.
    """
    choice = config.runtime.get("group_programs", "auto")
    dropout = population.arrays["dropout"] > 0
    mergeable_activations = [name for name in population.activations if name in MERGEABLE_ACTIVATIONS]
    varies = {"activation": len(mergeable_activations) > 1, "dropout": bool(dropout.any() and not dropout.all())}
    mergeable = tuple(name for name in MERGEABLE if arch is not None and varies[name])
    reference = activation_floats_per_image(ARCHS["cnn_s"], 1)  # what MODEL_SAMPLE_S was measured on
    floats = activation_floats_per_image(arch, channels) if arch is not None else reference
    model_samples = population.size * num_train * config.training.num_epochs
    base_s = model_samples * MODEL_SAMPLE_S * floats / reference * (1 + DROPOUT_COST * dropout.mean())
    init_s = len(population.optimizers) * INIT_COMPILE_S
    estimates = {}
    for count in range(len(mergeable) + 1):
        for merged in itertools.combinations(mergeable, count):
            groups = population.groups(merged)
            compile_s = init_s
            for static, members in groups:
                activations = 1 if "activation" in static else len(mergeable_activations)
                with_dropout = static["dropout"] if "dropout" in static else bool(dropout[members].any())
                program_s = TRAIN_COMPILE_S + ACTIVATION_COMPILE_S * (activations - 1)
                compile_s += program_s * (DROPOUT_COMPILE_FACTOR if with_dropout else 1)
            activation_sets = len({static.get("activation") for static, _ in groups})
            compile_s += activation_sets * EVAL_COMPILE_S
            extra = 0.0
            if "activation" in merged:  # the models of merged activations compute them all
                share = np.isin(population.activations, mergeable_activations)[population.arrays["activation_index"]]
                extra += MERGED_ACTIVATION_COST * (len(mergeable_activations) - 1) * share.mean()
            if "dropout" in merged:
                extra += DROPOUT_COST * (1 - dropout.mean())
            estimates[merged] = (len(groups), compile_s / COMPILE_PARALLELISM, base_s * (1 + extra))
    if choice == "split" or not mergeable:
        merged = ()
    elif choice == "merged":
        merged = mergeable
    else:
        merged = min(estimates, key=lambda m: estimates[m][1] + estimates[m][2])
    return GroupPlan(merged, choice, estimates)


def resnet_plan(config, population_size: int, num_train: int) -> RunPlan:
    """One model per device per call by default: each device runs its models one by one."""
    n_devices = jax.local_device_count()
    chunk = config.runtime.chunk_size or n_devices
    chunk = n_devices * math.ceil(min(chunk, max(population_size, 1)) / n_devices)
    full_steps = max(1, num_train // config.training.batch_size)
    default_steps = 1 if jax.default_backend() == "cpu" else 16  # CPU unrolls the steps of a call
    steps = min(config.runtime.steps_per_call or default_steps, full_steps)
    eval_batch = config.runtime.eval_batch_size or config.training.batch_size  # as the original's loaders
    return RunPlan(chunk, steps, eval_batch)


def padded_chunks(members: np.ndarray, chunk_size: int, quantum: int = 0) -> list[tuple[np.ndarray, int]]:
    """`members` cut into chunks of `chunk_size` -> [(indices padded by repeating the last model,
    number of real models)]. With a `quantum` (the device count), the last chunk is only padded
    to `quantum` times a power of two: few models left running compile a few more programs
    instead of a whole chunk's work."""
    chunks = []
    for start in range(0, len(members), chunk_size):
        real = members[start : start + chunk_size]
        size = chunk_size
        if quantum:
            size = min(chunk_size, quantum * 2 ** math.ceil(math.log2(math.ceil(len(real) / quantum))))
        chunks.append((np.concatenate([real, np.full(size - len(real), real[-1])]), len(real)))
    return chunks


def group_chunks(members: np.ndarray, chunk_size: int, min_per_device: int = 1) -> list[tuple[np.ndarray, int]]:
    """A group's chunks: at most `chunk_size` models (at least `min_per_device` on each device),
    a multiple of the devices' count."""
    n_devices = jax.local_device_count()
    per_device = max(min_per_device, math.ceil(min(chunk_size, len(members)) / n_devices))
    return padded_chunks(members, n_devices * per_device)


def epoch_calls(
    steps_per_epoch: int, steps_per_call: int, last_batch_size: int = 0
) -> list[tuple[int, int, int | None]]:
    """An epoch's compiled calls as (first step, end step, batch size or None: the full batch)."""
    full = steps_per_epoch - (1 if last_batch_size else 0)
    calls = [(first, min(first + steps_per_call, full), None) for first in range(0, full, steps_per_call)]
    if last_batch_size:
        calls.append((full, steps_per_epoch, last_batch_size))
    return calls
