"""Schema 4 shards (channel-last storage, codec in the header) and ``rlgen datasets compact`` (issue 18, part 6):
bit-exact reads after compaction, resumable after a kill at either point of a shard's swap, bad input in one line."""

import hashlib
import io
import json
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest

from rlgen.cli import main
from rlgen.data import load_dataset, write_dataset
from rlgen.data.codec import ARCHIVE, FRESH
from rlgen.data.format import MAGIC, read_shard, shard_file
from tests.data.conftest import make_episodes, manifest

FIXTURES = Path(__file__).parent / "fixtures"


def shard_contents(root: Path) -> dict[str, tuple]:
    """Entry name -> (arrays, lengths, labels) of every shard, read through the manifest."""
    m = json.loads((root / "manifest.json").read_text())
    out = {}
    for e in m["shards"]:
        c = read_shard(root / shard_file(e), sha256=e["sha256"])
        out[e["file"]] = (c.arrays, c.lengths, c.labels)
    return out


def assert_same(before: dict, after: dict) -> None:
    assert before.keys() == after.keys()
    for name, (arrays, lengths, labels) in before.items():
        a2, l2, lab2 = after[name]
        assert np.array_equal(lengths, l2)
        for k, v in arrays.items():
            assert a2[k].dtype == v.dtype and a2[k].shape == v.shape and np.array_equal(a2[k], v), (name, k)
            assert a2[k].flags.c_contiguous
        assert (labels is None) == (lab2 is None)
        if labels is not None:
            assert all(np.array_equal(labels[k], lab2[k]) for k in labels)


@pytest.fixture
def small(tmp_path) -> Path:
    return write_dataset(tmp_path / "toy", make_episodes(np.random.default_rng(1), 30), manifest(), shard_transitions=40)


def test_fresh_shards_store_channel_first_observations_channel_last(small):
    m = json.loads((small / "manifest.json").read_text())
    assert m["schema_version"] == 4 and all(e["codec"] == FRESH.name for e in m["shards"])
    entry = m["shards"][0]
    import zstandard

    raw = zstandard.ZstdDecompressor().stream_reader(io.BytesIO((small / entry["file"]).read_bytes())).read()
    (n,) = struct.unpack("<I", raw[len(MAGIC) : len(MAGIC) + 4])
    header = json.loads(raw[len(MAGIC) + 4 : len(MAGIC) + 4 + n])
    assert header["obs_axes"] == [1, 2, 0] and header["codec"]["level"] == FRESH.level and header["codec"]["ldm"] == FRESH.ldm
    obs = read_shard(small / entry["file"]).arrays["obs"]  # (N, 3, 5, 5), as written
    stored = np.frombuffer(raw[len(MAGIC) + 4 + n :][: obs.size], np.uint8).reshape(len(obs), 5, 5, 3)
    assert np.array_equal(stored, obs.transpose(0, 2, 3, 1))
    # the same episodes give the same bytes (collections stay byte-identical for a config and seed)
    again = write_dataset(small.parent / "again", make_episodes(np.random.default_rng(1), 30), manifest(), shard_transitions=40)
    assert (again / entry["file"]).read_bytes() == (small / entry["file"]).read_bytes()


@pytest.mark.parametrize("workers", [1, 2])
def test_compact_keeps_every_array_and_verify_passes(small, capsys, workers):
    before = shard_contents(small)
    assert len(before) >= 3
    assert main(["datasets", "compact", str(small), "--workers", str(workers)]) == 0
    assert "re-encoded with zstd-19" in capsys.readouterr().out
    m = json.loads((small / "manifest.json").read_text())
    assert all(e["codec"] == ARCHIVE.name and e["stored_as"].endswith(f".{ARCHIVE.name}.zst") for e in m["shards"])
    for e in m["shards"]:
        data = (small / e["stored_as"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == e["sha256"] and len(data) == e["bytes"]
    assert m["counts"]["bytes"] == sum(e["bytes"] for e in m["shards"])
    files = sorted(p.name for p in (small / "shards").iterdir())
    assert files == sorted(Path(e["stored_as"]).name for e in m["shards"])  # the old files are gone
    assert_same(before, shard_contents(small))
    assert load_dataset(small).verify() == []
    assert main(["datasets", "verify", str(small)]) == 0
    # a second run has nothing to do
    assert main(["datasets", "compact", str(small)]) == 0
    assert f"0 shard(s) re-encoded with {ARCHIVE.name}, {len(before)} already were" in capsys.readouterr().out


def test_compact_is_resumable_after_a_kill_between_shards_or_inside_one(small, monkeypatch):
    import rlgen.data.compact as compact

    before = shard_contents(small)
    cache_obs = np.asarray(load_dataset(small).cached_arrays()["obs"]).copy()

    def killed_after_first(done, total):
        raise KeyboardInterrupt  # a kill right after the first shard's manifest update

    with pytest.raises(KeyboardInterrupt):
        compact.compact_dataset(small, workers=1, on_shard=killed_after_first)
    m = json.loads((small / "manifest.json").read_text())
    assert [e.get("codec") == ARCHIVE.name for e in m["shards"]].count(True) == 1
    assert load_dataset(small).verify() == []  # valid, one shard compacted
    assert_same(before, shard_contents(small))

    # a kill after a shard's new file is written, before the manifest points at it
    real = compact.write_bytes_atomic
    monkeypatch.setattr(compact, "write_bytes_atomic", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        compact.compact_dataset(small, workers=1)
    assert json.loads((small / "manifest.json").read_text()) == m  # untouched
    assert load_dataset(small).verify() == []
    monkeypatch.setattr(compact, "write_bytes_atomic", real)

    result = compact.compact_dataset(small, workers=1)
    assert result.compacted == len(before) - 1 and result.skipped == 1 and result.bytes_after < result.bytes_before
    m = json.loads((small / "manifest.json").read_text())
    assert sorted(p.name for p in (small / "shards").iterdir()) == sorted(Path(e["stored_as"]).name for e in m["shards"])
    assert_same(before, shard_contents(small))
    ds = load_dataset(small)
    assert ds.verify() == [] and np.array_equal(np.asarray(ds.cached_arrays()["obs"]), cache_obs)  # the rebuilt cache


def test_compact_reads_and_upgrades_a_schema_1_dataset(tmp_path):
    root = tmp_path / "old"
    shutil.copytree(FIXTURES / "schema1-toy", root)
    before = shard_contents(root)
    assert main(["datasets", "compact", str(root), "--workers", "1"]) == 0
    m = json.loads((root / "manifest.json").read_text())
    assert m["schema_version"] == 4 and "content_sha256" in m
    assert_same(before, shard_contents(root))
    assert main(["datasets", "verify", str(root)]) == 0


def test_compact_bad_input_is_one_line(tmp_path, small, capsys):
    def one_line() -> str:
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "Traceback" not in err, err
        return err

    (tmp_path / "empty").mkdir()
    assert main(["datasets", "compact", str(tmp_path / "empty")]) == 2
    assert "no dataset" in one_line()
    assert main(["datasets", "compact", str(small), "--level", "tiny"]) == 2
    err = one_line()
    assert "'tiny'" in err and "archive" in err and "fresh" in err
    assert main(["datasets", "compact", str(small), "--workers", "0"]) == 2
    assert "--workers" in one_line()
    assert json.loads((small / "manifest.json").read_text())["shards"][0]["codec"] == FRESH.name  # nothing done
    assert main(["datasets", "compact", str(small), "--workers", "1"]) == 0  # the corrected retry
