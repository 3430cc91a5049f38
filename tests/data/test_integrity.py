"""Corrupt data is never trained on (issue 13, items 2 and 3): shard checksums on the training path,
zstd frame checksums, a cache that checks itself and is rebuilt, schema 1 datasets still readable."""

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest

from rlgen.cli import main
from rlgen.data import DatasetError, load_dataset, write_dataset
from rlgen.data.format import decode_shard

from .conftest import make_episodes, manifest

ROOT = Path(__file__).resolve().parents[2]
SCHEMA1 = Path(__file__).parent / "fixtures" / "schema1-toy"  # written by rlgen at e90b226 (before frame checksums)


def same_episodes_other_pixels(path: Path) -> Path:
    """The fixture's episodes (same lengths, actions, rewards) with other observations: only a checksum tells them apart."""
    episodes = make_episodes(np.random.default_rng(0), 60)
    for e in episodes:
        e.obs[:, 2] ^= 0x55
    return write_dataset(path, episodes, manifest(), shard_transitions=100)


def shard_files(root: Path) -> list[Path]:
    return [root / s["file"] for s in json.loads((root / "manifest.json").read_text())["shards"]]


def test_a_shard_copied_from_another_dataset_is_refused_by_training(dataset_dir, tmp_path, capsys):
    """The issue's probe: same-size shard from another dataset; verify saw it, `rlgen train` trained on it."""
    other = same_episodes_other_pixels(tmp_path / "other")
    victim, donor = shard_files(dataset_dir)[1], shard_files(other)[1]
    shutil.copy(donor, victim)  # a valid shard holding the episodes episodes.jsonl names: only its sha256 differs
    args = ["train", str(ROOT / "configs/offline/bc.yaml"), f"dataset={dataset_dir}", "steps=2", "batch_size=8", "eval.enabled=false",
            "network=minigrid_cnn", "device=cpu", "progress=false", f"out_dir={tmp_path / 'run'}"]  # fmt: skip
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and victim.name in err and "sha256 differs" in err
    assert main(["datasets", "verify", str(dataset_dir)]) == 1


def test_single_bit_flips_in_a_shard_never_decode_to_other_data(dataset_dir):
    """Without zstd's frame checksum 13 of 54 single-bit flips decoded silently (the issue's probe)."""
    shard = shard_files(dataset_dir)[0]
    good = shard.read_bytes()
    reference, _ = decode_shard(shard)
    rng = np.random.default_rng(0)
    silent = 0
    for pos in rng.choice(len(good), size=54, replace=False):
        bad = bytearray(good)
        bad[pos] ^= 1 << int(rng.integers(0, 8))
        shard.write_bytes(bytes(bad))
        try:
            arrays, _ = decode_shard(shard)  # no sha256 given: the frame checksum alone must catch it
        except DatasetError:
            continue
        silent += not all(np.array_equal(arrays[k], reference[k]) for k in reference)
    assert silent == 0


def test_schema_1_datasets_stay_readable(tmp_path):
    root = shutil.copytree(SCHEMA1, tmp_path / "old")
    ds = load_dataset(root)
    assert ds.manifest["schema_version"] == 1 and ds.num_episodes == 8
    assert ds.verify() == []
    assert ds.sample_transitions(16, np.random.default_rng(0))["obs"].shape == (16, 3, 5, 5)
    assert main(["datasets", "verify", str(root)]) == 0


def batches(root: Path) -> dict:
    ds = load_dataset(root)
    out = {f"t_{k}": np.asarray(v) for k, v in ds.sample_transitions(64, np.random.default_rng(1)).items()}
    out.update({f"w_{k}": np.asarray(v) for k, v in ds.sample_windows(16, 4, np.random.default_rng(2)).items()})
    return out


@pytest.mark.parametrize("damage", ["flip_obs", "flip_actions", "truncate_obs", "actions_out_of_range", "replace_obs_from_other"])
def test_a_damaged_cache_is_caught_on_open_and_rebuilt(dataset_dir, tmp_path, caplog, damage):
    reference = batches(dataset_dir)
    cache = dataset_dir / "cache"
    obs, actions = cache / "obs.npy", cache / "actions.npy"
    if damage == "flip_obs":
        data = bytearray(obs.read_bytes())
        data[len(data) // 2] ^= 0xFF
        obs.write_bytes(bytes(data))
    elif damage == "flip_actions":
        data = bytearray(actions.read_bytes())
        data[-3] ^= 0x01
        actions.write_bytes(bytes(data))
    elif damage == "truncate_obs":
        obs.write_bytes(obs.read_bytes()[:-100])
    elif damage == "actions_out_of_range":  # what gave an IndexError traceback
        a = np.load(actions)
        a[::7] = 10**6
        np.save(actions, a)
    else:
        other = same_episodes_other_pixels(tmp_path / "other")
        shutil.copy(load_dataset(other).cache() / "obs.npy", obs)  # same size and header, other pixels
    problems = load_dataset(dataset_dir).verify()
    assert len(problems) == 1 and "cache" in problems[0], problems
    with caplog.at_level(logging.WARNING, logger="rlgen"):
        again = batches(dataset_dir)
    assert any("rebuilding the cache" in r.getMessage() for r in caplog.records)
    for k in reference:
        np.testing.assert_array_equal(again[k], reference[k])
    assert load_dataset(dataset_dir).verify() == []
