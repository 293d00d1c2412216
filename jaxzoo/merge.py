"""Joins a zoo's job-array shards into one workdir: `python -m jaxzoo.merge --workdir DIR`.

Shard k of n (`--config.shard_index=k --config.num_shards=n`) trains the k-th contiguous block
of the model table into DIR/shards/k-of-n. When every shard has all its epochs, the merge
writes DIR as a zoo like any other (config.json, models.json, metrics.jsonl, one checkpoint
per epoch with every model in model_id order), so export, analysis and benchmarks read it
unchanged. Rerunning the merge continues where an interrupted one stopped.
"""

from __future__ import annotations

import sys

from jaxzoo.cli import ArgumentParser, run
from jaxzoo.zoo.shards import MergeError, merge

__all__ = ["MergeError", "main", "merge"]


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m jaxzoo.merge", description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", required=True, help="the --workdir the shards were trained with")
    args = parser.parse_args(argv)

    def action():
        report = merge(args.workdir)
        print(
            f"merged {report['models']} models x {report['epochs']} epochs into {report['workdir']} "
            f"({report['written']} epochs written)"
        )

    return run(action, args.verbose)


if __name__ == "__main__":
    sys.exit(main())
