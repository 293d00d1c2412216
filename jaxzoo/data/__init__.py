"""Datasets of the zoos: registry, sources (embedded, raw files, TFDS), transforms, cache, splits.

A dataset name is a registry name (`DATASETS`: the published protocols) or one of the forms
tfds:NAME, npz:PATH, py:MODULE:FUNCTION (or a function object); `names` documents the forms,
`custom` what they must hold and how splits, classes and mean/std are derived.
"""

from jaxzoo.data.custom import DEFAULT_VAL_FRACTION
from jaxzoo.data.load import SOURCES, DataOptions, describe_dataset, load_dataset
from jaxzoo.data.names import DatasetName, is_registry_name, parse_name
from jaxzoo.data.registry import DATASETS, MAX_IMAGE_SIZE, Dataset, DatasetInfo, DataUnavailableError, normalise

__all__ = [
    "DATASETS",
    "DEFAULT_VAL_FRACTION",
    "MAX_IMAGE_SIZE",
    "SOURCES",
    "DataOptions",
    "Dataset",
    "DatasetInfo",
    "DatasetName",
    "DataUnavailableError",
    "describe_dataset",
    "is_registry_name",
    "load_dataset",
    "normalise",
    "parse_name",
]
