"""Imports published model zoos into a jaxzoo workdir.

  python -m jaxzoo.ingest --source PATH --workdir W [--dataset NAME] [--overwrite]

Sources: ModelZooDataset trial folders or their .zip (`jaxzoo.ingest.trials`), a Small CNN Zoo
folder (`jaxzoo.ingest.small_cnn_zoo`); `jaxzoo.ingest.workdir` says what is written.
"""

from __future__ import annotations

import sys

from jaxzoo.cli import ArgumentParser, run
from jaxzoo.ingest.workdir import ingest


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m jaxzoo.ingest", description=__doc__.splitlines()[0])
    parser.add_argument("--source", required=True, help="trial folders (or their .zip), or a Small CNN Zoo folder")
    parser.add_argument("--workdir", required=True, help="the jaxzoo workdir to write")
    parser.add_argument(
        "--dataset", default=None, help="the data.name the models were trained on (default: from the source)"
    )
    parser.add_argument("--overwrite", action="store_true", help="replace a workdir that holds another zoo")
    args = parser.parse_args(argv)

    def action():
        report = ingest(args.source, args.workdir, args.dataset, args.overwrite)
        print(
            f"ingested {report['models']} models x {report['epochs']} epochs ({report['format']}) into "
            f"{report['workdir']} in {report['seconds']:.1f} s"
        )

    return run(action, args.verbose, {"workdir": "--workdir"})


if __name__ == "__main__":
    sys.exit(main())
