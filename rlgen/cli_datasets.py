"""``rlgen datasets ls|info|verify|compact|export|import``: arguments and commands (the CLI layer; kept out of
``cli.py`` to keep that module small). The work is in ``rlgen.data``; importing this module imports nothing heavy."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from rlgen.errors import RlgenError


def add_datasets_parser(sub: argparse._SubParsersAction) -> None:
    """Add ``datasets`` and its subcommands to the ``rlgen`` subcommands ``sub``."""
    datasets = sub.add_parser("datasets", help="list, inspect, verify and export datasets", description="Datasets.")
    dsub = datasets.add_subparsers(dest="datasets_command", metavar="SUBCOMMAND", required=True)
    p = dsub.add_parser("ls", help="list the datasets under a directory")
    p.add_argument("path", nargs="?", default="data")
    p.set_defaults(func=cmd_datasets_ls)
    p = dsub.add_parser("info", help="levels, episodes, returns by skill, bytes/transition")
    p.add_argument("path")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_datasets_info)
    p = dsub.add_parser("verify", help="check checksums, shapes and counts (exit 1 on a problem)")
    p.add_argument("path")
    p.set_defaults(func=cmd_datasets_verify)
    p = dsub.add_parser("compact", help="re-encode finished shards smaller (archive: zstd 19, long-distance matching); resumable")
    p.add_argument("path")
    p.add_argument("--level", default="archive", help="codec grade: archive (default) or fresh")
    p.add_argument("--workers", type=int, help="processes compressing at once (default: the CPUs)")
    p.set_defaults(func=cmd_datasets_compact)
    p = dsub.add_parser("export", help="export to a Minari dataset")
    p.add_argument("path")
    p.add_argument("--minari", required=True, metavar="ID", help="Minari dataset id, e.g. rlgen/coinrun/expert-v0")
    p.set_defaults(func=cmd_datasets_export)
    p = dsub.add_parser("import", help="import a Minari dataset with image observations")
    p.add_argument("minari", metavar="ID", help="a local Minari dataset id")
    p.add_argument("out", help="directory for the rlgen dataset")
    p.add_argument("--env", help="rlgen env id to record (SUITE/ENV); default: from the Minari metadata")
    p.set_defaults(func=cmd_datasets_import)


def cmd_datasets_ls(args: argparse.Namespace) -> int:
    from rlgen.data.listing import dataset_dirs, listing_lines

    root = Path(args.path)
    if not root.is_dir():
        raise RlgenError(f"no directory {str(root)!r}")
    dirs = dataset_dirs(root)
    if not dirs:
        print(f"no datasets under {root}")
        return 0
    print("\n".join(listing_lines(dirs)))
    return 0


def cmd_datasets_info(args: argparse.Namespace) -> int:
    from rlgen.data.dataset import load_dataset

    ds = load_dataset(args.path)
    info = ds.describe()
    if args.json:
        print(json.dumps({"info": info, "manifest": {k: v for k, v in ds.manifest.items() if k != "shards"}}, indent=2))
        return 0
    print(f"dataset        {info['name']} ({ds.root})")
    print(f"env            {info['env']}")
    print(f"skill          {ds.manifest.get('skill', '-')}")
    print(f"episodes       {info['episodes']:,}")
    print(f"transitions    {info['transitions']:,}")
    print(f"levels         {info['levels']} ({ds.manifest.get('collection', {}).get('levels', '-')})")
    print(f"mean return    {info['mean_return']:.3f}")
    for label, v in info["returns_by_skill"].items():
        print(f"  {label:<12} {v['episodes']:,} episodes, mean return {v['mean_return']:.3f}")
    for p in ds.manifest.get("policies", []):
        if "step" in p:
            print(f"policy {p['label']:<8} {p['checkpoint']} at step {p['step']:,}: ladder mean return {p['mean_return']:.3f}")
    if info["bytes_per_transition"]:
        bpt = info["bytes_per_transition"]
        print(f"storage        {bpt:,.0f} bytes/transition ({bpt / info['raw_bytes_per_transition']:.3f} of raw {info['raw_bytes_per_transition']:,})")
    return 0


def cmd_datasets_verify(args: argparse.Namespace) -> int:
    from rlgen.data.dataset import load_dataset
    from rlgen.data.format import MANIFEST, DatasetError

    if not (Path(args.path) / MANIFEST).is_file():
        load_dataset(args.path)  # not a dataset: the one-line error of bad input (exit 2)
    try:
        ds = load_dataset(args.path)  # checks the manifest, its digest and episodes.jsonl's sha256
        problems = ds.verify()
    except DatasetError as e:  # damage found while opening it is a failed verification (exit 1)
        problems = [str(e)]
    if problems:
        for p in problems:
            print(f"FAIL {p}")
        print(f"{args.path}: {len(problems)} problem(s)")
        return 1
    base = ds.base
    old = " (schema 1: shards without frame checksums, no manifest digest)" if base.manifest.get("schema_version") == 1 else ""
    print(f"{args.path}: OK ({len(base.manifest['shards'])} shards, {ds.num_episodes:,} episodes, "
          f"{ds.num_transitions:,} transitions; checksums, shapes and counts match{old})")
    return 0


def cmd_datasets_compact(args: argparse.Namespace) -> int:
    from rlgen.data.compact import compact_dataset

    print(compact_dataset(args.path, level=args.level, workers=args.workers).summary(args.path))
    return 0


def cmd_datasets_export(args: argparse.Namespace) -> int:
    from rlgen.data.dataset import load_dataset
    from rlgen.data.minari_io import export_minari

    ds = load_dataset(args.path)
    path = export_minari(ds, args.minari, progress=True)
    print(f"exported {ds.num_episodes:,} episodes to Minari dataset {args.minari} ({path})")
    return 0


def cmd_datasets_import(args: argparse.Namespace) -> int:
    from rlgen.data.minari_io import import_minari

    root = import_minari(args.minari, args.out, env=args.env, progress=True)
    print(f"imported Minari dataset {args.minari} into {root}")
    return 0
