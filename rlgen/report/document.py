"""``rlgen report``: ``report.md``, ``per_game.csv``, ``aggregates.csv`` and PNG plots from ``results.jsonl`` files."""

from __future__ import annotations

import csv
import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path

from rlgen.errors import RlgenError
from rlgen.evaluation.results import Results
from rlgen.progress import ProgressBar
import rlgen.report.curves as report_curves
import rlgen.report.plots as report_plots
from rlgen.report.tables import (
    ONE_RUN,
    Aggregate,
    GameRow,
    Improvement,
    aggregate_table,
    ci_over,
    few_runs_warning,
    find_results,
    fmt,
    improvement_table,
    load_results,
    per_game,
    unfinished_warning,
)


@dataclasses.dataclass
class Report:
    """What ``make_report`` wrote and computed."""

    path: Path
    results: Results
    table: list[GameRow]
    aggregates: list[Aggregate]
    improvements: list[Improvement]
    notes: list[str]
    plots: list[str]


def _markdown(rep: Report, unpaired: dict[str, int]) -> list[str]:
    res = rep.results
    lines = ["# rlgen report", "", f"From {len(res.rows)} evaluation rows in {len(res.files)} file(s): " + ", ".join(str(f) for f in res.files) + "."]
    if res.dropped:
        lines += ["", f"Latest evaluation wins: {res.dropped} earlier row(s) of runs evaluated again were dropped."]
    for n in rep.notes:
        lines += ["", f"> {n}"]
    lines += ["", "## Per game", "",
              "Run score: the mean normalized return of a run's episodes (raw return where no normalization exists). With 2 or more runs: "
              "the mean of run scores with a 95% percentile-bootstrap CI over runs; the gap is train minus held-out of each run, "
              f"bootstrapped over runs. Rows with 1 run show a CI over that run's episodes: **{ONE_RUN}**. A row is one agent: "
              "algorithm, split (options and level sets), config (without seed), dataset recipe, study, checkpoint and acting mode; "
              "runs evaluated before they finished training are counted in the last column.", "",
              "| agent | env | algorithm | dataset skill | training levels | dataset size | study | runs | train | held-out | gap (train - held-out) | CI over |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    dash = lambda v: "-" if v is None else str(v)  # noqa: E731
    for t in rep.table:
        a = t.agent
        over = f"**{ci_over(t)}**" if t.one_run or t.unfinished else ci_over(t)
        lines.append(f"| {t.label} | {t.env} | {a.algorithm} | {dash(a.dataset_skill)} | {dash(a.levels)} | {dash(a.dataset_transitions)} | {dash(a.study)} "
                     f"| {t.runs} | {fmt(t.estimate.train)} | {fmt(t.estimate.held_out)} | {fmt(t.estimate.gap, signed=True)} | {over} |")  # fmt: skip
    for warning in (few_runs_warning(rep.table), unfinished_warning(rep.table)):
        if warning:
            lines += ["", f"> {warning}"]
    for what, n in unpaired.items():
        lines += ["", f"> {what}: {n} run(s) evaluated on only one of train / held-out levels, left out"]
    if rep.aggregates:
        lines += ["", "## Across games (rliable)", "",
                  "IQM, mean, median and optimality gap (threshold 1) are `rliable.metrics`'; the 95% CIs are a stratified bootstrap over "
                  "runs within each game (ours, as `rliable.library` does not import here). No CI with 1 run per game.", "",
                  "| agent | level set | games | runs per game | IQM | mean | median | optimality gap |", "|---|---|---|---|---|---|---|---|"]  # fmt: skip
        for g in rep.aggregates:
            m = g.metrics
            og = fmt(m["optimality gap"]) if "optimality gap" in m else "-"
            runs = f"{g.runs} (first {g.runs} of games with more)" if g.truncated else str(g.runs)
            lines.append(f"| {g.label} | {g.which.replace('_', '-')} | {len(g.games)} | {runs} | {fmt(m['IQM'])} | {fmt(m['mean'])} | {fmt(m['median'])} | {og} |")
    computed = [p for p in rep.improvements if p.estimate.ci is not None]
    if rep.improvements:
        lines += ["", "## Probability of improvement", "",
                  "P(X > Y): the probability that a run of X scores higher than a run of Y on a game (ties count half; Mann-Whitney U over "
                  "runs), averaged over the games both ran (rliable's definition and `rliable.metrics`' value; 95% stratified bootstrap CI, ours). "
                  "X vs BC on the same dataset, and every agent vs PPO."]  # fmt: skip
        if computed:
            lines += ["", "| X | Y | level set | games | runs X / Y | P(X > Y) |", "|---|---|---|---|---|---|"]
        for p in computed:
            lines.append(f"| {p.x} | {p.y} | {p.which.replace('_', '-')} | {len(p.games)} | {p.runs_x} / {p.runs_y} | {fmt(p.estimate)} |")
        if len(computed) < len(rep.improvements):
            pairs = sorted({f"{p.x} vs {p.y}" for p in rep.improvements if p.estimate.ci is None})
            lines += ["", f"> Not computed for {len(pairs)} pair(s) with 1 run per game on a side (one comparison of two numbers, "
                          f"not a probability): {', '.join(pairs)}."]  # fmt: skip
    return lines


#: The stages of building a report, as its progress bar names them.
REPORT_STAGES = ("per-game estimates", "aggregates", "improvements", "plots", "report.md")


def make_report(paths: Sequence[str | Path], out_dir: str | Path | None = None, seed: int = 0, progress: bool = False) -> Report:
    """Write ``report.md``, ``per_game.csv``, ``aggregates.csv`` and PNG plots (``_make_report``); ``progress``: a bar
    over ``REPORT_STAGES`` (bootstrap intervals and plots take the time; silent when stdout is not a terminal)."""
    with ProgressBar("[bold]report[/]", total=len(REPORT_STAGES), unit="stages", fields={"stage": ""}, enabled=progress) as bar:
        return _make_report(paths, out_dir, seed, lambda done: bar.update(completed=done, stage=(REPORT_STAGES + ("done",))[done]))


def _make_report(paths: Sequence[str | Path], out_dir: str | Path | None, seed: int, stage: Callable[[int], None]) -> Report:
    """Write ``report.md``, ``per_game.csv``, ``aggregates.csv`` and PNG plots; ``stage(i)`` as stage ``i`` starts.

    Raises:
        RlgenError: no results files, or no agent with both train and held-out results.
    """
    files = find_results(paths)
    res = load_results(files)
    out = Path(out_dir) if out_dir else (Path(paths[0]) if Path(paths[0]).is_dir() else Path(paths[0]).parent) / "report"
    stage(0)
    pg = per_game(res.rows, seed=seed)
    if not pg.rows:
        error = RlgenError("no agent has both train and held-out results; run `rlgen evaluate` with --which train held_out")
        error.warnings = tuple(res.warnings)  # every row skipped: the per-line warnings say why
        raise error
    out.mkdir(parents=True, exist_ok=True)
    stage(1)
    aggs = aggregate_table(pg.rows, seed=seed)
    stage(2)
    imps = improvement_table(pg.rows, seed=seed)
    notes = [f"warning: {w}" for w in res.warnings] + pg.warnings
    raw = sorted({t.label for t in pg.rows if not t.normalized})
    if raw and len(raw) < len({t.label for t in pg.rows}):
        notes.append(f"performance profiles leave out {', '.join(raw)}: raw returns, on no shared scale with normalized scores")
    notes += [f"{a.label} ({a.which.replace('_', '-')}): games have different run counts; aggregates use the first {a.runs} runs of each"
              for a in aggs if a.truncated and a.which == "train"]  # fmt: skip
    with (out / "per_game.csv").open("w", newline="") as f:
        w = csv.writer(f)
        agent_fields = [fl.name for fl in dataclasses.fields(pg.rows[0].agent) if fl.compare and fl.name != "normalized"]
        w.writerow(["agent", "env", *agent_fields, "runs", "unfinished", "ci_over", "train", "train_lo", "train_hi",
                    "held_out", "held_out_lo", "held_out_hi", "gap", "gap_lo", "gap_hi", "normalized", "run_ids"])  # fmt: skip
        for t in pg.rows:
            e = t.estimate
            w.writerow([t.label, t.env, *(getattr(t.agent, f) for f in agent_fields), t.runs, t.unfinished, ONE_RUN if t.one_run else "runs",
                        e.train.value, *e.train.ci, e.held_out.value, *e.held_out.ci, e.gap.value, *e.gap.ci,  # type: ignore[misc]
                        t.normalized, " ".join(t.run_ids)])  # fmt: skip
    with (out / "aggregates.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["agent", "level_set", "games", "runs_per_game", "metric", "value", "lo", "hi"])
        for g in aggs:
            for name, est in g.metrics.items():
                w.writerow([g.label, g.which, len(g.games), g.runs, name, est.value, *(est.ci or ("", ""))])
    stage(3)
    plots = report_plots.write_plots(pg.rows, aggs, out, seed=seed)
    drawn, curve_notes = report_curves.plot_learning_curves(pg.rows, report_curves.run_dirs(res.files, res.rows), out / report_curves.FILE, seed=seed)
    notes += curve_notes
    if drawn:  # beside the bar chart: right after it
        at = 1 if plots and plots[0][1] == "train_vs_held_out.png" else 0
        plots.insert(at, ("Learning curves: train vs held-out levels over training", report_curves.FILE))
    stage(4)
    rep = Report(out / "report.md", res, pg.rows, aggs, imps, notes, [p for _, p in plots])
    lines = _markdown(rep, pg.unpaired)
    for title, png in plots:
        lines += ["", f"## {title}", "", f"![{title}]({png})"]
    rep.path.write_text("\n".join(lines) + "\n")
    stage(5)
    return rep
