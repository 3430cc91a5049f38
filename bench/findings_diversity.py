"""The verdict of the XLand diversity study (configs/study/xland_diversity.yaml), read from its evaluation results.

    python bench/findings_diversity.py runs/xland-diversity/      # Markdown: a table per agent and one verdict line each

Question: does held-out return rise with the number of training rulesets N, for PPO and for each offline agent?

Verdict rule, fixed before the study ran, per agent (algorithm): X = the held-out scores of its runs trained on the
most training rulesets (all of them), Y = those of its runs trained on the fewest (10). A run's score is its mean
normalized return on the held-out rulesets; P(X > Y) is rliable's probability of improvement over runs (seeds;
Mann-Whitney, ties half) with a 95% bootstrap CI (`rlgen.evaluation.stats`, via bench/findings.py). **rises**: the
CI lies above 0.5; **does not rise**: it lies below 0.5 (held-out return is lower with more rulesets);
**inconclusive**: it contains 0.5. The steps between neighbouring N are shown too, but take no part in the verdict.
Every row must be evaluated on the same held-out rulesets (the script stops otherwise).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/ is not a package: its sibling findings.py

from findings import Study, direction, fmt, p_of  # noqa: E402

from rlgen.report import GameRow  # noqa: E402

WORDS = {1: "rises", -1: "does not rise (lower with more rulesets)", 0: "inconclusive"}


def by_levels(st: Study) -> dict[str, list[GameRow]]:
    """algorithm -> its final-policy rows, sorted by the number of training levels they learned from."""
    out: dict[str, list[GameRow]] = {}
    for t in st.rows:
        if t.agent.checkpoint is None and t.agent.levels is not None:
            out.setdefault(t.agent.algorithm, []).append(t)
    return {a: sorted(rows, key=lambda t: t.agent.levels or 0) for a, rows in sorted(out.items())}


def verdicts(st: Study) -> tuple[list[str], dict[str, str]]:
    """Markdown lines (one table per agent) and algorithm -> its verdict word."""
    held_out = {t.agent.held_out_digest for t in st.rows}
    if len(held_out) != 1:
        raise SystemExit(f"the rows are evaluated on {len(held_out)} different held-out level sets; the study needs one shared by every N")
    lines: list[str] = []
    words: dict[str, str] = {}
    for algo, rows in by_levels(st).items():
        if len(rows) < 2:
            continue
        lines += [f"### {algo}", "", "| training rulesets | runs | train | held-out | gap | P(held-out > previous N) |", "|---|---|---|---|---|---|"]
        for i, t in enumerate(rows):
            step = "" if i == 0 else fmt(p_of(t.scores("held_out"), rows[i - 1].scores("held_out"), st.seed))
            lines.append(f"| {t.agent.levels} | {t.runs} | {fmt(t.estimate.train)} | {fmt(t.estimate.held_out)} | {fmt(t.estimate.gap, signed=True)} "
                         f"| {step} |")  # fmt: skip
        lo, hi = rows[0], rows[-1]
        p = p_of(hi.scores("held_out"), lo.scores("held_out"), st.seed)
        words[algo] = WORDS[direction(p)]
        lines += ["", f"**{algo}: held-out return {words[algo]}** from {lo.agent.levels} to {hi.agent.levels} training rulesets: "
                      f"P(held-out at {hi.agent.levels} > at {lo.agent.levels}) = {fmt(p)} over {hi.runs} vs {lo.runs} runs.", ""]  # fmt: skip
    return lines, words


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="+", help="the study directory (or results.jsonl files)")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    args = parser.parse_args(argv)
    st = Study(args.paths, args.seed)
    lines, words = verdicts(st)
    print("\n".join([f"Env {st.rows[0].env}; CIs are 95% over runs (seeds).", "", *lines, "Verdicts:",
                     *(f"- {a}: {w}" for a, w in words.items())]))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
