"""Do held-out levels duplicate training levels?

Different level seeds can generate the same layout (openai/procgen issue #100 reports about 24% of
coinrun easy test levels equal to a training level). We fingerprint each level (its first
observation, optionally the frames of a short fixed-action rollout) and count held-out levels whose
fingerprint equals a training level's. :func:`drop_duplicates` makes a split without them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np

from rlgen.envs.levels import LevelSet
from rlgen.envs.splits import LevelSplit
from rlgen.envs.suites import get_suite, suite_name
from rlgen.errors import SplitError
from rlgen.progress import ProgressBar


@dataclasses.dataclass(frozen=True)
class DuplicateReport:
    """Result of a duplicate check.

    Attributes:
        train_checked, held_out_checked: the finite level sets that were fingerprinted.
        duplicated_held_out: held-out levels whose fingerprint equals some training level's.
        matches: held-out level -> the training levels it duplicates.
        distinct_train: number of distinct fingerprints among the training levels.
        rollout_steps: length of the scripted rollout included in each fingerprint (0: first frame).
    """

    suite: str
    env: str
    train_checked: LevelSet
    held_out_checked: LevelSet
    duplicated_held_out: tuple[int, ...]
    matches: Mapping[int, tuple[int, ...]]
    distinct_train: int
    rollout_steps: int

    @property
    def fraction(self) -> float:
        """Fraction of checked held-out levels that duplicate a training level."""
        return len(self.duplicated_held_out) / max(len(self.held_out_checked), 1)

    def to_dict(self) -> dict[str, Any]:
        return {
            "suite": self.suite,
            "env": self.env,
            "train_checked": str(self.train_checked),
            "held_out_checked": str(self.held_out_checked),
            "rollout_steps": self.rollout_steps,
            "distinct_train": self.distinct_train,
            "duplicated_held_out": list(self.duplicated_held_out),
            "fraction": self.fraction,
            "matches": {str(k): list(v) for k, v in self.matches.items()},
        }


#: Levels fingerprinted per suite call when a bar shows progress (each call builds its env once).
PROGRESS_CHUNK = 64


def _fingerprints(module: Any, env: str, levels: np.ndarray, options: Mapping[str, Any], rollout_steps: int, bar: ProgressBar) -> list[bytes]:
    """``module.level_fingerprints`` of ``levels``; in chunks of ``PROGRESS_CHUNK`` advancing ``bar`` when it draws
    (one call otherwise: a suite may set up per call, e.g. XLand's ports compile their env)."""
    if not bar.active:
        return list(module.level_fingerprints(env, levels, options, rollout_steps))
    out: list[bytes] = []
    for start in range(0, len(levels), PROGRESS_CHUNK):
        chunk = levels[start : start + PROGRESS_CHUNK]
        out += module.level_fingerprints(env, chunk, options, rollout_steps)
        bar.update(advance=len(chunk))
    return out


def find_duplicate_levels(
    suite: str,
    env: str,
    train: LevelSet,
    held_out: LevelSet,
    options: Mapping[str, Any],
    rollout_steps: int = 0,
    max_levels: int = 100_000,
    progress: bool = False,
) -> DuplicateReport:
    """Fingerprint ``train`` and ``held_out`` levels and report held-out duplicates of training levels.

    Both sets must be finite (at most ``max_levels`` each); take ``.first(n)`` of open sets. ``progress``:
    a bar over the levels fingerprinted (``rlgen.progress``: silent when stdout is not a terminal).
    """
    name = suite_name(suite)
    module = get_suite(name)
    env = module.canonical_env(env)
    options = module.resolve_options(env, dict(options))
    train_ids = train.to_array(limit=max_levels)
    held_ids = held_out.to_array(limit=max_levels)
    with ProgressBar(f"[bold]splits check[/] {name}/{env}", total=len(train_ids) + len(held_ids), unit="levels", enabled=progress) as bar:
        train_fp = _fingerprints(module, env, train_ids, options, rollout_steps, bar)
        held_fp = _fingerprints(module, env, held_ids, options, rollout_steps, bar)
    by_fp: dict[bytes, list[int]] = {}
    for level, fp in zip(train_ids.tolist(), train_fp):
        by_fp.setdefault(fp, []).append(level)
    matches = {level: tuple(by_fp[fp]) for level, fp in zip(held_ids.tolist(), held_fp) if fp in by_fp}
    return DuplicateReport(
        suite=name,
        env=env,
        train_checked=LevelSet(train_ids),
        held_out_checked=LevelSet(held_ids),
        duplicated_held_out=tuple(sorted(matches)),
        matches=matches,
        distinct_train=len(by_fp),
        rollout_steps=rollout_steps,
    )


def drop_duplicates(split: LevelSplit, check_levels: int | None = None, rollout_steps: int = 0) -> LevelSplit:
    """``split`` without the held-out levels that duplicate a training level.

    Only a finite set can be checked, so the new held-out set is the first ``check_levels`` held-out
    levels (default ``split.duplicate_check_levels``) minus the duplicates found; the new split records
    ``drop_duplicates=True`` and the removed ids in ``dropped_levels`` (saved with it, so loading it
    runs no check). Takes seconds for hundreds of levels.

    Raises:
        SplitError: every checked held-out level duplicates a training level, or ``check_levels`` < 1.
    """
    n = split.duplicate_check_levels if check_levels is None else int(check_levels)
    if n < 1:
        raise SplitError(f"duplicate_check_levels must be >= 1, got {n}")
    checked = split.held_out.first(n)
    report = find_duplicate_levels(split.suite, split.env, train=split.train, held_out=checked, options=split.options,
                                   rollout_steps=rollout_steps)  # fmt: skip
    dropped = tuple(sorted(report.duplicated_held_out))
    held = checked - LevelSet(dropped)
    if not held:
        raise SplitError(f"{split.id}: every checked held-out level duplicates a training level")
    return LevelSplit.from_dict({**split.to_dict(), "held_out": str(held), "drop_duplicates": True, "duplicate_check_levels": n,
                                 "dropped_levels": list(dropped)})  # fmt: skip
