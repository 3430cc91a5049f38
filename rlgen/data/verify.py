"""``rlgen datasets verify``: every shard a dataset uses and its cache, checked against the manifest.

What it detects: any change to a shard (sha256, and zstd's frame checksum for schema >= 2), to the
manifest (``content_sha256``, schema >= 2) or to ``episodes.jsonl`` (its sha256 in the manifest); an
index that no longer describes the shards (episode counts, lengths, returns, observation shapes, the
action range and, schema 3, each episode's id, level and policy label in the shard header); a missing,
truncated, replaced or damaged cache file; and a cache whose arrays differ from what the shards hold,
even with a ``meta.json`` rewritten to match (every cache array is re-derived from the shards).

What it cannot detect: a dataset rewritten as a whole, consistently (new shards, their sha256 in an
index and a manifest whose ``content_sha256`` is recomputed): the checksums are plain digests, with no
secret or signature, so they catch accidents and partial edits, not a forger who rewrites every
checksum. Compare a dataset's ``content_sha256`` with one you recorded to know it is the one you mean.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from rlgen.data.cache import CACHE_DIR, DERIVED_STEP_ARRAYS, cache_rows, check_cache, label_mismatch, open_cache
from rlgen.data.format import EPISODES, MANIFEST, STEP_ARRAYS, DatasetError, inside, read_shard, sha256_of, shard_file

if TYPE_CHECKING:
    from rlgen.data.dataset import Dataset


def verify_dataset(ds: Dataset) -> list[str]:
    """Check every shard this dataset uses (present, sha256 as in the manifest, zstd frame checksum,
    decodable, holding the episodes, lengths, returns, labels, observation shapes and action range the
    index says) and the cache when there is one (every file's size, header and sha256 as recorded when it
    was built, and every array equal to what the shards give; then every shard the cache covers is
    checked). ``load_dataset`` has checked the manifest and ``episodes.jsonl`` already. Returns the
    problems found (empty when all is well)."""
    base = ds.base
    problems: list[str] = []
    counts = base.manifest.get("counts", {})
    if counts.get("episodes") != base.num_episodes or counts.get("transitions") != base.num_transitions:
        problems.append(f"manifest counts {counts.get('episodes')} episodes / {counts.get('transitions')} transitions, "
                        f"{EPISODES} has {base.num_episodes} / {base.num_transitions}")  # fmt: skip
    state, cache_problems = check_cache(base.root / CACHE_DIR, base.cache_key())
    if state == "corrupt":  # absent or stale caches are (re)built on first use; a corrupt one is rebuilt too
        problems += [f"cache: {p} (rebuilt from the shards on next use)" for p in cache_problems]
    cache = open_cache(base.root / CACHE_DIR) if state == "ok" else None
    used = set(ds.episodes["shard"].tolist())
    frame_checksum = int(base.manifest.get("schema_version", 1)) >= 2
    differ: set[str] = set()
    s = o = 0  # where each shard's rows start in the cache: shards fill it in manifest order
    for entry in base.manifest["shards"]:
        rows = base.episodes[base.episodes["shard"] == entry["file"]]
        rows = rows[np.argsort(rows["offset"])]
        k = int(rows["length"].sum())
        if entry["file"] in used or cache is not None:
            shard_problems = _check_shard(base, entry, rows, frame_checksum, cache, s, o, differ)
            problems += shard_problems
        s, o = s + k, o + k + len(rows)
    problems += [f"cache: {base.root / CACHE_DIR}/{name}.npy differs from what the shards hold, although its sha256 matches "
                 "meta.json (the cache and its record were rewritten together; rebuilt from the shards on next use)"
                 for name in sorted(differ)]  # fmt: skip
    return problems


def _check_shard(base: Dataset, entry: dict[str, Any], rows: np.ndarray, frame_checksum: bool, cache: dict[str, Any] | None,
                 s: int, o: int, differ: set[str]) -> list[str]:  # fmt: skip
    """The problems of one shard; with ``cache``, the names of cache arrays whose rows differ from it go to ``differ``."""
    path = inside(base.root, shard_file(entry), base.root / MANIFEST, "shard file")
    name = entry["file"]
    if not path.is_file():
        return [f"{name}: missing"]
    if sha256_of(path) != entry["sha256"]:
        return [f"{name}: sha256 differs from the manifest (the file changed or is corrupt)"]
    try:
        shard = read_shard(path, frame_checksum=frame_checksum)
    except DatasetError as e:
        return [str(e)]
    arrays, lengths = shard.arrays, shard.lengths
    problems = []
    if len(rows) != len(lengths) or not np.array_equal(rows["length"], lengths):
        return [f"{name}: holds {len(lengths)} episodes of lengths that differ from {EPISODES}"]
    mismatch = label_mismatch(shard.labels, rows)
    if mismatch:
        problems.append(f"{name}: {mismatch}")
    shape = list(base.observation_shape)
    if list(arrays["obs"].shape[1:]) != shape or len(arrays["obs"]) != int(lengths.sum() + len(lengths)):
        return [*problems, f"{name}: observations {list(arrays['obs'].shape)}, expected (*, {shape}) with one per step plus one per episode"]
    actions = arrays["actions"]
    if len(actions) and (actions.min() < 0 or actions.max() >= base.num_actions):
        problems.append(f"{name}: actions in [{actions.min()}, {actions.max()}], the action space has {base.num_actions}")
    derived = cache_rows(arrays, lengths, o)
    if not np.allclose(derived["episode_returns"], rows["return"], atol=1e-4):
        problems.append(f"{name}: episode returns differ from {EPISODES}")
    if cache is not None and not problems:
        k, m = len(actions), len(arrays["obs"])
        if not np.array_equal(cache["obs"][o : o + m], derived["obs"]):
            differ.add("obs")
        for array in (*STEP_ARRAYS, *DERIVED_STEP_ARRAYS):
            if not np.array_equal(cache[array][s : s + k], derived[array]):
                differ.add(array)
        if not np.array_equal(cache["ep_step_start"][rows["id"]], s + derived["ep_first"]):
            differ.add("ep_step_start")
    return problems
