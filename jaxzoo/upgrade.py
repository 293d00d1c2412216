"""Rewrites a workdir's checkpoints in blocks of models: `python -m jaxzoo.upgrade --workdir DIR`.

Zoos trained before 2026-12-07 store each epoch as one Orbax checkpoint of the whole
population (checkpoint layout 1); every command still reads them, but each read decodes whole
arrays of all models. The upgrade rewrites them epoch by epoch in layout 2 (blocks of models,
read alone), crash-safe: rerun it after an interruption. Nothing else in the workdir changes.
"""

from __future__ import annotations

import sys

from jaxzoo.cli import ArgumentParser, run
from jaxzoo.zoo.upgrade import UpgradeError, upgrade

__all__ = ["UpgradeError", "main", "upgrade"]


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m jaxzoo.upgrade", description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", required=True, help="the workdir of a trained zoo (or of a job-array shard)")
    args = parser.parse_args(argv)

    def action():
        report = upgrade(args.workdir)
        print(
            f"{report['workdir']}: {report['written']} of {report['epochs']} epochs rewritten in blocks "
            f"({report['bytes']:,} bytes of checkpoints)"
        )

    return run(action, args.verbose)


if __name__ == "__main__":
    sys.exit(main())
