"""Edits that keep every checksum consistent are still caught (review of issue 13, findings 4 and 15): a saved
subset is bound to its parent's digest and rows; shard headers tie episodes to their ids, levels and policy
labels; the cache is bound to the dataset's digest and counts, and `verify` re-derives it from the shards."""

import hashlib
import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest

from rlgen.cli import main
from rlgen.data import DatasetError, load_dataset, write_dataset
from rlgen.data.format import with_digest

from .conftest import make_episodes, manifest


def rehash_index(root: Path, edit) -> None:
    """Edit episodes.jsonl rows with ``edit(rows)`` and recompute every digest that covers them, as a tool would."""
    rows = [json.loads(line) for line in (root / "episodes.jsonl").read_text().splitlines()]
    edit(rows)
    (root / "episodes.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    m = json.loads((root / "manifest.json").read_text())
    m["episodes_sha256"] = hashlib.sha256((root / "episodes.jsonl").read_bytes()).hexdigest()
    (root / "manifest.json").write_text(json.dumps(with_digest(m)))


def verify_fails(root: Path, capsys, needle: str) -> None:
    assert main(["datasets", "verify", str(root)]) in (1, 2)
    out = capsys.readouterr()
    text = out.out + out.err
    assert "Traceback" not in text and needle in text, text


# --- finding 4: a subset is bound to the parent it was saved from ------------------------------------------


def test_a_subset_refuses_a_parent_collected_again(tmp_path, capsys):
    """The review's repro: levels [94, 170, 167] of a parent; the parent replaced by another collection; the
    subset then loaded 1,080 transitions on levels [16, 68, 137] and verify said OK."""
    parent = write_dataset(tmp_path / "parent", make_episodes(np.random.default_rng(0), 60), manifest(), shard_transitions=100)
    load_dataset(parent).subset(levels=[1, 2, 3], seed=0).save_subset(tmp_path / "sub")
    shutil.rmtree(parent)
    write_dataset(parent, make_episodes(np.random.default_rng(1), 70, levels=13), manifest(), shard_transitions=100)
    with pytest.raises(DatasetError, match="saved from another version of its parent"):
        load_dataset(tmp_path / "sub")
    verify_fails(tmp_path / "sub", capsys, "another version of its parent")


def test_a_subset_without_a_parent_digest_still_checks_its_rows(tmp_path):
    parent = write_dataset(tmp_path / "parent", make_episodes(np.random.default_rng(0), 60), manifest(), shard_transitions=100)
    sub = load_dataset(parent).subset(levels=[1, 2, 3], seed=0).save_subset(tmp_path / "sub")
    m = json.loads((sub / "manifest.json").read_text())
    m.pop("parent_content_sha256", None)  # as saved before the parent digest was recorded
    (sub / "manifest.json").write_text(json.dumps(with_digest(m)))
    assert set(load_dataset(sub).levels) == {1, 2, 3}
    rehash_index(parent, lambda rows: [r.update(level=99) for r in rows if r["level"] == 2])
    with pytest.raises(DatasetError, match="has level 2 in the subset but 99 in its parent"):
        load_dataset(sub)


# --- finding 15: labels in shard headers ----------------------------------------------------------------


def test_relabelled_levels_and_policies_are_caught_by_verify_and_training(dataset_dir, tmp_path, capsys):
    work = tmp_path / "relabelled"
    shutil.copytree(dataset_dir, work)
    rehash_index(work, lambda rows: [r.update(level=(r["level"] + 1) % 10) for r in rows])
    verify_fails(work, capsys, "levels in its header differ from episodes.jsonl")
    with pytest.raises(DatasetError, match="levels in its header differ"):
        load_dataset(work).sample_transitions(4)  # the training path builds the cache: refused
    shutil.rmtree(work)
    shutil.copytree(dataset_dir, work)
    rehash_index(work, lambda rows: [r.update(policy="medium") for r in rows[:3]])
    verify_fails(work, capsys, "policies in its header differ")


def test_swapped_shards_with_equal_lengths_and_returns_are_caught(tmp_path, capsys):
    """Two shards of equal (length, return) episodes but other pixels, swapped with their manifest entries."""
    episodes = make_episodes(np.random.default_rng(0), 8)
    twins = [e for e in episodes[:4]] + [type(e)(e.obs ^ 0x0F, e.actions, e.rewards, e.terminated, e.truncated, e.level, e.policy)
                                          for e in episodes[:4]]  # fmt: skip
    root = write_dataset(tmp_path / "twins", twins, manifest(), shard_transitions=1)  # one episode per shard
    m = json.loads((root / "manifest.json").read_text())
    a, b = m["shards"][0], m["shards"][4]
    (root / a["file"]).rename(root / "swap")
    (root / b["file"]).rename(root / a["file"])
    (root / "swap").rename(root / b["file"])
    a["sha256"], b["sha256"], a["bytes"], b["bytes"] = b["sha256"], a["sha256"], b["bytes"], a["bytes"]
    (root / "manifest.json").write_text(json.dumps(with_digest(m)))
    verify_fails(root, capsys, "ids in its header differ")
    with pytest.raises(DatasetError, match="ids in its header differ"):
        load_dataset(root).sample_transitions(4)


# --- finding 15: the cache is bound to the dataset and re-derived by verify --------------------------------


def forge_cache(root: Path, edit) -> None:
    """``edit(cache_dir)`` the arrays, then rewrite meta.json's sha256s (and its own digest) to match."""
    from rlgen.data.cache import _meta_digest, file_sha256

    cache = root / "cache"
    edit(cache)
    meta = json.loads((cache / "meta.json").read_text())
    meta.pop("meta_sha256")
    for name, rec in meta["arrays"].items():
        rec["sha256"] = file_sha256(cache / f"{name}.npy")
        rec["bytes"] = (cache / f"{name}.npy").stat().st_size
    (cache / "meta.json").write_text(json.dumps({**meta, "meta_sha256": _meta_digest(meta)}))


def test_a_forged_cache_passes_its_checksums_but_not_verify(dataset_dir, capsys):
    load_dataset(dataset_dir).cache()

    def edit(cache: Path) -> None:
        obs = np.load(cache / "obs.npy", mmap_mode="r+")
        obs[5] ^= 0xFF
        obs.flush()

    forge_cache(dataset_dir, edit)
    verify_fails(dataset_dir, capsys, "obs.npy differs from what the shards hold")


def test_a_foreign_cache_under_this_datasets_key_is_rebuilt_not_an_index_error(dataset_dir, tmp_path, caplog):
    """A cache built for a dataset with other episode counts, relabelled with this dataset's key: its
    ep_step_start is too short, which gave an IndexError traceback when sampling."""
    ds = load_dataset(dataset_dir)
    reference = ds.sample_transitions(32, np.random.default_rng(0))
    other = write_dataset(tmp_path / "other", make_episodes(np.random.default_rng(5), 20), manifest(), shard_transitions=100)
    load_dataset(other).cache()
    key = json.loads((dataset_dir / "cache" / "meta.json").read_text())["key"]
    shutil.rmtree(dataset_dir / "cache")
    shutil.copytree(other / "cache", dataset_dir / "cache")

    def relabel(cache: Path) -> None:
        meta = json.loads((cache / "meta.json").read_text())
        meta["key"] = key
        (cache / "meta.json").write_text(json.dumps(meta))

    forge_cache(dataset_dir, relabel)
    with caplog.at_level(logging.WARNING, logger="rlgen"):
        again = load_dataset(dataset_dir).sample_transitions(32, np.random.default_rng(0))
    assert any("ep_step_start.npy" in r.getMessage() or "obs.npy" in r.getMessage() for r in caplog.records)
    for k in reference:
        np.testing.assert_array_equal(again[k], reference[k])


def test_verify_on_an_intact_dataset_and_cache_is_clean(dataset_dir, capsys):
    load_dataset(dataset_dir).cache()
    assert main(["datasets", "verify", str(dataset_dir)]) == 0
    assert "OK" in capsys.readouterr().out
