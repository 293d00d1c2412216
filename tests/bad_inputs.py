"""Bad inputs by class over every command: fixtures, generated cases, a runner and a survey.

The project's rule: bad input of any kind ends with exactly one stderr line `jaxzoo: error: ...`,
exit code 2 and the file system as it was; a damaged checkpoint epoch is set aside and retrained
by `train` (exit 0, every epoch readable afterwards) and refused in one line by every reader.
This module states that rule as data, one class of bad input at a time, crossed with the commands:

  user_code      the user's own code: optimizer factories, Flax modules, torch_layout hooks,
                 schedule options, dataset functions and npz files, get_config
  damaged_epoch  6 kinds of damage x epochs 0, 1, 2 x every command that reads a workdir
  changed_data   the npz file a zoo was trained on, replaced or removed after training
  foreign_files  files that are not what a flag asks for (PNG, random bytes, text, archives,
                 junk folders, damaged workdir files, Small CNN Zoo folders with bad values)
  odd_values     huge, negative, NaN and non-numeric numbers, repeated or misspelled config
                 fields, options that do not apply to the zoo given

Survey (from the repository root; about 10 minutes on 2 cores):

    python tests/bad_inputs.py --survey [--root DIR] [--classes user_code,odd_values]
    python tests/bad_inputs.py --only 'damaged.train.*' --root DIR   # fnmatch patterns, full stderr

A test imports it with tests/ on sys.path (as conftest's zoo_modules): `build_fixtures(root)`
-> places, `generate_cases(places)` (or `CASES`), `run_case(case, root, timeout)` -> `Result`
whose `outcome` is one of `OUTCOMES` ("clean" is the rule kept).

Every case runs `python -m jaxzoo.<command>` in a subprocess on its own copies of the fixtures it
names (`{PLACE}` fields in its arguments, copied lazily into `<root>/cases/<id>/`), with the
repository, tests/ and the root (the user's modules) on PYTHONPATH and one JAX compilation cache
under the root. The subprocesses import jaxzoo from the repository this file is in.
"""

from __future__ import annotations

import argparse
import collections
import concurrent.futures
import csv
import dataclasses
import fnmatch
import hashlib
import io
import json
import os
import pathlib
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Literal

import numpy as np
from small_cnn_zoo_format import UZ_LAYOUT, UZ_STEPS

REPO = pathlib.Path(__file__).resolve().parents[1]
TESTS = REPO / "tests"

CLASSES = ("user_code", "damaged_epoch", "changed_data", "foreign_files", "odd_values")
OUTCOMES = ("clean", "traceback", "noise", "silent", "hang", "damage", "other")
ERROR_PREFIX = "jaxzoo: error: "
DEFAULT_TIMEOUT = 120.0
FIXTURE_TIMEOUT = 600.0
JAX_NOTES = ("For simplicity, JAX has removed", "-" * 20)  # lines after a traceback that name nothing
EXCEPTION_LINE = r"[A-Za-z_][\w.]*(Error|Exception|Interrupt|Exit)\b"  # 'ValueError: ...' of a traceback
PLACE_FIELD = re.compile(r"\{([A-Z][A-Z0-9_]*)\}")
CASE_LOCAL = ("OUT", "CASE")  # fields every case has: its output path and its own folder


# ---- cases -------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Case:
    """One bad invocation.

    `argv` holds `{PLACE}` fields: fixture places (copied into the case's folder before the run)
    or `{OUT}` (`<case>/out`, absent before the run) and `{CASE}` (the case's folder).
    `damage`: (place, path inside it, how) applied to the case's copy; a path ending in
    `@array` names the largest array file under that folder (see `resolve_target`).
    `cwd_files`: (name, place) copied into the working directory. `user_path`: the root (the
    user's modules) on PYTHONPATH."""

    id: str
    category: str  # the class of bad input (one of CLASSES)
    command: str  # jaxzoo.<command>
    argv: tuple[str, ...]
    expected: Literal["error", "resume"] = "error"  # one line, exit 2, nothing changed | exit 0, zoo whole
    damage: tuple[tuple[str, str, str], ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    cwd_files: tuple[tuple[str, str], ...] = ()
    user_path: bool = True

    def places(self) -> set[str]:
        """The fixture places the case needs (its fields less the case-local ones)."""
        text = " ".join((*self.argv, *(place for _, place in self.cwd_files), *(p for p, _, _ in self.damage)))
        return {name for name in PLACE_FIELD.findall(text) if name not in CASE_LOCAL}


def case(category: str, short: str, command: str, variant: str, argv: Sequence[str], **options: Any) -> Case:
    """A Case whose id is `<short>.<command>.<variant>`."""
    return Case(f"{short}.{command}.{variant}", category, command, tuple(argv), **options)


# A fresh zoo of one compiled group (1 model, 1 epoch): what an invocation that should be refused
# costs when it is not.
TRAIN = ("--config={CFG_FRESH}", "--workdir={OUT}")

# The commands that read a workdir: name -> (command, arguments, the workdir's place, where the
# damaged epoch folders are inside it, what is expected).
WORKDIR_READERS: dict[str, tuple[str, tuple[str, ...], str, str, str]] = {
    "train": ("train", ("--config={CFG_TINY}", "--workdir={ZOO}"), "ZOO", "checkpoints", "resume"),
    "export_trials": ("export", ("--workdir={ZOO}", "--out={OUT}", "--format=trials"), "ZOO", "checkpoints", "error"),
    "export_vectors": (
        "export",
        ("--workdir={ZOO}", "--out={OUT}", "--format=vectors"),
        "ZOO",
        "checkpoints",
        "error",
    ),
    "analyze": ("analyze", ("--workdir={ZOO}",), "ZOO", "checkpoints", "error"),
    "sparsify": ("sparsify", ("--workdir={ZOO}", "--out={OUT}", "--epochs=1"), "ZOO", "checkpoints", "error"),
    "benchmark": ("benchmark", ("--workdir={ZOO}", "--out={CASE}/table3.md"), "ZOO", "checkpoints", "error"),
    "merge": ("merge", ("--workdir={SHARDS}",), "SHARDS", "shards/0-of-2/checkpoints", "error"),
}

# Damage to one epoch folder: kind -> (path inside the epoch folder, how).
EPOCH_DAMAGES: dict[str, tuple[str, str]] = {
    "truncated_array": ("@array", "truncate"),
    "zeroed_array": ("@array", "zero"),
    "deleted_array": ("@array", "delete"),
    "truncated_metrics": ("metrics/metrics", "truncate"),
    "deleted_metadata": ("@metadata", "delete"),
    # a torn array file and no seal (the seal is what commits a layout-2 epoch)
    "unsealed_truncated_array": ("@array", "truncate_unsealed"),
}
EPOCHS = (0, 1, 2)  # the tiny zoo's epochs


def damaged_epoch_cases() -> list[Case]:
    return [
        Case(
            f"damaged.{reader}.{kind}.e{epoch}",
            "damaged_epoch",
            command,
            argv,
            expected=expected,
            damage=((place, f"{folder}/{epoch}/{target}", how),),
        )
        for reader, (command, argv, place, folder, expected) in WORKDIR_READERS.items()
        for kind, (target, how) in EPOCH_DAMAGES.items()
        for epoch in EPOCHS
    ]


# The commands that read the data a zoo trained on (the npz zoo, run where data.npz is relative to).
DATA_READERS: dict[str, tuple[str, tuple[str, ...]]] = {
    "export_with_data": ("export", ("--workdir={NPZ_ZOO}", "--out={OUT}", "--format=trials", "--with_data")),
    "analyze": ("analyze", ("--workdir={NPZ_ZOO}",)),
    "train_resume": ("train", ("--config={CFG_NPZ}", "--workdir={NPZ_ZOO}")),
    "train_extend": ("train", ("--config={CFG_NPZ}", "--workdir={NPZ_ZOO}", "--config.training.num_epochs=3")),
    "sparsify": ("sparsify", ("--workdir={NPZ_ZOO}", "--out={OUT}", "--epochs=1")),
}
DATA_CHANGES: dict[str, tuple[tuple[str, str], ...]] = {
    "other_images": (("data.npz", "NPZ_OTHER"),),  # same shapes and classes, other pixels
    "removed": (),
}


def changed_data_cases() -> list[Case]:
    return [
        Case(f"changed.{reader}.{change}", "changed_data", command, argv, cwd_files=files)
        for reader, (command, argv) in DATA_READERS.items()
        for change, files in DATA_CHANGES.items()
    ]


# user_code: (command, variant, arguments, options)
USER_CODE: list[tuple[str, str, tuple[str, ...], dict[str, Any]]] = [
    *(
        ("train", f"optimizer_{name}", (*TRAIN, f"--config.population.optimizer=('bad_user:{target}',)"), {})
        for name, target in (
            ("raises", "opt_raises"),
            ("raises_late", "opt_raises_late"),
            ("not_optax", "opt_not_optax"),
            ("returns_none", "opt_none"),
            ("wrong_updates", "opt_wrong_updates"),
            ("no_keywords", "opt_no_keywords"),
            ("a_constant", "OPT_CONSTANT"),
            ("a_class", "NoParams"),
        )
    ),
    ("train", "optimizer_import_fails", (*TRAIN, "--config.population.optimizer=('bad_broken:factory',)"), {}),
    *(
        ("train", f"module_{name}", (*TRAIN, f"--config.model.module=bad_user:{target}"), {})
        for name, target in (
            ("no_params", "NoParams"),
            ("fails_in_training", "TrainOnlyBroken"),
            ("returns_tuple", "ReturnsTuple"),
            ("a_function", "opt_raises"),
        )
    ),
    ("train", "module_import_fails", (*TRAIN, "--config.model.module=bad_broken:Net"), {}),
    *(
        (command, f"torch_layout_{junk}.{reader}", argv, {"env": (("BAD_LAYOUT", junk),)})
        for junk in ("number", "raises", "strings", "none")
        for reader, (command, argv) in {
            "trials": ("export", ("--workdir={LAYOUT_ZOO}", "--out={OUT}", "--format=trials")),
            "vectors": ("export", ("--workdir={LAYOUT_ZOO}", "--out={OUT}", "--format=vectors")),
            "card": ("analyze", ("--workdir={LAYOUT_ZOO}",)),
        }.items()
    ),
    *(
        (command, f"module_gone.{reader}", argv, {"user_path": False})
        for reader, (command, argv) in {
            "vectors": ("export", ("--workdir={LAYOUT_ZOO}", "--out={OUT}", "--format=vectors")),
            "card": ("analyze", ("--workdir={LAYOUT_ZOO}",)),
            "resume": ("train", ("--config={CFG_LAYOUT}", "--workdir={LAYOUT_ZOO}")),
        }.items()
    ),
    *(
        ("train", f"schedule_options_{name}", (f"--config={{CFG_SCHED_{name.upper()}}}", "--workdir={OUT}"), {})
        for name in ("text", "float_epochs", "list", "none", "nan", "bool")
    ),
    *(
        ("train", f"dataset_function_{name}", (*TRAIN, f"--config.data.name=py:bad_user:data_{name}"), {})
        for name in ("none", "raises", "text", "bad_shapes", "constant", "labels_text")
    ),
    *(
        ("train", f"npz_{name}", (*TRAIN, f"--config.data.name=npz:{{NPZ_{name.upper()}}}"), {})
        for name in ("missing_keys", "float_images", "labels_out_of_range", "object_arrays")
    ),
    *(
        ("train", f"get_config_{name}", (f"--config={{CFG_{name.upper()}}}", "--workdir={OUT}"), {})
        for name in ("none", "raises", "dict", "takes_argument", "missing", "import_fails", "text_epochs")
    ),
]

# foreign_files: (command, variant, arguments)
FOREIGN_FILES: list[tuple[str, str, tuple[str, ...]]] = [
    *(
        ("train", f"npz_{name}", (*TRAIN, f"--config.data.name=npz:{{{place}}}"))
        for name, place in (
            ("png", "PNG"),
            ("random_bytes", "RANDOM"),
            ("text", "TEXT"),
            ("empty", "EMPTY"),
            ("zip_of_text", "ZIP"),
            ("folder", "JUNK_DIR"),
        )
    ),
    *(
        ("train", f"config_{name}", (f"--config={{{place}}}", "--workdir={OUT}"))
        for name, place in (("text", "TEXT"), ("png", "PNG"), ("prose_py", "PROSE_PY"), ("empty_py", "EMPTY_PY"))
    ),
    *(
        (command, f"workdir_{name}", argv)
        for name, place in (("junk_folder", "JUNK_DIR"), ("junk_zoo", "JUNK_ZOO"), ("png", "PNG"))
        for command, argv in (
            ("train", ("--config={CFG_TINY}", f"--workdir={{{place}}}")),
            ("export", (f"--workdir={{{place}}}", "--out={OUT}")),
            ("analyze", (f"--workdir={{{place}}}",)),
            ("sparsify", (f"--workdir={{{place}}}", "--out={OUT}", "--epochs=1")),
            ("benchmark", (f"--workdir={{{place}}}", "--out={CASE}/table3.md")),
            ("merge", (f"--workdir={{{place}}}",)),
        )
    ),
    *(
        ("benchmark", f"vectors_{name}", (f"--vectors={{{place}}}",))
        for name, place in (("junk_folder", "JUNK_DIR"), ("png", "PNG"))
    ),
    *(
        ("ingest", f"source_{name}", (f"--source={{{place}}}", "--workdir={OUT}"))
        for name, place in (
            ("random_zip", "ZIP"),
            ("tar", "TAR"),
            ("truncated_zip", "TRUNCATED_ZIP"),
            ("random_bytes_zip", "RANDOM_ZIP"),
            ("png", "PNG"),
            ("empty_folder", "EMPTY_DIR"),
            ("junk_folder", "JUNK_DIR"),
            ("trial_junk_checkpoints", "TRIALS_JUNK"),
        )
    ),
    *(
        ("ingest", f"small_cnn_zoo_{name}", ("--source={" + place + "}", "--workdir={OUT}", "--dataset=mnist_5k"))
        for name, place in (
            ("text_batch_size", "UZ_TEXT_BATCH"),
            ("text_learning_rate", "UZ_TEXT_LR"),
            ("nan_learning_rate", "UZ_NAN_LR"),
            ("png_weights", "UZ_PNG_WEIGHTS"),
        )
    ),
    ("data", "info_npz_png", ("info", "npz:{PNG}")),
    ("data", "prepare_npz_random", ("prepare", "npz:{RANDOM}")),
]

# Workdir files replaced by junk: file -> the commands that read it (metrics.jsonl is read by no
# command: the metrics come from the checkpoints; train may rewrite models.json from the config).
WORKDIR_FILES: dict[str, tuple[str, ...]] = {
    "config.json": ("train", "export_vectors", "analyze"),
    "models.json": ("export_vectors", "analyze"),
}


def foreign_file_cases() -> list[Case]:
    cases = [case("foreign_files", "foreign", command, variant, argv) for command, variant, argv in FOREIGN_FILES]
    for name, readers in WORKDIR_FILES.items():
        for reader in readers:
            command, argv, place, _, _ = WORKDIR_READERS[reader]
            junk = ((place, name, "junk"),)
            cases.append(
                Case(f"foreign.{reader}.junk_{name.replace('.', '_')}", "foreign_files", command, argv, damage=junk)
            )
    return cases


# odd_values: (command, variant, arguments)
ODD_VALUES: list[tuple[str, str, tuple[str, ...]]] = [
    ("train", "cpu_devices_huge", (*TRAIN, "--cpu_devices=100000")),
    ("train", "cpu_devices_text", (*TRAIN, "--cpu_devices=many")),
    ("train", "compile_cache_in_a_file", (*TRAIN, "--compile_cache={CFG_FRESH}/cache")),
    ("analyze", "compile_cache_in_a_file", ("--workdir={ZOO}", "--compile_cache={ZOO}/models.json/cache")),
    ("train", "coordinator_nocolon", (*TRAIN, "--distributed", "--coordinator_address=nocolon")),
    ("train", "coordinator_port_text", (*TRAIN, "--distributed", "--coordinator_address=localhost:http")),
    ("train", "coordinator_port_huge", (*TRAIN, "--distributed", "--coordinator_address=localhost:99999")),
    ("train", "distributed_timeout_negative", (*TRAIN, "--distributed", "--distributed_timeout=-5")),
    (
        "train",
        "widths_given_twice",
        (*TRAIN, "--config.model.arch=mlp", "--config.model.widths=(16,16)", "--config.model.widths=(8,8)"),
    ),
    ("train", "lr_given_twice", (*TRAIN, "--config.population.lr=(0.1,)", "--config.population.lr=(0.01,)")),
    (
        "train",
        "init_given_twice",
        (*TRAIN, "--config.population.init=('kaiming_uniform',)", "--config.population.init=('xavier_normal',)"),
    ),
    ("train", "typo_in_section", (*TRAIN, "--config.populaton.lr=(0.1,)")),
    ("train", "typo_in_nested_field", (*TRAIN, "--config.runtime.chunck_size=4")),
    ("train", "new_key_in_schedule_options", (*TRAIN, "--config.training.schedule_options.cosine.warmup=1")),
    ("train", "field_inside_a_tuple", (*TRAIN, "--config.population.lr.value=0.1")),
    ("train", "lr_huge", (*TRAIN, "--config.population.lr=(1e300,)")),
    ("train", "lr_inf", (*TRAIN, "--config.population.lr=(1e999,)")),
    ("train", "lr_text", (*TRAIN, "--config.population.lr=('fast',)")),
    ("train", "lr_scalar_text", (*TRAIN, "--config.population.lr=fast")),
    ("train", "batch_size_huge", (*TRAIN, "--config.training.batch_size=1000000000000")),
    ("train", "batch_size_negative", (*TRAIN, "--config.training.batch_size=-16")),
    ("train", "batch_size_float", (*TRAIN, "--config.training.batch_size=16.5")),
    ("train", "num_epochs_float", (*TRAIN, "--config.training.num_epochs=2.5")),
    ("train", "num_seeds_float", (*TRAIN, "--config.population.num_seeds=2.5")),
    ("train", "first_seed_text", (*TRAIN, "--config.population.first_seed=one")),
    ("train", "seed_huge", (*TRAIN, "--config.seed=1000000000000000000000000000000")),
    ("train", "image_size_negative", (*TRAIN, "--config.data.image_size=-28")),
    ("train", "val_fraction_too_big", (*TRAIN, "--config.data.val_fraction=1.5")),
    ("train", "momentum_nan", (*TRAIN, "--config.population.momentum=nan")),
    ("train", "eps_negative", (*TRAIN, "--config.population.eps=(-1e-08,)")),
    ("train", "b1_above_one", (*TRAIN, "--config.population.b1=(1.5,)")),
    ("train", "train_fraction_inf", (*TRAIN, "--config.population.train_fraction=(1e999,)")),
    ("train", "label_noise_negative", (*TRAIN, "--config.population.label_noise=(-0.1,)")),
    ("train", "steps_per_call_negative", (*TRAIN, "--config.runtime.steps_per_call=-1")),
    ("train", "eval_batch_size_negative", (*TRAIN, "--config.runtime.eval_batch_size=-5")),
    ("train", "shard_index_negative", (*TRAIN, "--config.num_shards=2", "--config.shard_index=-1")),
    ("export", "epochs_huge", ("--workdir={ZOO}", "--out={OUT}", "--epochs=99999999999999999999999")),
    ("export", "epochs_empty", ("--workdir={ZOO}", "--out={OUT}", "--epochs=,")),
    ("export", "threshold_inf", ("--workdir={ZOO}", "--out={OUT}", "--threshold=1e400")),
    ("export", "threshold_text", ("--workdir={ZOO}", "--out={OUT}", "--threshold=abc")),
    ("export", "twin_weights_masked_no_twin", ("--workdir={ZOO}", "--out={OUT}", "--twin_weights=masked")),
    ("export", "inr_format_on_classification", ("--workdir={ZOO}", "--out={OUT}", "--format=dwsnets_mnist")),
    ("export", "inr_threshold", ("--workdir={INR}", "--out={OUT}", "--threshold=3")),
    ("export", "inr_optimizer_state_all", ("--workdir={INR}", "--out={OUT}", "--optimizer_state=all")),
    ("export", "inr_with_data", ("--workdir={INR}", "--out={OUT}", "--with_data")),
    ("export", "split_by_unknown", ("--workdir={ZOO}", "--out={OUT}", "--split_by=bogus")),
    ("export", "inr_split_by", ("--workdir={INR}", "--out={OUT}", "--split_by=init")),
    ("export", "small_cnn_zoo_of_cnn_s", ("--workdir={ZOO}", "--out={OUT}", "--format=small_cnn_zoo")),
    ("export", "arena_on_classification", ("--workdir={ZOO}", "--out={OUT}", "--format=arena")),
    ("export", "token_size_negative", ("--workdir={ZOO}", "--out={OUT}", "--format=sane", "--token_size=-1")),
    ("export", "token_size_fraction", ("--workdir={ZOO}", "--out={OUT}", "--format=sane", "--token_size=2.5")),
    ("export", "token_size_text", ("--workdir={ZOO}", "--out={OUT}", "--format=sane", "--token_size=abc")),
    ("export", "token_size_with_vectors", ("--workdir={ZOO}", "--out={OUT}", "--format=vectors", "--token_size=32")),
    ("export", "inr_token_size", ("--workdir={INR}", "--out={OUT}", "--token_size=32")),
    ("analyze", "inr_threshold", ("--workdir={INR}", "--threshold=3")),
    ("analyze", "inr_agreement_images", ("--workdir={INR}", "--agreement_images=5")),
    ("analyze", "inr_embedding_points", ("--workdir={INR}", "--embedding_points=10")),
    ("analyze", "threshold_inf", ("--workdir={ZOO}", "--threshold=inf")),
    ("analyze", "agreement_images_text", ("--workdir={ZOO}", "--agreement_images=many")),
    ("analyze", "embedding_points_huge", ("--workdir={ZOO}", "--embedding_points=1000000000000000")),
    ("sparsify", "epochs_huge", ("--workdir={ZOO}", "--out={OUT}", "--epochs=1000000000000")),
    ("sparsify", "epochs_text", ("--workdir={ZOO}", "--out={OUT}", "--epochs=ten")),
    ("sparsify", "inr_zoo", ("--workdir={INR}", "--out={OUT}", "--epochs=1")),
    ("benchmark", "epochs_huge", ("--workdir={ZOO}", "--epochs=99999999999", "--out={CASE}/table3.md")),
    ("benchmark", "threshold_inf", ("--workdir={ZOO}", "--threshold=inf", "--out={CASE}/table3.md")),
    ("benchmark", "epochs_text", ("--workdir={ZOO}", "--epochs=last", "--out={CASE}/table3.md")),
    ("benchmark", "inr_zoo", ("--workdir={INR}", "--out={CASE}/table3.md")),
    ("merge", "inr_zoo", ("--workdir={INR}",)),
]


def generate_cases(places: Mapping[str, str] | None = None) -> list[Case]:
    """Every case, class by class; with `places`, only those whose fixtures were built."""
    cases = [
        *(case("user_code", "user", c, v, a, **o) for c, v, a, o in USER_CODE),
        *damaged_epoch_cases(),
        *changed_data_cases(),
        *foreign_file_cases(),
        *(case("odd_values", "odd", c, v, a) for c, v, a in ODD_VALUES),
    ]
    ids = collections.Counter(c.id for c in cases)
    assert max(ids.values()) == 1, [i for i, n in ids.items() if n > 1]
    if places is not None:
        cases = [c for c in cases if c.places() <= set(places)]
    return cases


CASES = generate_cases()


# ---- fixtures ----------------------------------------------------------------------------------

TINY_CONFIG = '''"""{doc}"""

from jaxzoo.config import base_config


def get_config():
    config = base_config()
    config.name = {name!r}
    config.data.max_examples_per_split = 60
    config.training.num_epochs = 2
    config.runtime.progress = False
    config.runtime.async_checkpointing = True
    pop = config.population
    pop.num_seeds = 1
    pop.activation = ("tanh", "relu")
    pop.init = ("kaiming_uniform",)
    pop.optimizer = ("adam", "sgd")
    pop.lr = (1e-3,)
    pop.weight_decay = (1e-3,)
    pop.dropout = (0.0,)
{extra}    return config
'''

INR_CONFIG = '''"""A small INR zoo: 8 mnist_5k images, 1 seed, 20 steps in 2 epochs (conftest's inr_zoo_config, smaller)."""

from jaxzoo.inr.config import base_inr_config


def get_config():
    config = base_inr_config()
    config.name = "bad_inputs_inr"
    config.images.count = 8
    config.population.num_seeds = 1
    config.training.num_steps = 20
    config.training.steps_per_epoch = 10
    config.training.lr = 1e-3
    config.training.target_psnr = 22.0
    config.runtime.progress = False
    config.runtime.chunk_size = 8
    config.model.coordinates = "xy"
    config.model.output_offset = 0.5
    config.model.bias_init = "zero"
    config.model.last_init = "torch_default"
    return config
'''

# Tiny-config variants: place -> (doc, extra lines of get_config).
TINY_VARIANTS: dict[str, tuple[str, str]] = {
    "CFG_TINY": ("4 CNN-s models (tanh/relu x adam/sgd) on 60 examples per split, 2 epochs (conftest's tiny zoo).", ""),
    "CFG_FRESH": (
        "The tiny zoo cut to 1 model (relu, adam) and 1 epoch: one compiled group.",
        '    config.training.num_epochs = 1\n    pop.activation = ("relu",)\n    pop.optimizer = ("adam",)\n',
    ),
    "CFG_NPZ": (
        "The tiny zoo on npz:data.npz, relative to the working directory.",
        '    config.data.name = "npz:data.npz"\n',
    ),
    "CFG_LAYOUT": (
        "The tiny zoo of bad_user.JunkLayout, whose torch_layout hook BAD_LAYOUT makes junk.",
        '    config.model.module = "bad_user:JunkLayout"\n    pop.activation = ("relu",)\n',
    ),
    "CFG_TEXT_EPOCHS": ("num_epochs given as text in the file.", '    config.training.num_epochs = "two"\n'),
    **{
        f"CFG_SCHED_{name}": (
            f"training.schedule_options with a value of the wrong type ({name.lower()}).",
            f'    pop.schedule = ("step", "warmup_cosine")\n    config.training.schedule_options = {options}\n',
        )
        for name, options in {
            "TEXT": '{"step": {"gamma": "half"}}',
            "FLOAT_EPOCHS": '{"step": {"every_epochs": 1.5}}',
            "LIST": '{"step": [0.5]}',
            "NONE": '{"warmup_cosine": {"warmup_fraction": None}}',
            "NAN": '{"step": {"gamma": float("nan")}}',
            "BOOL": '{"step": {"every_epochs": True}}',
        }.items()
    },
}

# Config files that are the user's code gone wrong: place -> source.
BAD_CONFIGS: dict[str, str] = {
    "CFG_NONE": "def get_config():\n    return None\n",
    "CFG_RAISES": "def get_config():\n    raise RuntimeError('the config cannot be built')\n",
    "CFG_DICT": "def get_config():\n    return {'name': 'plain_dict', 'training': {'num_epochs': 1}}\n",
    "CFG_TAKES_ARGUMENT": "from jaxzoo.config import base_config\n\n\ndef get_config(size):\n    return base_config()\n",
    "CFG_MISSING": "NAME = 'no get_config here'\n",
    "CFG_IMPORT_FAILS": "import no_such_package_for_bad_inputs\n\n\ndef get_config():\n    return None\n",
}

# The user's code, importable from the root: optimizer factories, Flax modules, dataset functions.
BAD_USER = '''"""The user's code gone wrong (written by tests/bad_inputs.py)."""

import os

import flax.linen as nn
import jax.numpy as jnp
import numpy as np
import optax

OPT_CONSTANT = 3


def opt_raises(learning_rate, weight_decay):
    raise RuntimeError("the user's optimizer factory failed")


def opt_raises_late(learning_rate, weight_decay):
    """Builds when called with the boundary check's probe value (0.01); fails when the training
    program calls it (the zoo's 1e-3, or a traced value)."""
    if learning_rate < 0.005:
        raise RuntimeError("the user's optimizer factory failed at a small learning rate")
    return optax.sgd(learning_rate)


def opt_not_optax(learning_rate, weight_decay):
    return {"learning_rate": learning_rate}


def opt_none(learning_rate, weight_decay):
    return None


def opt_wrong_updates(learning_rate, weight_decay):
    return optax.GradientTransformation(lambda params: (), lambda updates, state, params=None: (jnp.zeros(3), state))


def opt_no_keywords():
    return optax.sgd(0.1)


class NoParams(nn.Module):
    num_classes: int = 10

    @nn.compact
    def __call__(self, x, train: bool = False):
        return jnp.zeros((x.shape[0], self.num_classes))


class TrainOnlyBroken(nn.Module):
    """Fine in evaluation (which the config check traces), broken in training."""

    @nn.compact
    def __call__(self, x, train: bool = False):
        if train:
            raise RuntimeError("the user's module fails in training")
        return nn.Dense(10)(x.reshape(x.shape[0], -1))


class ReturnsTuple(nn.Module):
    @nn.compact
    def __call__(self, x, train: bool = False):
        logits = nn.Dense(10)(x.reshape(x.shape[0], -1))
        return logits, logits


class JunkLayout(nn.Module):
    """A linear model whose torch_layout hook returns junk when BAD_LAYOUT says which."""

    @nn.compact
    def __call__(self, x, train: bool = False):
        return nn.Dense(10, name="out")(x.reshape(x.shape[0], -1))

    @staticmethod
    def torch_layout(params):
        mode = os.environ.get("BAD_LAYOUT", "ok")
        if mode == "number":
            return 5
        if mode == "raises":
            raise RuntimeError("the user's torch_layout failed")
        if mode == "strings":
            return [("out.weight", "not an array"), ("out.bias", None)]
        if mode == "none":
            return None
        kernel = np.asarray(params["out"]["kernel"])
        return [("out.weight", np.swapaxes(kernel, -1, -2)), ("out.bias", np.asarray(params["out"]["bias"]))]


def _splits(x_train, y_train, x_test, y_test):
    return {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}


def data_none():
    return None


def data_raises():
    raise RuntimeError("the user's dataset function failed")


def data_text():
    return "mnist"


def data_bad_shapes():
    return _splits(np.zeros((10, 5), np.uint8), np.zeros(3, np.int64), np.zeros((4, 5), np.uint8), np.zeros(4))


def data_constant():
    """Images of one value: a channel std of 0."""
    images = np.full((40, 8, 8), 7, np.uint8)
    labels = np.arange(40) % 10
    return _splits(images, labels, images[:20], labels[:20])


def data_labels_text():
    images = np.random.default_rng(0).integers(0, 255, (40, 8, 8), dtype=np.uint8)
    labels = np.array(["cat", "dog"] * 20)
    return _splits(images, labels, images[:20], labels[:20])
'''

BAD_BROKEN = '''"""A user module that does not import."""

raise ImportError("bad_broken cannot be imported: a dependency is missing")
'''

# ModelZooDataset trial parameters (tests/test_ingest.py's), for a trial whose checkpoints are junk.
TRIAL_PARAMS = {
    "model::type": "CNN",
    "model::channels_in": 1,
    "model::o_dim": 10,
    "model::nlin": "tanh",
    "model::init_type": "kaiming_uniform",
    "model::dropout": 0.0,
    "model::use_bias": True,
    "optim::optimizer": "adam",
    "optim::lr": 1e-3,
    "optim::wd": 1e-4,
    "seed": 1,
    "training::batchsize": 10,
    "training::epochs_train": 2,
    "dataset::dump": "zoos/data/MNIST/dataset.pt",
}

# Small CNN Zoo folders with one bad column: place -> {column: value} (None: weights.npy is a PNG).
UZ_VARIANTS: dict[str, dict[str, str] | None] = {
    "UZ_TEXT_BATCH": {"config.batchsize": "large"},
    "UZ_TEXT_LR": {"config.learning_rate": "fast"},
    "UZ_NAN_LR": {"config.learning_rate": "nan"},
    "UZ_PNG_WEIGHTS": None,
}


def png_bytes() -> bytes:
    """A real 8x8 RGB PNG."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(3).integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


def random_bytes(size: int, seed: int) -> bytes:
    return np.random.default_rng(seed).integers(0, 256, size, dtype=np.uint8).tobytes()


def write_npz(path: pathlib.Path, seed: int, **replace: np.ndarray | None) -> None:
    """Random 28x28 uint8 images of 10 classes (80 train, 40 test); `replace` adds or swaps
    arrays (None drops one)."""
    rng = np.random.default_rng(seed)
    arrays: dict[str, np.ndarray | None] = {
        "x_train": rng.integers(0, 256, (80, 28, 28), dtype=np.uint8),
        "y_train": np.arange(80) % 10,
        "x_test": rng.integers(0, 256, (40, 28, 28), dtype=np.uint8),
        "y_test": np.arange(40) % 10,
    }
    arrays.update(replace)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **{k: v for k, v in arrays.items() if v is not None})


def write_small_cnn_zoo(folder: pathlib.Path, columns: dict[str, str] | None) -> None:
    """2 models x 9 checkpoints in the Small CNN Zoo's format (plain metrics.csv) with `columns`
    set in every row; None: weights.npy holds a PNG."""
    folder.mkdir(parents=True)
    offsets, start = [], 0
    with open(folder / "layout.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["varname", "start_idx", "end_idx", "size", "shape"])
        for name, shape in UZ_LAYOUT:
            size = int(np.prod(shape))
            writer.writerow([name, start, start + size, size, str(shape)])
            offsets.append(start)
            start += size
    rows = []
    for m in range(2):
        for step in UZ_STEPS:
            row = {
                "config.activation": "relu",
                "config.b_init": "zeros",
                "config.batchsize": "32",
                "config.dataset": "mnist",
                "config.dropout": "0.0",
                "config.l2reg": "1e-5",
                "config.learning_rate": "0.001",
                "config.optimizer": "adam",
                "config.random_seed": str(m),
                "config.train_fraction": "1.0",
                "config.w_init": "he_normal",
                "modeldir": f"zoo/mnist/unit_{m:05d}",
                "step": str(step),
                "test_accuracy": "0.5",
                "test_loss": "1.0",
                "train_accuracy": "0.5",
                "train_loss": "1.0",
            }
            row.update(columns or {})
            rows.append(row)
    with open(folder / "metrics.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    if columns is None:
        (folder / "weights.npy").write_bytes(png_bytes())
    else:
        np.save(folder / "weights.npy", np.random.default_rng(1).normal(0, 0.2, (len(rows), start)).astype(np.float32))


def write_trials_with_junk_checkpoints(folder: pathlib.Path) -> None:
    """One ModelZooDataset trial (params.json, result.json) whose checkpoint files are random bytes."""
    trial = folder / "NN_tune_trainable_00000_seed=1"
    trial.mkdir(parents=True)
    (trial / "params.json").write_text(json.dumps(TRIAL_PARAMS))
    lines = [
        {"train_loss": 2.0, "train_acc": 0.1, "test_loss": 2.1, "test_acc": 0.1, "training_iteration": e}
        for e in range(3)
    ]
    (trial / "result.json").write_text("".join(json.dumps(line) + "\n" for line in lines))
    for epoch in range(3):
        (trial / f"checkpoint_{epoch:06d}").mkdir()
        (trial / f"checkpoint_{epoch:06d}" / "checkpoints").write_bytes(random_bytes(2048, epoch))


def write_static_files(root: pathlib.Path) -> dict[str, str]:
    """The user's modules (in root), config files and foreign files -> their places."""
    (root / "bad_user.py").write_text(BAD_USER)
    (root / "bad_broken.py").write_text(BAD_BROKEN)
    configs, files = root / "configs", root / "files"
    for folder in (configs, files):  # written anew each time (they are small)
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir()
    places: dict[str, str] = {}

    def put(place: str, path: pathlib.Path, content: bytes | str | None = None) -> None:
        if isinstance(content, str):
            path.write_text(content)
        elif content is not None:
            path.write_bytes(content)
        places[place] = str(path)

    for place, (doc, extra) in TINY_VARIANTS.items():
        put(place, configs / f"{place.lower()}.py", TINY_CONFIG.format(doc=doc, name="test_zoo", extra=extra))
    put("CFG_INR", configs / "cfg_inr.py", INR_CONFIG)
    for place, source in BAD_CONFIGS.items():
        put(place, configs / f"{place.lower()}.py", source)

    put("PNG", files / "image.png", png_bytes())
    put("RANDOM", files / "random.bin", random_bytes(4096, 0))
    put("TEXT", files / "notes.txt", "These are my notes about the zoo.\nNot a config, not an npz.\n")
    put("EMPTY", files / "empty.npz", b"")
    put("PROSE_PY", files / "prose.py", "This config trains the zoo we talked about on Monday.\n")
    put("EMPTY_PY", files / "empty.py", "")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("readme.txt", "not a zoo\n" * 200)
        archive.writestr("trials/notes.txt", "nothing here\n" * 200)
    put("ZIP", files / "archive.zip", buffer.getvalue())
    put("TRUNCATED_ZIP", files / "truncated.zip", buffer.getvalue()[: len(buffer.getvalue()) // 2])
    put("RANDOM_ZIP", files / "random.zip", random_bytes(4096, 1))
    with tarfile.open(files / "archive.tar.gz", "w:gz") as archive:
        archive.add(files / "notes.txt", "zoo/notes.txt")
    put("TAR", files / "archive.tar.gz")
    (files / "empty_dir").mkdir()
    put("EMPTY_DIR", files / "empty_dir")
    junk = files / "junk_dir"
    (junk / "sub").mkdir(parents=True)
    (junk / "a.bin").write_bytes(random_bytes(512, 2))
    (junk / "sub" / "b.txt").write_text("junk\n")
    put("JUNK_DIR", junk)
    junk_zoo = files / "junk_zoo"  # the names of a workdir, junk inside
    (junk_zoo / "checkpoints" / "0" / "state").mkdir(parents=True)
    (junk_zoo / "config.json").write_bytes(random_bytes(300, 3))
    (junk_zoo / "models.json").write_text("models: many\n")
    (junk_zoo / "metrics.jsonl").write_text("{not json\n")
    (junk_zoo / "checkpoints" / "0" / "state" / "_METADATA").write_bytes(random_bytes(100, 4))
    put("JUNK_ZOO", junk_zoo)
    write_trials_with_junk_checkpoints(files / "trials_junk" / "tune_zoo_mnist")
    put("TRIALS_JUNK", files / "trials_junk" / "tune_zoo_mnist")
    for place, columns in UZ_VARIANTS.items():
        write_small_cnn_zoo(files / place.lower(), columns)
        put(place, files / place.lower())

    rng = np.random.default_rng(5)
    write_npz(files / "npz_a" / "data.npz", seed=10)
    write_npz(files / "npz_b" / "data.npz", seed=11)
    put("NPZ_OTHER", files / "npz_b" / "data.npz")
    bad_npz = {
        "NPZ_MISSING_KEYS": {"x_test": None, "y_test": None},
        "NPZ_FLOAT_IMAGES": {"x_train": rng.normal(size=(80, 28, 28)).astype(np.float32)},
        "NPZ_LABELS_OUT_OF_RANGE": {"y_train": np.arange(80) + 1000, "num_classes": np.array(10)},
        "NPZ_OBJECT_ARRAYS": {"y_train": None},  # y_train written below as an object array
    }
    for place, replace in bad_npz.items():
        write_npz(files / f"{place.lower()}.npz", seed=12, **replace)
        put(place, files / f"{place.lower()}.npz")
    with zipfile.ZipFile(files / "npz_object_arrays.npz", "a") as archive:  # a pickled array
        saved = io.BytesIO()
        np.save(saved, np.array([{"label": 1}] * 80, dtype=object), allow_pickle=True)
        archive.writestr("y_train.npy", saved.getvalue())
    return places


# Trained fixtures: place -> (arguments of `python -m jaxzoo.train`, working directory or None).
def trained_fixtures(root: pathlib.Path, places: Mapping[str, str]) -> dict[str, list[tuple[list[str], str | None]]]:
    zoos = root / "zoos"
    shards = [
        [
            f"--config={places['CFG_TINY']}",
            f"--workdir={zoos / 'shards'}",
            "--config.num_shards=2",
            f"--config.shard_index={k}",
        ]
        for k in range(2)
    ]
    return {
        "ZOO": [([f"--config={places['CFG_TINY']}", f"--workdir={zoos / 'zoo'}"], None)],
        "NPZ_ZOO": [
            ([f"--config={places['CFG_NPZ']}", f"--workdir={zoos / 'npz_zoo'}"], str(root / "files" / "npz_a"))
        ],
        "SHARDS": [(argv, None) for argv in shards],
        "LAYOUT_ZOO": [([f"--config={places['CFG_LAYOUT']}", f"--workdir={zoos / 'layout_zoo'}"], None)],
        "INR": [([f"--config={places['CFG_INR']}", f"--workdir={zoos / 'inr'}"], None)],
    }


def environment(root: pathlib.Path, user_path: bool = True, extra: Iterable[tuple[str, str]] = ()) -> dict[str, str]:
    """The subprocesses' environment: this repository (and tests/, and the root with the user's
    modules) first on PYTHONPATH; the compilation cache, data cache and kernel build of the test
    session (tests/conftest.py sets them), or the root's own for a survey."""
    env = {k: v for k, v in os.environ.items() if k not in ("JAXZOO_VERBOSE", "PYTHONPATH")}
    paths = [str(REPO), str(TESTS), *([str(root)] if user_path else [])]
    env.update(PYTHONPATH=os.pathsep.join(paths), PYTHONDONTWRITEBYTECODE="1")
    # The caches of the test session when it has them (conftest), else the root's own.
    env.setdefault("JAX_COMPILATION_CACHE_DIR", str(root / "jax-cache"))
    env.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.5")
    env.setdefault("JAXZOO_DATA_DIR", str(root / "data-cache"))
    env.setdefault("JAXZOO_KERNEL_DIR", str(root / "kernels"))
    env.update(dict(extra))
    return env


@dataclasses.dataclass
class Completed:
    returncode: int | None  # None: killed at the timeout
    stdout: str
    stderr: str
    seconds: float


def run_command(
    command: str, argv: Sequence[str], cwd: str | os.PathLike, env: Mapping[str, str], timeout: float
) -> Completed:
    """`python -m jaxzoo.<command> argv` in its own process group, killed whole at the timeout."""
    start = time.monotonic()
    process = subprocess.Popen(
        [sys.executable, "-m", f"jaxzoo.{command}", *argv],
        cwd=cwd,
        env=dict(env),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        errors="replace",
        start_new_session=True,
    )
    try:
        stdout, stderr = process.communicate(timeout=timeout)
        code: int | None = process.returncode
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        stdout, stderr = process.communicate()
        code = None
    return Completed(code, stdout, stderr, time.monotonic() - start)


def build_fixtures(
    root: str | os.PathLike,
    jobs: int = 2,
    log: Callable[[str], None] | None = print,
    zoos: Iterable[str] | None = None,
) -> dict[str, str]:
    """Writes every fixture file under `root` and trains the fixture zoos (all, or the places in
    `zoos`; those `root/places.json` lists are reused) -> {place: absolute path}. A zoo whose
    training fails is left out (logged); `generate_cases(places)` then leaves out the cases that
    need it."""
    root = pathlib.Path(root).absolute()
    log = log or (lambda message: None)
    record = root / "places.json"
    if not record.exists() and root.exists() and any(root.iterdir()):
        raise FileExistsError(f"{root} holds something other than fixtures: give an empty or a new folder")
    trained = json.loads(record.read_text()) if record.exists() else {}
    root.mkdir(parents=True, exist_ok=True)
    places = write_static_files(root)
    env = environment(root)

    def train(place: str, runs: list[tuple[list[str], str | None]]) -> tuple[str, str | None]:
        shutil.rmtree(root / "zoos" / place.lower(), ignore_errors=True)  # an earlier, unfinished try
        for argv, cwd in runs:
            done = run_command("train", argv, cwd or root, env, FIXTURE_TIMEOUT)
            if done.returncode != 0:
                return place, f"exit {done.returncode}: {Result.summary(done.stderr)[:300]}"
        return place, None

    start = time.monotonic()
    fixtures = trained_fixtures(root, places)
    fixtures = {place: runs for place, runs in fixtures.items() if zoos is None or place in set(zoos)}
    places.update({p: trained[p] for p in fixtures if p in trained and pathlib.Path(trained[p]).exists()})
    missing = {p: runs for p, runs in fixtures.items() if p not in places}
    with concurrent.futures.ThreadPoolExecutor(jobs) as pool:
        for place, failure in pool.map(lambda item: train(*item), missing.items()):
            if failure:
                log(f"fixture {place} could not be trained ({failure}): its cases are left out")
            else:
                places[place] = str(root / "zoos" / place.lower())
    if missing:
        log(f"fixture zoos {sorted(missing)} trained in {time.monotonic() - start:.0f} s")
    record.write_text(json.dumps(places, indent=1))
    return places


# ---- running a case ------------------------------------------------------------------------------


@dataclasses.dataclass
class Result:
    """What a case did: its outcome (one of OUTCOMES) and why."""

    case: Case
    outcome: str
    returncode: int | None
    stderr: str
    seconds: float
    detail: str = ""

    @property
    def last_line(self) -> str:
        return self.summary(self.stderr)

    @staticmethod
    def summary(stderr: str) -> str:
        """The stderr line that says what happened: the last `jaxzoo: error:` line, else the last
        exception line of a traceback, else the last line (JAX's notes on filtered frames left out)."""
        lines = [line for line in stderr.splitlines() if line.strip() and not line.startswith(JAX_NOTES)]
        for pattern in (ERROR_PREFIX, EXCEPTION_LINE):
            found = [line for line in lines if re.match(pattern, line)]
            if found:
                return found[-1]
        return lines[-1] if lines else ""


def resolve_target(folder: pathlib.Path, target: str) -> pathlib.Path:
    """`target` inside `folder`; `<dir>/@array`: the largest file in a `d/` folder under
    `<dir>` (an OCDBT data file of the checkpoint's arrays); `@metadata`: the first
    `_METADATA` (the tree of the state's first block)."""
    if target == "@metadata":
        return min(folder.rglob("_METADATA"), key=str)
    if not target.endswith("@array"):
        return folder / target
    base = folder / target[: -len("@array")]
    arrays = [p for p in base.rglob("*") if p.is_file() and p.parent.name == "d"]
    if not arrays:
        raise FileNotFoundError(f"no array file under {base}")
    return max(arrays, key=lambda p: (p.stat().st_size, str(p)))


def truncate_unsealed(path: pathlib.Path) -> None:
    """Truncates an array file and removes its epoch's seal (jaxzoo_files.json, if any)."""
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    epoch_dir = next(folder for folder in path.parents if (folder / "metrics").is_dir())
    (epoch_dir / "jaxzoo_files.json").unlink(missing_ok=True)


DAMAGES: dict[str, Callable[[pathlib.Path], None]] = {
    "truncate": lambda p: p.write_bytes(p.read_bytes()[: p.stat().st_size // 2]),
    "truncate_unsealed": truncate_unsealed,
    "zero": lambda p: p.write_bytes(b"\0" * p.stat().st_size),
    "delete": lambda p: p.unlink(),
    "junk": lambda p: p.write_bytes(random_bytes(max(64, p.stat().st_size), 7)),
}


def snapshot(folder: pathlib.Path) -> dict[str, str]:
    """Every path under `folder` -> sha256 of a file, 'dir' for a folder (empty folders count)."""
    found = {}
    for path in sorted(folder.rglob("*")):
        key = str(path.relative_to(folder))
        if path.is_symlink() or not path.is_dir():
            found[key] = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "other"
        else:
            found[key] = "dir"
    return found


def changes(before: Mapping[str, str], after: Mapping[str, str]) -> list[str]:
    """'+path' (new), '-path' (gone), '~path' (changed), new paths first."""
    return [
        *(f"+{p}" for p in sorted(set(after) - set(before))),
        *(f"-{p}" for p in sorted(set(before) - set(after))),
        *(f"~{p}" for p in sorted(set(before) & set(after)) if before[p] != after[p]),
    ]


def prepare(case: Case, places: Mapping[str, str], folder: pathlib.Path) -> dict[str, str]:
    """The case's folder: copies of its fixtures in inputs/, damage applied, the working
    directory cwd/ with its files -> the values of its fields."""
    if folder.exists():
        shutil.rmtree(folder)
    (folder / "inputs").mkdir(parents=True)
    (folder / "cwd").mkdir()
    values = {"OUT": str(folder / "out"), "CASE": str(folder)}
    for place in sorted(case.places()):
        source = pathlib.Path(places[place])
        target = folder / "inputs" / f"{place.lower()}{''.join(source.suffixes) if source.is_file() else ''}"
        (shutil.copytree if source.is_dir() else shutil.copy2)(source, target)
        values[place] = str(target)
    for name, place in case.cwd_files:
        shutil.copy2(places[place], folder / "cwd" / name)
    for place, target, how in case.damage:
        DAMAGES[how](resolve_target(pathlib.Path(values[place]), target))
    return values


def fill(argv: Iterable[str], values: Mapping[str, str]) -> list[str]:
    return [PLACE_FIELD.sub(lambda m: values[m[1]], arg) for arg in argv]


def classify_error(done: Completed, changed: list[str]) -> tuple[str, str]:
    """The outcome of a case that must end in one line (see OUTCOMES)."""
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    ours = [line for line in lines if line.startswith(ERROR_PREFIX)]
    if done.returncode is None:
        return "hang", "killed at the timeout"
    if "Traceback" in done.stderr:
        return "traceback", ""
    if done.returncode == 0:
        return "silent", f"changed: {', '.join(changed[:4])}" if changed else ""
    if done.returncode == 2 and lines == ours and len(ours) == 1:
        return ("damage", f"changed: {', '.join(changed[:4])}") if changed else ("clean", "")
    if done.returncode == 2 and ours:
        return "noise", f"{len(lines)} stderr lines"
    return "other", f"exit {done.returncode}"


def run_case(
    case: Case, root: str | os.PathLike, timeout: float = DEFAULT_TIMEOUT, places: Mapping[str, str] | None = None
) -> Result:
    """Runs one case on fresh copies of its fixtures in `<root>/cases/<id>` and classifies it."""
    root = pathlib.Path(root).absolute()
    places = places if places is not None else json.loads((root / "places.json").read_text())
    folder = root / "cases" / case.id
    values = prepare(case, places, folder)
    env = environment(root, case.user_path, case.env)
    before = snapshot(folder)
    done = run_command(case.command, fill(case.argv, values), folder / "cwd", env, timeout)
    if case.expected == "error":
        outcome, detail = classify_error(done, changes(before, snapshot(folder)))
        return Result(case, outcome, done.returncode, done.stderr, done.seconds, detail)
    # "resume": exit 0, then every epoch of the workdir reads (an export of every epoch's vectors).
    if done.returncode is None:
        return Result(case, "hang", None, done.stderr, done.seconds, "killed at the timeout")
    if "Traceback" in done.stderr:
        return Result(case, "traceback", done.returncode, done.stderr, done.seconds)
    if done.returncode != 0:
        return Result(case, "other", done.returncode, done.stderr, done.seconds, f"exit {done.returncode}")
    workdir = fill([argv.split("=", 1)[1] for argv in case.argv if argv.startswith("--workdir=")], values)[0]
    check = run_command(
        "export",
        [f"--workdir={workdir}", f"--out={folder / 'check'}", "--format=vectors"],
        folder / "cwd",
        env,
        timeout,
    )
    if check.returncode == 0:
        return Result(case, "clean", 0, done.stderr, done.seconds)
    return Result(case, "damage", 0, check.stderr, done.seconds + check.seconds, "the export after the resume failed")


def run_cases(
    cases: Sequence[Case],
    root: str | os.PathLike,
    places: Mapping[str, str],
    jobs: int = 2,
    timeout: float = DEFAULT_TIMEOUT,
    on_result: Callable[[Result], None] | None = None,
) -> list[Result]:
    """Every case on a pool of `jobs` threads (training cases first: they take longest) -> results
    in the order of `cases`."""
    slow = {"train": 0, "sparsify": 1, "analyze": 2}
    order = sorted(range(len(cases)), key=lambda i: slow.get(cases[i].command, 3))
    results: dict[int, Result] = {}
    with concurrent.futures.ThreadPoolExecutor(jobs) as pool:
        futures = {pool.submit(run_case, cases[i], root, timeout, places): i for i in order}
        for future in concurrent.futures.as_completed(futures):
            results[futures[future]] = future.result()
            if on_result:
                on_result(results[futures[future]])
    return [results[i] for i in range(len(cases))]


# ---- the survey ----------------------------------------------------------------------------------


def survey_table(results: Sequence[Result]) -> str:
    """Rows: class; columns: cases tried and the count of each outcome; then every non-clean case."""
    counts = {c: collections.Counter(r.outcome for r in results if r.case.category == c) for c in CLASSES}
    counts["total"] = collections.Counter(r.outcome for r in results)
    head = f"{'class':<15}{'cases':>7}" + "".join(f"{o:>11}" for o in OUTCOMES)
    lines = [head, "-" * len(head)]
    for category, counter in counts.items():
        if category == "total":
            lines.append("-" * len(head))
        lines.append(f"{category:<15}{sum(counter.values()):>7}" + "".join(f"{counter[o]:>11}" for o in OUTCOMES))
    bad = [r for r in results if r.outcome != "clean"]
    lines += ["", f"non-clean cases ({len(bad)}):"]
    for r in bad:
        detail = f" [{r.detail}]" if r.detail else ""
        lines.append(f"  {r.case.id}  {r.outcome}{detail}  | {r.last_line[:200]}")
    return "\n".join(lines)


def git_head() -> str:
    """The repository's commit, '+ changes' when its tracked files differ from it."""
    try:
        head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
        dirty = subprocess.run(["git", "-C", str(REPO), "diff", "--quiet", "HEAD"], capture_output=True).returncode
    except OSError:
        return "unknown"
    return head.stdout.strip() + (" + changes" if dirty else "") if head.returncode == 0 else "unknown"


def jaxzoo_location(root: pathlib.Path) -> str:
    """Where the subprocesses import jaxzoo from."""
    done = subprocess.run(
        [sys.executable, "-c", "import jaxzoo; print(jaxzoo.__file__)"],
        cwd=root,
        env=environment(root),
        capture_output=True,
        text=True,
        timeout=120,
    )
    return done.stdout.strip() or done.stderr.strip()[-300:]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--survey", action="store_true", help="run every case (of --classes) and print the table")
    parser.add_argument("--only", default=None, help="comma-separated case ids or fnmatch patterns; prints stderr")
    parser.add_argument("--root", default=None, help="fixtures and case folders (default: a new temporary folder)")
    parser.add_argument("--classes", default=",".join(CLASSES), help=f"comma-separated, of {', '.join(CLASSES)}")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT)
    parser.add_argument("--list", action="store_true", help="list the case ids and exit")
    args = parser.parse_args(argv)
    classes = [c for c in args.classes.split(",") if c]
    unknown = sorted(set(classes) - set(CLASSES))
    if unknown:
        parser.error(f"unknown classes {unknown}: choose from {', '.join(CLASSES)}")
    cases = [c for c in CASES if c.category in classes]
    if args.only:
        patterns = args.only.split(",")
        cases = [c for c in CASES if any(fnmatch.fnmatchcase(c.id, p) for p in patterns)]
    if args.list:
        print("\n".join(f"{c.id}  ({c.category}, expected {c.expected})" for c in cases))
        return 0
    if not (args.survey or args.only):
        parser.error("give --survey, --only ID or --list")
    start = time.monotonic()
    root = pathlib.Path(args.root or tempfile.mkdtemp(prefix="jaxzoo-bad-inputs-")).absolute()
    print(f"root {root}; repository {REPO} at {git_head()}")
    places = build_fixtures(root, args.jobs)
    print(f"jaxzoo imported by the cases from {jaxzoo_location(root)}")
    runnable = [c for c in cases if c.places() <= set(places)]
    for c in cases:
        if c not in runnable:
            print(f"left out {c.id}: fixtures {sorted(c.places() - set(places))} were not built")
    done = [0]

    def progress(result: Result) -> None:
        done[0] += 1
        line = f"[{done[0]}/{len(runnable)}] {result.case.id}: {result.outcome} ({result.seconds:.1f} s)"
        print(line, file=sys.stderr, flush=True)
        if args.only:
            print(f"  exit {result.returncode}; detail: {result.detail}\n  stderr:\n{result.stderr[-4000:]}")

    results = run_cases(runnable, root, places, args.jobs, args.timeout, progress)
    print()
    print(survey_table(results))
    print(f"\n{len(results)} cases in {time.monotonic() - start:.0f} s (fixtures included), {args.jobs} jobs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
