"""Learning curves in the report: train vs held-out (and validation) return over training, one panel per agent.

The points are the ones training already logs to each run's TensorBoard directory (``<run>/tb``): PPO's ladder
rungs (``eval/train_levels``, ``eval/validation_levels`` and, with ``held_out_curve``, the held-out levels under
``rlgen.agents.run_checks.HELD_OUT_CURVE``) and the offline agents' periodic evaluations (the same keys, at
gradient steps). They are read with TensorBoard's ``EventAccumulator`` (every event file under ``tb/``), so runs trained before this figure
existed get curves too; a step logged again after a resume replaces its earlier value. Scores are
normalized with the run's own split where its suite has a return range (as the report's tables), raw otherwise.

Across runs: at each step every run of the agent logged, the mean of the run scores with a 95% percentile
bootstrap band over runs (never over pooled episodes); one run gets its line alone, labelled "1 run".
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rlgen.agents.run_checks import HELD_OUT_CURVE
from rlgen.agents.run_dir import read_run_id
from rlgen.evaluation.stats import bootstrap_mean_ci
from rlgen.report.tables import GameRow

#: Level set -> its TensorBoard group, and how the figure draws it.
CURVE_TAGS = {"train": "eval/train_levels", "validation": "eval/validation_levels", "held_out": HELD_OUT_CURVE}
STYLE = {"train": ("train levels", "#4C72B0"), "validation": ("validation levels", "#55A868"), "held_out": ("held-out levels", "#DD8452")}
FILE = "learning_curves.png"


@dataclasses.dataclass(frozen=True)
class RunCurves:
    """One run's curves: level set -> (steps ``(n,)`` int, scores ``(n,)`` float); ``normalized`` says the scale."""

    curves: dict[str, tuple[np.ndarray, np.ndarray]]
    normalized: bool


def run_dirs(files: Iterable[Path], rows: Iterable[dict[str, Any]]) -> dict[str, Path]:
    """Run id -> run directory, for the runs found: the directories holding the results files (``rlgen evaluate``
    writes there) and the run paths rows name (``run``: as given at evaluation, absolute or from the working directory)."""
    candidates = {Path(f).parent for f in files} | {Path(r["run"]) for r in rows if isinstance(r.get("run"), str) and r["run"]}
    out: dict[str, Path] = {}
    for d in sorted(candidates):
        if (d / "config.yaml").is_file() and (d / "tb").is_dir():
            try:
                out.setdefault(read_run_id(d), d)
            except Exception:  # noqa: BLE001 - a damaged run.json: that run just has no curves
                continue
    return out


def read_run_curves(run_dir: str | Path) -> RunCurves | None:
    """The evaluation curves a run logged to ``<run_dir>/tb``; None when it logged none."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    # SB3 writes into tb/ppo_<n>/ (a new one per process), rlgen's offline trainers into tb/ itself: every event
    # file, oldest first (their names start with the time they were opened), a later value of a step replacing an
    # earlier one (a resumed run logs again from its checkpoint)
    files = sorted((Path(run_dir) / "tb").rglob("events.out.tfevents.*"), key=lambda f: (_opened_at(f), str(f)))
    by_which: dict[str, dict[int, float]] = {}
    for f in files:
        acc = EventAccumulator(str(f), size_guidance={"scalars": 0})  # 0: keep every point
        acc.Reload()
        tags = set(acc.Tags().get("scalars", []))
        for which, group in CURVE_TAGS.items():
            if f"{group}/mean_return" in tags:
                by_which.setdefault(which, {}).update({e.step: e.value for e in acc.Scalars(f"{group}/mean_return")})
    curves = {}
    for which, by_step in by_which.items():
        steps = np.array(sorted(by_step), dtype=np.int64)
        curves[which] = (steps, np.array([by_step[s] for s in steps], dtype=np.float64))
    if not curves:
        return None
    split = _split_of(Path(run_dir))
    if split is not None:
        from rlgen.envs import normalize_returns

        normed = {w: (s, normalize_returns(split, v)) for w, (s, v) in curves.items()}
        if all(v is not None for _, v in normed.values()):
            return RunCurves({w: (s, np.asarray(v)) for w, (s, v) in normed.items()}, True)
    return RunCurves(curves, False)


def _opened_at(event_file: Path) -> float:
    """The time in an event file's name (``events.out.tfevents.<unix time>.<host>...``); 0 when there is none."""
    try:
        return float(event_file.name.split(".")[3])
    except (IndexError, ValueError):
        return 0.0


def _split_of(run_dir: Path) -> Any:
    from rlgen.agents.run_dir import read_run_config
    from rlgen.envs import LevelSplit

    try:
        resolved = read_run_config(run_dir).get("resolved") or {}
        return LevelSplit.from_dict(resolved["split"]) if "split" in resolved else None
    except Exception:  # noqa: BLE001 - no split: raw scores
        return None


def across_runs(runs: Sequence[tuple[np.ndarray, np.ndarray]], seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]:
    """(steps, mean, low, high) over runs at the steps every run logged; low/high None with one run."""
    common = sorted(set.intersection(*(set(s.tolist()) for s, _ in runs)))
    scores = np.array([[dict(zip(s.tolist(), v))[t] for t in common] for s, v in runs])  # (runs, steps)
    steps, mean = np.array(common), scores.mean(axis=0)
    if len(runs) < 2:
        return steps, mean, None, None
    bands = np.array([bootstrap_mean_ci(scores[:, j], seed=seed) for j in range(len(common))]).reshape(-1, 2)
    return steps, mean, bands[:, 0], bands[:, 1]


def plot_learning_curves(table: Sequence[GameRow], dirs: dict[str, Path], path: Path, seed: int = 0) -> tuple[bool, list[str]]:
    """One panel per report row (agent x game) whose runs logged curves; returns (whether a figure was written,
    notes on the rows left out)."""
    from rlgen.agents.registry import get_algorithm
    from rlgen.report.plots import _pyplot

    panels, missing = [], []
    for t in table:
        found = {rid: c for rid in t.run_ids if rid in dirs and (c := read_run_curves(dirs[rid])) is not None}
        if not found:
            if t.agent.algorithm != "random":  # the random baseline never trains: it has no curve to miss
                missing.append(t.label)
            continue
        panels.append((t, list(found.values()), len(t.run_ids) - len(found)))
    notes = [f"learning curves: no evaluation curves in TensorBoard (tb/) for {', '.join(sorted(set(missing)))}"] if missing else []
    if not panels:
        return False, notes
    plt = _pyplot()
    cols = min(3, len(panels))
    rows = -(-len(panels) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols, 3.4 * rows), squeeze=False)
    for ax, (t, curves, without) in zip(axes.flat, panels):
        normalized = all(c.normalized for c in curves)
        for which, (name, color) in STYLE.items():
            runs = [c.curves[which] for c in curves if which in c.curves]
            if len(runs) < len(curves) or not runs:
                continue  # a level set not every run logged is not drawn as if it were their mean
            steps, mean, low, high = across_runs(runs, seed=seed)
            ax.plot(steps, mean, marker="o", ms=3, color=color, label=name)
            if low is not None:
                ax.fill_between(steps, low, high, color=color, alpha=0.2, lw=0)
        try:
            unit = "env steps" if get_algorithm(t.agent.algorithm).kind == "online" else "gradient steps"
        except Exception:  # noqa: BLE001 - an algorithm not registered here
            unit = "training steps"
        n = len(curves)
        over = f"{n} runs, band: 95% CI over runs" if n > 1 else "1 run: no band"
        more = f"; {without} run(s) without curves" if without else ""
        ax.set_title(f"{t.label} on {t.env}\n({over}{more})", fontsize=8)
        ax.set_xlabel(unit)
        ax.set_ylabel("normalized return" if normalized else "return")
        ax.spines[["top", "right"]].set_visible(False)
        ax.legend(frameon=False, fontsize=7)
    for ax in list(axes.flat)[len(panels) :]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True, notes
