"""A table of bad invocations of every CLI: exit code 2, one stderr line, no traceback, and the
reference workdir byte-identical afterwards. The argparse CLIs run in-process (their main
functions); train's config and workdir checks through its library call, its own flag and
process checks in subprocesses."""

import ast
import concurrent.futures
import hashlib
import importlib.util
import json
import logging
import os
import pathlib
import shutil
import subprocess
import sys

import pytest
from conftest import array_files, read_only

from jaxzoo import analyze, benchmark, merge, sparsify
from jaxzoo.cli import user_message
from jaxzoo.data import __main__ as data_cli
from jaxzoo.errors import UserError
from jaxzoo.export import __main__ as export_cli
from jaxzoo.kinds.train import train_and_evaluate

REPO = pathlib.Path(__file__).resolve().parents[1]
QUICKSTART = str(REPO / "configs" / "quickstart.py")


def quickstart_config():
    """configs/quickstart.py's get_config(), loaded as the train command loads it."""
    spec = importlib.util.spec_from_file_location("quickstart_config", QUICKSTART)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config()


def override(config, field: str, text: str) -> None:
    """`--config.<field>=<text>` as config_flags applies it: a Python literal, else the text."""
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        try:  # (float('nan'),): the table's own expressions
            value = eval(text, {"__builtins__": {}, "float": float})
        except Exception:
            value = text
    *path, name = field.split(".")
    node = config
    for key in path:
        node = node[key]
    node[name] = value


def train_in_process(argv: list[str], capsys) -> tuple[int, str]:
    """The train command's library call with the config overrides of `argv` applied: its checks
    raise a UserError before any work, which the command prints as its one line (`fail`)."""
    config = quickstart_config()
    workdir = str(REPO / "runs" / config.name)
    for arg in argv[1:]:
        key, _, text = arg.partition("=")
        if key == "--workdir":
            workdir = text
        else:
            override(config, key.removeprefix("--config."), text)
    try:
        train_and_evaluate(config, workdir)
    except UserError as error:
        return 2, f"jaxzoo: error: {user_message(error, {'workdir': '--workdir'})}\n"
    return 0, capsys.readouterr().err


# train cases whose checks are the command's own (flag parsing, config loading, processes): in a
# subprocess; the others call the library in this process (the config checks and the workdir).
COMMAND_LEVEL = ("--cpu_devices", "--no_such_flag", "--distributed", "extra", "num_epochs=abc", "no_such_field")


def command_level(command: str, argv: list[str]) -> bool:
    """Whether a train case is about the command itself rather than the config or workdir."""
    given = " ".join(argv)
    quickstart = bool(argv) and argv[0] == f"--config={QUICKSTART}"
    return command == "train" and (not quickstart or any(flag in given for flag in COMMAND_LEVEL))


def cli_process(command: str, argv: list[str]) -> tuple[int, str]:
    """A CLI in a subprocess: train (absl and config_flags keep process-wide flag state), and the
    cases whose stray output would come at interpreter exit."""
    module = "jaxzoo.data" if command == "data" else f"jaxzoo.{command}"
    path = os.pathsep.join(filter(None, (str(REPO / "tests"), os.environ.get("PYTHONPATH"))))
    result = subprocess.run(
        [sys.executable, "-m", module, *argv],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": path},
    )
    return result.returncode, result.stderr


def in_process(main):
    """An argparse CLI's main called here -> (exit code, what it wrote on stderr)."""

    def call(argv: list[str], capsys) -> tuple[int, str]:
        try:
            code = main(argv)
        except SystemExit as exit_:
            code = exit_.code
        return code, capsys.readouterr().err

    return call


COMMANDS = {
    "export": in_process(export_cli.main),
    "analyze": in_process(analyze.main),
    "benchmark": in_process(benchmark.main),
    "sparsify": in_process(sparsify.main),
    "merge": in_process(merge.main),
    "data": in_process(data_cli.main),
}


def tree_digest(folder: pathlib.Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(autouse=True)
def jaxzoo_logger_restored():
    """train.main installs jaxzoo's stderr handler; other modules' caplog tests need it gone."""
    logger = logging.getLogger("jaxzoo")
    handlers, propagate, level = list(logger.handlers), logger.propagate, logger.level
    yield
    logger.handlers[:], logger.propagate = handlers, propagate
    logger.setLevel(level)


@pytest.fixture(scope="module")
def places(tiny_zoo, tmp_path_factory):
    """The reference zoo and the damaged or edited copies and files the table points at."""
    root = tmp_path_factory.mktemp("bad")
    a_file = root / "a_file.txt"
    a_file.write_text("not a folder")
    edited = root / "edited"
    shutil.copytree(tiny_zoo, edited)
    document = json.loads((edited / "config.json").read_text())
    document["config"]["data"]["name"] = "mnist"
    (edited / "config.json").write_text(json.dumps(document))
    truncated = root / "truncated"
    shutil.copytree(tiny_zoo, truncated)
    metrics = truncated / "checkpoints" / "2" / "metrics" / "metrics"
    metrics.write_bytes(metrics.read_bytes()[:10])
    zeroed = root / "zeroed"
    shutil.copytree(tiny_zoo, zeroed)
    for path in array_files(zeroed / "checkpoints" / "2"):
        path.write_bytes(b"\0" * 16)
    broken_config = root / "broken.py"
    broken_config.write_text("def get_config(:\n")
    return {
        "ZOO": str(tiny_zoo),
        "FILE": str(a_file),
        "EDITED": str(edited),
        "TRUNCATED": str(truncated),
        "ZEROED": str(zeroed),
        "ROOT": str(root),
        "BROKEN": str(broken_config),
        "QS": QUICKSTART,
        "READONLY": str(root / "readonly"),
    }


# (command, arguments with {PLACE} fields, a fragment the one line must hold)
CASES = [
    # train: config file and flags
    ("train", [], "no config"),
    ("train", ["--config={ROOT}/nope.py"], "nope.py"),
    ("train", ["--config={BROKEN}"], "cannot load"),
    ("train", ["--config={QS}", "extra"], "unexpected arguments"),
    ("train", ["--config={QS}", "--config.no_such_field=1"], "no_such_field"),
    ("train", ["--config={QS}", "--config.training.num_epochs=abc"], "num_epochs"),
    ("train", ["--config={QS}", "--cpu_devices=-1"], "--cpu_devices=-1"),
    ("train", ["--config={QS}", "--no_such_flag"], "no_such_flag"),
    # train: impossible values
    ("train", ["--config={QS}", "--config.population.activation=('tanh','swish')"], "swish"),
    ("train", ["--config={QS}", "--config.population.init=()"], "population.init is empty"),
    ("train", ["--config={QS}", "--config.population.dropout=(1.0,)"], "population.dropout value 1.0"),
    ("train", ["--config={QS}", "--config.population.lr=(True,)"], "population.lr value True is not a number"),
    ("train", ["--config={QS}", "--config.population.lr=(-1.0,)"], "population.lr value -1.0"),
    ("train", ["--config={QS}", "--config.population.lr=(float('nan'),)"], "population.lr"),
    ("train", ["--config={QS}", "--config.population.weight_decay=(2.0,)"], "population.weight_decay"),
    ("train", ["--config={QS}", "--config.population.momentum=1.5"], "population.momentum"),
    ("train", ["--config={QS}", "--config.population.first_seed=5000000000"], "population.first_seed"),
    ("train", ["--config={QS}", "--config.population.first_seed=-1"], "population.first_seed"),
    ("train", ["--config={QS}", "--config.population.num_seeds=10000000"], "population.num_seeds"),
    ("train", ["--config={QS}", "--config.population.num_seeds=0"], "population.num_seeds"),
    ("train", ["--config={QS}", "--config.population.max_models=1000"], "the grid has 64 models"),
    ("train", ["--config={QS}", "--config.population.max_models=-2"], "population.max_models"),
    ("train", ["--config={QS}", "--config.population.seed_mode=sometimes"], "seed_mode"),
    ("train", ["--config={QS}", "--config.data.max_examples_per_split=-1"], "data.max_examples_per_split=-1"),
    ("train", ["--config={QS}", "--config.data.name=imagenet"], "data.name"),
    ("train", ["--config={QS}", "--config.data.image_size=32"], "data.image_size=32"),
    ("train", ["--config={QS}", "--config.data.source=tfds"], "no 'tfds' source"),
    ("train", ["--config={QS}", "--config.data.source=ftp"], "data.source"),
    ("train", ["--config={QS}", "--config.data.cache_dir={FILE}"], "cache_dir"),
    ("train", ["--config={QS}", "--config.training.batch_size=0"], "training.batch_size=0"),
    ("train", ["--config={QS}", "--config.training.num_epochs=0"], "training.num_epochs=0"),
    ("train", ["--config={QS}", "--config.training.scheduler=one_cycle"], "is for ResNet zoos"),
    ("train", ["--config={QS}", "--config.model.arch=vgg"], "model.arch"),
    ("train", ["--config={QS}", "--config.runtime.conv=cuda"], "runtime.conv"),
    ("train", ["--config={QS}", "--config.runtime.chunk_size=-4"], "runtime.chunk_size"),
    ("train", ["--config={QS}", "--config.num_shards=0"], "num_shards"),
    ("train", ["--config={QS}", "--config.num_shards=4", "--config.shard_index=4"], "shard_index"),
    ("train", ["--config={QS}", "--config.seed=-3"], "seed=-3"),
    # train: registries (models, optimizers, schedules, factors, datasets)
    ("train", ["--config={QS}", "--config.population.optimizer=('adam','adamx')"], "unknown optimizer 'adamx'"),
    ("train", ["--config={QS}", "--config.population.optimizer=('no_pkg.opts:fancy',)"], "population.optimizer"),
    ("train", ["--config={QS}", "--config.population.schedule=('cosine','wavy')"], "population.schedule"),
    ("train", ["--config={QS}", "--config.training.schedule_options.cosine=1"], "schedule_options"),
    (
        "train",
        ["--config={QS}", "--config.population.b1=(0.9,0.95)", "--config.population.optimizer=('sgd',)"],
        "population.b1 is varied but no optimizer",
    ),
    ("train", ["--config={QS}", "--config.population.train_fraction=(0.0,)"], "population.train_fraction"),
    ("train", ["--config={QS}", "--config.population.label_noise=(1.0,)"], "population.label_noise"),
    ("train", ["--config={QS}", "--config.model.arch=cnn"], "needs model.convs"),
    ("train", ["--config={QS}", "--config.model.arch=mlp", "--config.model.widths=(0,)"], "model.widths"),
    ("train", ["--config={QS}", "--config.model.module=no_such_pkg.nets:Net"], "does not import"),
    ("train", ["--config={QS}", "--config.model.module=zoo_modules:Nope"], "has no 'Nope'"),
    ("train", ["--config={QS}", "--config.model.module=zoo_modules:ThreeLogits"], "not [B, 10]"),
    (
        "train",
        ["--config={QS}", "--config.model.module=zoo_modules:Broken", "--config.population.activation=('relu',)"],
        "fails on images",
    ),
    ("train", ["--config={QS}", "--config.data.name=npz:{ROOT}/none.npz"], "none.npz"),
    ("train", ["--config={QS}", "--config.data.name=ftp:mnist"], "ftp:mnist"),
    # train: workdirs and processes
    ("train", ["--config={QS}", "--workdir={FILE}"], "is a file"),
    ("train", ["--config={QS}", "--workdir={FILE}/sub"], "is not writable: "),
    ("train", ["--config={QS}", "--workdir={READONLY}/zoo"], "not writable"),
    ("train", ["--config={QS}", "--workdir={ZOO}"], "holds another zoo"),
    ("train", ["--config={QS}", "--workdir={EDITED}"], "was edited after training"),
    (
        "train",
        ["--config={QS}", "--distributed", "--coordinator_address=localhost:1", "--num_processes=2", "--process_id=2"],
        "--process_id=2",
    ),
    (
        "train",
        ["--config={QS}", "--distributed", "--coordinator_address=localhost:1", "--num_processes=0"],
        "--num_processes=0",
    ),
    ("train", ["--config={QS}", "--distributed", "--distributed_timeout=0"], "--distributed_timeout=0"),
    ("train", ["--config={QS}", "--distributed", "--workdir={ROOT}/never"], "--distributed could not join"),
    # export
    ("export", [], "--workdir"),
    ("export", ["--workdir={ZOO}"], "--out"),
    ("export", ["--workdir={ROOT}/missing", "--out={ROOT}/e"], "not a jaxzoo workdir"),
    ("export", ["--workdir={FILE}", "--out={ROOT}/e"], "not a jaxzoo workdir"),
    ("export", ["--workdir={ZOO}", "--out={ROOT}/e", "--threshold", "-1"], "--threshold"),
    ("export", ["--workdir={ZOO}", "--out={ROOT}/e", "--threshold", "nan"], "--threshold"),
    ("export", ["--workdir={ZOO}", "--out={ROOT}/e", "--threshold", "inf"], "--threshold"),
    ("export", ["--workdir={ZOO}", "--out={ROOT}/e", "--threshold", "0"], "--threshold"),
    ("export", ["--workdir={ZOO}", "--out={ROOT}/e", "--epochs", "1,1"], "distinct"),
    ("export", ["--workdir={ZOO}", "--out={ROOT}/e", "--epochs", "-1"], "--epochs"),
    ("export", ["--workdir={ZOO}", "--out={ROOT}/e", "--epochs", "one"], "--epochs"),
    ("export", ["--workdir={ZOO}", "--out={ROOT}/e", "--epochs", "9"], "not in the zoo"),
    ("export", ["--workdir={ZOO}", "--out={ROOT}/e", "--format", "onnx"], "--format"),
    ("export", ["--workdir={ZOO}", "--out={FILE}"], "is a file"),
    ("export", ["--workdir={ZOO}", "--out={FILE}/sub"], "not writable"),
    ("export", ["--workdir={ZOO}", "--out={READONLY}"], "not writable"),
    ("export", ["--workdir={EDITED}", "--out={ROOT}/e"], "was edited after training"),
    ("export", ["--workdir={TRUNCATED}", "--out={ROOT}/e"], "damaged checkpoints (epochs [2]"),
    ("export", ["--workdir={ZEROED}", "--out={ROOT}/e2"], "damaged checkpoints (epochs [2]; epoch 2: "),
    ("export", ["--workdir={ZEROED}", "--out={ROOT}/e3", "--format", "vectors"], "epoch 2: "),
    # analyze
    ("analyze", ["--workdir={ZOO}", "--threshold", "-1"], "--threshold"),
    ("analyze", ["--workdir={ZOO}", "--threshold", "nan"], "--threshold"),
    ("analyze", ["--workdir={ZOO}", "--embedding_points", "0"], "--embedding_points"),
    ("analyze", ["--workdir={ZOO}", "--embedding_points", "-5"], "--embedding_points"),
    ("analyze", ["--workdir={ZOO}", "--agreement_images", "-1"], "--agreement_images"),
    ("analyze", ["--workdir={ZOO}", "--threshold", "1e-9"], "no viable model"),
    ("analyze", ["--workdir={ZOO}", "--agreement_images", "100000"], "--agreement_images"),
    ("analyze", ["--workdir={ROOT}/missing"], "not a jaxzoo workdir"),
    ("analyze", ["--workdir={EDITED}"], "was edited after training"),
    ("analyze", ["--workdir={TRUNCATED}"], "damaged checkpoints"),
    # benchmark
    ("benchmark", [], "nothing to benchmark"),
    ("benchmark", ["--workdir={ZOO}", "--vectors={ROOT}/v"], "exclude each other"),
    ("benchmark", ["--workdir={ZOO}", "--out={ROOT}/no/dir/t.md"], "does not exist"),
    ("benchmark", ["--workdir={ZOO}", "--out={READONLY}/t.md"], "not writable"),
    ("benchmark", ["--workdir={ZOO}", "--out={ROOT}"], "is a folder"),
    ("benchmark", ["--workdir={ZOO}", "--threshold", "nan"], "--threshold"),
    ("benchmark", ["--workdir={ZOO}", "--epochs", "2,2"], "distinct"),
    ("benchmark", ["--vectors={ROOT}/missing"], "missing"),
    # sparsify
    ("sparsify", ["--workdir={ZOO}", "--out={ZOO}"], "workdir of its own"),
    ("sparsify", ["--workdir={ZOO}", "--out={ROOT}/twin", "--epochs", "0"], "--epochs"),
    ("sparsify", ["--workdir={ZOO}", "--out={ROOT}/twin", "--epochs", "5000"], "--epochs"),
    ("sparsify", ["--workdir={ROOT}/missing", "--out={ROOT}/twin"], "not a jaxzoo workdir"),
    ("sparsify", ["--workdir={ZOO}", "--out={FILE}"], "is a file"),
    # merge
    ("merge", ["--workdir={ZOO}"], "shards"),
    ("merge", [], "--workdir"),
    # data
    ("data", ["info", "imagenet"], "unknown dataset"),
    ("data", ["prepare"], "name a dataset"),
    ("data", ["prepare", "mnist_5k", "--source", "tfds"], "no 'tfds' source"),
    ("data", ["frobnicate"], "invalid choice"),
]


def one_line_error(code: int, err: str, fragment: str) -> bool:
    lines = [line for line in err.splitlines() if line.strip()]
    return code == 2 and len(lines) == 1 and lines[0].startswith("jaxzoo: error: ") and fragment in lines[0]


@pytest.mark.slow
def test_bad_invocations_end_in_one_line_and_leave_the_zoo_alone(places, capsys):
    reference = pathlib.Path(places["ZOO"])
    before = tree_digest(reference)
    # A user's runs/ (the README's quickstart trains into it) is theirs: compared, not assumed absent.
    runs_before = tree_digest(REPO / "runs") if (REPO / "runs").exists() else None
    failures = []
    with read_only(pathlib.Path(places["READONLY"])):
        cases = [(c, [a.format(**places) for a in args], f) for c, args, f in CASES]
        apart = [case for case in cases if command_level(*case[:2])]
        with concurrent.futures.ThreadPoolExecutor(2) as pool:  # each case starts Python and JAX
            results = list(pool.map(lambda case: cli_process(case[0], case[1]), apart))
        for (command, argv, fragment), (code, err) in zip(apart, results):
            if not one_line_error(code, err, fragment):
                failures.append(f"{command} {argv}: exit {code}, stderr {err[-600:]!r}")
        for command, argv, fragment in cases:
            if (command, argv, fragment) in apart:
                continue
            code, err = (train_in_process if command == "train" else COMMANDS[command])(argv, capsys)
            if not one_line_error(code, err, fragment):
                failures.append(f"{command} {argv}: exit {code}, stderr {err[-600:]!r}")
    assert not failures, "\n".join(failures)
    assert tree_digest(reference) == before
    for never in ("e", "e2", "e3", "twin", "never"):
        assert not (pathlib.Path(places["ROOT"]) / never).exists()
    assert (tree_digest(REPO / "runs") if (REPO / "runs").exists() else None) == runs_before
