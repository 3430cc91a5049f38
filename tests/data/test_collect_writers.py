"""Collection's hot path (issue 18, part 2) leaves the shards' bytes as they were: shards compressed two
at once, and the per-step bookkeeping on Python lists, give the files main's one-writer collector wrote."""

import json
from pathlib import Path

from rlgen.collect import collect, rollout
from rlgen.config import CollectConfig, load_config

ROOT = Path(__file__).resolve().parents[2]

#: The shards' sha256s this config gives with the one-writer collector. Schema 3 (main at e6ec948, before issue 18
#: part 2) gave 674e0c8d..., b1357cb7..., 0df49380..., f81087c8..., f4080950..., abf3b831...; schema 4 (channel-last
#: observations, zstd 3 + long-distance matching, issue 18 part 6) gives these, from a one-writer collection. A
#: deliberate change of the shard format (a new schema version) updates them.
SHARDS_BEFORE = [
    "f8fc94a23f5b6087697cb466e7397eab086c33b5c1e5516734c5cea353ba79f9",
    "16fd8250cbc1582fcfd5b62aa858401572a126c5701f48b9cebd1fc043587b1c",
    "4bd6220daea95c088eb947e39cd23d0cfd9b6600dae14df17ae8cdb95476485a",
    "8eff46b236ff2c60d3002b5dca294deb9aa3d218be92ddb71d321521ea6c32e3",
    "7cd7fbafe5356aae3f2cf930bdd8549a2ce19763ac5cd5cbc486b8dc1f1908da",
    "f80dd1f28e7ca776b7dfa9ab20c9d190c3f5e93d27884c5bd7eaec241db3387a",
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
