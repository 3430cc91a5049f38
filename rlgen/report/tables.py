"""Report tables from ``results.jsonl`` rows: per-game rows over runs, rliable aggregates across games,
probability of improvement, and their text form.

A *run* is one training run (its ``run_id``; the latest evaluation of each run wins, see
``rlgen.evaluation.results``). Its *score* on a level set is the mean normalized return of its episodes (raw
return where there is no normalization). A per-game row is one agent on one game, the agent being
its full identity: algorithm, training levels, dataset skill, dataset levels, dataset size, study,
checkpoint and greedy or sampled actions, so two datasets never share a row. The statistics are over
runs (``rlgen.evaluation.stats``): with one run a row's CI is over episodes, evaluation noise only,
and says so wherever it is shown.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rlgen.agents import available_algorithms
from rlgen.agents.run_dir import read_run_id
from rlgen.config import human_count
from rlgen.errors import RlgenError
from rlgen.evaluation import results as results_io
from rlgen.evaluation.results import Results, row_algorithm
from rlgen.evaluation.stats import Estimate, GameEstimate, aggregates, game_estimate, probability_of_improvement

ONE_RUN = "evaluation noise only: 1 run"
#: Rows with fewer runs than this get a warning line.
MIN_RUNS = 3
LEVEL_SETS = ("train", "held_out")


def load_results(files: Sequence[str | Path]) -> Results:
    """The rows of ``files`` that count: the latest evaluation of each run, rows from before run ids keyed
    by the run directory they were written in (``rlgen.evaluation.results.load_results``)."""
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


# --- agents ------------------------------------------------------------------------------------------


def _sortable(v: Any) -> tuple:
    if v is None:
        return (2, "")
    if isinstance(v, (bool, int, float)):
        return (0, float(v))
    return (1, str(v))


@dataclasses.dataclass(frozen=True)
class Agent:
    """Everything that makes two results the same experiment, except the game and the seed."""

    algorithm: str
    train_levels: int | None
    dataset_skill: str | None
    dataset_levels: int | None
    dataset_transitions: int | None
    study: str | None
    checkpoint: str | None
    deterministic: bool

    @classmethod
    def of(cls, row: dict[str, Any]) -> "Agent":
        return cls(row_algorithm(row), row.get("train_levels"), row.get("dataset_skill"), row.get("dataset_levels"), row.get("dataset_transitions"),
                   row.get("study"), row.get("checkpoint"), bool(row.get("deterministic", False)))  # fmt: skip

    @property
    def levels(self) -> int | None:
        """Training levels it learned from: its dataset's, else the split's (online agents)."""
        return self.dataset_levels if self.dataset_levels is not None else self.train_levels

    def sort_key(self) -> tuple:
        return tuple(_sortable(v) for v in dataclasses.astuple(self))


def agent_labels(agents: Iterable[Agent]) -> dict[Agent, str]:
    """Short unique names: the algorithm, plus each identity field that takes two or more values
    among the agents shown (``bc-expert``, ``cql-mixed-25lv-1M``, ``ppo``); agents that would still
    share a name also get the fields in which they differ (``@-``: no study, ``:final``: the final
    policy, ``sampled``: not greedy, ``na``: no such value)."""
    agents = sorted(set(agents), key=Agent.sort_key)
    parts = {
        "skill": lambda a: a.dataset_skill,
        "levels": lambda a: None if a.levels is None else f"{a.levels}lv",
        "size": lambda a: None if a.dataset_transitions is None else human_count(int(a.dataset_transitions)),
        "study": lambda a: None if a.study is None else f"@{a.study}",
        "checkpoint": lambda a: None if a.checkpoint is None else f":{a.checkpoint}",
        "greedy": lambda a: "greedy" if a.deterministic else None,
    }

    def name(a: Agent, fields: Iterable[str], dash: bool = False) -> str:
        label = a.algorithm
        for f in fields:
            value = parts[f](a) or ({"study": "@-", "checkpoint": ":final", "greedy": "sampled"}.get(f, "na") if dash else None)
            if value is not None:
                label += value if value[0] in "@:" else f"-{value}"
        return label

    varying = [f for f, get in parts.items() if len({get(a) for a in agents} - {None}) > 1]
    first = {a: name(a, varying) for a in agents}
    labels: dict[Agent, str] = {}
    for a in agents:
        twins = [b for b in agents if first[b] == first[a]]
        if len(twins) > 1:
            extra = [f for f, get in parts.items() if f not in varying and len({get(b) for b in twins}) > 1]
            labels[a] = name(a, [f for f in parts if f in varying or f in extra], dash=True)
        else:
            labels[a] = first[a]
    seen: dict[str, int] = defaultdict(int)
    for a in agents:  # a last resort that keeps labels unique
        seen[labels[a]] += 1
        if seen[labels[a]] > 1:
            labels[a] = f"{labels[a]}#{seen[labels[a]]}"
    return labels


# --- per game ----------------------------------------------------------------------------------------


def _scores(row: dict[str, Any]) -> np.ndarray:
    values = row.get("normalized") if row.get("normalized") is not None else row["returns"]
    return np.asarray(values, dtype=np.float64)


@dataclasses.dataclass
class GameRow:
    """One agent on one game: estimates over its runs (``estimate``), ``runs`` of them."""

    agent: Agent
    label: str
    env: str
    estimate: GameEstimate
    normalized: bool
    run_ids: list[str]

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
    """The per-game table, and what was left out of it."""

    rows: list[GameRow]
    unpaired: dict[str, int]  # label @ env -> runs with only one of the two level sets


def per_game(rows: Iterable[dict[str, Any]], seed: int = 0, n_boot: int = 10_000) -> PerGame:
    """One row per (agent, game) with runs evaluated on both training and held-out levels.

    ``rows`` may contain several evaluations of one run: only the latest counts.
    """
    latest, _ = keep_latest((r, None) for r in rows)
    by: dict[tuple[Agent, str], dict[str, dict[str, dict[str, Any]]]] = defaultdict(lambda: defaultdict(dict))
    for row in latest:
        if row["which"] in LEVEL_SETS:
            by[(Agent.of(row), str(row["env"]))][row["run_id"]][row["which"]] = row
    labels = agent_labels(a for a, _ in by)
    table, unpaired = [], {}
    for (agent, env), runs in sorted(by.items(), key=lambda kv: (kv[0][0].sort_key(), kv[0][1])):
        paired = [r for r in runs.values() if set(LEVEL_SETS) <= set(r)]
        if len(paired) < len(runs):
            unpaired[f"{labels[agent]} on {env}"] = len(runs) - len(paired)
        if not paired:
            continue
        paired.sort(key=lambda r: (_sortable(r["train"].get("train_seed")), r["train"]["run_id"]))
        est = game_estimate([_scores(r["train"]) for r in paired], [_scores(r["held_out"]) for r in paired], n_boot=n_boot, seed=seed)
        normalized = all(r[w].get("normalized") is not None for r in paired for w in LEVEL_SETS)
        table.append(GameRow(agent, labels[agent], env, est, normalized, [r["train"]["run_id"] for r in paired]))
    return PerGame(table, unpaired)


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


def _baselines(agent: Agent, others: Iterable[Agent]) -> list[Agent]:
    """What ``agent`` is compared with: BC on the same dataset (for other offline agents), and PPO
    of the same study (for every other agent)."""
    out = []
    online = available_algorithms("online")  # PPO, the JAX PPO, and any online algorithm registered
    for b in others:
        if b == agent or b.study != agent.study or b.deterministic != agent.deterministic or b.checkpoint is not None:
            continue
        has_data = agent.dataset_skill is not None or agent.dataset_transitions is not None
        same_data = (b.dataset_skill, b.dataset_levels, b.dataset_transitions, b.train_levels) == (
            agent.dataset_skill, agent.dataset_levels, agent.dataset_transitions, agent.train_levels)  # fmt: skip
        if b.algorithm == "bc" and agent.algorithm != "bc" and has_data and same_data:
            out.append(b)
        elif b.algorithm in online and agent.algorithm not in online:
            out.append(b)
    return out


def improvement_table(table: Sequence[GameRow], seed: int = 0, reps: int = 2000) -> list[Improvement]:
    """Probability of improvement of each offline agent over BC on the same data, and of each agent
    over PPO, on held-out and on training levels (rliable's definition; stratified bootstrap CI).

    Pairs where either agent has a single run per game are listed with ``estimate.ci`` None: with
    one run a side, P(X > Y) is one comparison of two numbers (0, 0.5 or 1), and the report shows no
    value for it."""
    agents = {t.label: t.agent for t in table}
    out = []
    for which in ("held_out", "train"):
        mats = agent_matrices(table, which)
        for t_label, agent in agents.items():
            for base in _baselines(agent, agents.values()):
                b_label = next(label for label, a in agents.items() if a == base)
                (gx, mx, _), (gy, my, _) = mats[t_label], mats[b_label]
                shared = sorted(set(gx) & set(gy))
                if not shared:
                    continue
                x = mx[:, [gx.index(g) for g in shared]]
                y = my[:, [gy.index(g) for g in shared]]
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


def few_runs_warning(table: Sequence[GameRow]) -> str | None:
    few = [t for t in table if t.runs < MIN_RUNS]
    if not few:
        return None
    ones = sum(t.one_run for t in few)
    return (f"warning: {len(few)} of {len(table)} rows have fewer than {MIN_RUNS} runs ({ones} with 1 run: CI over episodes, "
            f"evaluation noise only); train more seeds for CIs that cover seed-to-seed spread")  # fmt: skip


def table_lines(table: Sequence[GameRow]) -> list[str]:
    """The per-game table for a terminal: one line per row, 1-run rows labelled, then the warning."""
    if not table:
        return []
    wa, we = max(5, *(len(t.label) for t in table)), max(3, *(len(t.env) for t in table))
    cells = [(fmt(t.estimate.train), fmt(t.estimate.held_out), fmt(t.estimate.gap, signed=True)) for t in table]
    w = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(("train", "held-out", "gap (train - held-out)"))]
    lines = [f"{'agent':<{wa}}  {'env':<{we}}  {'runs':>4}  {'train':<{w[0]}}  {'held-out':<{w[1]}}  {'gap (train - held-out)':<{w[2]}}  CI over"]
    for t, (a, b, g) in zip(table, cells):
        over = ONE_RUN if t.one_run else f"{t.runs} runs"
        lines.append(f"{t.label:<{wa}}  {t.env:<{we}}  {t.runs:>4}  {a:<{w[0]}}  {b:<{w[1]}}  {g:<{w[2]}}  {over}")
    warning = few_runs_warning(table)
    return lines + ([warning] if warning else [])


def results_table(files: Sequence[Path], seed: int = 0) -> list[str]:
    """The per-game table of the results in ``files`` (those that exist), for a terminal."""
    res = load_results([f for f in files if Path(f).is_file()])
    return [f"warning: {w}" for w in res.warnings] + table_lines(per_game_table(res.rows, seed=seed))
