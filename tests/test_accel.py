"""The accelerator path, checked on CPU with XLA's convolutions (what a GPU runs).

With `runtime.state_placement='device'` the population's state stays on the devices across
calls and epochs (donated to each call), and each epoch's checkpoint is written while the next
one trains. It must give the checkpoints of the host path, compile nothing after the first
epoch, move nothing from the host to the devices inside an epoch, and resume exactly.
"""

from __future__ import annotations

import io
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import small_zoo_config
from tqdm import tqdm

from jaxzoo.config import ConfigError, base_config, load_config_dataset, validate
from jaxzoo.models.registry import arch_spec
from jaxzoo.training.loop import run_epochs
from jaxzoo.training.plan import plan_run
from jaxzoo.training.population import build_population, expand_grid
from jaxzoo.training.precision import with_precision
from jaxzoo.training.run import ZooRun
from jaxzoo.zoo import checkpoint

EPOCHS = 2
COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"


def xla_config(**population):
    """6 models: tanh x (adam, sgd) x 3 seeds, 2 static groups of 2 chunks (the second padded)."""
    config = small_zoo_config(
        init=("kaiming_uniform",), dropout=(0.0,), activation=("tanh",), num_seeds=3, **population
    )
    config.data.max_examples_per_split = 60  # 6 steps per epoch: 2 calls of 3
    config.training.num_epochs = EPOCHS
    config.runtime.conv = "xla"
    config.runtime.chunk_size, config.runtime.steps_per_call = 2, 3
    return config


def make_run(config) -> ZooRun:
    validate(config)
    population = build_population(expand_grid(config.population, config.seed), config.population)
    return ZooRun(config, population, load_config_dataset(config))


class CompileCounter:
    """Counts XLA backend compilations per epoch of a run (wraps `run.train_epoch`)."""

    def __init__(self, run: ZooRun):
        self.total, self.per_epoch = 0, {}
        train_epoch = run.train_epoch

        def counted(state, epoch, progress):
            before = self.total
            out = train_epoch(state, epoch, progress)
            self.per_epoch[epoch] = self.total - before
            return out

        run.train_epoch = counted

    def __call__(self, event: str, duration: float, **kwargs) -> None:
        if event == COMPILE_EVENT:
            self.total += 1


def train_into(run: ZooRun, workdir, num_epochs: int = EPOCHS) -> dict:
    workdir.mkdir(parents=True, exist_ok=True)
    writer = checkpoint.open_writer(workdir, async_save=True)
    try:
        model_ids = np.arange(run.population.size)
        return run_epochs(run, writer, workdir, model_ids, num_epochs)
    finally:
        writer.close()


def saved_state(run: ZooRun, workdir, epoch: int):
    """The saved epoch's state in the structure of the run's state (optax's named tuples)."""
    return checkpoint.restore_state(workdir / "checkpoints" / str(epoch), run.abstract_state())


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One run object trained twice, on the device path then on the host path (same programs)."""
    run = make_run(xla_config())
    counter = CompileCounter(run)
    jax.monitoring.register_event_duration_secs_listener(counter)
    root = tmp_path_factory.mktemp("accel")
    try:
        run.on_device = True
        train_into(run, root / "device")
        device_compiles = dict(counter.per_epoch)
        run.on_device = False
        train_into(run, root / "host")
    finally:
        jax.monitoring.unregister_event_duration_listener(counter)
        run.on_device = True
    return run, root, device_compiles


def test_device_path_gives_the_host_paths_checkpoints(trained):
    run, root, _ = trained
    assert [len(g.chunks) for g in run.groups] == [2, 2] and run.chunks[-1][1] == 1  # a padded chunk
    assert checkpoint.saved_epochs(root / "device" / "checkpoints") == list(range(EPOCHS + 1))
    for epoch in range(EPOCHS + 1):
        on_device, on_host = saved_state(run, root / "device", epoch), saved_state(run, root / "host", epoch)
        for a, b in zip(jax.tree.leaves(on_device), jax.tree.leaves(on_host), strict=True):
            np.testing.assert_array_equal(a, b)  # bitwise: the layout never reaches the arithmetic
    last = saved_state(run, root / "device", EPOCHS)["params"]
    first = saved_state(run, root / "device", 0)["params"]
    moved = [
        np.abs(a - b).max(axis=tuple(range(1, a.ndim))) for a, b in zip(jax.tree.leaves(last), jax.tree.leaves(first))
    ]
    assert (np.max(moved, axis=0) > 1e-3).all()  # every model, padded chunk included, trained
    rows = lambda name: [json.loads(line) for line in (root / name / "metrics.jsonl").read_text().splitlines()]
    device_rows, host_rows = rows("device"), rows("host")
    assert len(device_rows) == run.population.size * (EPOCHS + 1)
    for a, b in zip(device_rows, host_rows, strict=True):
        assert a.keys() == b.keys() and (a["model_id"], a["epoch"]) == (b["model_id"], b["epoch"])
        assert a == b


def test_one_compile_per_static_group_and_none_after_the_first_epoch(trained):
    run, _, device_compiles = trained
    assert device_compiles[2] == 0, device_compiles
    trains = {id(g.fns.train): g.fns.train for g in run.groups}
    assert len(trains) == len(run.groups) == 2
    # Both placements, both epochs' orders and every chunk ran the group's one program.
    assert all(f._cache_size() == 1 for f in trains.values())
    # Groups that differ only in their optimizer share one evaluation program, compiled once.
    assert run.groups[0].fns.evaluate is run.groups[1].fns.evaluate
    assert run.groups[0].fns.evaluate._cache_size() == 1


def test_no_host_to_device_transfer_inside_an_epoch(trained):
    run, _, _ = trained
    state = run.place_state(run.init_state())
    given = jax.tree.leaves(state)
    run.ints(1)  # what train_epoch places before the body
    bar = tqdm(total=run.population.size * run.num_train, file=io.StringIO())
    with jax.transfer_guard_host_to_device("disallow_explicit"):
        state, metrics = run.epoch_body(state, 1, bar)
    assert bar.n == run.population.size * run.num_train  # every call counted, none waited for
    assert all(leaf.is_deleted() for leaf in given)  # donated, not copied
    assert all(isinstance(leaf, jax.Array) and leaf.sharding == run.state_sharding for leaf in jax.tree.leaves(state))
    assert np.isfinite(metrics["train_loss"]).all() and not metrics["diverged"].any()

    run.on_device = False  # the host path sends each chunk to the devices: the guard sees it
    try:
        with pytest.raises(Exception, match="Disallowed host-to-device transfer"):
            with jax.transfer_guard_host_to_device("disallow_explicit"):
                run.epoch_body(jax.tree.map(np.asarray, state), 1, None)
    finally:
        run.on_device = True


def test_device_path_resume_equals_uninterrupted(trained, tmp_path):
    run, root, _ = trained
    train_into(run, tmp_path / "resumed", num_epochs=1)  # a run stopped after epoch 1
    train_into(run, tmp_path / "resumed")  # resumed to the end
    for epoch in (1, EPOCHS):
        for a, b in zip(
            jax.tree.leaves(saved_state(run, tmp_path / "resumed", epoch)),
            jax.tree.leaves(saved_state(run, root / "device", epoch)),
            strict=True,
        ):
            np.testing.assert_array_equal(a, b)
    assert (tmp_path / "resumed" / "metrics.jsonl").read_text() == (root / "device" / "metrics.jsonl").read_text()


def test_bfloat16_compute_trains_near_float32(trained, tmp_path):
    run, root, _ = trained
    config = xla_config(optimizer=("adam",))
    config.training.compute_dtype = "bfloat16"
    config.training.num_epochs = 1
    bf16 = make_run(config)
    bf16.on_device = True
    train_into(bf16, tmp_path / "bf16", num_epochs=1)
    got = saved_state(bf16, tmp_path / "bf16", 1)["params"]
    want = saved_state(run, root / "device", 1)["params"]
    rows = [i for i, row in enumerate(run.population.table) if row["optimizer"] == "adam"]
    assert [r["seed"] for r in bf16.population.table] == [run.population.table[i]["seed"] for i in rows]
    start = saved_state(run, root / "device", 0)["params"]
    for g, w, s in zip(jax.tree.leaves(got), jax.tree.leaves(want), jax.tree.leaves(start)):
        assert g.dtype == np.float32  # parameters stay float32
        step = np.linalg.norm(w[rows] - s[rows])
        gap = np.linalg.norm(g - w[rows])
        assert 0 < gap < 0.5 * step, (gap, step)  # bfloat16 arithmetic (measured ~0.12), the same training


def lowered_train(run: ZooRun) -> str:
    group = run.groups[0]
    indices, _ = group.chunks[0]
    state = jax.eval_shape(lambda: run.init_chunk(group, indices))
    x = jax.ShapeDtypeStruct((3, len(indices), 10, 28, 28, 1), jnp.float32)
    y = jax.ShapeDtypeStruct((3, len(indices), 10), jnp.int32)
    mask = jax.ShapeDtypeStruct((3, len(indices), 10), jnp.float32)
    return group.fns.train.lower(state, run.chunk_factors(indices), x, y, mask, run.ints(1), run.ints(0)).as_text()


def test_training_calls_donate_the_state_on_accelerators(trained):
    run, _, _ = trained
    main = lambda text: next(line for line in text.splitlines() if "@main" in line)
    # XLA:CPU ran the donating step ~8% slower: the CPU path keeps its copies.
    assert run.donate_state is (jax.default_backend() != "cpu")

    class Donating(ZooRun):
        donate_state = True

    config = xla_config()
    donating = Donating(config, run.population, run.dataset)
    state_leaves = len(
        jax.tree.leaves(jax.eval_shape(lambda: donating.init_chunk(donating.groups[0], donating.chunks[0][0])))
    )
    assert main(lowered_train(donating)).count("tf.aliasing_output") == state_leaves
    assert ("tf.aliasing_output" in main(lowered_train(run))) is run.donate_state


def test_compute_dtype_sets_the_matmul_precision(trained):
    run, _, _ = trained
    assert (
        "precision = [HIGH, HIGH]"
        in jax.jit(with_precision(lambda a: a @ a, "tensorfloat32")).lower(jnp.ones((4, 4))).as_text()
    )
    group = run.groups[0]
    indices, _ = group.chunks[0]
    state = jax.eval_shape(lambda: run.init_chunk(group, indices))
    x, y, mask = run.eval_splits["test"]
    text = group.fns.evaluate.lower({"params": state["params"]}, run.chunk_factors(indices), x, y, mask).as_text()
    # float32 zoos are true float32, as the CPU-trained originals (no TF32 on GPUs)
    assert "HIGHEST" in text and "DEFAULT" not in text


def test_plan_takes_a_thousand_model_zoo_in_one_call_on_an_accelerator():
    config = base_config()  # CNN-s, MNIST shapes, batch 10, as the MNIST Seed zoo
    arch = arch_spec(config.model, 28, 1, 10)
    gpu = plan_run(config, 1000, arch, (28, 28, 1), 50_000, "gpu", 140 << 30)
    assert gpu.chunk_size >= 1000
    assert gpu.steps_per_call > 1 and gpu.eval_batch_size >= 32
    small_gpu = plan_run(config, 1000, arch, (28, 28, 1), 50_000, "gpu", 2 << 30)
    assert small_gpu.chunk_size < 1000  # what fits in memory
    cpu = plan_run(config, 1000, arch, (28, 28, 1), 50_000, "cpu", 16 << 30)
    assert cpu.chunk_size == 8 * jax.local_device_count() and cpu.eval_batch_size <= 32


def test_state_placement_and_compute_dtype_are_validated():
    config = xla_config()
    config.runtime.state_placement = "gpu"
    with pytest.raises(ConfigError, match="runtime.state_placement"):
        validate(config)
    config = xla_config()
    config.runtime.conv, config.training.compute_dtype = "cpu_kernel", "bfloat16"
    with pytest.raises(ConfigError, match="cpu_kernel"):
        validate(config)
    config = xla_config()
    config.training.compute_dtype = "float16"
    with pytest.raises(ConfigError, match="compute_dtype"):
        validate(config)


def test_auto_placement_keeps_the_state_on_the_host_on_cpu(trained):
    run, _, _ = trained
    assert run.state_on_device("auto") is (jax.default_backend() != "cpu")
    assert run.state_on_device("device") and not run.state_on_device("host")
