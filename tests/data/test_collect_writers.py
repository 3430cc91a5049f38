"""Collection's hot path (issue 18, part 2) leaves the shards' bytes as they were: shards compressed two
at once, and the per-step bookkeeping on Python lists, give the files main's one-writer collector wrote."""

import json
from pathlib import Path

from rlgen.collect import collect, rollout
from rlgen.config import CollectConfig, load_config

ROOT = Path(__file__).resolve().parents[2]

#: The shards' sha256s this config gave with the one-writer collector (main at e6ec948, before issue 18
#: part 2). A deliberate change of the shard format (a new schema version) updates them.
SHARDS_BEFORE = [
    "674e0c8d7886746f9798f8acb200a41ca38288eb86adb7674933942eec48e102",
    "b1357cb7424b3d0fb76a22d67871b048573c3fc05665ce3bb8a327c9bccc72ff",
    "0df493805e23185e97c7a4266d4277d364d1fdde0ff5742a6168edf9ee0a84e8",
    "f81087c8bfd8b38903827cf35c672299c01f916e8b2842a96a2819a88e4ef12d",
    "f408095079f3e863a5693077fade9afa9b7d86258002b7fc282f5b395a74b561",
    "abf3b8317310e0f0bcc172e133bfece9019a1b0ffa5cc3b9d2aacbc97a5d1552",
]


def shard_hashes(tmp_path: Path, name: str) -> list[str]:
    cfg = load_config(ROOT / "configs/collect/minigrid_doorkey.yaml",
                      ["env=minigrid/empty-5x5", "split.num_levels=20", "skill=random", "num_envs=4", "progress=false", "device=cpu",
                       f"out_dir={tmp_path / name}", "transitions=400", "segment_transitions=200", "shard_transitions=50"],
                      schema=CollectConfig)  # fmt: skip
    manifest = json.loads((collect(cfg) / "manifest.json").read_text())
    return [s["sha256"] for s in manifest["shards"]]


def test_shards_compressed_two_at_once_are_the_bytes_one_writer_made(tmp_path, monkeypatch):
    assert rollout.WRITER_THREADS >= 2
    assert shard_hashes(tmp_path, "parallel") == SHARDS_BEFORE
    monkeypatch.setattr(rollout, "WRITER_THREADS", 1)
    assert shard_hashes(tmp_path, "serial") == SHARDS_BEFORE
