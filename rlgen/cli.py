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
from rlgen.cli_datasets import add_datasets_parser
from rlgen.cli_enjoy import add_enjoy_parser
from rlgen.errors import RlgenError, TrainingInterrupted


def _config_from_target(target: str, overrides: Sequence[str]):  # -> RlgenConfig
    """``target`` is a YAML config path, a shipped config's name or ``SUITE/ENV``."""
    from rlgen.config import load_config
    from rlgen.config.shipped import shipped_name

    if target.endswith((".yaml", ".yml")) or Path(target).is_file() or shipped_name(target):
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
    report = find_duplicate_levels(split.suite, split.env, train, held, split.options, rollout_steps=args.rollout_steps, progress=True)
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


def _status(line: str) -> None:
    """A status line for a terminal user, on stderr (stdout keeps the command's results)."""
    print(line, file=sys.stderr, flush=True)


def cmd_train(args: argparse.Namespace) -> int:
    from rlgen.agents import train_and_describe, train_schema
    from rlgen.config import load_config

    cfg = load_config(args.config, args.overrides, schema=train_schema(args.config, args.overrides))
    run_dir, summary = train_and_describe(cfg, announce=_status if sys.stderr.isatty() else None)  # checks first
    print(summary)
    print(f"next: rlgen evaluate {run_dir} --episodes 100")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from rlgen.config import LIMITS, MAX_SEED

    limit = LIMITS["episodes"]
    if not 1 <= args.episodes <= limit.value:
        raise RlgenError(f"--episodes {args.episodes}: must be 1 to {limit.value:,} ({limit.why})")
    if not 0 <= args.seed <= MAX_SEED:
        raise RlgenError(f"--seed {args.seed}: must be 0 to {MAX_SEED:,}")
    from rlgen.agents import load_agent
    from rlgen.agents.run_dir import check_writable_dir
    from rlgen.evaluation import generalization_gap
    from rlgen.pipeline.evaluate_run import adopt_old_run, evaluate_and_record, evaluate_seed_group, run_candidates

    if (code := evaluate_seed_group(args, cmd_evaluate)) is not None:  # a seed group: each member is a run, with its own rows
        return code
    run_dir = Path(args.run_dir)
    if sys.stderr.isatty():  # before the seconds of torch's import, so the command is never silent (quiet when piped, as progress)
        _status(f"rlgen: evaluating {run_dir} on {', '.join(args.which)} levels, {args.episodes:,} episodes each: loading its agent")
    run = load_agent(run_dir, checkpoint=args.checkpoint, device=args.device)
    check_writable_dir(run_dir, "run directory", "rlgen evaluate writes its results.jsonl there: fix its permissions, or evaluate a copy "
                       "of the run")  # before evaluating, not after  # fmt: skip
    num_envs = int(getattr(run.config, "eval_num_envs", 16))
    if note := adopt_old_run(run):
        print(f"rlgen: {note}", file=sys.stderr)
    p = run.progress
    if p is not None and p.finished is False:
        at = f"step {p.step:,}" if p.step is not None else "an unknown step"
        of = f" of {p.total:,}" if p.total is not None else ""
        print(f"rlgen: warning: {run_dir} has not finished training: evaluating its model at {at}{of}; "
              "its rows say finished: false, and `rlgen report` flags them", file=sys.stderr)  # fmt: skip

    def show(name: str, which: str, r) -> None:  # noqa: ANN001 - an EvalResult
        norm = f"{r.mean_normalized:.3f}" if r.mean_normalized is not None else "-"
        print(f"{name:<8} {which:<10} {len(r.returns):>8} {r.mean_return:>8.3f} {norm:>10}")

    print(f"{'agent':<8} {'levels':<10} {'episodes':>8} {'return':>8} {'normalized':>10}")
    replaced = 0
    for candidate in run_candidates(run, random_baseline=args.random_baseline, random_seed=args.seed):
        # written per level set, so a kill keeps what finished; an earlier evaluation of the same
        # run, policy and level set is replaced (the latest evaluation wins)
        done = evaluate_and_record([candidate], run.split, args.which, run_dir / "results.jsonl", episodes=args.episodes, seed=args.seed,
                                   num_envs=num_envs, deterministic=args.deterministic, on_result=show, progress=True)  # fmt: skip
        replaced += done.replaced
        for w in done.warnings:
            print(f"rlgen: warning: {w}", file=sys.stderr)
        results = done.results[candidate.name]
        if "train" in results and "held_out" in results:
            g = generalization_gap(results["train"], results["held_out"], seed=args.seed)
            kind = "normalized" if g.normalized else "raw"
            print(f"{candidate.name:<8} gap ({kind} train - held-out) {g.gap:+.3f}  95% CI [{g.ci_low:+.3f}, {g.ci_high:+.3f}] (evaluation noise of this run only)")
    print(f"wrote to {run_dir / 'results.jsonl'}" + (f"; replaced {replaced} earlier row(s) of the same evaluations" if replaced else ""))
    print(f"next: rlgen report {run_dir}   (or the folder holding several runs, to compare them)")
    return 0


def cmd_configs_ls(args: argparse.Namespace) -> int:
    from rlgen.config.shipped import describe, shipped_configs

    configs = {n: p for n, p in shipped_configs().items() if not args.kind or n.split("/", 1)[0] == args.kind}
    if not configs:
        kinds = sorted({n.split("/", 1)[0] for n in shipped_configs()})
        raise RlgenError(f"no shipped configs of kind {args.kind!r}; kinds: {', '.join(kinds)}")
    width = max(map(len, configs))
    for name, path in configs.items():
        print(f"{name:<{width}}  {describe(path)}")
    print(f"{len(configs)} configs; use one by name (rlgen train ppo/minigrid_doorkey) or copy it: rlgen configs copy NAME my.yaml",
          file=sys.stderr)
    return 0


def cmd_configs_show(args: argparse.Namespace) -> int:
    from rlgen.config.shipped import find_shipped

    print(find_shipped(args.name).read_text(), end="")
    return 0


def cmd_configs_copy(args: argparse.Namespace) -> int:
    from rlgen.config.shipped import copy_shipped

    dest = copy_shipped(args.name, Path(args.dest), force=args.force)
    print(f"copied {args.name} to {dest}; edit it, then e.g. rlgen train {dest}")
    return 0


def cmd_collect(args: argparse.Namespace) -> int:
    from rlgen.config import CollectConfig, load_config

    cfg = load_config(args.config, args.overrides, schema=CollectConfig)
    from rlgen.collect import collect
    from rlgen.data.dataset import load_dataset

    t0 = time.perf_counter()
    root = collect(cfg)  # the policy run's algorithm's collector (JAX policies roll out on device)
    info = load_dataset(root).describe()
    print(f"{root}: {info['episodes']:,} episodes, {info['transitions']:,} transitions on {info['levels']} levels, "
          f"mean return {info['mean_return']:.3f} ({time.perf_counter() - t0:.0f}s)")
    print(f"next: rlgen train offline/bc dataset={root}   (other algorithms: rlgen configs ls offline)")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from rlgen.report import fmt, make_report, table_lines

    rep = make_report(args.paths, out_dir=args.out, seed=args.seed, progress=True)
    for note in rep.notes:
        print(f"rlgen: {note}", file=sys.stderr)
    if rep.results.dropped:
        print(f"latest evaluation wins: dropped {rep.results.dropped} earlier row(s) of runs evaluated again")
    for line in table_lines(rep.table):
        print(line)
    for g in rep.aggregates:
        if g.which != "gap":
            print(f"IQM {g.label:<12} {g.which.replace('_', '-'):<9} {fmt(g.metrics['IQM'])}  over {len(g.games)} game(s) x {g.runs} run(s)")
    for p in rep.improvements:
        if p.which == "held_out" and p.estimate.ci is not None:  # with 1 run a side it is no probability
            print(f"P({p.x} > {p.y}) held-out {fmt(p.estimate)}")
    print(f"report: {rep.path}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from rlgen.pipeline import load_study

    study, stages = load_study(args.config, args.overrides)  # every stage config is checked before any work
    return _run_and_summarize(study, stages, dry_run=args.dry_run)


def cmd_quickstart(args: argparse.Namespace) -> int:
    from rlgen.pipeline.quickstart import QUICKSTART_CONFIG, load_quickstart

    if args.print_config:
        print(QUICKSTART_CONFIG.read_text(), end="")
        return 0
    study, stages = load_quickstart(args.overrides)
    print(f"rlgen quickstart: the whole study, small, on {study.envs[0]} (config: rlgen quickstart --print-config)")
    return _run_and_summarize(study, stages, dry_run=args.dry_run)


def _run_and_summarize(study, stages, dry_run: bool) -> int:  # noqa: ANN001 - StudyConfig, list[Stage]
    from rlgen.pipeline import StudyInterrupted, results_table, run_study, summary_lines
    from rlgen.pipeline.stages import stage_state

    if dry_run:
        for s in stages:
            print(f"{stage_state(s):<8} {s.kind:<9} {s.id}")
        print(f"{len(stages)} stages in {study.out_dir}")
        return 0
    t0 = time.perf_counter()
    try:
        result = run_study(study, stages)
    except StudyInterrupted as e:
        print(f"rlgen: {e}", file=sys.stderr)
        return 130
    print()
    for line in results_table(result.results_files, seed=study.report.seed):
        print(line)
    for line in summary_lines(result):
        print(line)
    if result.report is not None:
        print(f"report: {result.report}")
    print(f"took {time.perf_counter() - t0:.0f}s; study directory {study.out_dir}")
    return 1 if result.failures or result.blocked else 0


def _list_algorithms_in_help(parser: argparse.ArgumentParser) -> None:
    """Fill ``{online}``/``{offline}`` in ``parser``'s description from the algorithm registry (registered ones
    included) only when its help is shown: importing the registry takes about a second."""
    template, plain = parser.description or "", parser.format_help

    def format_help() -> str:
        from rlgen.agents import available_algorithms as names

        parser.description = template.format(online=", ".join(names("online")), offline=", ".join(names("offline")))
        return plain()
    parser.format_help = format_help  # type: ignore[method-assign]


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

    train = sub.add_parser("train", help="train an agent from a config", description="Train an agent on the split's training levels "
                           "(online: {online}) or on a dataset (offline: {offline}). Re-running on an existing out_dir resumes it.")
    _list_algorithms_in_help(train)
    train.add_argument("config", help="YAML config, e.g. configs/ppo/minigrid_doorkey.yaml")
    train.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides, e.g. total_steps=200000")
    train.set_defaults(func=cmd_train)

    evaluate = sub.add_parser("evaluate", help="evaluate a run on training and held-out levels", description="Evaluate a run's final policy (each run's, for a seed group) on training and held-out levels, print "
                              "returns, normalized returns and the generalization gap, and write rows to the run's results.jsonl (an earlier evaluation of the same run and level set is replaced).")  # fmt: skip
    evaluate.add_argument("run_dir", help="a run directory made by rlgen train")
    evaluate.add_argument("--episodes", type=int, default=100, help="episodes per level set (default 100)")
    evaluate.add_argument("--which", nargs="+", default=["train", "held_out"], choices=["train", "validation", "held_out"])
    evaluate.add_argument("--seed", type=int, default=0, help="fixes the level list (default 0)")
    evaluate.add_argument("--deterministic", action="store_true", help="greedy actions instead of sampled")
    evaluate.add_argument("--checkpoint", help="a checkpoint inside the run dir (default: the final ladder rung)")
    evaluate.add_argument("--device", help="override the run's device")
    evaluate.add_argument("--random-baseline", action="store_true", help="also evaluate a uniform random policy")
    evaluate.set_defaults(func=cmd_evaluate)

    collect = sub.add_parser("collect", help="collect a dataset from a policy at a skill level",
                             description="Roll out a PPO run's policy (skill expert | medium | mixed | random) on the "
                             "split's training levels into a dataset. Re-running resumes an interrupted collection.")
    collect.add_argument("config", help="YAML config, e.g. configs/collect/procgen_coinrun.yaml")
    collect.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="e.g. skill=mixed transitions=1000000")
    collect.set_defaults(func=cmd_collect)

    configs = sub.add_parser("configs", help="list, show and copy the configs shipped with rlgen",
                             description="The configs shipped with rlgen, by name (kind/stem, e.g. ppo/minigrid_doorkey). Any "
                             "command's config argument may name one instead of a file.")
    csub = configs.add_subparsers(dest="configs_command", metavar="SUBCOMMAND", required=True)
    p = csub.add_parser("ls", help="list the shipped configs, with what each is")
    p.add_argument("kind", nargs="?", help="only this kind (ppo, ppo_jax, offline, collect, splits, study)")
    p.set_defaults(func=cmd_configs_ls)
    for verb, what, func in (("show", "print a shipped config", cmd_configs_show), ("copy", "copy a shipped config to a file to edit", cmd_configs_copy)):
        p = csub.add_parser(verb, help=what)
        p.add_argument("name", help="e.g. ppo/minigrid_doorkey")
        p.set_defaults(func=func)
    p.add_argument("dest", help="file (or directory) to write")
    p.add_argument("--force", action="store_true", help="overwrite an existing file")

    add_datasets_parser(sub)

    report = sub.add_parser("report", help="tables and plots from results.jsonl files",
                            description="Per-game train / held-out / gap table with 95% CIs over runs (1-run rows: over "
                            "episodes, labelled), rliable aggregates and probability of improvement across games, PNG plots "
                            "and report.md, from results.jsonl files or the directories holding them.")
    report.add_argument("paths", nargs="+", help="results.jsonl files or directories searched recursively")
    report.add_argument("--out", help="output directory (default: <first path>/report)")
    report.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    report.set_defaults(func=cmd_report)

    run = sub.add_parser("run", help="run a whole study from one config (sweeps, local or Ray)",
                         description="Train PPO, collect datasets, train offline agents, evaluate every agent on training "
                         "and held-out levels and write the report, as the study config says. Stages whose output exists "
                         "for the same config are skipped, so re-running continues after a crash and recomputes only "
                         "what an edited config changed.")
    run.add_argument("config", help="study YAML, e.g. configs/study/procgen_expert.yaml")
    run.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="e.g. runner=ray seeds=[0,1] offline.algos=[bc,cql]")
    run.add_argument("--dry-run", action="store_true", help="list the stages and whether each is up to date; run nothing")
    run.set_defaults(func=cmd_run)

    quick = sub.add_parser("quickstart", help="the whole study, small, on CPU (about 8 minutes on an idle 2-core CPU)",
                           description="PPO on MiniGrid DoorKey, expert and mixed datasets, BC, CQL and DT, evaluation on "
                           "training and held-out levels, report. Output in runs/quickstart.")
    quick.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="study overrides, e.g. out_dir=/tmp/qs workers=1")
    quick.add_argument("--print-config", action="store_true", help="print the quickstart's study config and exit")
    quick.add_argument("--dry-run", action="store_true", help="list the stages; run nothing")
    quick.set_defaults(func=cmd_quickstart)
    add_enjoy_parser(sub)  # rlgen/cli_enjoy.py
    return parser


def configure_logging(debug: bool) -> None:
    """The CLI alone sets up logging. d3rlpy logs through structlog at info level on every dataset
    and epoch; the user sees rlgen's progress and d3rlpy's warnings, everything with --debug."""
    import logging

    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG if debug else logging.WARNING))


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging(args.debug)
    try:
        return int(args.func(args))
    except RlgenError as e:
        if args.debug:
            raise
        for w in e.warnings:  # what was met on the way (skipped lines...) often says why
            print(f"rlgen: warning: {w}", file=sys.stderr)
        print(f"rlgen: error: {e}", file=sys.stderr)
        return 130 if isinstance(e, TrainingInterrupted) else 2
    except KeyboardInterrupt:
        print("rlgen: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
