"""Writing datasets: ``Episode``, ``DatasetWriter`` and ``write_dataset``.

Shards are written atomically as they fill; ``episodes.jsonl`` and then ``manifest.json`` are written
last, so a directory with a manifest is always a complete dataset.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from rlgen.atomic_files import write_json_atomic, write_jsonl_atomic
from rlgen.data.format import EPISODES, MANIFEST, SCHEMA_VERSION, DatasetError, shard_name, with_digest, write_shard_file


@dataclass
class Episode:
    """One complete episode.

    Attributes:
        obs: ``(T + 1, *obs_shape)``, every observation including the one after the last action
            (an array, or a list of ``T + 1`` row arrays).
        actions: ``(T,)`` discrete actions.
        rewards: ``(T,)`` float rewards.
        terminated: ``(T,)`` bool, True at a terminal step (no bootstrapping past it).
        truncated: ``(T,)`` bool, True where a time limit cut the episode.
        level: the level (Procgen level seed, MiniGrid reset seed) the episode ran on.
        policy: label of the policy that acted (``expert``, ``medium``, ``random``...).
    """

    obs: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    level: int
    policy: str = ""

    def __post_init__(self) -> None:
        t = len(self.actions)
        if t < 1:
            raise ValueError("an episode needs at least one step")
        if len(self.obs) != t + 1:
            raise ValueError(f"an episode of {t} actions needs {t + 1} observations (the last one included), got {len(self.obs)}")
        for name in ("rewards", "terminated", "truncated"):
            if len(getattr(self, name)) != t:
                raise ValueError(f"{name} has {len(getattr(self, name))} entries for {t} actions")

    @property
    def length(self) -> int:
        return len(self.actions)

    @property
    def total_return(self) -> float:
        return float(np.asarray(self.rewards, dtype=np.float64).sum())


def episode_row(episode: Episode, episode_id: int, shard: str, offset: int) -> dict[str, Any]:
    """The ``episodes.jsonl`` row of an episode stored as the ``offset``-th episode of ``shard``."""
    return {"id": episode_id, "level": int(episode.level), "return": episode.total_return, "length": episode.length,
            "policy": episode.policy, "shard": shard, "offset": offset}  # fmt: skip


def finish_dataset(root: Path, manifest: dict[str, Any], shards: list[dict[str, Any]], rows: list[dict[str, Any]]) -> Path:
    """Write ``episodes.jsonl`` and then ``manifest.json`` (``manifest`` completed with counts, shards,
    the sha256 of ``episodes.jsonl`` and its own ``content_sha256``)."""
    write_jsonl_atomic(root / EPISODES, rows)
    full = {
        "schema_version": SCHEMA_VERSION,
        "kind": "dataset",
        "name": root.name,
        **manifest,
        "counts": {
            "episodes": len(rows),
            "transitions": int(sum(r["length"] for r in rows)),
            "bytes": int(sum(s["bytes"] for s in shards)),
            "levels": len({r["level"] for r in rows}),
        },
        "shards": shards,
        "episodes_sha256": hashlib.sha256((root / EPISODES).read_bytes()).hexdigest(),
        "created": manifest.get("created", time.strftime("%Y-%m-%dT%H:%M:%S%z")),
    }
    write_json_atomic(root / MANIFEST, with_digest(full))
    return root


class DatasetWriter:
    """Buffers episodes and writes a shard whenever ``shard_transitions`` are buffered.

    Example:
        >>> with DatasetWriter("data/toy", {"env": "minigrid/MiniGrid-Empty-5x5-v0", ...}) as w:
        ...     w.add(Episode(...))
    """

    def __init__(self, root: str | Path, manifest: dict[str, Any], shard_transitions: int = 50_000) -> None:
        self.root = Path(root)
        if self.root.exists() and not self.root.is_dir():
            raise DatasetError(f"{self.root} is a file, not a directory; give a directory for the dataset")
        if (self.root / MANIFEST).exists():
            raise DatasetError(f"{self.root} already holds a dataset; give another directory")
        self.manifest = dict(manifest)
        self._num_actions = (manifest.get("action_space") or {}).get("n")
        self.shard_transitions = int(shard_transitions)
        self.shards: list[dict[str, Any]] = []
        self.rows: list[dict[str, Any]] = []
        self._buffer: list[Episode] = []

    def add(self, episode: Episode) -> None:
        n = self._num_actions
        a = np.asarray(episode.actions)
        if n is not None and (a.min() < 0 or a.max() >= n):
            raise DatasetError(f"episode {len(self.rows) + len(self._buffer)} has actions in [{a.min()}, {a.max()}]; "
                               f"the manifest's action_space has n={n} (actions 0..{n - 1})")  # fmt: skip
        self._buffer.append(episode)
        if sum(e.length for e in self._buffer) >= self.shard_transitions:
            self._flush()

    def _flush(self) -> None:
        if not self._buffer:
            return
        name = shard_name(0, len(self.shards))
        info = write_shard_file(self.root / name, self._buffer, ids=range(len(self.rows), len(self.rows) + len(self._buffer)))
        self.shards.append({"file": name, **info})
        for offset, e in enumerate(self._buffer):
            self.rows.append(episode_row(e, len(self.rows), name, offset))
        self._buffer = []

    def close(self) -> Path:
        self._flush()
        if not self.rows:
            raise ValueError("no episodes were added")
        return finish_dataset(self.root, self.manifest, self.shards, self.rows)

    def __enter__(self) -> "DatasetWriter":
        return self

    def __exit__(self, exc_type: Any, *rest: Any) -> None:
        if exc_type is None:
            self.close()


def write_dataset(root: str | Path, episodes: Iterable[Episode], manifest: dict[str, Any], shard_transitions: int = 50_000) -> Path:
    """Write ``episodes`` as a dataset at ``root``; ``manifest`` gives at least ``env``,
    ``observation_space`` ``{"shape", "dtype"}`` and ``action_space`` ``{"n"}``. Returns ``root``."""
    with DatasetWriter(root, manifest, shard_transitions) as w:
        for e in episodes:
            w.add(e)
    return Path(root)
