"""The on-disk format: lossless round trips, checksums, and clear errors on damage."""

import json

import numpy as np
import pytest

from rlgen.cli import main
from rlgen.data import DatasetError, load_dataset, write_dataset
from rlgen.data.format import decode_shard

from .conftest import ENV, manifest


def test_round_trip_is_lossless(dataset_dir, episodes):
    ds = load_dataset(dataset_dir)
    assert ds.num_episodes == len(episodes) and ds.num_transitions == sum(e.length for e in episodes)
    assert len(ds.manifest["shards"]) > 1  # 100 transitions per shard
    by_id = {int(r["id"]): r for r in ds.episodes}
    for entry in ds.manifest["shards"]:
        arrays, lengths = decode_shard(dataset_dir / entry["file"])
        rows = sorted((r for r in by_id.values() if r["shard"] == entry["file"]), key=lambda r: r["offset"])
        s = o = 0
        for r, t in zip(rows, lengths):
            e = episodes[int(r["id"])]
            np.testing.assert_array_equal(arrays["obs"][o : o + t + 1], e.obs)
            np.testing.assert_array_equal(arrays["actions"][s : s + t], e.actions)
            np.testing.assert_array_equal(arrays["rewards"][s : s + t], e.rewards)
            np.testing.assert_array_equal(arrays["terminated"][s : s + t], e.terminated)
            np.testing.assert_array_equal(arrays["truncated"][s : s + t], e.truncated)
            assert r["level"] == e.level and r["return"] == pytest.approx(e.total_return)
            s, o = s + t, o + t + 1
    assert ds.verify() == []


def test_manifest_records_counts_and_schema(dataset_dir):
    m = json.loads((dataset_dir / "manifest.json").read_text())
    assert m["schema_version"] == 4 and m["env"] == ENV and m["kind"] == "dataset"
    assert m["counts"]["episodes"] == 60 and m["counts"]["levels"] == 10
    assert all(len(s["sha256"]) == 64 and s["bytes"] > 0 for s in m["shards"])


def test_verify_finds_a_flipped_byte_and_the_cli_exits_1(dataset_dir, capsys):
    shard = dataset_dir / load_dataset(dataset_dir).manifest["shards"][1]["file"]
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF
    shard.write_bytes(bytes(data))
    problems = load_dataset(dataset_dir).verify()
    assert len(problems) == 1 and "sha256 differs" in problems[0] and shard.name in problems[0]
    assert main(["datasets", "verify", str(dataset_dir)]) == 1
    assert "FAIL" in capsys.readouterr().out


def test_a_truncated_shard_is_a_clear_error(dataset_dir):
    shard = dataset_dir / load_dataset(dataset_dir).manifest["shards"][0]["file"]
    shard.write_bytes(shard.read_bytes()[:-40])
    with pytest.raises(DatasetError, match="truncated|corrupt"):
        decode_shard(shard)
    with pytest.raises(DatasetError, match="truncated|corrupt|does not hold"):
        load_dataset(dataset_dir).sample_transitions(4)


def test_missing_dataset_and_missing_shard(tmp_path, dataset_dir):
    with pytest.raises(DatasetError, match="no dataset at .*manifest.json not found"):
        load_dataset(tmp_path / "nothing")
    (dataset_dir / load_dataset(dataset_dir).manifest["shards"][0]["file"]).unlink()
    assert any("missing" in p for p in load_dataset(dataset_dir).verify())


def test_unfinished_collection_is_named_as_such(tmp_path, episodes):
    root = write_dataset(tmp_path / "d", episodes, manifest())
    (root / "manifest.json").unlink()
    with pytest.raises(DatasetError, match="unfinished `rlgen collect`"):
        load_dataset(root)


def test_a_newer_schema_is_refused(dataset_dir):
    m = json.loads((dataset_dir / "manifest.json").read_text())
    m["schema_version"] = 99
    (dataset_dir / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(DatasetError, match="schema_version 99; this rlgen reads 1, 2"):
        load_dataset(dataset_dir)


def test_episode_shapes_are_checked(rng):
    from rlgen.data import Episode

    with pytest.raises(ValueError, match="needs 4 observations"):
        Episode(np.zeros((3, 1), np.uint8), np.zeros(3), np.zeros(3), np.zeros(3, bool), np.zeros(3, bool), level=0)


def test_cli_ls_and_info(dataset_dir, capsys):
    assert main(["datasets", "ls", str(dataset_dir.parent)]) == 0
    assert "toy" in capsys.readouterr().out
    assert main(["datasets", "info", str(dataset_dir)]) == 0
    out = capsys.readouterr().out
    assert "episodes       60" in out and "bytes/transition" in out
