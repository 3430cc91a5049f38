"""Review of issue 16 item 8 and issue 18 part 6 (branch review16a): schema 4 shards, ``rlgen datasets compact``,
``rlgen enjoy`` and the report's learning curves, attacked as a user, a reviewer and an attacker would.
Each test is a defect found in the review; the ones not fixed here are ``xfail(strict=True)`` with the reason."""

import json
import os
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from rlgen.data import load_dataset
from rlgen.data.codec import ARCHIVE, FRESH
from rlgen.data.compact import compact_dataset
from rlgen.data.format import MAGIC, read_shard, write_shard_file
from rlgen.errors import DatasetError
from tests.data.conftest import make_episodes, manifest
from tests.review.conftest import edit_manifest

REPO = Path(__file__).resolve().parents[2]


def test_compact_never_deletes_a_file_outside_the_dataset_that_a_crafted_file_entry_names(tmp_path, small):
    """A dataset someone sent: an entry's ``file`` (not checked like ``stored_as``) names a file outside the
    dataset; compaction's clean-up of "old encodings" deleted it (compact.py ``_stale_files``)."""
    victim = tmp_path / "victim.zst"
    victim.write_bytes(b"precious")
    compact_dataset(small, workers=1)
    edit_manifest(small, lambda m: m["shards"][0].update(file="../victim.zst"))
    with pytest.raises(DatasetError, match="outside"):
        compact_dataset(small, workers=1)
    assert victim.read_bytes() == b"precious"
    absolute = tmp_path / "absolute.zst"
    absolute.write_bytes(b"precious too")
    edit_manifest(small, lambda m: m["shards"][0].update(file=str(absolute)))
    with pytest.raises(DatasetError, match="outside"):
        compact_dataset(small, workers=1)
    assert absolute.read_bytes() == b"precious too"


def test_compact_cleanup_never_deletes_a_file_another_entry_still_uses(small):
    """Stale-file clean-up removes an entry's other encodings; never one that an entry of the manifest reads."""
    compact_dataset(small, workers=1)
    m = json.loads((small / "manifest.json").read_text())
    used = m["shards"][1]["stored_as"]
    # entry 0's "old" name is the file entry 1 is stored as (a crafted or hand-merged manifest)
    edit_manifest(small, lambda m: m["shards"][0].update(file=used))
    try:
        compact_dataset(small, workers=1)
    except DatasetError:
        pass  # refusing such a manifest is fine too
    assert (small / used).is_file()


def test_read_shard_reports_the_codec_name_the_manifest_records():
    """``ShardContent.codec`` is documented as ``Codec.name`` (``zstd-3-ldm27``), but read the header's generic
    ``"zstd"``; a collection resumed after a kill records that in the manifest for the shards it reuses
    (rlgen/collect/rollout.py ``_existing_shard``), so entries of one dataset disagree and ``compact --level
    fresh`` re-encodes shards that already are fresh."""
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        for codec in (FRESH, ARCHIVE):
            path = Path(d) / f"{codec.name}.zst"
            info = write_shard_file(path, make_episodes(np.random.default_rng(0), 3), [0, 1, 2], codec=codec)
            assert read_shard(path).codec == info["codec"] == codec.name


def test_a_shard_header_declaring_a_huge_array_is_one_dataset_error_not_a_memory_error(tmp_path):
    """A crafted (or corrupt-but-rehashed) shard whose header declares a 64 GiB array made the reader ask
    zstandard for the whole size at once: ``MemoryError`` with a traceback (or a huge allocation)."""
    import zstandard

    header = json.dumps({"lengths": [1], "arrays": [{"name": "obs", "dtype": "|u1", "shape": [2**36]}]}).encode()
    data = zstandard.ZstdCompressor(write_checksum=True).compress(MAGIC + struct.pack("<I", len(header)) + header + b"x" * 100)
    (tmp_path / "huge.zst").write_bytes(data)
    with pytest.raises(DatasetError, match="truncated"):
        read_shard(tmp_path / "huge.zst", frame_checksum=True)


_KILLED_COMPACT = """
import multiprocessing, os, signal, sys
from rlgen.data.compact import compact_dataset
def on_shard(done, total):
    with open(sys.argv[2], "w") as f:
        f.write(" ".join(str(p.pid) for p in multiprocessing.active_children()))
    os.kill(os.getpid(), signal.SIGKILL)  # kill -9 (or the OOM killer) of the command, its workers busy
compact_dataset(sys.argv[1], workers=2, on_shard=on_shard)
"""


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[-1][0] != "Z"  # a zombie has exited
    except FileNotFoundError:
        return False


def test_a_sigkilled_compaction_does_not_block_its_retry(tmp_path, small):
    """kill -9 of ``rlgen datasets compact`` left its forked pool workers alive, holding the inherited lock
    file descriptor: every retry said "another `rlgen datasets compact` is running" until the user found and
    killed the orphans (they wait on their job queue forever). The workers must go, and the lock with them."""
    pids_file = tmp_path / "workers.txt"
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", _KILLED_COMPACT, str(small), str(pids_file)], env=env, timeout=120)
    assert proc.returncode == -signal.SIGKILL
    workers = [int(p) for p in pids_file.read_text().split()]
    try:
        deadline = time.monotonic() + 20
        while True:  # the workers may finish the job in hand; then they must go, and the lock with them
            try:
                result = compact_dataset(small, workers=1)
                break
            except DatasetError as e:
                if "another" not in str(e) or time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        assert result.compacted + result.skipped == len(json.loads((small / "manifest.json").read_text())["shards"])
        assert load_dataset(small).verify() == []
        deadline = time.monotonic() + 10
        while any(_alive(pid) for pid in workers) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not [pid for pid in workers if _alive(pid)], "the killed command's workers outlived it"
    finally:
        for pid in workers:  # orphans of the old code: end them by their id
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def test_a_dataset_opened_before_a_compaction_still_builds_its_cache(small):
    """Concurrent compact + training: ``rlgen train`` loads the dataset, a compaction finishes (old shard files
    removed), then training builds its cache from the manifest it loaded: 'shard ... is missing'. Training
    that had its cache built already is unaffected (memory-mapped), and a retry works."""
    episodes = make_episodes(np.random.default_rng(1), 30)
    ds = load_dataset(small)
    compact_dataset(small, workers=1)
    obs = np.asarray(ds.cached_arrays()["obs"])  # before the fix: DatasetError "shard ... is missing"
    assert np.array_equal(obs, np.concatenate([e.obs for e in episodes]))
    assert load_dataset(small).cache_key() == ds.cache_key()  # built under the compacted manifest's key: no second rebuild


def test_enjoy_a_level_id_too_large_is_one_line_before_the_agent_loads(tmp_path, capsys):
    """``rlgen enjoy RUN --levels 1000000000000000000000000000000`` loaded the agent, then died in numpy
    (``OverflowError: Python int too large to convert to C long``, a traceback)."""
    from rlgen.cli import main

    assert main(["enjoy", str(tmp_path / "no-run"), "--levels", "250," + "1" * 31, "--out", str(tmp_path / "c.gif")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err and "1" * 31 in err and "2,147,483,646" in err, err
    assert not (tmp_path / "c.gif").exists()


def test_a_saved_subset_still_loads_after_its_parent_is_compacted(small, tmp_path):
    """Subsets are first-class (design.md, Datasets): one saved before ``rlgen datasets compact`` of its parent
    is refused after it, 'saved from another version of its parent ... the parent was collected again or
    changed', though compaction keeps every array bit for bit and leaves ``episodes.jsonl`` untouched."""
    sub = load_dataset(small).subset(levels=3, seed=0).save_subset(tmp_path / "sub")
    before = np.asarray(load_dataset(sub).cached_arrays()["obs"]).copy()
    compact_dataset(small, workers=1)
    assert np.array_equal(np.asarray(load_dataset(sub).cached_arrays()["obs"]), before)
