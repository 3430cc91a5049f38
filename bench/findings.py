"""The three claims of the CPU findings study, read from its evaluation results (configs/study/cpu_findings.yaml).

    python bench/findings.py runs/cpu-findings/            # Markdown tables and one verdict per claim

(a) offline agents generalize worse than online PPO trained on the same levels: each offline agent on the
    datasets of all training levels (expert and mixed, `--size` transitions) against PPO, on held-out levels;
(b) BC is the strongest offline method on held-out levels: each other offline agent against BC on the same dataset;
(c) more training levels help held-out return more than more data at fixed levels: per algorithm, the effect of
    the levels axis (expert data of `--size` transitions on the fewest vs the most levels) against the effect of
    the size axis (expert data on `--size-axis-levels` levels, smallest vs largest size), each per doubling of
    its axis (log2 of the axis' range), so that two axes of different ranges compare.

Statistics are over runs (training seeds), never pooled episodes. A run's score is its mean normalized return
on a level set. P(X > Y) is rliable's probability of improvement (Mann-Whitney over runs; ties half) with a 95%
bootstrap CI (`rlgen.evaluation.stats`). For (c) each seed is a replicate (one PPO, its datasets, one offline seed),
so the per-seed effect of an axis is the difference of two runs of that seed; X and Y there are the per-seed
effects of the two axes.

Verdict rule, the same for each claim and fixed before the study ran: a comparison is *resolved* in a direction
when the CI of its P(X > Y) excludes 0.5. **reproduced**: every comparison of the claim is resolved in the
claim's direction; **not reproduced**: at least one is resolved against it; **inconclusive** otherwise.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from rlgen.config import human_count
from rlgen.evaluation.stats import Estimate, bootstrap_mean_ci, probability_of_improvement
from rlgen.report import GameRow, find_results, load_results, per_game

REPS = 2000


def fmt(est: Estimate, signed: bool = False) -> str:
    f = "{:+.3f}" if signed else "{:.3f}"
    return f.format(est.value) + ("" if est.ci is None else f" [{f.format(est.ci[0])}, {f.format(est.ci[1])}]")


def mean_ci(values: np.ndarray, seed: int) -> Estimate:
    values = np.asarray(values, dtype=np.float64)
    return Estimate(float(values.mean()), bootstrap_mean_ci(values, seed=seed) if len(values) > 1 else None)


def direction(p: Estimate) -> int:
    """+1: X resolved above Y (the CI of P(X > Y) lies above 0.5); -1: resolved below; 0: not resolved."""
    if p.ci is None:
        return 0
    return 1 if p.ci[0] > 0.5 else -1 if p.ci[1] < 0.5 else 0


WORDS = {1: "X above Y", -1: "X below Y", 0: "not resolved"}


def verdict(directions: Sequence[int], wanted: int) -> str:
    if not directions:
        return "inconclusive (nothing to compare)"
    agree = sum(d == wanted for d in directions)
    against = sum(d == -wanted for d in directions)
    word = "reproduced" if agree == len(directions) else "not reproduced" if against else "inconclusive"
    return f"{word} ({agree} of {len(directions)} comparisons resolved in the claim's direction, {against} against it)"


def p_of(x: np.ndarray, y: np.ndarray, seed: int) -> Estimate:
    """P(X > Y) for one game: ``x`` and ``y`` are run scores ``(runs,)``."""
    return probability_of_improvement(np.asarray(x)[:, None], np.asarray(y)[:, None], reps=REPS, seed=seed)


def size_label(n: int | None) -> str:
    return "-" if n is None else human_count(int(n))


class Study:
    """The study's per-game rows, by agent identity, with each run's training seed."""

    def __init__(self, paths: Sequence[str | Path], seed: int) -> None:
        res = load_results(find_results(paths))
        self.seed = seed
        self.rows: list[GameRow] = per_game(res.rows, seed=seed).rows
        envs = {t.env for t in self.rows}
        if len(envs) != 1:
            raise SystemExit(f"bench/findings.py reads one env's results; found {sorted(envs)}")
        self.train_seed = {r["run_id"]: r.get("train_seed") for r in res.rows}

    def find(self, algorithm: str, skill: str | None = None, levels: int | None = None, size: int | None = None) -> GameRow | None:
        for t in self.rows:
            a = t.agent
            if a.algorithm == algorithm and a.checkpoint is None and (skill is None or a.dataset_skill == skill) \
                    and (levels is None or a.levels == levels) and (size is None or a.dataset_transitions == size):  # fmt: skip
                return t
        return None

    def by_seed(self, row: GameRow, which: str = "held_out") -> dict[int, float]:
        return {self.train_seed[r]: float(s) for r, s in zip(row.run_ids, row.scores(which))}


def claim_a(st: Study, size: int) -> tuple[list[str], list[int]]:
    ppo = st.find("ppo")
    if ppo is None:
        return ["No PPO rows: claim (a) needs the study's PPO evaluations."], []
    all_levels = ppo.agent.levels
    lines = [f"PPO: {ppo.runs} runs on {all_levels} training levels, train {fmt(ppo.estimate.train)}, held-out {fmt(ppo.estimate.held_out)}, "
             f"gap {fmt(ppo.estimate.gap, signed=True)}.", "",
             "| agent (X) | data | runs | train | held-out | gap | P(X > PPO) held-out | P(X gap > PPO gap) | held-out: X vs PPO |",
             "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    dirs = []
    for t in st.rows:
        a = t.agent
        if a.dataset_skill is None or a.levels != all_levels or a.dataset_transitions != size or a.checkpoint is not None:
            continue
        p = p_of(t.scores("held_out"), ppo.scores("held_out"), st.seed)
        pg = p_of(t.scores("gap"), ppo.scores("gap"), st.seed)
        dirs.append(direction(p))
        lines.append(f"| {a.algorithm} | {a.dataset_skill} {size_label(size)} | {t.runs} | {fmt(t.estimate.train)} | {fmt(t.estimate.held_out)} "
                     f"| {fmt(t.estimate.gap, signed=True)} | {fmt(p)} | {fmt(pg)} | {WORDS[direction(p)]} |")  # fmt: skip
    return lines, dirs


def claim_b(st: Study, size: int) -> tuple[list[str], list[int]]:
    ppo = st.find("ppo")
    all_levels = ppo.agent.levels if ppo is not None else None
    lines = ["| data | agent (X) | runs | held-out | BC held-out | P(X > BC) held-out | X vs BC |", "|---|---|---|---|---|---|---|"]
    dirs = []
    for skill in sorted({t.agent.dataset_skill for t in st.rows if t.agent.dataset_skill is not None}):
        bc = st.find("bc", skill, all_levels, size)
        if bc is None:
            continue
        for t in st.rows:
            a = t.agent
            if a.algorithm == "bc" or a.dataset_skill != skill or a.levels != all_levels or a.dataset_transitions != size or a.checkpoint is not None:
                continue
            p = p_of(t.scores("held_out"), bc.scores("held_out"), st.seed)
            dirs.append(direction(p))
            lines.append(f"| {skill} {size_label(size)} | {a.algorithm} | {t.runs} | {fmt(t.estimate.held_out)} | {fmt(bc.estimate.held_out)} "
                         f"| {fmt(p)} | {WORDS[direction(p)]} |")  # fmt: skip
    return lines, dirs


def claim_c(st: Study, size: int, size_axis_levels: int) -> tuple[list[str], list[int]]:
    lines: list[str] = []
    dirs = []
    algos = sorted({t.agent.algorithm for t in st.rows if t.agent.dataset_skill == "expert" and t.agent.levels == size_axis_levels
                    and t.agent.dataset_transitions != size})  # fmt: skip
    table = ["| algorithm | axis | dataset | runs | train | held-out | gap |", "|---|---|---|---|---|---|---|"]
    effects = ["| algorithm | levels axis: held-out gain | per doubling | size axis: held-out gain | per doubling "
               "| P(levels > size) per doubling | P(most > fewest levels) | P(largest > smallest size) | levels vs size |",
               "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for algo in algos:
        lv = sorted((t for t in st.rows if t.agent.algorithm == algo and t.agent.dataset_skill == "expert" and t.agent.dataset_transitions == size
                     and t.agent.checkpoint is None), key=lambda t: t.agent.levels or 0)  # fmt: skip
        sz = sorted((t for t in st.rows if t.agent.algorithm == algo and t.agent.dataset_skill == "expert" and t.agent.levels == size_axis_levels
                     and t.agent.checkpoint is None), key=lambda t: t.agent.dataset_transitions or 0)  # fmt: skip
        if len(lv) < 2 or len(sz) < 2:
            continue
        for axis, rows in (("levels", lv), ("size", sz)):
            for t in rows:
                table.append(f"| {algo} | {axis} | {t.agent.levels} levels, {size_label(t.agent.dataset_transitions)} | {t.runs} | {fmt(t.estimate.train)} "
                             f"| {fmt(t.estimate.held_out)} | {fmt(t.estimate.gap, signed=True)} |")  # fmt: skip
        per_seed = {}
        for axis, rows, lo, hi in (("levels", lv, lv[0].agent.levels, lv[-1].agent.levels), ("size", sz, sz[0].agent.dataset_transitions, sz[-1].agent.dataset_transitions)):
            low, high = st.by_seed(rows[0]), st.by_seed(rows[-1])
            seeds = sorted(set(low) & set(high))
            gain = np.array([high[s] - low[s] for s in seeds])
            per_seed[axis] = (seeds, gain, gain / math.log2(hi / lo), p_of([high[s] for s in seeds], [low[s] for s in seeds], st.seed))
        seeds = sorted(set(per_seed["levels"][0]) & set(per_seed["size"][0]))
        pick = {axis: np.array([d[2][d[0].index(s)] for s in seeds]) for axis, d in per_seed.items()}
        p = p_of(pick["levels"], pick["size"], st.seed)
        dirs.append(direction(p))
        (_, g_l, d_l, p_l), (_, g_s, d_s, p_s) = per_seed["levels"], per_seed["size"]
        effects.append(f"| {algo} | {fmt(mean_ci(g_l, st.seed), signed=True)} ({lv[0].agent.levels} -> {lv[-1].agent.levels} levels) "
                       f"| {fmt(mean_ci(d_l, st.seed), signed=True)} | {fmt(mean_ci(g_s, st.seed), signed=True)} "
                       f"({size_label(sz[0].agent.dataset_transitions)} -> {size_label(sz[-1].agent.dataset_transitions)}) "
                       f"| {fmt(mean_ci(d_s, st.seed), signed=True)} | {fmt(p)} | {fmt(p_l)} | {fmt(p_s)} | {WORDS[direction(p)]} |")  # fmt: skip
    if not dirs:
        return ["No levels and size axes found (expert data on several levels at the fixed size, and several sizes at the fixed levels)."], []
    lines += [f"Levels axis: expert data of {size_label(size)} transitions; size axis: expert data on {size_axis_levels} levels.", "", *table, "",
              "Gains are per seed (the same replicate's two datasets), mean [95% CI over seeds]; per doubling: the gain divided by log2 of the axis' range.",
              "", *effects]  # fmt: skip
    return lines, dirs


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="+", help="the study directory (or results.jsonl files)")
    parser.add_argument("--size", type=int, default=30_000, help="dataset size of the (a)/(b) datasets and of the levels axis")
    parser.add_argument("--size-axis-levels", type=int, default=50, help="number of levels of the size axis")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    args = parser.parse_args(argv)
    st = Study(args.paths, args.seed)
    out = [f"Env {st.rows[0].env}; {len(st.rows)} agents; CIs are 95% over runs (seeds).", ""]
    for title, (lines, dirs), wanted in (
        ("(a) offline agents generalize worse than online PPO on the same levels", claim_a(st, args.size), -1),
        ("(b) BC is the strongest offline method on held-out levels", claim_b(st, args.size), -1),
        ("(c) more training levels help held-out return more than more data at fixed levels", claim_c(st, args.size, args.size_axis_levels), 1),
    ):
        out += [f"## {title}", "", *lines, "", f"**Verdict {title[:3]}: {verdict(dirs, wanted)}.**", ""]
    print("\n".join(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
