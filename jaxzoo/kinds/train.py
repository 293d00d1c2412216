"""`train_and_evaluate(config, workdir)` for either zoo kind (`python -m jaxzoo.train`)."""

from __future__ import annotations

import os
from typing import Any

import ml_collections

from jaxzoo.config import INR, config_kind
from jaxzoo.inr.train import train_inr_zoo
from jaxzoo.training import trainer


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str | os.PathLike) -> dict[str, Any]:
    """Trains (or resumes) the zoo of `config` in `workdir`: a classification zoo
    (`jaxzoo.training.trainer`) or, with `task='inr'`, one SIREN per image (`jaxzoo.inr.train`).
    Returns {"epoch", "metrics", "workdir"}; raises UserError subclasses before any write."""
    if config_kind(config) == INR:
        return train_inr_zoo(config, workdir)
    return trainer.train_and_evaluate(config, workdir)
