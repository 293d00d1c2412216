"""`analyze(workdir, ...)`: the zoo card of either zoo kind (`python -m jaxzoo.analyze`)."""

from __future__ import annotations

from jaxzoo.analysis import card
from jaxzoo.config import INR
from jaxzoo.inr.card import inr_card
from jaxzoo.zoo.checkpoint import workdir_kind


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
    if workdir_kind(workdir) == INR:
        return inr_card(workdir, log=log)
    return card.analyze(workdir, threshold, agreement_images, embedding_points, log)
