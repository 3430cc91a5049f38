"""The one evaluate-and-record path: ``rlgen evaluate`` and the pipeline's evaluation stages both use it.

It composes a loaded run (``rlgen.agents.load_agent``) with evaluation: each policy (the run's agent, and
the random baseline) is evaluated on each level set by its algorithm's evaluator, and every result becomes
a ``results.jsonl`` row carrying the agent's identity (``rlgen.agents.identity``: the run's id and study
label from its ``run.json``, whoever evaluates it). Rows are recorded per level set as they finish
(``rlgen evaluate``: an earlier evaluation of the same run, checkpoint and level set is replaced), or the
file is written whole at the end (a pipeline stage owns its file).
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from rlgen.agents import LoadedAgent, get_algorithm
from rlgen.agents.run_dir import adopt_run_id, read_run_id
from rlgen.envs import LevelSplit
from rlgen.evaluation import EvalResult, RandomPolicy, evaluate_on_levels
from rlgen.evaluation.results import random_identity, record_results, write_rows
from rlgen.progress import ProgressBar


@dataclasses.dataclass
class Candidate:
    """One policy to evaluate: its row label, the policy, the evaluator that runs it, its identity fields."""

    name: str
    policy: Any
    evaluate: Callable[..., EvalResult]
    identity: dict[str, Any]


def adopt_old_run(loaded: LoadedAgent) -> str | None:
    """Give a run directory from before ``run.json`` its record (its path-derived id, once), so that moving it
    later keeps its id; returns a line saying so, or None when it already had one (or cannot be written)."""
    run_id, wrote = adopt_run_id(loaded.run_dir)
    if not wrote:
        return None
    return f"{loaded.run_dir} had no run.json (an older rlgen's run): wrote one with its id {run_id}, which now moves with the directory"


def run_candidates(loaded: LoadedAgent, random_baseline: bool = False, random_seed: int = 0, study: str | None = None,
                   label: str | None = None, split: LevelSplit | None = None) -> list[Candidate]:  # fmt: skip
    """The run's agent (row label ``label`` or its algorithm) and, with ``random_baseline``, a uniform random
    policy over its actions (``random_seed``), both evaluated by the run's algorithm's evaluator on ``split``
    (default the run's). Rows carry the run's study label (``study`` only for a run whose ``run.json`` has
    none); the random baseline gets the run's."""
    evaluate = get_algorithm(loaded.algo).evaluator()
    identity = loaded.identity(study=study, split=split)
    out = [Candidate(label or loaded.algo, loaded.agent, evaluate, identity)]
    if random_baseline:
        out.append(Candidate("random", RandomPolicy(loaded.num_actions, seed=random_seed), evaluate,
                             random_identity(split or loaded.split, random_seed, study=identity["study"])))  # fmt: skip
    return out


def random_candidate(split: LevelSplit, num_actions: int, seed: int, study: str | None = None, label: str = "random") -> Candidate:
    """A uniform random policy on ``split`` (the pipeline's baseline stage), evaluated episode by episode."""
    return Candidate(label, RandomPolicy(num_actions, seed=seed), evaluate_on_levels, random_identity(split, seed, study=study))


@dataclasses.dataclass
class Recorded:
    """What :func:`evaluate_and_record` did: per candidate name and level set the result, the rows written,
    how many earlier rows they replaced, and warnings about unreadable lines met in the file."""

    results: dict[str, dict[str, EvalResult]]
    rows: list[dict[str, Any]]
    replaced: int
    warnings: list[str]


def _takes_on_episode(evaluate: Callable[..., Any]) -> bool:
    try:
        return "on_episode" in inspect.signature(evaluate).parameters
    except (TypeError, ValueError):  # a callable without a signature
        return False


def evaluate_and_record(candidates: Sequence[Candidate], split: LevelSplit, which: Sequence[str], results_file: str | Path, episodes: int,
                        seed: int, num_envs: int, deterministic: bool = False, replace: bool = True, row_extra: dict[str, Any] | None = None,
                        on_result: Callable[[str, str, EvalResult], None] | None = None, progress: bool = False) -> Recorded:  # fmt: skip
    """Evaluate every candidate on every level set of ``which`` and record the rows in ``results_file``.

    Args:
        split: the level split (an offline run's has the training levels its data came from).
        replace: record each row as it finishes, replacing earlier rows of the same evaluation (so a kill
            keeps what finished); False: write the whole file at the end (atomically).
        row_extra: more fields for every row (``stage``...); each row's ``agent`` is its candidate's name.
        on_result: called as ``on_result(name, which, result)`` after each evaluation (to print it).
        progress: a bar per evaluation, over its episodes (``rlgen.progress``: silent when stdout is not a
            terminal); evaluators without ``on_episode`` (the batched JAX one) fill it when they finish.
    """
    results: dict[str, dict[str, EvalResult]] = {}
    rows: list[dict[str, Any]] = []
    replaced, warnings = 0, []
    for c in candidates:
        for w in which:  # each evaluation seeds the policy's generators from (seed, which) itself
            with ProgressBar(f"[bold]evaluate[/] {c.name} on {w} levels", total=episodes, unit="episodes", enabled=progress) as bar:
                hook = {"on_episode": lambda: bar.update(advance=1)} if bar.active and _takes_on_episode(c.evaluate) else {}
                r = c.evaluate(c.policy, split, w, episodes=episodes, seed=seed, num_envs=num_envs, deterministic=deterministic, **hook)
            results.setdefault(c.name, {})[w] = r
            row = r.to_row(**c.identity, agent=c.name, **(row_extra or {}))
            if row.get("num_envs") is None:  # evaluators that do not record it (the batched JAX one)
                row["num_envs"] = int(num_envs)
            rows.append(row)
            if replace:  # per level set, so a kill keeps what finished; the latest evaluation wins
                _, n, problems = record_results(results_file, [row], run_id_of=read_run_id)
                replaced += n
                warnings += problems
            if on_result is not None:
                on_result(c.name, w, r)
    if not replace:
        write_rows(results_file, rows)  # atomic: a kill mid-evaluation leaves no half file
    return Recorded(results, rows, replaced, warnings)


def evaluate_seed_group(args: Any, evaluate_one: Callable[[Any], int]) -> int | None:
    """``rlgen evaluate`` of a seed group (``group.json``, several seeds trained in one process): ``evaluate_one``
    on each member run with the same arguments (its own rows in its own ``results.jsonl``; the random baseline once,
    with the first); None when ``args.run_dir`` is a run itself."""
    import argparse  # noqa: PLC0415

    from rlgen.agents.run_dir import member_runs  # noqa: PLC0415

    members = member_runs(Path(args.run_dir))
    if members == [Path(args.run_dir)]:
        return None
    for i, member in enumerate(members):
        print(f"{member}:")
        evaluate_one(argparse.Namespace(**{**vars(args), "run_dir": str(member), "random_baseline": args.random_baseline and i == 0}))
    print(f"{len(members)} runs, one per seed: `rlgen report {args.run_dir}` gives CIs over them")
    return 0
