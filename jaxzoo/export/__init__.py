"""Exports of classification zoos in the formats the weight-space community reads: the original
trial folders (PyTorch state_dicts), flat-vector datasets (safetensors), Parquet with a Hugging
Face dataset card, and the standalone PyTorch models an export ships.

`python -m jaxzoo.export` is the command (`jaxzoo.kinds.export.export` takes INR zoos as well).
"""

from jaxzoo.export.rows import TRIAL_FOLDER, ExportError, model_splits, split_plan, vector_splits
from jaxzoo.export.writer import (
    ARENA,
    CLASSIFICATION_FORMATS,
    EXPORTS_FILE,
    FORMATS,
    INR_LAYOUTS,
    MANIFEST,
    SMALL_CNN_ZOO,
    export,
    write_claimed,
)
from jaxzoo.weights.vectors import (
    DEFAULT_THRESHOLD,
    VectorSplit,
    layout_size,
    load_vectors,
    load_vectors_split,
    save_vector_split,
)
from jaxzoo.zoo.reader import Zoo, read_zoo

__all__ = [
    "ARENA",
    "CLASSIFICATION_FORMATS",
    "DEFAULT_THRESHOLD",
    "EXPORTS_FILE",
    "FORMATS",
    "INR_LAYOUTS",
    "MANIFEST",
    "SMALL_CNN_ZOO",
    "TRIAL_FOLDER",
    "ExportError",
    "VectorSplit",
    "Zoo",
    "export",
    "layout_size",
    "load_vectors",
    "load_vectors_split",
    "model_splits",
    "read_zoo",
    "save_vector_split",
    "split_plan",
    "vector_splits",
    "write_claimed",
]
