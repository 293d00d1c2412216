"""Property prediction from weights, the paper's Table 3: `python -m jaxzoo.benchmark --workdir W`.

  python -m jaxzoo.benchmark --workdir W [--workdir W2 ...] [--epochs 5,15,50] [--out table.md]
  python -m jaxzoo.benchmark --vectors EXPORT [--epochs 5,15,50] [--threshold 5]

--vectors takes an export folder or its vectors/ folder, and selects its rows as --workdir does
(the same default epochs and threshold); both print the epochs and rows used and record them in
table3.json. What the table holds and how it is fitted: `jaxzoo.analysis.table3`.
"""

from __future__ import annotations

import pathlib
import sys

from jaxzoo.analysis import table3
from jaxzoo.analysis.table3 import benchmark_workdir, linear_classifier, markdown
from jaxzoo.cli import ArgumentParser, epoch_list, number_in, run
from jaxzoo.errors import DestinationError, UserError
from jaxzoo.export.writer import DEFAULT_THRESHOLD
from jaxzoo.host import check_destination
from jaxzoo.weights.vectors import vectors_folder

__all__ = ["benchmark_workdir", "linear_classifier", "main", "markdown"]


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m jaxzoo.benchmark", description=table3.__doc__.splitlines()[0])
    parser.add_argument("--workdir", action="append", default=[], help="a trained zoo (repeat for a multi-zoo table)")
    parser.add_argument(
        "--vectors",
        default="",
        help="an export (or its vectors/ folder) instead of a workdir; writes table3.json there",
    )
    parser.add_argument(
        "--epochs", type=epoch_list, default="", help="comma-separated epochs (default: see the module doc)"
    )
    parser.add_argument(
        "--threshold", type=number_in(0, low_open=True), default=DEFAULT_THRESHOLD, help="drop rows with |w| above it"
    )
    parser.add_argument("--out", default="", help="write the markdown table here too")
    args = parser.parse_args(argv)
    if args.vectors and args.workdir:
        parser.error("--vectors and --workdir exclude each other: benchmark either an export or trained zoos")

    def action():
        if args.out:
            check_destination(pathlib.Path(args.out), "--out", is_file=True)
        rows = {}
        if args.vectors:
            try:
                check_destination(vectors_folder(args.vectors) / "table3.json", "--vectors", is_file=True)
            except DestinationError as error:
                raise UserError(
                    f"--vectors: {error.path} {error.problem} (Table 3 records its rows there): copy the "
                    "export to a folder you can write"
                ) from None
            result = table3.benchmark_vectors(args.vectors, args.epochs, args.threshold)
            rows[result["zoo"]] = result["table"]
        for workdir in args.workdir:
            result = table3.benchmark_workdir(workdir, args.epochs, args.threshold)
            rows[result["zoo"]] = result["table"]
        if not rows:
            raise UserError("nothing to benchmark: pass --workdir W (repeatable) or --vectors DIR")
        table_md = table3.markdown(rows)
        print(table_md)
        if args.out:
            pathlib.Path(args.out).write_text(table_md)

    return run(action, args.verbose)


if __name__ == "__main__":
    sys.exit(main())
