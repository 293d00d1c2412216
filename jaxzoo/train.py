"""Trains a zoo: `python -m jaxzoo.train --config configs/<zoo>.py --workdir DIR`.

This file is intentionally kept short (as the flax examples' main.py): flags, then
`train_and_evaluate(config, workdir)` (`jaxzoo.kinds.train`: a classification zoo's
`jaxzoo.training.trainer`, an INR zoo's `jaxzoo.inr.train`). Rerunning the same command
resumes from the last complete epoch. Importing this module defines no flags; running it does.
"""

from __future__ import annotations

import ast
import contextlib
import functools
import logging
import os
import sys

import ml_collections
from absl import app, flags
from ml_collections import config_flags

from jaxzoo import compile_cache
from jaxzoo.cli import error_exit, quiet_libraries, setup_logging, use_cpu_cores, user_message
from jaxzoo.errors import UserError
from jaxzoo.kinds.train import train_and_evaluate
from jaxzoo.training import distributed

__all__ = ["main", "train_and_evaluate"]

log = logging.getLogger("jaxzoo")
FLAGS = flags.FLAGS
# XLA CPU devices a process may ask for: past a few per core they only cost memory and start-up
# (100,000 devices take minutes and gigabytes before the first step).
MAX_CPU_DEVICES = 1024


def define_flags() -> None:
    """The command's flags (once per process; `parse_flags` calls it)."""
    if "workdir" in FLAGS:
        return
    config_flags.DEFINE_config_file("config", None, "Zoo config file (configs/*.py).", lock_config=True)
    flags.DEFINE_string(
        "workdir", None, "Directory for checkpoints and metrics of the zoo (default: runs/<config name>)."
    )
    flags.DEFINE_bool(
        "distributed",
        False,
        "Call jax.distributed.initialize: each process trains its block of the zoo "
        "into the shared --workdir (coordinator from the flags below, or auto-detected on clusters).",
    )
    flags.DEFINE_string("coordinator_address", "", "host:port of process 0 (with --distributed).")
    flags.DEFINE_integer("num_processes", 1, "Processes in the job (with --coordinator_address).")
    flags.DEFINE_integer("process_id", 0, "This process's index (with --coordinator_address).")
    flags.DEFINE_integer("distributed_timeout", 300, "Seconds to wait for every process to join (with --distributed).")
    flags.DEFINE_integer("cpu_devices", 0, "XLA CPU devices (0: one per core; the population is sharded over them).")
    flags.DEFINE_bool("verbose", False, "Show the libraries' own log lines and warnings.")
    flags.DEFINE_string(
        "compile_cache",
        None,
        f"Folder of the persistent compilation cache, or 'off' (default: ${compile_cache.ENV}, "
        "else ~/.cache/jaxzoo/compile).",
    )


def fail(message: str) -> None:
    """One line on stderr, exit code 2: how every bad input ends."""
    sys.exit(error_exit(message))


def parse_flags(argv: list[str]) -> list[str]:
    define_flags()
    quiet_libraries("--verbose" in argv)  # config_flags logs through absl while it loads the file
    overrides = [arg.split("=", 1)[0] for arg in argv[1:] if arg.startswith("--config.")]
    try:
        rest = flags.FLAGS(argv)
        for flag in sorted({flag for flag in overrides if overrides.count(flag) > 1}):
            value = functools.reduce(lambda node, key: node[key], flag.split(".")[1:], FLAGS.config)
            if isinstance(value, (tuple, list)):  # the flags library joined the two tuples into one
                fail(f"{flag} is given twice: give a tuple field once (the later value does not replace the first)")
        return rest
    except flags.Error as error:
        lines = [line.strip() for line in str(error).splitlines() if line.strip()]
        if "Traceback" in str(error):  # the config file raised: its exception is the last line
            fail(f"{lines[0].rstrip(':')}: {lines[-1]}: fix the config file")
        fail(lines[0])
    except Exception as error:  # a config file that fails to load, or an override of no field
        text = error.args[0] if error.args and isinstance(error.args[0], str) else str(error)
        with contextlib.suppress(ValueError, SyntaxError):  # ml_collections nests the message as a repr
            unquoted = ast.literal_eval(text)
            text = unquoted if isinstance(unquoted, str) else text
        missing, *hint = [line.strip() for line in text.splitlines() if line.strip()] or [""]
        missing = missing.strip("'\"")
        named = [flag for flag in overrides if missing and missing in flag.split(".")]
        if isinstance(error, (AttributeError, KeyError)) and named:
            suggestion = f" ({hint[0][0].lower()}{hint[0][1:]})" if hint else ""
            fail(
                f"{named[0]}: the config has no field {missing!r} there{suggestion}: check the name, or set it in "
                "the config file (new keys cannot be added from the command line)"
            )
        fail(f"cannot load the config ({type(error).__name__}: {' '.join(text.split())})")


def default_workdir(config: ml_collections.ConfigDict) -> str:
    """runs/<zoo name>, relative to the current folder."""
    return os.path.join("runs", config.name)


def next_steps(workdir: str, config: ml_collections.ConfigDict, base_workdir: str) -> list[str]:
    """What a user runs after training: export and analysis of the zoo (merge for a shard)."""
    if config.get("num_shards", 1) > 1:
        return [
            f"shard {config.shard_index} of {config.num_shards} ready in {workdir}; once every shard is, "
            f"join them: python -m jaxzoo.merge --workdir {base_workdir}"
        ]
    return [
        f"zoo ready in {workdir}; next:",
        f"  python -m jaxzoo.analyze --workdir {workdir}",
        f"  python -m jaxzoo.export --workdir {workdir} --out exports",
    ]


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        fail(f"unexpected arguments {argv[1:]}: use --config FILE [--workdir DIR] [--config.FIELD=VALUE]")
    config = FLAGS.config
    config_file = config_flags.get_config_filename(FLAGS["config"]) if FLAGS["config"].present else ""
    if config is None and config_file:
        fail(f"--config {config_file}: its get_config() returned None: return the zoo's ml_collections.ConfigDict")
    if config is None:
        fail("no config: pass --config configs/<zoo>.py (configs/quickstart.py to try it)")
    if not isinstance(config, ml_collections.ConfigDict):  # config_flags defers load errors
        try:
            config.name
        except Exception as error:
            reason = [line.strip() for line in str(error).splitlines() if line.strip()][-1]
            fail(f"cannot load --config {config_flags.get_config_filename(FLAGS['config'])}: {reason}")
    if not 0 <= FLAGS.cpu_devices <= MAX_CPU_DEVICES:
        fail(f"--cpu_devices={FLAGS.cpu_devices} is out of range: use 0 (one device per core) to {MAX_CPU_DEVICES}")
    setup_logging()
    quiet_libraries(FLAGS.verbose)
    workdir = FLAGS.workdir or default_workdir(config)
    use_cpu_cores(FLAGS.cpu_devices)
    try:
        if FLAGS.distributed:  # before anything starts JAX's backend (the cache's folder name does)
            distributed.initialize(
                FLAGS.coordinator_address, FLAGS.num_processes, FLAGS.process_id, FLAGS.distributed_timeout
            )
        compile_cache.enable(FLAGS.compile_cache)
        result = train_and_evaluate(config, workdir)
    except UserError as error:
        fail(user_message(error, {"workdir": "--workdir"}))
    if distributed.is_primary():
        for line in next_steps(result["workdir"], config, workdir):
            log.info(line)


if __name__ == "__main__":
    app.run(main, flags_parser=parse_flags)
