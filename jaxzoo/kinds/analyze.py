"""`analyze(workdir, ...)`: the zoo card of either zoo kind (`python -m jaxzoo.analyze`)."""

from __future__ import annotations

from jaxzoo.analysis import card
from jaxzoo.config import INR
from jaxzoo.inr.card import inr_card
from jaxzoo.kinds import refuse_for_inr
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
    arguments do not apply and are refused when given)."""
    if workdir_kind(workdir) == INR:
        given = {
            "--threshold": threshold != card.DEFAULT_THRESHOLD,
            "--agreement_images": agreement_images != 0,
            "--embedding_points": embedding_points != card.EMBEDDING_POINTS,
        }
        refuse_for_inr(given, "an INR zoo's card measures PSNR and steps")
        return inr_card(workdir, log=log)
    return card.analyze(workdir, threshold, agreement_images, embedding_points, log)
