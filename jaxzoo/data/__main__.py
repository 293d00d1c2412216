"""`python -m jaxzoo.data list | info NAME | prepare NAME [--source S] [--raw_dir DIR] [--tfds_dir DIR] [--cache_dir DIR] [--verbose]`.

list     every registry dataset: shape, classes, split sizes, the sources that can serve it here, cached sizes
info     one dataset in detail
prepare  one-time preparation: TFDS download (needs TensorFlow and the network) or the raw
         files under --raw_dir, then the preprocessed cache for every image size it is used at

NAME may also be tfds:NAME, npz:PATH or py:MODULE:FUNCTION (`jaxzoo.data.names`): `info` reads
and describes it (classes, split sizes with the default val fraction, mean/std); `prepare`
downloads and prepares a tfds: dataset if needed, then caches its checked native splits.
"""

from __future__ import annotations

import sys
import time

from jaxzoo.cli import ArgumentParser, run
from jaxzoo.data import cache, raw, tfds_source
from jaxzoo.data.load import (
    DataOptions,
    cache_folder,
    can_serve,
    check_source,
    describe_dataset,
    how_to_obtain,
    load_dataset,
    sources_of,
)
from jaxzoo.data.names import parse_name
from jaxzoo.data.registry import DATASETS, DatasetInfo
from jaxzoo.errors import UserError


def sources_here(info: DatasetInfo, options: DataOptions) -> list[str]:
    return [s for s in ("embedded", "raw", "tfds") if can_serve(info, s, options)]


def cached_sizes(info: DatasetInfo, options: DataOptions) -> list[str]:
    return [
        f"{size}px/{source}"
        for size in info.image_sizes
        for source in ("embedded", "raw", "tfds")
        if cache.present(cache_folder(info, source, size, options))
    ]


def shape_text(info: DatasetInfo) -> str:
    return ", ".join(f"{s}x{s}x{info.channels}" for s in info.image_sizes)


def list_datasets(options: DataOptions) -> None:
    print("| dataset | shape | classes | train/val/test | sources here | prepared (cached) |")
    print("|---|---|---:|---|---|---|")
    for info in DATASETS.values():
        sizes = "/".join(str(n) for n in info.split_sizes)
        print(
            f"| {info.name} | {shape_text(info)} | {info.num_classes} | {sizes} | "
            f"{', '.join(sources_here(info, options)) or 'none'} | {', '.join(cached_sizes(info, options)) or 'no'} |"
        )


def show_info(info: DatasetInfo, options: DataOptions) -> None:
    print(f"{info.name}: images from {info.source_name}; {info.notes}")
    print(f"  shape {shape_text(info)}, {info.num_classes} classes, train/val/test {info.split_sizes}")
    for size, transform in sorted(info.transforms.items()):
        print(f"  {size}px: transform {transform.tag}, cache {cache_folder(info, 'raw', size, options).parent}")
    print(f"  normalise: (x/255 - {info.mean}) / {info.std}")
    print(
        f"  raw files: {raw.MARKERS.get(info.source_name, ('embedded',))} under {raw.FOLDERS.get(info.source_name, ())}"
    )
    print(f"  TFDS: {tfds_source.TFDS_NAMES.get(info.source_name, 'not in the TFDS catalog')}")
    print(
        f"  sources here: {', '.join(sources_here(info, options)) or 'none'}; cached: {', '.join(cached_sizes(info, options)) or 'no'}"
    )
    if not sources_here(info, options):
        print(f"  to obtain it: {how_to_obtain(info)}")


def prepare(info: DatasetInfo, options: DataOptions) -> None:
    source = options.source
    check_source(info, source)
    if source == "auto":
        if "embedded" in sources_of(info):
            source = "embedded"
        elif options.raw_dir:
            source = "raw"
        elif info.source_name in tfds_source.TFDS_NAMES:
            source = "tfds"
        else:
            raise UserError(f"{info.name} is not in TFDS: download it and pass --raw_dir DIR ({how_to_obtain(info)})")
    if not all(cache.present(cache_folder(info, source, size, options)) for size in info.image_sizes):
        cache.check_writable(options.cache_dir)  # before any download or preprocessing
    if source == "tfds" and not tfds_source.prepared(info.source_name, options.tfds_dir):
        print(f"downloading and preparing TFDS {tfds_source.TFDS_NAMES[info.source_name]} ...", flush=True)
        tfds_source.prepare(info.source_name, options.tfds_dir)
    for size in info.image_sizes:
        start = time.time()
        dataset = load_dataset(
            info.name, size, options=DataOptions(source, options.raw_dir, options.tfds_dir, options.cache_dir)
        )
        print(
            f"{info.name} {size}px from {source}: train/val/test {len(dataset.train[1])}/{len(dataset.val[1])}/"
            f"{len(dataset.test[1])} in {time.time() - start:.1f} s -> {cache_folder(info, source, size, options)}"
        )


def show_other(name: str, options: DataOptions) -> None:
    """`info` for a tfds:/npz:/py: name: what `describe_dataset` finds in its data."""
    info = describe_dataset(name, options)
    print(f"{info.name}: {info.notes}")
    print(
        f"  {info.channels} channels, {info.num_classes} classes, train/val/test {info.split_sizes}, "
        f"image sizes {info.size_rule}"
    )
    print(f"  normalise: (x/255 - {info.mean}) / {info.std}")


def prepare_other(name: str, options: DataOptions) -> None:
    """`prepare` for a tfds:/npz:/py: name: TFDS download if needed, then the native cache."""
    parsed = parse_name(name)
    start = time.time()
    cache.check_writable(options.cache_dir)  # before any download or reading
    if parsed.form == "tfds":
        tfds = tfds_source.tfds_module()
        try:
            with tfds_source.quiet():
                prepared = tfds.builder(parsed.target, data_dir=options.tfds_dir or None).is_prepared()
        except Exception:  # an unknown name: describe_dataset below says so in one line
            prepared = True
        if not prepared:
            print(f"downloading and preparing TFDS {parsed.target} ...", flush=True)
            tfds_source.prepare_named(parsed.target, options.tfds_dir, f"`python -m jaxzoo.data prepare {name}`")
    info = describe_dataset(name, options)
    print(
        f"{info.name}: train/val/test {'/'.join(map(str, info.split_sizes))}, {info.num_classes} classes, "
        f"image sizes {info.size_rule}, cached in {time.time() - start:.1f} s under "
        f"{cache.cache_root(options.cache_dir)}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m jaxzoo.data", description=__doc__.splitlines()[0])  # adds --verbose
    parser.add_argument("command", choices=("list", "info", "prepare"))
    parser.add_argument("name", nargs="?")
    parser.add_argument("--source", default="auto", choices=("auto", "embedded", "raw", "tfds"))
    parser.add_argument("--raw_dir", default="")
    parser.add_argument("--tfds_dir", default="")
    parser.add_argument("--cache_dir", default="")
    args = parser.parse_args(argv)
    options = DataOptions(args.source, args.raw_dir, args.tfds_dir, args.cache_dir)

    def action():
        if args.command == "list":
            return list_datasets(options)
        if args.name is None:
            raise UserError(f"{args.command} needs a dataset: name a dataset, one of {sorted(DATASETS)}")
        if args.name not in DATASETS:
            parse_name(args.name)  # an unknown name or form: one line naming the forms
            return (show_other if args.command == "info" else prepare_other)(args.name, options)
        (show_info if args.command == "info" else prepare)(DATASETS[args.name], options)

    return run(action, args.verbose)


if __name__ == "__main__":
    sys.exit(main())
