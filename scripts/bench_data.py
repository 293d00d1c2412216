"""Time to load each dataset from its raw files (cold cache) and from the cache.

Writes synthetic files of the published sizes and formats (random pixels) into a scratch
folder, then times `load_dataset` twice per dataset and image size: the first call reads the
raw files, transforms (PIL, as torchvision) and caches; the second reads the checked cache.

  python scripts/bench_data.py                      # all raw formats at full size
  python scripts/bench_data.py --only usps,mnist --scratch /tmp/jz
"""

from __future__ import annotations

import argparse
import pathlib
import tempfile
import time

import numpy as np

from jaxzoo.data import DATASETS, DataOptions, load_dataset, synthetic

WRITERS = {
    "mnist": lambda root, rng: synthetic.write_mnist(root / "MNIST" / "raw", rng, 60000, 10000),
    "cifar10": lambda root, rng: synthetic.write_cifar10(root, rng, 10000, 10000),
    "cifar100": lambda root, rng: synthetic.write_cifar100(root, rng, 50000, 10000),
    "svhn": lambda root, rng: synthetic.write_svhn(root / "SVHN", rng, 73257, 26032),
    "usps": lambda root, rng: synthetic.write_usps(root, rng, 7291, 2007),
    "stl10": lambda root, rng: synthetic.write_stl10(root / "stl10_binary", rng, 5000, 8000),
    "tiny_imagenet": lambda root, rng: synthetic.write_tiny_imagenet(
        root, rng, [f"n{i:08d}" for i in range(200)], per_class=500, n_val=10000
    ),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=",".join(WRITERS))
    parser.add_argument("--scratch", default="")
    args = parser.parse_args()
    scratch = pathlib.Path(args.scratch or tempfile.mkdtemp(prefix="jaxzoo-bench-data-"))
    rng = np.random.default_rng(0)
    print(f"scratch folder {scratch}")
    print("| dataset | size | images (train+val/test) | write raw s | from raw s | from cache s |")
    print("|---|---:|---|---:|---:|---:|")
    for source_name in args.only.split(","):
        raw_dir = scratch / "raw" / source_name
        start = time.perf_counter()
        WRITERS[source_name](raw_dir, rng)
        write_seconds = time.perf_counter() - start
        names = [n for n, info in DATASETS.items() if info.source_name == source_name]
        for name in names:
            for size in DATASETS[name].image_sizes:
                options = DataOptions("raw", str(raw_dir), "", str(scratch / "cache"))
                start = time.perf_counter()
                cold = load_dataset(name, size, options=options)
                cold_seconds = time.perf_counter() - start
                start = time.perf_counter()
                load_dataset(name, size, options=options)
                warm_seconds = time.perf_counter() - start
                counts = f"{len(cold.train[1]) + len(cold.val[1])}/{len(cold.test[1])}"
                print(
                    f"| {name} | {size} | {counts} | {write_seconds:.1f} | {cold_seconds:.1f} | {warm_seconds:.2f} |",
                    flush=True,
                )
    embedded_start = time.perf_counter()
    load_dataset("mnist_5k", 28, options=DataOptions("embedded", cache_dir=str(scratch / "cache2")))
    cold_seconds = time.perf_counter() - embedded_start
    start = time.perf_counter()
    load_dataset("mnist_5k", 28, options=DataOptions("embedded", cache_dir=str(scratch / "cache2")))
    print(f"| mnist_5k (embedded) | 28 | 4250/750 | - | {cold_seconds:.1f} | {time.perf_counter() - start:.2f} |")


if __name__ == "__main__":
    main()
