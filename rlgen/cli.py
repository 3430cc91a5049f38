"""The ``rlgen`` command. Thin: parse arguments, load the config, call the library.

Errors the user can fix (``RlgenError``) print as one line and exit with status 2; ``--debug``
shows the traceback instead.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from rlgen import __version__
from rlgen.errors import NotLandedError, RlgenError

#: Commands whose implementation has not landed yet, with the issue that brings them.
NOT_LANDED: dict[str, str] = {
    "train": "online PPO (issue #3) and offline agents (issue #7)",
    "collect": "dataset collection (issue #4)",
    "evaluate": "evaluation on training vs held-out levels (issue #3)",
    "report": "reports (issue #5)",
    "run": "the whole pipeline (issue #5)",
    "quickstart": "the quickstart pipeline (issue #5)",
    "datasets": "datasets (issue #4)",
}


def _config_from_target(target: str, overrides: Sequence[str]):  # -> RlgenConfig
    """``target`` is a YAML config path or ``SUITE/ENV``."""
    from rlgen.config import load_config

    if target.endswith((".yaml", ".yml")) or Path(target).is_file():
        return load_config(target, overrides)
    return load_config(None, [f"env={target}", *overrides])


def cmd_splits_show(args: argparse.Namespace) -> int:
    cfg = _config_from_target(args.target, args.overrides)
    split = cfg.level_split(check_duplicates=args.drop_duplicates_now)
    if args.json:
        print(json.dumps(split.to_dict(), indent=2))
    else:
        print(split.describe())
    return 0


def cmd_splits_check(args: argparse.Namespace) -> int:
    from rlgen.envs.leakage import find_duplicate_levels

    cfg = _config_from_target(args.target, args.overrides)
    split = cfg.level_split(check_duplicates=False)
    if args.levels < 1 or args.held_out < 1:
        raise RlgenError(f"--levels and --held-out must be >= 1, got {args.levels} and {args.held_out}")
    if args.rollout_steps < 0:
        raise RlgenError(f"--rollout-steps must be >= 0, got {args.rollout_steps}")
    train = split.train.first(args.levels)
    held = split.held_out.first(args.held_out)
    print(f"{split.id}: fingerprinting {len(train)} training levels ({train}) and {len(held)} held-out levels ({held})"
          + (f", first frame + {args.rollout_steps} scripted steps" if args.rollout_steps else ", first frame"), file=sys.stderr)
    t0 = time.perf_counter()
    report = find_duplicate_levels(split.suite, split.env, train, held, split.options, rollout_steps=args.rollout_steps)
    elapsed = time.perf_counter() - t0
    n = len(report.duplicated_held_out)
    print(f"held-out levels checked       {len(held)}")
    print(f"distinct training layouts     {report.distinct_train} of {len(train)}")
    print(f"held-out duplicating training {n} ({report.fraction:.1%})")
    if n:
        shown = ", ".join(f"{h}={'/'.join(map(str, report.matches[h][:3]))}" for h in report.duplicated_held_out[:10])
        more = f", ... {n - 10} more" if n > 10 else ""
        print(f"examples (held-out=train)     {shown}{more}")
        print("drop them with split.drop_duplicates=true (LevelSplit(..., drop_duplicates=True))")
    print(f"took {elapsed:.1f}s", file=sys.stderr)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"split": split.to_dict(), "report": report.to_dict()}, indent=2))
        print(f"wrote {args.json}", file=sys.stderr)
    return 0


def cmd_not_landed(args: argparse.Namespace) -> int:
    raise NotLandedError(f"`rlgen {args.command}` is not implemented yet: it arrives with {NOT_LANDED[args.command]}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rlgen",
        description="Train, collect, evaluate: does your agent generalize to levels it never saw?",
    )
    parser.add_argument("--version", action="version", version=f"rlgen {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    splits = sub.add_parser("splits", help="show and check level splits", description="Show and check level splits.")
    splits_sub = splits.add_subparsers(dest="splits_command", metavar="SUBCOMMAND", required=True)

    show = splits_sub.add_parser(
        "show", help="print a split's train / validation / held-out levels",
        description="Print the level split of SUITE/ENV (suite defaults) or of a config file.",
    )
    show.add_argument("target", help="SUITE/ENV (procgen/coinrun, minigrid/doorkey-5x5) or a config .yaml")
    show.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides, e.g. split.num_levels=50")
    show.add_argument("--json", action="store_true", help="print the split as JSON")
    show.add_argument("--drop-duplicates-now", action="store_true",
                      help="run the duplicate check when split.drop_duplicates is set (else it is deferred)")
    show.set_defaults(func=cmd_splits_show)

    check = splits_sub.add_parser(
        "check", help="count held-out levels that duplicate a training level",
        description="Fingerprint the first N training and M held-out levels (first observation, optionally a "
        "short scripted rollout) and report held-out levels identical to a training level.",
    )
    check.add_argument("target", help="SUITE/ENV or a config .yaml")
    check.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides")
    check.add_argument("--levels", type=int, default=200, help="training levels to check, from the first (default 200)")
    check.add_argument("--held-out", type=int, default=200, help="held-out levels to check, from the first (default 200)")
    check.add_argument("--rollout-steps", type=int, default=0,
                       help="also hash the frames of this many fixed-action steps (default 0: first frame only)")
    check.add_argument("--json", metavar="PATH", help="write the full report as JSON")
    check.set_defaults(func=cmd_splits_check)

    for name, what in NOT_LANDED.items():
        p = sub.add_parser(name, help=f"(not implemented yet: {what})", description=f"Not implemented yet: {what}.")
        p.add_argument("args", nargs="*", help=argparse.SUPPRESS)
        p.set_defaults(func=cmd_not_landed)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except RlgenError as e:
        if args.debug:
            raise
        print(f"rlgen: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("rlgen: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
