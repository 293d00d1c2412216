"""Dataset names: the one place that says what a name means (`parse_name`).

`config.data.name` (and the `name` of `load_dataset` / `describe_dataset`) is one of:

  mnist_5k, mnist, cifar10, ...   a registry entry (`registry.DATASETS`): a published zoo
                                  protocol with fixed splits, transforms and normalisation.
  tfds:NAME                       any TFDS image classification dataset prepared under tfds_dir,
  tfds:NAME/CONFIG[:VERSION]      the text after 'tfds:' passed to TFDS as is (its own syntax:
                                  tfds:mnist, tfds:cifar10:3.0.2, tfds:imagenette/160px).
  npz:PATH                        a NumPy .npz file (relative paths: from the working directory).
  py:MODULE:FUNCTION              a function returning the splits, FUNCTION possibly dotted
                                  (Class.method); the function object itself is accepted too
                                  and is named py:<its __module__>:<its __qualname__>.

Any other 'prefix:...' is an error naming these forms. What the three non-registry forms must
hold, and how their splits, classes and normalisation are derived: `jaxzoo.data.custom`.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from jaxzoo.data.errors import DataUnavailableError
from jaxzoo.data.registry import DATASETS

FORMS = {"tfds": "tfds", "npz": "npz", "py": "callable"}  # name prefix -> form (= Dataset.source)
FORMS_TEXT = "tfds:NAME, npz:PATH or py:MODULE:FUNCTION"


@dataclasses.dataclass(frozen=True)
class DatasetName:
    """A parsed dataset name: `form` 'registry', 'tfds', 'npz' or 'callable'; `name` the canonical
    text (what Dataset.name and DatasetInfo.name say); `target` the registry key, the TFDS name,
    the path, the 'MODULE:FUNCTION' text or the function object."""

    form: str
    name: str
    target: Any


def callable_name(function) -> str:
    """'py:<module>:<qualname>' of a function object (the project's 'module:qualname' with 'py:')."""
    module = getattr(function, "__module__", None) or type(function).__module__
    qualname = getattr(function, "__qualname__", None) or type(function).__qualname__
    return f"py:{module}:{qualname}"


def is_registry_name(name) -> bool:
    """Whether `name` is a key of the registry (a published protocol), not another form."""
    return isinstance(name, str) and name in DATASETS


def parse_name(name) -> DatasetName:
    """What `name` refers to; a one-line DataUnavailableError for anything unusable."""
    if callable(name) and not isinstance(name, str):
        return DatasetName("callable", callable_name(name), name)
    if not isinstance(name, str):
        raise DataUnavailableError(
            f"dataset name {name!r} is a {type(name).__name__}: give a registry name "
            f"({', '.join(sorted(DATASETS))}), {FORMS_TEXT}, or a function"
        )
    if name in DATASETS:
        return DatasetName("registry", name, name)
    prefix, colon, rest = name.partition(":")
    if colon and prefix in FORMS:
        if not rest.strip():
            raise DataUnavailableError(f"dataset name {name!r} names nothing after '{prefix}:': use {FORMS_TEXT}")
        return DatasetName(FORMS[prefix], name, rest)
    if colon:
        raise DataUnavailableError(
            f"unknown dataset form {prefix + ':'!r} in {name!r}: use a registry name or {FORMS_TEXT}"
        )
    raise DataUnavailableError(f"unknown dataset {name!r}; choose one of {sorted(DATASETS)} or {FORMS_TEXT}")
