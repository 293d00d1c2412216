"""The flat-vector dataset as Parquet, and the Hugging Face dataset card of an export.

`<export>/parquet/{train,val,test}.parquet` hold the rows of `vectors/` (same model split,
epochs and NaN / |w| > threshold filter): one row per (model, epoch), the flat weight vector as
a fixed-size float32 list column `weights` of P values, `trial` (the model's trial folder) and
every property of the vectors (metrics, factors, the original's aliases such as `model::nlin`)
as its own typed column. Rows are ordered by epoch, then by model in split order; the vectors'
by model, then epoch: (model_id, epoch) is the key that joins them. Each file's schema metadata
`jaxzoo` (JSON, `layout_metadata`) carries the tensor layout, so a copy unflattens on its own.

The zoo is read one epoch at a time, and each split's rows in chunks of models that fit
`blocks.READ_BYTES`, gathered from the checkpoint blocks that hold them (params only); rows are
written in row groups of about `ROW_GROUP_BYTES`, so memory follows the chunk, never the zoo.
Each file is written under a temporary name and renamed when complete.

`<export>/README.md` (`write_dataset_card`) carries the YAML front matter with which
`datasets.load_dataset("<export>")` loads the three files as the splits train / validation /
test (`validation` is val.parquet), and which the Hub reads when the folder is pushed as is;
its body repeats the layout metadata.
"""

from __future__ import annotations

import json
import os
import pathlib

import numpy as np

from jaxzoo.export.rows import (
    TRIAL_FOLDER,
    ExportError,
    gathered_requests,
    split_chunks,
    split_plan,
    split_rows,
    tensor_table,
    trial_name,
)
from jaxzoo.weights.vectors import layout_size
from jaxzoo.zoo import blocks

PARQUET = "parquet"  # the folder in the export
METADATA_KEY = "jaxzoo"  # the schema metadata key of the layout (`layout_metadata`)
ROW_KEY = ("model_id", "epoch")
ROW_ORDERS = {
    "parquet": "by epoch, then by model in split order",
    "vectors": "by model in split order, each model's epochs in order",
}
SPLITS = ("train", "val", "test")
HF_SPLITS = {"train": "train", "val": "validation", "test": "test"}  # the names `datasets` uses
ROW_GROUP_BYTES = 32 * 2**20  # weights per row group (~3,400 rows of CNN-s): streamable, few groups per file
MAX_ROW_GROUP_ROWS = 8192
# A gathered chunk is held about 4 times (the gather, the filtered rows, the buffer, Arrow's
# encoding), so chunks are a quarter of `blocks.READ_BYTES`: 192 wide MLPs peaked at 2.2 GiB with whole ones.
PARQUET_COPIES = 4
INSTALL = "pip install pyarrow (a dependency of jaxzoo: reinstall it)"
SIZE_CATEGORIES = (
    (1_000, "n<1K"),
    (10_000, "1K<n<10K"),
    (100_000, "10K<n<100K"),
    (1_000_000, "100K<n<1M"),
    (10_000_000, "1M<n<10M"),
    (100_000_000, "10M<n<100M"),
    (1_000_000_000, "100M<n<1B"),
)


def require_pyarrow():
    """pyarrow, or the one-line ExportError that says how to install it."""
    try:
        import pyarrow
        import pyarrow.parquet  # noqa: F401
    except ImportError:
        raise ExportError(
            f"the parquet format needs pyarrow: {INSTALL} (or export --format trials or vectors)"
        ) from None
    return pyarrow


def arrow_type(pa, values):
    """The column type of a property: its dtype for arrays (int64, float32, float64, bool), string for lists."""
    if isinstance(values, np.ndarray):
        return pa.from_numpy_dtype(values.dtype)
    return pa.string()


def schema(pa, size: int, properties: dict, metadata: dict | None = None):
    """weights (fixed-size list of `size` float32) and one typed column per property; metadata
    (JSON-able) is stored as the schema metadata `METADATA_KEY`."""
    return pa.schema(
        [
            pa.field("weights", pa.list_(pa.float32(), size), nullable=False),
            *(pa.field(name, arrow_type(pa, values)) for name, values in properties.items()),
        ],
        metadata=None if metadata is None else {METADATA_KEY: json.dumps(metadata)},
    )


def layout_metadata(zoo, split: dict) -> dict:
    """What a copy of the Parquet files needs to read them alone: the flat vector's tensors
    (`rows.tensor_table`: state_dict key, offset and shape, in float32 values, in vector order),
    the original's index_dict, the trial-folder rule, the row key and orders, the split names and
    the split rule (`rows.split_plan`'s report)."""
    return {
        "weights": {
            "dtype": "float32",
            "size": layout_size(zoo.vector_layout()),
            "tensors": tensor_table(zoo),
            "key_dropout": "the state_dict key of a model whose model::dropout > 0, where a tensor gives one",
            "index_dict": zoo.vector_layout(),
        },
        "trial_folder": TRIAL_FOLDER,
        "key": list(ROW_KEY),
        "row_order": ROW_ORDERS,
        "splits": {split_name: f"{PARQUET}/{name}.parquet" for name, split_name in HF_SPLITS.items()},
        "split": split,
        "zoo": zoo.identity_hash,
    }


def with_trials(properties: dict) -> dict:
    """The properties with `trial` (the trial folder of each row) after model_id."""
    pairs = zip(np.asarray(properties["model_id"]).tolist(), np.asarray(properties["seed"]).tolist())
    trials = [trial_name({"model_id": model_id, "seed": seed}) for model_id, seed in pairs]
    out = {}
    for name, values in properties.items():
        out[name] = values
        if name == "model_id":
            out["trial"] = trials
    return out


class SplitWriter:
    """Appends (weights, properties) blocks of one split to `<folder>/.<split>.parquet.partial`
    and writes a row group whenever about ROW_GROUP_BYTES of weights are buffered."""

    def __init__(self, pa, folder: pathlib.Path, split: str, table_schema, size: int):
        import pyarrow.parquet as pq

        self.pa, self.schema, self.size = pa, table_schema, size
        self.path = folder / f"{split}.parquet"
        self.tmp = folder / f".{split}.parquet.partial"
        strings = [f.name for f in table_schema if f.type == pa.string()]
        self.writer = pq.ParquetWriter(
            self.tmp,
            table_schema,
            compression="snappy",
            use_dictionary=strings or False,
            write_statistics=[f.name for f in table_schema if f.name != "weights"],
        )
        self.group_rows = int(np.clip(ROW_GROUP_BYTES // (4 * max(size, 1)), 1, MAX_ROW_GROUP_ROWS))
        self.blocks: list[tuple[np.ndarray, dict]] = []
        self.buffered = 0
        self.rows = 0

    def append(self, weights: np.ndarray, properties: dict, last: bool = True) -> None:
        """Buffers rows; a row group is written once ROW_GROUP_BYTES are buffered, at the end of
        an epoch's rows of the split (`last`), or sooner past `blocks.READ_BYTES` (an epoch
        bigger than memory should hold)."""
        if len(weights):
            self.blocks.append((weights, properties))
            self.buffered += len(weights)
        full = self.buffered * 4 * self.size >= blocks.READ_BYTES
        if self.buffered >= self.group_rows and (last or full):
            self.flush()

    def flush(self) -> None:
        if not self.blocks:
            return
        pa = self.pa
        # One chunk per block (no copy of the weights): the writer encodes them as one row group.
        columns = [
            pa.chunked_array(
                [
                    pa.FixedSizeListArray.from_arrays(
                        pa.array(np.ascontiguousarray(w, np.float32).reshape(-1)), self.size
                    )
                    for w, _ in self.blocks
                ],
                self.schema.field("weights").type,
            )
        ]
        for field in self.schema:
            if field.name == "weights":
                continue
            parts = [p[field.name] for _, p in self.blocks]
            if pa.types.is_string(field.type):
                columns.append(pa.array([str(v) for part in parts for v in part], pa.string()))
            else:
                columns.append(pa.array(np.concatenate(parts), field.type))
        self.writer.write_table(pa.Table.from_arrays(columns, schema=self.schema), row_group_size=self.buffered)
        self.rows += self.buffered
        self.blocks, self.buffered = [], 0

    def close(self) -> None:
        self.flush()
        self.writer.close()
        os.replace(self.tmp, self.path)

    def abort(self) -> None:
        try:
            self.writer.close()
        finally:
            self.tmp.unlink(missing_ok=True)


def write_parquet(
    zoo,
    folder: pathlib.Path,
    epochs: list[int],
    threshold: float,
    log,
    twin_weights: str = "raw",
    partition: dict | None = None,
) -> dict:
    """Writes `folder/{train,val,test}.parquet` from `zoo` (an `export.Zoo`), one epoch at a time;
    returns {'splits': {split: {rows, dropped_nan, dropped_threshold}}, 'rows', 'weights_size', ...}.
    partition: `rows.split_plan`'s (default: the original split by model)."""

    pa = require_pyarrow()
    folder.mkdir(parents=True, exist_ok=True)
    layout = zoo.vector_layout()
    size = layout_size(layout)
    masked = twin_weights == "masked"
    partition = partition or split_plan(zoo)
    metadata = layout_metadata(zoo, partition["report"])
    writers: dict[str, SplitWriter] = {}
    counts = {split: {"rows": 0, "dropped_nan": 0, "dropped_threshold": 0} for split in SPLITS}
    try:
        for epoch in epochs:
            # Each split's rows in split order, chunks of models gathered from the blocks that
            # hold them (a block read once per group of chunks); the filter and properties of
            # `vector_splits`.
            plan = [
                (split, number == len(chunks) - 1, chunk)
                for split, models in partition["splits"].items()
                for chunks in [split_chunks(models, PARQUET_COPIES, size) or [[]]]
                for number, chunk in enumerate(chunks)
            ]
            stream = gathered_requests(zoo, [(epoch, chunk) for *_, chunk in plan], masked)
            for (split, last, chunk), vectors in zip(plan, stream):
                data, chunk_counts = split_rows(zoo, [(m, epoch) for m in chunk], vectors, threshold, layout)
                del vectors
                properties = with_trials(data.properties)
                if not writers:  # every split names every property
                    table_schema = schema(pa, size, properties, metadata)
                    writers = {name: SplitWriter(pa, folder, name, table_schema, size) for name in SPLITS}
                writers[split].append(data.weights, properties, last=last)
                for key, value in chunk_counts.items():
                    counts[split][key] += value
        for split in SPLITS:
            writers[split].close()
    except BaseException:
        for writer in writers.values():
            writer.abort()
        raise
    for split in SPLITS:
        log(
            f"  parquet/{split}: {counts[split]['rows']} rows kept, {counts[split]['dropped_nan']} NaN, "
            f"{counts[split]['dropped_threshold']} over |w| > {threshold}"
        )
    return {
        "threshold": threshold,
        "epochs": epochs,
        "weights_size": size,
        "splits": counts,
        "rows": sum(c["rows"] for c in counts.values()),
        **({"twin_weights": twin_weights} if zoo.is_twin else {}),
    }


def size_category(rows: int) -> str:
    return next((label for limit, label in SIZE_CATEGORIES if rows < limit), "n>1T")


def dataset_card(rows: int, readme: str, pretty_name: str = "", metadata: dict | None = None) -> str:
    """README.md of an export: the YAML front matter `datasets` and the Hub read, then `readme`,
    then how to load the files and, given the Parquet files' `metadata` (`layout_metadata`), the
    row key and orders, the trial folders and the tensor layout, in words and as that JSON."""
    front = {
        "license": "cc-by-4.0",
        **({"pretty_name": pretty_name} if pretty_name else {}),
        "task_categories": ["tabular-regression", "tabular-classification"],
        "tags": ["model-zoo", "weight-space-learning", "jaxzoo"],
        "size_categories": [size_category(rows)],
        "configs": [
            {
                "config_name": "default",
                "data_files": [{"split": HF_SPLITS[split], "path": f"{PARQUET}/{split}.parquet"} for split in SPLITS],
            }
        ],
    }
    return (
        "---\n" + yaml_lines(front) + "---\n\n" + readme.rstrip() + "\n\n"
        "## Loading\n\n"
        f"`parquet/` holds one row per (model, epoch), {rows} rows in all: `weights` (the flat weight vector, "
        "float32), `trial` (the model's trial folder) and one column per property (model_id, epoch, the "
        "metrics, the generating factors under jaxzoo's names and the original's keys); the splits are "
        "those of `vectors/`. The split `validation` is the file `parquet/val.parquet`, which `vectors/` "
        "and jaxzoo call `val`.\n\n"
        '```python\nimport datasets\nzoo = datasets.load_dataset("<this folder or its Hub repo>")  '
        "# train / validation / test\n```\n\n"
        "pandas (`pd.read_parquet`) and polars (`pl.read_parquet`) read the files directly. "
        "The zoo card (figures, Table 2) is in `card/` once `python -m jaxzoo.analyze` has run on the zoo; "
        "`readme.md` is the export's original readme.\n" + ("" if metadata is None else layout_section(metadata))
    )


def layout_section(metadata: dict) -> str:
    """The card's account of the rows and the tensor layout (`layout_metadata`)."""
    orders, tensors = metadata["row_order"], metadata["weights"]["tensors"]
    dropout = any("key_dropout" in t for t in tensors)
    columns = ["state_dict key", "offset", "shape"] + (["key with dropout > 0"] if dropout else [])
    lines = [f"| {' | '.join(columns)} |", "|" + "---|" * len(columns)]
    for t in tensors:
        cells = [t["key"], str(t["offset"]), str(list(t["shape"]))] + (
            [t.get("key_dropout", t["key"])] if dropout else []
        )
        lines.append("| " + " | ".join(f"`{cell}`" if "." in cell else cell for cell in cells) + " |")
    return (
        "\n## Rows and layout\n\n"
        f"Rows of `parquet/` are ordered {orders['parquet']}; rows of `vectors/` {orders['vectors']}. "
        f"The key ({', '.join(metadata['key'])}) joins them. Each model's trial folder is "
        f"`{metadata['trial_folder']}` (the `trial` column).\n\n"
        f"`weights` holds {metadata['weights']['size']} float32 values: the tensors below, each flattened "
        "in PyTorch (row-major) order from its offset"
        + (", named by the last column in a model with dropout > 0" if dropout else "")
        + ".\n\n"
        + "\n".join(lines)
        + f"\n\nThe schema metadata `{METADATA_KEY}` of each Parquet file holds this JSON:\n\n"
        "```json\n" + json.dumps(metadata) + "\n```\n"
    )


def yaml_lines(value, indent: int = 0) -> str:
    """A small YAML writer for the card's front matter (dicts, lists, strings): strings quoted as JSON."""
    pad = " " * indent
    if isinstance(value, dict):
        out = ""
        for key, item in value.items():
            if isinstance(item, (dict, list)):
                out += f"{pad}{key}:\n" + yaml_lines(item, indent + 2)
            else:
                out += f"{pad}{key}: {json.dumps(item)}\n"
        return out
    out = ""
    for item in value:
        if isinstance(item, dict):
            body = yaml_lines(item, indent + 2)
            out += f"{pad}- " + body[indent + 2 :]
        else:
            out += f"{pad}- {json.dumps(item)}\n"
    return out


def write_dataset_card(
    target: pathlib.Path, rows: int, readme: str, pretty_name: str = "", metadata: dict | None = None
) -> None:
    """Writes `target/README.md` (the Hugging Face dataset card) under a temporary name first."""
    tmp = target / ".README.md.partial"
    tmp.write_text(dataset_card(rows, readme, pretty_name, metadata))
    os.replace(tmp, target / "README.md")
