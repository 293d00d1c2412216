"""`python -m jaxzoo.export --workdir W --out DIR ...`: the export command (`jaxzoo.export.writer`
says what a classification export holds, `jaxzoo.inr.export` an INR zoo's layouts)."""

from __future__ import annotations

import sys

from jaxzoo.cli import ArgumentParser, epoch_list, number_in, run
from jaxzoo.export import writer
from jaxzoo.export.bundle import DATA_LIMIT_GIB
from jaxzoo.export.writer import DEFAULT_THRESHOLD, DEFAULT_TOKEN_SIZE, FORMATS, OPTIMIZER_STATES, TWIN_WEIGHTS
from jaxzoo.kinds.export import export


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m jaxzoo.export", description=writer.__doc__.splitlines()[0])
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument(
        "--format",
        default="all",
        choices=FORMATS,
        help="classification zoos: trials|vectors|parquet|all|small_cnn_zoo|sane; INR zoos: dwsnets_mnist|dwsnets_fmnist|nfn|arena|vectors|all",
    )
    parser.add_argument(
        "--epochs", type=epoch_list, default="", help="comma-separated epochs for the vectors (default: all)"
    )
    parser.add_argument(
        "--threshold", type=number_in(0, low_open=True), default=DEFAULT_THRESHOLD, help="drop rows with |w| above it"
    )
    parser.add_argument(
        "--optimizer_state",
        default="last",
        choices=OPTIMIZER_STATES,
        help="last: the final epoch's optimizer state (the paper); all: every epoch's (the original code)",
    )
    parser.add_argument(
        "--twin_weights",
        default="raw",
        choices=TWIN_WEIGHTS,
        help="flat vectors of a twin zoo: raw ARD weights (the original) or masked",
    )
    parser.add_argument(
        "--split_by",
        default="model",
        help="the models that share a value stay in one split: model (the original 70/15/15), seed, init "
        "(identical initial weights), or a factor of the zoo (activation, model::nlin, ...)",
    )
    parser.add_argument(
        "--token_size",
        type=number_in(0, integer=True),
        default=None,
        help=f"--format sane: entries per token (default {DEFAULT_TOKEN_SIZE}, SANE's for small CNNs; 0: the widest row)",
    )
    parser.add_argument("--with_data", action="store_true", help="also write the preprocessed splits (dataset.pt)")
    parser.add_argument(
        "--data_limit_gib",
        type=number_in(0, low_open=True),
        default=DATA_LIMIT_GIB,
        help="with --with_data: the largest dataset.pt to write, in GiB (it is held in memory while written)",
    )
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(argv)

    def action():
        report = export(
            args.workdir,
            args.out,
            args.format,
            args.epochs,
            args.threshold,
            args.overwrite,
            optimizer_state=args.optimizer_state,
            twin_weights=args.twin_weights,
            with_data=args.with_data,
            data_limit_gib=args.data_limit_gib,
            split_by=args.split_by,
            **({"token_size": args.token_size} if args.token_size is not None else {}),
        )
        print(f"exported to {report['out']} in {report['seconds']:.1f} s")

    return run(action, args.verbose, {"export folder": "--out"})


if __name__ == "__main__":
    sys.exit(main())
