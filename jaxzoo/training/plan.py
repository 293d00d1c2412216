"""How a population is cut for the devices: models per compiled call (chunks), training steps
per call and evaluation batch, from the config or, where it says 0, from the platform and its
free memory; and the compiled calls of an epoch."""

from __future__ import annotations

import dataclasses
import math

import jax
import numpy as np

from jaxzoo import host
from jaxzoo.models.cnn import ArchSpec

# On CPU the per-model path is memory-bound: 8 models per device and call, one device per
# core, ran fastest (docs/benchmarks.md). An accelerator takes the whole population (up to
# 4,096 models, or what fits) in one call.
DEFAULT_CHUNK_PER_DEVICE = {"cpu": 8, "gpu": 4096, "tpu": 4096}
# Model-images per evaluation step, and images per model: small on CPU (measured fastest),
# large on accelerators (few long steps keep them busy).
EVAL_MODEL_IMAGES_PER_STEP = {"cpu": 256, "gpu": 1 << 20, "tpu": 1 << 20}
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
    # Small evaluation batches run fastest on CPU (measured): aim at ~256 model-images per step,
    # and at most 32 images per model (1 model: 35k images/s at 32 against 21k at 256).
    eval_batch = config.runtime.eval_batch_size or max(
        1,
        min(MAX_EVAL_BATCH[platform], EVAL_MODEL_IMAGES_PER_STEP[platform] // chunk, budget // (4 * chunk * per_image)),
    )
    return RunPlan(chunk, steps, eval_batch)


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


def group_chunks(members: np.ndarray, chunk_size: int) -> list[tuple[np.ndarray, int]]:
    """A group's chunks: at most `chunk_size` models, a multiple of the devices' count."""
    n_devices = jax.local_device_count()
    return padded_chunks(members, n_devices * math.ceil(min(chunk_size, len(members)) / n_devices))


def epoch_calls(
    steps_per_epoch: int, steps_per_call: int, last_batch_size: int = 0
) -> list[tuple[int, int, int | None]]:
    """An epoch's compiled calls as (first step, end step, batch size or None: the full batch)."""
    full = steps_per_epoch - (1 if last_batch_size else 0)
    calls = [(first, min(first + steps_per_call, full), None) for first in range(0, full, steps_per_call)]
    if last_batch_size:
        calls.append((full, steps_per_epoch, last_batch_size))
    return calls
