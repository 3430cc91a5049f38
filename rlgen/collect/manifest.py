"""What a collection writes besides its shards: the config record that guards ``out_dir``, and the manifest.

One manifest writer for every collector (:func:`dataset_manifest`): env, split, skill, the policies behind
it (checkpoint, step, ladder return), the returns per policy, the return as a fraction of the expert's,
the spaces, how it was collected and the config record.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from rlgen.atomic_files import write_json_atomic
from rlgen.collect.skills import return_vs_expert
from rlgen.config import CollectConfig, config_to_dict
from rlgen.data.format import MANIFEST, SHARD_DIR
from rlgen.errors import DatasetError

COLLECT_CONFIG = "collect_config.json"
SEGMENT_DIR = "segments"
#: Config keys that do not change what is collected.
_NEUTRAL_KEYS = ("progress", "device", "name", "out_dir")
#: What the collectors write, beyond the config: 2 seeds envs from SeedSequence([seed, segment, env]) and
#: numbers episodes in their shard headers. An unfinished collection begun by another version is refused
#: (its finished segments were seeded otherwise); a finished dataset of any version is kept as it is.
COLLECTOR_VERSION = 2

#: The manifest's word for which episodes a collection keeps.
EPISODES_KEPT = ("every episode started before the collection (or its segment) reached its size, run to its end (terminated or time-limit truncated); "
                 "none dropped for its length")  # fmt: skip


def collect_config_record(cfg: CollectConfig) -> dict[str, Any]:
    d = config_to_dict(cfg)
    for k in _NEUTRAL_KEYS:
        d.pop(k, None)
    d["collector_version"] = COLLECTOR_VERSION
    return d


def check_out_dir_is_a_directory(root: Path) -> None:
    if root.exists() and not root.is_dir():
        raise DatasetError(f"out_dir {str(root)!r} is a file; give a directory for the dataset")


def _has_finished_work(root: Path) -> bool:
    return (root / MANIFEST).is_file() or any((root / SEGMENT_DIR).glob("*.json")) or any((root / SHARD_DIR).glob("*.zst"))


def check_collect_config(root: Path, cfg: CollectConfig, write: bool = True) -> None:
    """Refuse ``out_dir`` when it holds finished work (a manifest, a segment, a shard) of another
    config; then, with ``write``, record this config there. A directory without finished work (what a
    command killed or failed before its first shard leaves) is taken over."""
    check_out_dir_is_a_directory(root)
    path = root / COLLECT_CONFIG
    record = collect_config_record(cfg)
    old: Any = None
    if path.is_file():
        try:
            old = json.loads(path.read_text())
        except (OSError, ValueError):
            old = {"unreadable": True}
    if old != record and _has_finished_work(root):
        if old is None:
            raise DatasetError(f"{root} holds data that `rlgen collect` did not write with a config record; use another out_dir")
        diff = sorted(k for k in set(old) | set(record) if old.get(k) != record.get(k)) if isinstance(old, dict) else ["the whole record"]
        if diff == ["collector_version"]:
            if (root / MANIFEST).is_file():
                return  # a finished dataset of the same config, collected by another rlgen: nothing to do
            raise DatasetError(f"{root} holds an unfinished collection begun by another rlgen version (collector "
                               f"{old.get('collector_version', 1)}, this one writes {COLLECTOR_VERSION}: its segments were seeded "
                               "otherwise); finish it with that version, or delete the directory to start over")  # fmt: skip
        raise DatasetError(f"{root} was collected with a different config (differs in: {', '.join(diff)}); "
                           "use another out_dir, or delete the directory to start over")  # fmt: skip
    if write and old != record:
        root.mkdir(parents=True, exist_ok=True)
        write_json_atomic(path, record)


def dataset_manifest(cfg: CollectConfig, split: Any, specs: list[dict[str, Any]], rows: list[dict[str, Any]], observation_space: dict[str, Any],
                     num_actions: int, collection: dict[str, Any], **extra: Any) -> dict[str, Any]:  # fmt: skip
    """The manifest of a finished collection (``rlgen.data.writer.finish_dataset`` adds counts, shards, digests).

    Args:
        rows: the episode rows (``policy``, ``return``...); ``observation_space``: ``{"shape", "dtype"}``.
        collection: how it was collected (levels, num_envs, seed, the size asked, seconds...).
        extra: more top-level keys (e.g. ``rulesets``).
    """
    returns = {}
    for label in sorted({r["policy"] for r in rows}):
        sel = [r["return"] for r in rows if r["policy"] == label]
        returns[label] = {"episodes": len(sel), "mean_return": float(np.mean(sel))}
    manifest = {
        "env": cfg.env,
        "split": split.to_dict(),
        "skill": cfg.skill,
        "policies": [dict(s, run=cfg.policy_run) if s["label"] != "random" else s for s in specs],
        "returns_by_policy": returns,
        "mean_return": float(np.mean([r["return"] for r in rows])),
        "observation_space": observation_space,
        "action_space": {"n": int(num_actions)},
        "collection": {"deterministic": cfg.deterministic, "episodes_kept": EPISODES_KEPT, **collection},
        **extra,
        "config": collect_config_record(cfg),
    }
    vs_expert = return_vs_expert(cfg, specs, rows)
    if vs_expert is not None:
        manifest["return_vs_expert"] = vs_expert
    return manifest
