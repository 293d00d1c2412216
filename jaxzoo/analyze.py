"""Zoo card: `python -m jaxzoo.analyze --workdir W [--threshold 5] [--agreement_images N]`.

Writes `W/card/`: README.md (the card), zoo_card.json (the same facts), table2.json (the
metrics) and the figures (PNG + SVG); and the same into every export made from W. What the
card holds: `jaxzoo.analysis.card` (classification zoos), `jaxzoo.inr.card` (INR zoos).
"""

from __future__ import annotations

import sys

from jaxzoo.analysis.card import DEFAULT_THRESHOLD, EMBEDDING_POINTS, MAX_EMBEDDING_POINTS
from jaxzoo.cli import ArgumentParser, number_in, run
from jaxzoo.kinds.analyze import analyze

__all__ = ["analyze", "main"]


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m jaxzoo.analyze", description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", required=True)
    parser.add_argument(
        "--threshold",
        type=number_in(0, low_open=True),
        default=DEFAULT_THRESHOLD,
        help="models with |w| above it are not viable",
    )
    parser.add_argument(
        "--agreement_images", type=number_in(0, integer=True), default=0, help="first N test images (0: all)"
    )
    parser.add_argument(
        "--embedding_points",
        type=number_in(2, MAX_EMBEDDING_POINTS, integer=True),
        default=EMBEDDING_POINTS,
        help="(model, epoch) rows in the embedding (at most all of them)",
    )
    args = parser.parse_args(argv)
    return run(
        lambda: analyze(args.workdir, args.threshold, args.agreement_images, args.embedding_points), args.verbose
    )


if __name__ == "__main__":
    sys.exit(main())
