"""Reading: transition and window sampling line up with the stored episodes; subsets; the cache."""

import json
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest

from rlgen.data import DatasetError, load_dataset, write_dataset
from tests.data.conftest import make_episodes, manifest


def test_transitions_pair_each_observation_with_its_successor(dataset_dir, episodes, rng):
    ds = load_dataset(dataset_dir)
    b = ds.sample_transitions(512, rng)
    assert b["obs"].shape == (512, 3, 5, 5) and b["actions"].dtype == np.int64 and b["rewards"].dtype == np.float32
    ep = b["obs"][:, 0, 0, 0].astype(int)
    t = b["obs"][:, 1, 0, 0].astype(int)
    np.testing.assert_array_equal(b["next_obs"][:, 0, 0, 0], ep)  # same episode
    np.testing.assert_array_equal(b["next_obs"][:, 1, 0, 0], t + 1)  # next step
    for i in range(512):
        e = episodes[ep[i]]
        assert b["actions"][i] == e.actions[t[i]] and b["rewards"][i] == e.rewards[t[i]]
        assert b["terminated"][i] == e.terminated[t[i]] and b["truncated"][i] == e.truncated[t[i]]


def test_windows_are_left_padded_with_returns_to_go(dataset_dir, episodes, rng):
    ds = load_dataset(dataset_dir)
    w = ds.sample_windows(256, 5, rng)
    assert w["obs"].shape == (256, 5, 3, 5, 5) and w["mask"].dtype == bool
    for i in range(256):
        m = w["mask"][i]
        real = np.flatnonzero(m)
        assert real[-1] == 4 and np.all(np.diff(real) == 1)  # padding only on the left
        assert not w["obs"][i][~m].any() and not w["actions"][i][~m].any()
        e = episodes[int(w["obs"][i, 4, 0, 0, 0])]
        steps = w["timesteps"][i][m]
        assert np.all(np.diff(steps) == 1) and (len(real) == 5 or steps[0] == 0)
        np.testing.assert_array_equal(w["obs"][i][m][:, 1, 0, 0], steps)
        np.testing.assert_array_equal(w["actions"][i][m], e.actions[steps])
        rtg = np.array([e.rewards[s:].sum() for s in steps])
        np.testing.assert_allclose(w["returns_to_go"][i][m], rtg, rtol=1e-5)


def test_sampling_is_reproducible_from_the_generator(dataset_dir):
    ds = load_dataset(dataset_dir)
    a = ds.sample_transitions(64, np.random.default_rng(3))
    b = ds.sample_transitions(64, np.random.default_rng(3))
    np.testing.assert_array_equal(a["obs"], b["obs"])


def test_subsets_by_levels_and_size_are_random_views(dataset_dir):
    ds = load_dataset(dataset_dir)
    sub = ds.subset(levels=3, transitions=60, seed=1)
    assert len(sub.levels) <= 3 and set(sub.levels) <= set(ds.levels)
    assert sub.num_transitions >= 60 and sub.num_transitions - int(sub.episodes["length"].max()) < 60
    again = ds.subset(levels=3, transitions=60, seed=1)
    np.testing.assert_array_equal(sub.episodes["id"], again.episodes["id"])
    # drawn at random, not by return: half the episodes have return ~1, half ~0.1
    returns = np.concatenate([ds.subset(episodes=10, seed=s).episodes["return"] for s in range(20)])
    assert 0.3 < np.mean(returns > 0.5) < 0.7
    # sampling from the view only yields its episodes
    b = sub.sample_transitions(300, np.random.default_rng(0))
    assert set(b["obs"][:, 0, 0, 0].tolist()) <= set((sub.episodes["id"] % 256).tolist())


def test_subset_errors_name_what_is_there(dataset_dir):
    ds = load_dataset(dataset_dir)
    with pytest.raises(DatasetError, match="levels=50: .* has episodes on 10 levels"):
        ds.subset(levels=50)
    with pytest.raises(DatasetError, match="only .* transitions to choose from"):
        ds.subset(transitions=10**6)
    with pytest.raises(DatasetError, match="skill 'medium' is not in toy; it has: expert"):
        ds.subset(skill="medium")


def test_saved_subset_points_at_the_parent_shards(dataset_dir, tmp_path):
    ds = load_dataset(dataset_dir)
    sub = ds.subset(levels=[1, 2], seed=0)
    path = sub.save_subset(tmp_path / "sub")
    assert not (path / "shards").exists()
    again = load_dataset(path)
    assert again.manifest["kind"] == "subset" and set(again.levels) == {1, 2}
    np.testing.assert_array_equal(again.episodes["id"], sub.episodes["id"])
    assert again.verify() == []
    b = again.sample_transitions(50, np.random.default_rng(0))
    assert set((b["obs"][:, 0, 0, 0] % 10).tolist()) <= {1, 2}  # episode i is on level i % 10


def test_cache_is_built_once_and_rebuilt_when_shards_change(dataset_dir, tmp_path):
    from rlgen.data import write_dataset

    from .conftest import make_episodes, manifest

    ds = load_dataset(dataset_dir)
    path = ds.cache()
    meta = json.loads((path / "meta.json").read_text())
    mtime = (path / "obs.npy").stat().st_mtime_ns
    load_dataset(dataset_dir).cache()
    assert (path / "obs.npy").stat().st_mtime_ns == mtime
    # the dataset is rewritten with other episodes (a new collection into the same directory): the old cache is stale
    other = write_dataset(tmp_path / "other", make_episodes(np.random.default_rng(7), 60), manifest(), shard_transitions=100)
    shutil.rmtree(dataset_dir / "shards")
    shutil.copytree(other / "shards", dataset_dir / "shards")
    for name in ("episodes.jsonl", "manifest.json"):
        shutil.copy(other / name, dataset_dir / name)
    again = load_dataset(dataset_dir)
    again.cache()
    assert json.loads((path / "meta.json").read_text())["key"]["shards"] != meta["key"]["shards"]
    np.testing.assert_array_equal(np.load(path / "obs.npy"), np.load(load_dataset(other).cache() / "obs.npy"))


# Each user process logs its builds, waits for the "go" file, then samples. The build is slowed down
# so that every process checks the cache while the first build is still running.
CACHE_USER = """
import sys, time
from pathlib import Path
import numpy as np
from rlgen.data import load_dataset
from rlgen.data.dataset import Dataset

root, log, go, seed = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4])
original = Dataset._build_cache

def slow_build(self, path, hashes):
    with open(log, "a") as f:
        f.write(f"{seed}\\n")
    time.sleep(0.5)
    original(self, path, hashes)

Dataset._build_cache = slow_build
ds = load_dataset(root)
while not go.exists():
    time.sleep(0.01)
assert ds.sample_transitions(8, np.random.default_rng(seed))["obs"].shape == (8, 3, 5, 5)
"""


def test_concurrent_users_build_the_cache_once_and_all_read_it(dataset_dir, tmp_path):
    """A sweep starts several agents on one dataset at once: one builds, the others wait and read it."""
    log, go = tmp_path / "builds.log", tmp_path / "go"
    users = [subprocess.Popen([sys.executable, "-c", CACHE_USER, str(dataset_dir), str(log), str(go), str(i)], stderr=subprocess.PIPE, text=True)
             for i in range(4)]  # fmt: skip
    time.sleep(1.0)  # let them import and open the dataset
    go.touch()
    errors = [u.communicate(timeout=120)[1] for u in users]
    assert [u.returncode for u in users] == [0, 0, 0, 0], errors
    assert len(log.read_text().split()) == 1  # built once


def test_a_killed_cache_build_leaves_nothing_behind(dataset_dir):
    leftover = dataset_dir / "cache.tmp-0badf00d"  # what a build killed before its rename leaves
    leftover.mkdir()
    (leftover / "obs.npy").write_bytes(b"partial")
    load_dataset(dataset_dir).cache()
    assert not leftover.exists()
    assert sorted(p.name for p in dataset_dir.glob("cache*")) == ["cache", "cache.lock"]


def test_to_device_cpu_gives_tensors(dataset_dir):
    import torch

    ds = load_dataset(dataset_dir)
    assert ds.to_device("cpu")
    b = ds.sample_transitions(8, np.random.default_rng(0))
    assert isinstance(b["obs"], torch.Tensor) and b["obs"].shape == (8, 3, 5, 5)
    np.testing.assert_array_equal(b["next_obs"][:, 1, 0, 0].numpy(), b["obs"][:, 1, 0, 0].numpy() + 1)
    w = ds.sample_windows(4, 3, np.random.default_rng(0))
    assert w["obs"].shape == (4, 3, 3, 5, 5) and w["mask"].dtype == torch.bool


def test_a_saved_subset_states_its_own_returns_not_its_parents(tmp_path):
    """A subset's manifest said its parent's mean return, returns by policy and return_vs_expert (review of issue
    15: "the 7279 expert episodes of this dataset" in a subset of 746 episodes)."""
    rng = np.random.default_rng(3)
    eps = make_episodes(rng, 40, levels=8, policy="expert") + make_episodes(rng, 40, levels=8, policy="medium")
    parent_stats = {"mean_return": 123.0, "returns_by_policy": {"expert": {"episodes": 40, "mean_return": 9.0}},
                    "return_vs_expert": {"mean_return": 123.0, "expert_return": 9.0, "expert_return_from": "the 40 expert episodes of this dataset",
                                         "fraction": 13.7, "target_fraction": 0.75}}  # fmt: skip
    root = write_dataset(tmp_path / "mixed", eps, manifest(skill="mixed", **parent_stats), shard_transitions=100)
    sub = load_dataset(load_dataset(root).subset(episodes=20, seed=1).save_subset(tmp_path / "sub"))
    rows = [json.loads(line) for line in (sub.root / "episodes.jsonl").read_text().splitlines()]
    assert len(rows) == 20
    m = sub.manifest
    assert m["mean_return"] == pytest.approx(np.mean([r["return"] for r in rows]))
    for label in ("expert", "medium"):
        mine = [r["return"] for r in rows if r["policy"] == label]
        assert m["returns_by_policy"][label] == {"episodes": len(mine), "mean_return": pytest.approx(np.mean(mine))}
    vs = m["return_vs_expert"]
    expert = np.mean([r["return"] for r in rows if r["policy"] == "expert"])
    assert vs["expert_return"] == pytest.approx(expert) and vs["fraction"] == pytest.approx(m["mean_return"] / expert)
    assert vs["expert_return_from"] == f"the {m['returns_by_policy']['expert']['episodes']} expert episodes of this subset"
    assert vs["target_fraction"] == 0.75
