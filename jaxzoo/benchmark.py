"""Property prediction from weights, the paper's Table 3: `python -m jaxzoo.benchmark --workdir W`.

  python -m jaxzoo.benchmark --workdir W [--workdir W2 ...] [--epochs 5,15,50] [--out table.md]
  python -m jaxzoo.benchmark --vectors EXPORT/vectors

What the table holds and how it is fitted: `jaxzoo.analysis.table3`.
"""

from __future__ import annotations

import pathlib
import sys

from jaxzoo.analysis import table3
from jaxzoo.analysis.table3 import benchmark_workdir, linear_classifier, markdown
from jaxzoo.cli import ArgumentParser, epoch_list, number_in, run
from jaxzoo.errors import UserError
from jaxzoo.export.writer import DEFAULT_THRESHOLD
from jaxzoo.host import check_destination
from jaxzoo.weights.vectors import load_vectors

__all__ = ["benchmark_workdir", "linear_classifier", "main", "markdown"]


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m jaxzoo.benchmark", description=table3.__doc__.splitlines()[0])
    parser.add_argument("--workdir", action="append", default=[], help="a trained zoo (repeat for a multi-zoo table)")
    parser.add_argument("--vectors", default="", help="an exported flat-vector folder instead of a workdir")
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
            rows[pathlib.Path(args.vectors).resolve().parent.name] = table3.table3(load_vectors(args.vectors))["table"]
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
