"""Where a dataset may come from (`DataOptions`, `data.source` and the folders of the config's
data section); none of it changes the images a protocol trains on."""

from __future__ import annotations

import dataclasses

SOURCES = ("auto", "embedded", "raw", "tfds")


@dataclasses.dataclass(frozen=True)
class DataOptions:
    """Where data may come from; none of it changes the images a protocol trains on."""

    source: str = "auto"
    raw_dir: str = ""
    tfds_dir: str = ""
    cache_dir: str = ""
