"""``rlgen datasets verify``: every shard a dataset uses and its cache, checked against the manifest."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from rlgen.data.cache import CACHE_DIR, check_cache
from rlgen.data.format import EPISODES, MANIFEST, DatasetError, decode_shard, inside, sha256_of

if TYPE_CHECKING:
    from rlgen.data.dataset import Dataset


def verify_dataset(ds: Dataset) -> list[str]:
    """Check every shard this dataset uses (present, sha256 as in the manifest, zstd frame checksum,
    decodable, holding the episodes, lengths, returns, observation shapes and action range the index
    says) and the cache when there is one (every file's size, header and sha256 as recorded when it
    was built). ``load_dataset`` has checked the manifest and ``episodes.jsonl`` already. Returns the
    problems found (empty when all is well)."""
    base = ds.base
    problems: list[str] = []
    counts = base.manifest.get("counts", {})
    if counts.get("episodes") != base.num_episodes or counts.get("transitions") != base.num_transitions:
        problems.append(f"manifest counts {counts.get('episodes')} episodes / {counts.get('transitions')} transitions, "
                        f"{EPISODES} has {base.num_episodes} / {base.num_transitions}")  # fmt: skip
    shape = list(ds.observation_shape)
    used = set(ds.episodes["shard"].tolist())
    frame_checksum = int(base.manifest.get("schema_version", 1)) >= 2
    for entry in base.manifest["shards"]:
        if entry["file"] not in used:
            continue
        path = inside(base.root, entry["file"], base.root / MANIFEST, "shard file")
        if not path.is_file():
            problems.append(f"{entry['file']}: missing")
            continue
        if sha256_of(path) != entry["sha256"]:
            problems.append(f"{entry['file']}: sha256 differs from the manifest (the file changed or is corrupt)")
            continue
        try:
            arrays, lengths = decode_shard(path, frame_checksum=frame_checksum)
        except DatasetError as e:
            problems.append(str(e))
            continue
        rows = base.episodes[base.episodes["shard"] == entry["file"]]
        rows = rows[np.argsort(rows["offset"])]
        if len(rows) != len(lengths) or not np.array_equal(rows["length"], lengths):
            problems.append(f"{entry['file']}: holds {len(lengths)} episodes of lengths that differ from {EPISODES}")
        if list(arrays["obs"].shape[1:]) != shape or len(arrays["obs"]) != int(lengths.sum() + len(lengths)):
            problems.append(f"{entry['file']}: observations {list(arrays['obs'].shape)}, expected (*, {shape}) with one per step plus one per episode")
        actions = arrays["actions"]
        if len(actions) and (actions.min() < 0 or actions.max() >= ds.num_actions):
            problems.append(f"{entry['file']}: actions in [{actions.min()}, {actions.max()}], the action space has {ds.num_actions}")
        returns = np.add.reduceat(arrays["rewards"].astype(np.float64), np.concatenate([[0], np.cumsum(lengths)[:-1]])) if len(lengths) else []
        if len(rows) == len(lengths) and not np.allclose(returns, rows["return"], atol=1e-4):
            problems.append(f"{entry['file']}: episode returns differ from {EPISODES}")
    state, cache_problems = check_cache(base.root / CACHE_DIR, base.cache_key())
    if state == "corrupt":  # absent or stale caches are (re)built on first use; a corrupt one is rebuilt too
        problems += [f"cache: {p} (rebuilt from the shards on next use)" for p in cache_problems]
    return problems
