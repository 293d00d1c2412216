"""The zoo kinds and, for each, what the commands run: chosen once, here, from the config's
`task` (or a workdir's config.json). Classification zoos are the library's folders
(`training`, `export`, `analysis`); INR zoos are `jaxzoo.inr`, which builds on them.
"""

from __future__ import annotations

import os
from typing import Any

import ml_collections

from jaxzoo.analysis import card
from jaxzoo.config import CLASSIFICATION, config_kind
from jaxzoo.export import writer
from jaxzoo.inr.card import inr_card
from jaxzoo.inr.config import TASK as INR_TASK
from jaxzoo.inr.export import export_inr, refuse_classification_options
from jaxzoo.inr.train import train_inr_zoo
from jaxzoo.training import trainer
from jaxzoo.zoo.checkpoint import workdir_kind

KINDS = (CLASSIFICATION, INR_TASK)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str | os.PathLike) -> dict[str, Any]:
    """Trains (or resumes) the zoo of `config` in `workdir`: a classification zoo
    (`jaxzoo.training.trainer`) or, with `task='inr'`, one SIREN per image (`jaxzoo.inr.train`).
    Returns {"epoch", "metrics", "workdir"}; raises UserError subclasses before any write."""
    if config_kind(config) == INR_TASK:
        return train_inr_zoo(config, workdir)
    return trainer.train_and_evaluate(config, workdir)


def export(
    workdir,
    out,
    formats: str = "all",
    epochs: list[int] | None = None,
    threshold: float = writer.DEFAULT_THRESHOLD,
    overwrite: bool = False,
    log=print,
    optimizer_state: str = "last",
    twin_weights: str = "raw",
    with_data: bool = False,
) -> dict:
    """Exports the zoo in `workdir` to `out/<experiment>`: a classification zoo's formats
    (`jaxzoo.export.export`) or an INR zoo's layouts (`jaxzoo.inr.export.export_inr`: formats
    dwsnets_mnist, dwsnets_fmnist, nfn, vectors, all; the other options keep their defaults)."""
    writer.check_options(formats, optimizer_state, twin_weights)
    if workdir_kind(workdir) == INR_TASK:
        refuse_classification_options(
            epochs=epochs,
            threshold=threshold,
            optimizer_state=optimizer_state,
            twin_weights=twin_weights,
            with_data=with_data,
        )
        return export_inr(workdir, out, formats, overwrite, log or (lambda message: None))
    return writer.export(
        workdir, out, formats, epochs, threshold, overwrite, log, optimizer_state, twin_weights, with_data
    )


def analyze(
    workdir,
    threshold: float = card.DEFAULT_THRESHOLD,
    agreement_images: int = 0,
    embedding_points: int = card.EMBEDDING_POINTS,
    log=print,
) -> dict:
    """Writes the zoo card into `workdir/card` (and each export of the zoo); returns the card
    (`jaxzoo.analysis.card`). An INR zoo's workdir gets the INR card (`jaxzoo.inr.card`; the other
    arguments do not apply)."""
    if workdir_kind(workdir) == INR_TASK:
        return inr_card(workdir, log=log)
    return card.analyze(workdir, threshold, agreement_images, embedding_points, log)
