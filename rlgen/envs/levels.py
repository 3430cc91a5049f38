"""Sets of level ids, stored as sorted disjoint intervals.

Procgen's held-out set runs from 250 to 2**31 - 2: two billion ids, so a level set is a tuple of
half-open ``range`` intervals rather than a Python set. Text form (configs, CLI, manifests) uses
inclusive bounds, as people say them: ``"0-199"``, ``"250-"`` (to the largest level id),
``"0-99,150-199"``, ``"7"``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from typing import Union

import numpy as np

from rlgen.errors import SplitError

#: Largest level id + 1. Procgen seeds are int32 and EnvPool adds ``start_level + num_levels``
#: in int32, so ids stay below 2**31 - 1.
LEVEL_ID_LIMIT = 2**31 - 1

LevelSpec = Union["LevelSet", range, str, int, Iterable[int]]

_INTERVAL = re.compile(r"^\s*(\d+)\s*(?:-\s*(\d*)\s*)?$")


class LevelSet:
    """An immutable set of non-negative integer level ids.

    Args:
        spec: a ``range``, an inclusive text spec (``"0-199"``, ``"250-"``, ``"1,5,9-12"``),
            one int, an iterable of ints, or another ``LevelSet``.
    """

    __slots__ = ("_intervals",)

    def __init__(self, spec: LevelSpec = ()) -> None:
        self._intervals: tuple[range, ...] = _normalize(_parse(spec))

    # --- constructors -------------------------------------------------------------------------
    @classmethod
    def from_intervals(cls, intervals: Iterable[range]) -> "LevelSet":
        out = cls.__new__(cls)
        out._intervals = _normalize(list(intervals))
        return out

    # --- queries ----------------------------------------------------------------------------------
    @property
    def intervals(self) -> tuple[range, ...]:
        """Sorted, disjoint, non-adjacent half-open intervals."""
        return self._intervals

    def __len__(self) -> int:
        return sum(len(r) for r in self._intervals)

    def __bool__(self) -> bool:
        return bool(self._intervals)

    def __contains__(self, level: object) -> bool:
        if not isinstance(level, (int, np.integer)):
            return False
        return any(int(level) in r for r in self._intervals)

    def contains(self, levels: np.ndarray) -> np.ndarray:
        """Vectorized membership: a bool array of the same shape as ``levels``."""
        levels = np.asarray(levels, dtype=np.int64)
        out = np.zeros(levels.shape, dtype=bool)
        for r in self._intervals:
            out |= (levels >= r.start) & (levels < r.stop)
        return out

    def __iter__(self) -> Iterator[int]:
        for r in self._intervals:
            yield from r

    def __eq__(self, other: object) -> bool:
        return isinstance(other, LevelSet) and self._intervals == other._intervals

    def __hash__(self) -> int:
        return hash(tuple((r.start, r.stop) for r in self._intervals))

    @property
    def is_contiguous(self) -> bool:
        return len(self._intervals) <= 1

    @property
    def min(self) -> int:
        self._require_nonempty("min")
        return self._intervals[0].start

    @property
    def max(self) -> int:
        self._require_nonempty("max")
        return self._intervals[-1].stop - 1

    def bounding_range(self) -> range:
        """The smallest ``range`` that contains every level of the set."""
        self._require_nonempty("bounding_range")
        return range(self._intervals[0].start, self._intervals[-1].stop)

    def first(self, n: int) -> "LevelSet":
        """The ``n`` smallest levels (all of them if the set is smaller)."""
        if n < 0:
            raise SplitError(f"first(n): n must be >= 0, got {n}")
        out: list[range] = []
        for r in self._intervals:
            if n <= 0:
                break
            take = min(n, len(r))
            out.append(range(r.start, r.start + take))
            n -= take
        return LevelSet.from_intervals(out)

    def to_array(self, limit: int = 10_000_000) -> np.ndarray:
        """All ids as an int64 array; refuses sets larger than ``limit`` (e.g. the open held-out range)."""
        if len(self) > limit:
            raise SplitError(
                f"level set {self} has {len(self)} levels, too many to list (limit {limit}); "
                "take a finite part with .first(n)"
            )
        if not self._intervals:
            return np.zeros(0, dtype=np.int64)
        return np.concatenate([np.arange(r.start, r.stop, dtype=np.int64) for r in self._intervals])

    def sample(self, rng: np.random.Generator, size: int | None = None) -> np.ndarray | int:
        """Uniform draws from the set (with replacement), interval-aware so huge sets cost nothing."""
        self._require_nonempty("sample")
        lengths = np.array([len(r) for r in self._intervals], dtype=np.int64)
        offsets = np.cumsum(lengths) - lengths
        idx = rng.integers(0, int(lengths.sum()), size=size)
        which = np.searchsorted(offsets, idx, side="right") - 1
        starts = np.array([r.start for r in self._intervals], dtype=np.int64)
        levels = starts[which] + (idx - offsets[which])
        return levels if size is not None else int(levels)

    # --- algebra ----------------------------------------------------------------------------------
    def __and__(self, other: "LevelSet") -> "LevelSet":
        out = []
        for a in self._intervals:
            for b in other._intervals:
                lo, hi = max(a.start, b.start), min(a.stop, b.stop)
                if lo < hi:
                    out.append(range(lo, hi))
        return LevelSet.from_intervals(out)

    def __or__(self, other: "LevelSet") -> "LevelSet":
        return LevelSet.from_intervals(self._intervals + other._intervals)

    def __sub__(self, other: "LevelSet") -> "LevelSet":
        out = list(self._intervals)
        for b in other._intervals:
            nxt = []
            for a in out:
                if b.stop <= a.start or b.start >= a.stop:
                    nxt.append(a)
                    continue
                if a.start < b.start:
                    nxt.append(range(a.start, b.start))
                if b.stop < a.stop:
                    nxt.append(range(b.stop, a.stop))
            out = nxt
        return LevelSet.from_intervals(out)

    def issubset(self, other: "LevelSet") -> bool:
        return not (self - other)

    # --- text -------------------------------------------------------------------------------------
    def __str__(self) -> str:
        if not self._intervals:
            return "(empty)"
        parts = []
        for r in self._intervals:
            if r.stop >= LEVEL_ID_LIMIT:
                parts.append(f"{r.start}-")
            elif len(r) == 1:
                parts.append(str(r.start))
            else:
                parts.append(f"{r.start}-{r.stop - 1}")
        return ",".join(parts)

    def describe(self, max_parts: int = 4) -> str:
        """Short human text: ``"0-199 (200 levels)"``; long lists are elided."""
        text = str(self)
        parts = text.split(",")
        if len(parts) > max_parts:
            text = ",".join(parts[:max_parts]) + f",... ({len(parts)} intervals)"
        n = len(self)
        count = f"{n:,} levels" if self.max < LEVEL_ID_LIMIT - 1 else f"{n:,} levels, open-ended"
        return f"{text} ({count})" if self else text

    def __repr__(self) -> str:
        return f"LevelSet({str(self)!r})"

    def _require_nonempty(self, what: str) -> None:
        if not self._intervals:
            raise SplitError(f"{what}() of an empty level set")


def _parse(spec: LevelSpec) -> list[range]:
    if isinstance(spec, LevelSet):
        return list(spec.intervals)
    if isinstance(spec, range):
        if spec.step != 1:
            return _parse(list(spec))
        return [_checked(spec.start, spec.stop, spec)]
    if isinstance(spec, (bool, np.bool_)):
        raise SplitError(f"levels must be ints, ranges or text like '0-199', got {spec!r}")
    if isinstance(spec, (int, np.integer)):
        return [_checked(int(spec), int(spec) + 1, spec)]
    if isinstance(spec, str):
        out = []
        for part in spec.split(","):
            if not part.strip():
                continue
            m = _INTERVAL.match(part)
            if not m:
                raise SplitError(
                    f"bad level spec {spec!r}: {part.strip()!r} is not N, N-M or N- "
                    "(inclusive bounds, e.g. '0-199', '250-', '1,5,9-12')"
                )
            lo = int(m.group(1))
            if m.group(2) is None:
                hi = lo + 1
            elif m.group(2) == "":
                hi = LEVEL_ID_LIMIT
            else:
                hi = int(m.group(2)) + 1
            if hi <= lo:
                raise SplitError(f"bad level spec {spec!r}: {part.strip()!r} ends before it starts")
            out.append(_checked(lo, hi, spec))
        return out
    if isinstance(spec, Iterable):
        items = list(spec)
        if all(isinstance(x, range) for x in items):
            return [iv for x in items for iv in _parse(x)]
        try:
            arr = np.asarray(items)
        except ValueError as e:  # ragged input
            raise SplitError(f"levels must be ints, got {spec!r}") from e
        if arr.size and not np.issubdtype(arr.dtype, np.integer):
            raise SplitError(f"levels must be ints, got {spec!r}")
        arr = np.unique(arr.astype(np.int64))
        return [_checked(int(x), int(x) + 1, spec) for x in arr]
    raise SplitError(f"levels must be ints, ranges or text like '0-199', got {spec!r}")


def _checked(lo: int, hi: int, spec: object) -> range:
    if lo < 0 or hi > LEVEL_ID_LIMIT:
        raise SplitError(f"level ids must lie in 0..{LEVEL_ID_LIMIT - 1}, got {spec!r}")
    return range(lo, hi)


def _normalize(intervals: Sequence[range]) -> tuple[range, ...]:
    merged: list[range] = []
    for r in sorted((r for r in intervals if len(r)), key=lambda r: r.start):
        if merged and r.start <= merged[-1].stop:
            last = merged[-1]
            merged[-1] = range(last.start, max(last.stop, r.stop))
        else:
            merged.append(r)
    return tuple(merged)
