"""Samples per second of `jaxzoo.weights.loaders.VectorLoader`, augmentation off and on.

Times full passes over the train split at batch 64 with: no augmentation; standardisation;
noise; permutation; permutation + noise + standardisation; and the last with weight tokens.
The vectors are an export's (--vectors) or, by default, a synthetic CNN-s folder (the original
zoo's layout, P = 2464) of --rows random rows written with `save_vector_split`.

  python scripts/bench_loaders.py                                  # synthetic, 4096 rows
  python scripts/bench_loaders.py --vectors exports/<zoo>/vectors --seconds 5
"""

from __future__ import annotations

import argparse
import importlib.util
import pathlib
import tempfile
import time

import numpy as np

from jaxzoo.weights import loaders


def synthetic_folder(folder: pathlib.Path, rows: int, seed: int = 0) -> pathlib.Path:
    """A CNN-s vectors folder: `rows` train rows (and 64 each val / test) of N(0, 0.1) weights."""
    from jaxzoo.config import base_config
    from jaxzoo.models.registry import arch_spec
    from jaxzoo.models.torch_layout import index_dict
    from jaxzoo.weights.vectors import VectorSplit, layout_size, save_vector_split

    layout = index_dict(arch_spec(base_config().model, 28, 1, 10), 1)
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for split, count in (("train", rows), ("val", 64), ("test", 64)):
        weights = (0.1 * rng.standard_normal((count, layout_size(layout)))).astype(np.float32)
        properties = {
            "model_id": np.arange(count, dtype=np.int64),
            "epoch": np.full(count, 2, np.int64),
            "test_acc": rng.random(count).astype(np.float32),
        }
        save_vector_split(folder, split, VectorSplit(weights, properties, layout), {"rows": count}, {"epochs": [2]})
    return folder


def samples_per_second(folder: pathlib.Path, batch_size: int, seconds: float, **options) -> float:
    loader = loaders.VectorLoader(folder, "train", batch_size=batch_size, seed=0, **options)
    for _ in loader:  # one warm-up pass
        pass
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for batch in loader:
            count += len(batch["weights"])
    return count / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vectors", default="", help="an export's vectors folder (default: synthetic CNN-s)")
    parser.add_argument("--rows", type=int, default=4096, help="synthetic train rows")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=2.0, help="timed seconds per setting")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        folder = (
            loaders.vectors_folder(args.vectors)
            if args.vectors
            else synthetic_folder(pathlib.Path(scratch) / "vectors", args.rows)
        )
        loader = loaders.VectorLoader(folder, "train", batch_size=args.batch_size)
        print(f"{folder}: {loader.rows} train rows x {loader.data.weights.shape[1]} weights, batch {args.batch_size}")
        settings = {"off": {}, "standardise": {"standardise": True}, "noise 0.1": {"noise_std": 0.1}}
        if importlib.util.find_spec("jaxzoo.weights.symmetry") is not None:
            settings["permute"] = {"permute": True}
            settings["permute + noise + standardise"] = {"permute": True, "noise_std": 0.1, "standardise": True}
            settings["  ... + tokens"] = {"permute": True, "noise_std": 0.1, "standardise": True, "tokens": True}
        else:
            print("jaxzoo.weights.symmetry is missing: the permutation settings are skipped")
            settings["noise + standardise"] = {"noise_std": 0.1, "standardise": True}
        for name, options in settings.items():
            rate = samples_per_second(folder, args.batch_size, args.seconds, **options)
            print(f"  {name:32s} {rate:12,.0f} samples/s")


if __name__ == "__main__":
    main()
