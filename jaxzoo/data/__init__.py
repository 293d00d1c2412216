"""Datasets of the zoos: registry, preprocessing and splits (see `registry`, `embedded`)."""

from jaxzoo.data.registry import DATASETS, Dataset, DatasetInfo, DataUnavailableError, load_dataset

__all__ = ["DATASETS", "Dataset", "DatasetInfo", "DataUnavailableError", "load_dataset"]
