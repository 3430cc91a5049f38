"""Report tables from ``results.jsonl`` rows: per-game rows over runs, rliable aggregates across games,
probability of improvement, and their text form.

A *run* is one training run (its ``run_id``; the latest evaluation of each run wins, see
``rlgen.evaluation.results``). Its *score* on a level set is the mean normalized return of its episodes (raw
return where there is no normalization). A per-game row is one agent on one game, the agent being its full
identity (``rlgen.report.identity.Agent``): algorithm, split, config, training levels, dataset skill, levels
and size, study, checkpoint and acting mode, so two experiments never share a row. A run's identity is that
of its latest row, so a run never splits across rows. Runs of one row with the same config and seed are
not independent seeds: they count once, with a warning. The statistics are over runs
(``rlgen.evaluation.stats``): with one run a row's CI is over episodes, evaluation noise only, and says so
wherever it is shown; rows with runs that had not finished training say so too.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rlgen.agents.run_dir import read_run_id
from rlgen.errors import RlgenError
from rlgen.evaluation import results as results_io
from rlgen.evaluation.results import Results, rank, requested_mode, row_algorithm
from rlgen.evaluation.stats import Estimate, GameEstimate, aggregates, game_estimate, probability_of_improvement
from rlgen.report.identity import Agent, _sortable, agent_labels, baselines

ONE_RUN = "evaluation noise only: 1 run"
#: Rows with fewer runs than this get a warning line.
MIN_RUNS = 3
LEVEL_SETS = ("train", "held_out")

__all__ = ["ONE_RUN", "Agent", "Aggregate", "GameRow", "Improvement", "PerGame", "agent_labels", "aggregate_table", "find_results", "fmt",
           "improvement_table", "keep_latest", "load_results", "per_game", "per_game_table", "results_table", "table_lines"]  # fmt: skip


def load_results(files: Sequence[str | Path]) -> Results:
    """The rows of ``files`` that count: the latest evaluation of each run, rows from before run ids keyed
    by the run directory they were written in or name (``rlgen.evaluation.results.load_results``)."""
    return results_io.load_results(files, run_id_of=read_run_id)


def keep_latest(rows: Iterable[tuple[dict[str, Any], Path | None]]) -> tuple[list[dict[str, Any]], int]:
    """``rlgen.evaluation.results.keep_latest`` with rows from before run ids keyed by their run directory."""
    return results_io.keep_latest(rows, run_id_of=read_run_id)


def find_results(paths: Sequence[str | Path]) -> list[Path]:
    """``results.jsonl`` files: given directly, or found recursively under directories."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_file():
            out.append(p)
        elif p.is_dir():
            out.extend(sorted(p.rglob("results.jsonl")))
        else:
            raise RlgenError(f"{str(p)!r} does not exist")
    if not out:
        raise RlgenError(f"no results.jsonl under {', '.join(map(str, paths))}; run `rlgen evaluate RUN_DIR` first")
    return out


# --- per game ----------------------------------------------------------------------------------------


def _scores(row: dict[str, Any]) -> np.ndarray:
    values = row.get("normalized") if row.get("normalized") is not None else row["returns"]
    return np.asarray(values, dtype=np.float64)


@dataclasses.dataclass
class GameRow:
    """One agent on one game: estimates over its runs (``estimate``), ``runs`` of them, ``unfinished`` of
    which had not finished training when evaluated."""

    agent: Agent
    label: str
    env: str
    estimate: GameEstimate
    normalized: bool
    run_ids: list[str]
    unfinished: int = 0

    @property
    def runs(self) -> int:
        return self.estimate.runs

    @property
    def one_run(self) -> bool:
        return self.estimate.runs == 1

    @property
    def train(self) -> float:
        return self.estimate.train.value

    @property
    def held_out(self) -> float:
        return self.estimate.held_out.value

    @property
    def gap(self) -> float:
        return self.estimate.gap.value

    @property
    def gap_ci(self) -> tuple[float, float]:
        assert self.estimate.gap.ci is not None
        return self.estimate.gap.ci

    def scores(self, which: str) -> np.ndarray:
        """Run scores ``(runs,)`` on ``which`` (``train``, ``held_out``) or the per-run ``gap``."""
        e = self.estimate
        return {"train": e.train_runs, "held_out": e.held_out_runs, "gap": e.train_runs - e.held_out_runs}[which]


@dataclasses.dataclass
class PerGame:
    """The per-game table, what was left out of it, and why (one line each)."""

    rows: list[GameRow]
    unpaired: dict[str, int]  # label @ env -> runs with only one of the two level sets
    warnings: list[str] = dataclasses.field(default_factory=list)


def _runs(latest: Iterable[dict[str, Any]]) -> list[dict[str, dict[str, Any]]]:
    """The rows that count, grouped per run (run id, algorithm, env, checkpoint, acting mode asked for):
    ``{which: row}`` for train and held-out levels."""
    runs: dict[tuple, dict[str, dict[str, Any]]] = defaultdict(dict)
    for row in latest:
        if row["which"] in LEVEL_SETS:
            runs[(row["run_id"], row_algorithm(row), str(row["env"]), row.get("checkpoint"), requested_mode(row))][row["which"]] = row
    return list(runs.values())


def _identity_row(run: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The row whose identity a run takes: its latest (a run evaluated again after its identity gained
    fields, or moved into a study, is one run with its newest identity)."""
    rows = list(run.values())
    return max(rows, key=lambda r: rank(r, rows.index(r)))


def _distinct_seeds(agent_env: str, runs: list[dict[str, dict[str, Any]]], warnings: list[str]) -> list[dict[str, dict[str, Any]]]:
    """``runs`` with duplicates counted once: runs of one row that share a seed (their config digests are
    equal, being one row) trained the same experiment twice; the latest evaluated counts. Rows without a
    config digest (older rlgen) cannot be told apart: a shared seed among them gets a warning only."""
    by_seed: dict[Any, list[dict[str, dict[str, Any]]]] = defaultdict(list)
    for r in runs:
        by_seed[_identity_row(r).get("train_seed")].append(r)
    out = []
    for seed, same in by_seed.items():
        ident = [_identity_row(r) for r in same]
        if len(same) == 1 or seed is None:
            out.extend(same)
            continue
        ids = ", ".join(str(i["run_id"]) for i in ident)
        if all(i.get("config_digest") is not None for i in ident):
            keep = max(same, key=lambda r: max(float(x.get("time") or 0.0) for x in r.values()))
            out.append(keep)
            warnings.append(f"warning: {agent_env}: {len(same)} runs with the same config and seed {seed} ({ids}) are not independent "
                            f"seeds: counted once (the latest evaluated, {_identity_row(keep)['run_id']})")  # fmt: skip
        else:
            out.extend(same)
            warnings.append(f"warning: {agent_env}: {len(same)} runs share seed {seed} ({ids}) and their rows record no config digest "
                            "(an older rlgen): they may be duplicates or different configs; evaluate them again to tell")  # fmt: skip
    return out


def per_game(rows: Iterable[dict[str, Any]], seed: int = 0, n_boot: int = 10_000) -> PerGame:
    """One row per (agent, game) with runs evaluated on both training and held-out levels.

    ``rows`` may contain several evaluations of one run: only the latest counts.
    """
    latest, _ = keep_latest((r, None) for r in rows)
    # keyed on the game's held-out levels too: the agent's identity is the same on every game
    by: dict[tuple[Agent, str, Any], list[dict[str, dict[str, Any]]]] = defaultdict(list)
    for run in _runs(latest):
        normalized = all(r.get("normalized") is not None for r in run.values())
        ident = _identity_row(run)
        by[(Agent.of(ident, normalized=normalized), str(ident["env"]), ident.get("held_out_digest"))].append(run)
    labels = agent_labels(a for a, _, _ in by)
    table, unpaired, warnings = [], {}, []
    for (agent, env, _), runs in sorted(by.items(), key=lambda kv: (kv[0][0].sort_key(), kv[0][1], str(kv[0][2]))):
        paired = [r for r in runs if set(LEVEL_SETS) <= set(r)]
        if len(paired) < len(runs):
            unpaired[f"{labels[agent]} on {env}"] = len(runs) - len(paired)
        paired = _distinct_seeds(f"{labels[agent]} on {env}", paired, warnings)
        if not paired:
            continue
        paired.sort(key=lambda r: (_sortable(r["train"].get("train_seed")), r["train"]["run_id"]))
        est = game_estimate([_scores(r["train"]) for r in paired], [_scores(r["held_out"]) for r in paired], n_boot=n_boot, seed=seed)
        unfinished = sum(any(x.get("finished") is False for x in r.values()) for r in paired)
        table.append(GameRow(agent, labels[agent], env, est, agent.normalized, [r["train"]["run_id"] for r in paired], unfinished))
    return PerGame(table, unpaired, warnings)


def per_game_table(rows: Iterable[dict[str, Any]], seed: int = 0) -> list[GameRow]:
    """The rows of :func:`per_game`."""
    return per_game(rows, seed=seed).rows


# --- across games -------------------------------------------------------------------------------------


@dataclasses.dataclass
class Aggregate:
    """rliable aggregates of one agent's run scores across games on one level set (or the gap).

    ``runs`` runs per game enter the ``(runs, games)`` matrix: games with more runs contribute their
    first ``runs`` (by train seed), so the matrix is rectangular as rliable's metrics need.
    """

    label: str
    which: str
    games: list[str]
    runs: int
    truncated: bool
    metrics: dict[str, Estimate]


def agent_matrices(table: Sequence[GameRow], which: str) -> dict[str, tuple[list[str], np.ndarray, bool]]:
    """label -> (games, run scores ``(runs, games)``, truncated) on ``which``."""
    by: dict[str, list[GameRow]] = defaultdict(list)
    for t in table:
        by[t.label].append(t)
    out = {}
    for label, rows in by.items():
        rows = sorted(rows, key=lambda t: t.env)
        n = min(t.runs for t in rows)
        out[label] = ([t.env for t in rows], np.stack([t.scores(which)[:n] for t in rows], axis=1), any(t.runs > n for t in rows))
    return out


def aggregate_table(table: Sequence[GameRow], seed: int = 0, reps: int = 2000) -> list[Aggregate]:
    """IQM, mean, median and optimality gap across games for each agent on training and held-out
    levels, and IQM, mean and median of the per-run gap; stratified bootstrap CIs."""
    out = []
    for which in (*LEVEL_SETS, "gap"):
        for label, (games, m, truncated) in agent_matrices(table, which).items():
            metrics = aggregates(m, reps=reps, seed=seed)
            if which == "gap":
                metrics.pop("optimality gap")  # of a difference of scores: no meaning
            out.append(Aggregate(label, which, games, m.shape[0], truncated, metrics))
    order = {t.label: i for i, t in enumerate(table)}
    return sorted(out, key=lambda a: (order[a.label], (*LEVEL_SETS, "gap").index(a.which)))


@dataclasses.dataclass
class Improvement:
    """P(X > Y) on ``which`` levels over the ``games`` both agents ran."""

    x: str
    y: str
    which: str
    games: list[str]
    runs_x: int
    runs_y: int
    estimate: Estimate


def improvement_table(table: Sequence[GameRow], seed: int = 0, reps: int = 2000) -> list[Improvement]:
    """Probability of improvement of each offline agent over BC on the same data, and of each agent
    over PPO, on held-out and on training levels (rliable's definition; stratified bootstrap CI).

    Pairs where either agent has a single run per game are listed with ``estimate.ci`` None: with
    one run a side, P(X > Y) is one comparison of two numbers (0, 0.5 or 1), and the report shows no
    value for it."""
    agents = {t.label: t.agent for t in table}
    games: dict[str, dict[str, GameRow]] = defaultdict(dict)
    for t in table:
        games[t.label][t.env] = t

    def matrix(label: str, shared: list[str], which: str) -> np.ndarray:
        # runs cut to the fewest over the shared games only: a game the baseline lacks costs no runs
        rows = [games[label][g] for g in shared]
        n = min(r.runs for r in rows)
        return np.stack([r.scores(which)[:n] for r in rows], axis=1)

    out = []
    for which in ("held_out", "train"):
        for t_label, agent in agents.items():
            for base in baselines(agent, agents.values()):
                b_label = next(label for label, a in agents.items() if a == base)
                shared = sorted(set(games[t_label]) & set(games[b_label]))
                if not shared:
                    continue
                x, y = matrix(t_label, shared, which), matrix(b_label, shared, which)
                est = probability_of_improvement(x, y, reps=reps, seed=seed)
                out.append(Improvement(t_label, b_label, which, shared, x.shape[0], y.shape[0], est))
    return out


# --- text ----------------------------------------------------------------------------------------------


def fmt(est: Estimate, signed: bool = False) -> str:
    """``0.493 [0.280, 0.707]``; without a CI: ``0.493 (no CI: 1 run)``."""
    f = "{:+.3f}" if signed else "{:.3f}"
    if est.ci is None:
        return f.format(est.value) + " (no CI: 1 run)"
    return f"{f.format(est.value)} [{f.format(est.ci[0])}, {f.format(est.ci[1])}]"


def ci_over(t: GameRow) -> str:
    """What a row's CIs are over, and how many of its runs had not finished training."""
    over = ONE_RUN if t.one_run else f"{t.runs} runs"
    if t.unfinished:
        over += "; unfinished training" if t.one_run else f"; {t.unfinished} of {t.runs} unfinished"
    return over


def few_runs_warning(table: Sequence[GameRow]) -> str | None:
    few = [t for t in table if t.runs < MIN_RUNS]
    if not few:
        return None
    ones = sum(t.one_run for t in few)
    return (f"warning: {len(few)} of {len(table)} rows have fewer than {MIN_RUNS} runs ({ones} with 1 run: CI over episodes, "
            f"evaluation noise only); train more seeds for CIs that cover seed-to-seed spread")  # fmt: skip


def unfinished_warning(table: Sequence[GameRow]) -> str | None:
    rows = [t for t in table if t.unfinished]
    if not rows:
        return None
    return (f"warning: {len(rows)} of {len(table)} rows include runs evaluated before they finished training "
            f"({', '.join(f'{t.label} on {t.env}' for t in rows)}): their scores are not those of final policies")  # fmt: skip


def table_lines(table: Sequence[GameRow], warnings: Sequence[str] = ()) -> list[str]:
    """The per-game table for a terminal: one line per row, 1-run and unfinished rows labelled, then the
    warnings (``warnings``: those of :class:`PerGame`, duplicates counted once)."""
    if not table:
        return list(warnings)
    wa, we = max(5, *(len(t.label) for t in table)), max(3, *(len(t.env) for t in table))
    cells = [(fmt(t.estimate.train), fmt(t.estimate.held_out), fmt(t.estimate.gap, signed=True)) for t in table]
    w = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(("train", "held-out", "gap (train - held-out)"))]
    lines = [f"{'agent':<{wa}}  {'env':<{we}}  {'runs':>4}  {'train':<{w[0]}}  {'held-out':<{w[1]}}  {'gap (train - held-out)':<{w[2]}}  CI over"]
    for t, (a, b, g) in zip(table, cells):
        lines.append(f"{t.label:<{wa}}  {t.env:<{we}}  {t.runs:>4}  {a:<{w[0]}}  {b:<{w[1]}}  {g:<{w[2]}}  {ci_over(t)}")
    extra = [x for x in (few_runs_warning(table), unfinished_warning(table)) if x]
    return lines + extra + list(warnings)


def results_table(files: Sequence[Path], seed: int = 0) -> list[str]:
    """The per-game table of the results in ``files`` (those that exist), for a terminal."""
    res = load_results([f for f in files if Path(f).is_file()])
    pg = per_game(res.rows, seed=seed)
    return [f"warning: {w}" for w in res.warnings] + table_lines(pg.rows, pg.warnings)
