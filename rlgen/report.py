"""Reports from ``results.jsonl`` rows: per-game tables, IQM across games, plots, ``report.md``.

A row is one evaluation (``rlgen.evaluation.EvalResult.to_row``): agent, env, seed, which levels,
per-episode returns and normalized returns. A *run* is one agent x env x seed (x dataset); its score
on a level set is the mean normalized return of its episodes (raw return where there is no
normalization). Per game we report mean train and held-out scores over runs and their gap, with
95% percentile-bootstrap CIs over episodes pooled across runs; across games, the IQM of run scores
with stratified bootstrap CIs (``rliable``'s IQM; Agarwal et al., 2021).
"""

from __future__ import annotations

import csv
import dataclasses
from collections import defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import scipy.stats

from rlgen.errors import RlgenError
from rlgen.evaluation import bootstrap_mean_ci, generalization_gap, read_results


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


def _scores(row: dict[str, Any]) -> np.ndarray:
    values = row.get("normalized") if row.get("normalized") is not None else row["returns"]
    return np.asarray(values, dtype=np.float64)


def _run_key(row: dict[str, Any]) -> tuple:
    return (row.get("algo") or row.get("agent"), row["env"], row.get("seed", 0), row.get("run", ""), row.get("dataset", ""))


@dataclasses.dataclass
class GameRow:
    algo: str
    env: str
    runs: int
    train: float
    train_ci: tuple[float, float]
    held_out: float
    held_out_ci: tuple[float, float]
    gap: float
    gap_ci: tuple[float, float]
    normalized: bool


def per_game_table(rows: Iterable[dict[str, Any]], seed: int = 0) -> list[GameRow]:
    """One line per (algo, env) having both train and held-out evaluations."""
    episodes: dict[tuple[str, str], dict[str, list[np.ndarray]]] = defaultdict(lambda: defaultdict(list))
    runs: dict[tuple[str, str], set] = defaultdict(set)
    normalized: dict[tuple[str, str], bool] = {}
    for row in rows:
        key = (str(row.get("algo") or row.get("agent")), str(row["env"]))
        episodes[key][row["which"]].append(_scores(row))
        runs[key].add(_run_key(row))
        normalized[key] = normalized.get(key, True) and row.get("normalized") is not None
    table = []
    for (algo, env), by_which in sorted(episodes.items()):
        if "train" not in by_which or "held_out" not in by_which:
            continue
        a, b = np.concatenate(by_which["train"]), np.concatenate(by_which["held_out"])
        g = generalization_gap(a, b, seed=seed)
        table.append(GameRow(algo, env, len(runs[(algo, env)]), float(a.mean()), bootstrap_mean_ci(a, seed=seed),
                             float(b.mean()), bootstrap_mean_ci(b, seed=seed), g.gap, (g.ci_low, g.ci_high), normalized[(algo, env)]))  # fmt: skip
    return table


def run_scores(rows: Iterable[dict[str, Any]]) -> dict[str, dict[str, dict[str, list[float]]]]:
    """algo -> which -> env -> list of run scores (mean normalized return of each run)."""
    acc: dict[tuple, list[np.ndarray]] = defaultdict(list)
    for row in rows:
        acc[(*_run_key(row), row["which"])].append(_scores(row))
    out: dict[str, dict[str, dict[str, list[float]]]] = defaultdict(lambda: defaultdict(lambda: defaultdict(list)))
    for (algo, env, _seed, _run, _dataset, which), parts in acc.items():
        out[str(algo)][which][str(env)].append(float(np.concatenate(parts).mean()))
    return out


def iqm_across_games(rows: Sequence[dict[str, Any]], which: str, reps: int = 2000, seed: int = 0) -> dict[str, tuple[float, float, float]]:
    """algo -> (IQM, CI low, CI high) of run scores on ``which`` levels, stratified over games (rliable).

    Each algorithm needs the same number of runs on every game it was evaluated on; games are
    truncated to the smallest run count so the score matrix is rectangular.

    The IQM is ``rliable.metrics.aggregate_iqm``. The stratified bootstrap (resample runs with
    replacement within each game, percentile interval) is written here: ``rliable.library`` imports
    ``arch``, and rliable 1.2 pins ``arch<8`` while arch 7.2 fails to import with pandas 3.
    """
    from rliable import metrics

    scores = run_scores(rows)
    matrices = {}
    for algo, by_which in scores.items():
        games = by_which.get(which, {})
        if not games:
            continue
        n = min(len(v) for v in games.values())
        matrices[algo] = np.array([[games[g][i] for g in sorted(games)] for i in range(n)])  # (runs, games)
    if not matrices:
        return {}
    rng = np.random.default_rng(seed)
    out = {}
    for algo, m in matrices.items():
        runs, games = m.shape
        idx = rng.integers(0, runs, size=(reps, runs, games))  # per game, its own resample of runs
        resampled = np.take_along_axis(np.broadcast_to(m, (reps, runs, games)), idx, axis=1)
        boot = scipy.stats.trim_mean(resampled.reshape(reps, -1), 0.25, axis=1)  # the IQM of each replicate
        out[algo] = (float(metrics.aggregate_iqm(m)), float(np.quantile(boot, 0.025)), float(np.quantile(boot, 0.975)))
    return out


def _fmt(mean: float, ci: tuple[float, float]) -> str:
    return f"{mean:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]"


def _plot_bars(iqm_train: dict, iqm_held: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    algos = sorted(set(iqm_train) & set(iqm_held))
    x = np.arange(len(algos))
    fig, ax = plt.subplots(figsize=(max(4.0, 1.3 * len(algos) + 2), 3.6))
    handles = []
    for offset, (label, data, color) in enumerate((("train levels", iqm_train, "#4C72B0"), ("held-out levels", iqm_held, "#DD8452"))):
        means = np.array([data[a][0] for a in algos])
        err = np.array([[data[a][0] - data[a][1] for a in algos], [data[a][2] - data[a][0] for a in algos]])
        bars = ax.bar(x + (offset - 0.5) * 0.38, means, 0.38, color=color, label=label)
        ax.errorbar(x + (offset - 0.5) * 0.38, means, yerr=err, fmt="none", ecolor="black", capsize=3, lw=1)
        handles.append(bars)
    ax.set_xticks(x, [a.upper() for a in algos])
    ax.set_ylabel("IQM normalized return\n(95% stratified bootstrap CI)")
    ax.set_title("Train vs held-out levels")
    ax.legend(handles=handles, frameon=False, loc="upper right")
    ax.spines[["top", "right"]].set_visible(False)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _plot_gap_vs(rows: Sequence[dict[str, Any]], key: str, xlabel: str, path: Path) -> bool:
    """Mean gap per algorithm against a numeric row field (train levels, dataset size); False when
    the rows do not vary in it."""
    by: dict[tuple[str, float], dict[str, list[np.ndarray]]] = defaultdict(lambda: defaultdict(list))
    for row in rows:
        if row.get(key) is None:
            continue
        by[(str(row.get("algo") or row.get("agent")), float(row[key]))][row["which"]].append(_scores(row))
    xs = {x for _, x in by}
    if len(xs) < 2:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.6))
    for algo in sorted({a for a, _ in by}):
        pts = []
        for (a, x), w in sorted(by.items(), key=lambda kv: kv[0][1]):
            if a == algo and "train" in w and "held_out" in w:
                g = generalization_gap(np.concatenate(w["train"]), np.concatenate(w["held_out"]))
                pts.append((x, g.gap, g.ci_low, g.ci_high))
        if pts:
            p = np.array(pts)
            ax.errorbar(p[:, 0], p[:, 1], yerr=[p[:, 1] - p[:, 2], p[:, 3] - p[:, 1]], marker="o", capsize=3, label=algo.upper())
    ax.set_xscale("log")
    ax.set_xticks(sorted(xs), [f"{int(x):,}" for x in sorted(xs)])
    ax.minorticks_off()
    ax.set_xlabel(xlabel)
    ax.set_ylabel("generalization gap (train - held-out)")
    ax.axhline(0, color="grey", lw=0.8)
    ax.legend(frameon=False)
    ax.spines[["top", "right"]].set_visible(False)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def make_report(paths: Sequence[str | Path], out_dir: str | Path | None = None, seed: int = 0) -> tuple[Path, list[GameRow], dict[str, Any]]:
    """Write ``report.md``, ``per_game.csv`` and PNG plots; returns (report path, table, aggregates)."""
    files = find_results(paths)
    rows = [r for f in files for r in read_results(f)]
    out = Path(out_dir) if out_dir else (Path(paths[0]) if Path(paths[0]).is_dir() else Path(paths[0]).parent) / "report"
    out.mkdir(parents=True, exist_ok=True)
    table = per_game_table(rows, seed=seed)
    if not table:
        raise RlgenError("no (algo, env) has both train and held-out results; run `rlgen evaluate` with --which train held_out")
    iqm_train, iqm_held = iqm_across_games(rows, "train", seed=seed), iqm_across_games(rows, "held_out", seed=seed)
    with (out / "per_game.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["algo", "env", "runs", "train", "train_lo", "train_hi", "held_out", "held_out_lo", "held_out_hi", "gap", "gap_lo", "gap_hi", "normalized"])
        for t in table:
            w.writerow([t.algo, t.env, t.runs, t.train, *t.train_ci, t.held_out, *t.held_out_ci, t.gap, *t.gap_ci, t.normalized])
    plots = []
    if iqm_train and iqm_held:
        _plot_bars(iqm_train, iqm_held, out / "train_vs_held_out.png")
        plots.append(("Train vs held-out levels, IQM across games", "train_vs_held_out.png"))
    if _plot_gap_vs(rows, "train_levels", "number of training levels", out / "gap_vs_levels.png"):
        plots.append(("Generalization gap vs number of training levels", "gap_vs_levels.png"))
    if _plot_gap_vs(rows, "dataset_transitions", "dataset size (transitions)", out / "gap_vs_size.png"):
        plots.append(("Generalization gap vs dataset size", "gap_vs_size.png"))
    lines = ["# rlgen report", "", f"From {len(rows)} evaluation rows in {len(files)} file(s): " + ", ".join(str(f) for f in files), "",
             "## Per game", "", "Mean normalized return (raw where no normalization exists) with 95% bootstrap CIs over episodes.", "",
             "| algo | env | runs | train | held-out | gap (train - held-out) |", "|---|---|---|---|---|---|"]  # fmt: skip
    lines += [f"| {t.algo} | {t.env} | {t.runs} | {_fmt(t.train, t.train_ci)} | {_fmt(t.held_out, t.held_out_ci)} | {_fmt(t.gap, t.gap_ci)} |" for t in table]
    if iqm_train:
        lines += ["", "## Across games: IQM of run scores (rliable, 95% stratified bootstrap CIs)", "",
                  "| algo | train IQM | held-out IQM |", "|---|---|---|"]  # fmt: skip
        for algo in sorted(iqm_train):
            h = iqm_held.get(algo)
            lines.append(f"| {algo} | {_fmt(iqm_train[algo][0], iqm_train[algo][1:])} | {_fmt(h[0], h[1:]) if h else '-'} |")
    for title, png in plots:
        lines += ["", f"## {title}", "", f"![{title}]({png})"]
    report = out / "report.md"
    report.write_text("\n".join(lines) + "\n")
    return report, table, {"iqm_train": iqm_train, "iqm_held_out": iqm_held}
