"""The report's figures. Every error bar is a CI the report's tables show; what rests on one run is
marked as such (hatched bars without error bars, hollow markers labelled "1 run", profiles without
a band), never drawn as a zero-width certainty.

- ``train_vs_held_out.png``: IQM across games per agent on training and held-out levels.
- ``gap_vs_levels.png``: gap against the number of training levels, one line per agent at a fixed
  dataset size (and skill); ``gap_vs_size.png``: against dataset size at fixed levels. Never pooled
  over the other axis: each point is one per-game row.
- ``performance_profiles.png``: fraction of runs with score above tau (rliable's score
  distributions, drawn with ``rliable.plot_utils``), train and held-out.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rlgen.config import human_count
from rlgen.evaluation.stats import performance_profile
from rlgen.report.tables import Aggregate, GameRow, agent_matrices

ONE_RUN_NOTE = "1 run"


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_bars(aggs: Sequence[Aggregate], path: Path) -> bool:
    """IQM bars with their stratified bootstrap CIs (as the aggregates table); False without data."""
    iqm = {(a.label, a.which): a for a in aggs if a.which in ("train", "held_out")}
    labels = list(dict.fromkeys(a.label for a in aggs if (a.label, "train") in iqm and (a.label, "held_out") in iqm))
    if not labels:
        return False
    plt = _pyplot()
    x = np.arange(len(labels))
    fig, ax = plt.subplots(figsize=(max(5.5, 1.1 * len(labels) + 3.5), 3.8))
    one_run = False
    for offset, (which, name, color) in enumerate((("train", "train levels", "#4C72B0"), ("held_out", "held-out levels", "#DD8452"))):
        xs = x + (offset - 0.5) * 0.38
        for xi, label in zip(xs, labels):
            est = iqm[(label, which)].metrics["IQM"]
            if est.ci is None:  # one run per game: no CI to draw; hatched and labelled instead
                one_run = True
                ax.bar(xi, est.value, 0.38, color=color, alpha=0.45, hatch="//", edgecolor="black", lw=0.5)
                ax.annotate(ONE_RUN_NOTE, (xi, est.value), textcoords="offset points", xytext=(0, 2), ha="center", fontsize=6.5)
            else:
                ax.bar(xi, est.value, 0.38, color=color)
                ax.errorbar(xi, est.value, yerr=[[est.value - est.ci[0]], [est.ci[1] - est.value]], fmt="none", ecolor="black", capsize=3, lw=1)
        ax.bar(np.nan, np.nan, color=color, label=name)  # legend entry
    if one_run:
        ax.bar(np.nan, np.nan, color="white", hatch="//", edgecolor="black", lw=0.5, label="1 run per game: no CI")
    ax.set_xticks(x, labels, rotation=30 if len(labels) > 4 else 0, ha="right" if len(labels) > 4 else "center")
    ax.set_ylabel("IQM normalized return\n(95% stratified bootstrap CI)")
    games = max(len(a.games) for a in aggs)
    ax.set_title(f"Train vs held-out levels, IQM across {games} game(s)")
    ax.legend(frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)  # beside the bars, never over them
    ax.spines[["top", "right"]].set_visible(False)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


#: Config settings that name a run's level sets: they differ along the levels axis by design.
TRAINING_LEVEL_SETTINGS = ("split.num_levels", "split.train", "split.validation", "split.held_out")


def gap_lines(table: Sequence[GameRow], axis: str) -> dict[tuple[str, Any], list[tuple[int, GameRow]]]:
    """The lines of a gap plot: (game, agent with the ``axis`` field cleared) -> points (x, table
    row) sorted by x, for lines with two or more x values. ``axis`` is ``"levels"`` (training levels)
    or ``"size"`` (dataset transitions); everything else about the agent is fixed along a line."""

    def x_of(t: GameRow) -> int | None:
        return t.agent.levels if axis == "levels" else t.agent.dataset_transitions

    def line_of(t: GameRow) -> Any:
        a = t.agent
        if axis == "levels":
            # the split digest stands for the training levels themselves, so it differs along this axis: the
            # line is keyed on the split's options (view, tile size...) instead, which must not differ
            # and an online agent's config names its training levels (a study's PPO of N levels: split.train), so
            # the config digest differs too: the line is keyed on the other settings and the held-out levels instead
            config = a.config_digest
            if a.settings:
                others = tuple(p for p in a.settings if p[0] not in TRAINING_LEVEL_SETTINGS)
                config = f"settings {others!r} held-out {a.held_out_digest}"
            return dataclasses.replace(a, dataset_levels=None, train_levels=None, split_digest=f"options {a.split_options!r}", config_digest=config)
        return dataclasses.replace(a, dataset_transitions=None)

    lines: dict[tuple[str, Any], list[tuple[int, GameRow]]] = defaultdict(list)
    for t in table:
        x = x_of(t)
        if x is not None:
            lines[(t.env, line_of(t))].append((int(x), t))
    out: dict[tuple[str, Any], list[tuple[int, GameRow]]] = {}
    for key, pts in lines.items():
        xs = [x for x, _ in pts]
        if len(xs) != len(set(xs)):
            # two rows at one x are two experiments the key cannot tell apart (e.g. other level sets of the same
            # count): no line joins them; each row keeps its own agent (split digest included) as its key
            for x, t in pts:
                out.setdefault((t.env, t.agent), []).append((x, t))
            continue
        out[key] = pts
    return {k: sorted(v, key=lambda p: p[0]) for k, v in out.items() if len({x for x, _ in v}) >= 2}


def plot_gap_vs(table: Sequence[GameRow], axis: str, path: Path) -> bool:
    """Gap against training levels (``axis="levels"``) or dataset size (``"size"``), one line per
    agent with everything else fixed (:func:`gap_lines`), one panel per game; error bars are the
    table's gap CIs. False when no line has two points."""
    lines = gap_lines(table, axis)
    if not lines:
        return False
    plt = _pyplot()
    envs = sorted({env for env, _ in lines})
    fig, axes = plt.subplots(1, len(envs), figsize=(5.2 * len(envs), 3.8), squeeze=False)
    for ax, env in zip(axes[0], envs):
        xs_all: set[int] = set()
        one_run = False
        for (e, agent), pts in sorted(((k, v) for k, v in lines.items() if k[0] == env), key=lambda kv: kv[0][1].sort_key()):
            if axis == "levels":
                fixed = f"{human_count(int(agent.dataset_transitions))} transitions" if agent.dataset_transitions is not None else "online"
            else:
                levels = pts[0][1].agent.levels
                fixed = f"{levels} levels" if levels is not None else ""
            name = " ".join(str(v) for v in (agent.algorithm, agent.dataset_skill, fixed, f"@{agent.study}" if agent.study else None) if v)
            xs = np.array([x for x, _ in pts], dtype=float)
            ys = np.array([t.gap for _, t in pts])
            err = np.array([[t.gap - t.gap_ci[0] for _, t in pts], [t.gap_ci[1] - t.gap for _, t in pts]])
            handle = ax.errorbar(xs, ys, yerr=err, marker="", capsize=3, label=name)
            color = handle[0].get_color()
            for (x, t), y in zip(pts, ys):
                ax.plot([x], [y], marker="o", color=color, mfc="white" if t.one_run else color)
                if t.one_run:
                    one_run = True
                    ax.annotate(ONE_RUN_NOTE, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=6.5)
            xs_all.update(int(x) for x in xs)
        if one_run:
            ax.plot([], [], marker="o", ls="", color="grey", mfc="white", label="hollow: 1 run, CI = evaluation noise only")
        ax.set_xscale("log")
        ax.set_xticks(sorted(xs_all), [f"{x:,}" for x in sorted(xs_all)])
        ax.minorticks_off()
        ax.set_xlabel("number of training levels" if axis == "levels" else "dataset size (transitions)")
        ax.set_ylabel("gap, train - held-out (95% CI)")
        ax.set_title(env, fontsize=9)
        ax.axhline(0, color="grey", lw=0.8)
        ax.legend(frameon=False, fontsize=7)
        ax.spines[["top", "right"]].set_visible(False)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def plot_profiles(table: Sequence[GameRow], path: Path, seed: int = 0) -> bool:
    """Performance profiles on training and held-out levels with stratified bootstrap bands
    (no band for agents with one run per game: dashed, and labelled)."""
    from rliable import plot_utils

    # Raw returns of different games (or of a raw-scored agent beside normalized ones) share no scale:
    # profile the normalized rows when there are any, raw ones only when nothing is normalized.
    table = [t for t in table if t.normalized] or list(table)
    if not table:
        return False
    plt = _pyplot()
    normalized = all(t.normalized for t in table)
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), sharey=True)
    for ax, which, title in zip(axes, ("train", "held_out"), ("train levels", "held-out levels")):
        mats = agent_matrices(table, which)
        lo = 0.0 if normalized else min(float(m.min()) for _, m, _ in mats.values())
        hi = 1.0 if normalized else max(float(m.max()) for _, m, _ in mats.values())
        taus = np.linspace(lo, hi, 101)
        profiles, bands, styles = {}, {}, {}
        for label, (_, m, _) in mats.items():
            p = performance_profile(m, taus, seed=seed)
            key = label if p.low is not None else f"{label} ({ONE_RUN_NOTE}: no band)"
            profiles[key] = p.fraction
            styles[key] = "solid" if p.low is not None else "dashed"
            if p.low is not None:
                bands[key] = (p.low, p.high)
        plot_utils.plot_performance_profiles(profiles, taus, performance_profile_cis=bands, ax=ax, linestyles=styles,
                                             xlabel=r"normalized score $\tau$" if normalized else r"return $\tau$",
                                             ylabel=r"fraction of runs with score $> \tau$", labelsize="medium", ticklabelsize="small")  # fmt: skip
        ax.set_title(title, fontsize=10)
    axes[1].legend(frameon=False, fontsize=7, loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def write_plots(table: Sequence[GameRow], aggs: Sequence[Aggregate], out: Path, seed: int = 0) -> list[tuple[str, str]]:
    """Write every figure that the data supports; returns (title, file name) pairs."""
    plots = []
    if plot_bars(aggs, out / "train_vs_held_out.png"):
        plots.append(("Train vs held-out levels, IQM across games", "train_vs_held_out.png"))
    if plot_gap_vs(table, "levels", out / "gap_vs_levels.png"):
        plots.append(("Generalization gap vs number of training levels (fixed dataset size)", "gap_vs_levels.png"))
    if plot_gap_vs(table, "size", out / "gap_vs_size.png"):
        plots.append(("Generalization gap vs dataset size (fixed training levels)", "gap_vs_size.png"))
    if plot_profiles(table, out / "performance_profiles.png", seed=seed):
        plots.append(("Performance profiles", "performance_profiles.png"))
    return plots
