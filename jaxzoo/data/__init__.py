"""Datasets of the zoos: registry, sources (embedded, raw files, TFDS), transforms, cache, splits."""

from jaxzoo.data.load import SOURCES, DataOptions, load_dataset
from jaxzoo.data.registry import DATASETS, Dataset, DatasetInfo, DataUnavailableError, normalise

__all__ = [
    "DATASETS", "SOURCES", "DataOptions", "Dataset", "DatasetInfo", "DataUnavailableError",
    "load_dataset", "normalise",
]
