"""Collection's hot path (issue 18, part 2) leaves the shards' bytes as they were: shards compressed two
at once, and the per-step bookkeeping on Python lists, give the files main's one-writer collector wrote."""

import json
from pathlib import Path

from rlgen.collect import collect, rollout
from rlgen.config import CollectConfig, load_config

ROOT = Path(__file__).resolve().parents[2]

#: The shards' sha256s this config gives with the one-writer collector. Schema 3 (main at e6ec948, before issue 18
#: part 2) gave 674e0c8d..., b1357cb7..., 0df49380..., f81087c8..., f4080950..., abf3b831...; schema 4 with zstd 3 +
#: long-distance matching gave f8fc94a2..., 16fd8250..., ...; schema 4 as shipped (channel-last observations, zstd 3)
#: gives these, from a one-writer collection. A deliberate change of the shard format or fresh codec updates them.
SHARDS_BEFORE = [
    "245c6d1b3784547143fe32cb18b0097af40d1bf7e83b304bf9bc5cab4d9cac9d",
    "04cef45d56026eedb6677f39e5741a6927fcbb45987f2b2046eb3a940b5223a6",
    "977ca39826d6e1688bb1190b84ec5addaacd0efb251a60e0ea7baf2ed5fb677d",
    "aa55d3264c9ae5765aae84b2b514cb843217f1efa0ac91f8507ed69bc194e1c0",
    "bffea1f4555197e53dc6524fc1fc601ee830173bbab05d0523495915da380a68",
    "a5ebd8c88a64484ad25af0a6b5fce27edad3f566ed47e86d7bfa505d58c69a7e",
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
