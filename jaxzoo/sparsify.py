"""Sparsified twins: `python -m jaxzoo.sparsify --workdir W --out TWIN [--epochs 25]`.

Every model of the trained CNN-s zoo in W is sparsified with Variational Dropout from its last
epoch into the twin zoo TWIN, a workdir like any other (`jaxzoo.training.twins` says how).
"""

from __future__ import annotations

import sys

from jaxzoo.cli import ArgumentParser, number_in, run, setup_logging
from jaxzoo.training.twins import DEFAULT_EPOCHS, SparsifyError, TwinRun, sparsify

__all__ = ["DEFAULT_EPOCHS", "SparsifyError", "TwinRun", "main", "sparsify"]


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m jaxzoo.sparsify", description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", required=True, help="the trained source zoo")
    parser.add_argument("--out", required=True, help="the twin zoo's workdir")
    parser.add_argument("--epochs", type=number_in(1, 1000, integer=True), default=DEFAULT_EPOCHS)
    args = parser.parse_args(argv)
    setup_logging()
    return run(lambda: sparsify(args.workdir, args.out, args.epochs), args.verbose, {"twin workdir": "--out"})


if __name__ == "__main__":
    sys.exit(main())
