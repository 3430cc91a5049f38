"""`rlgen collect`: skill levels from the ladder, resume after SIGKILL byte-identical, refusals."""

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from rlgen.config import CollectConfig, PPOConfig, load_config
from rlgen.data import DatasetError, load_dataset
from rlgen.collect import collect
from rlgen.collect.skills import resolve_skill
from rlgen.errors import RlgenError

ROOT = Path(__file__).resolve().parents[2]
RANDOM = ["env=minigrid/empty-5x5", "split.num_levels=20", "skill=random", "num_envs=4", "progress=false", "device=cpu"]


def config(tmp_path: Path, *extra: str, out: str = "d") -> CollectConfig:
    return load_config(ROOT / "configs/collect/minigrid_doorkey.yaml", [*RANDOM, f"out_dir={tmp_path / out}", *extra], schema=CollectConfig)


def fingerprint(root: Path) -> tuple:
    m = json.loads((root / "manifest.json").read_text())
    return [s["sha256"] for s in m["shards"]], (root / "episodes.jsonl").read_text()


def test_random_collection_keeps_complete_episodes_on_training_levels(tmp_path):
    root = collect(config(tmp_path, "transitions=600", "segment_transitions=300", "shard_transitions=100", "levels=5"))
    ds = load_dataset(root)
    assert ds.num_transitions >= 600 and set(ds.levels) <= set(range(5))
    assert ds.verify() == []
    ends = ds.sample_windows(ds.num_transitions, 1, np.random.default_rng(0))
    assert ds.manifest["collection"]["episodes_kept"].startswith("every episode started")
    # every episode ends terminated or truncated, and nowhere before its end
    b = ds.cache()
    arrays = {k: np.load(b / f"{k}.npy") for k in ("terminated", "truncated")}
    ends = np.flatnonzero(arrays["terminated"] | arrays["truncated"])
    assert len(ends) == ds.num_episodes
    assert ds.manifest["policies"] == [{"label": "random"}] and set(ds.episodes["policy"]) == {"random"}


def test_same_config_twice_is_a_no_op_and_another_config_is_refused(tmp_path):
    cfg = config(tmp_path, "transitions=200")
    root = collect(cfg)
    before = fingerprint(root)
    assert collect(cfg) == root and fingerprint(root) == before
    with pytest.raises(DatasetError, match="different config \\(differs in: transitions\\)"):
        collect(config(tmp_path, "transitions=400"))


def test_episodes_target(tmp_path):
    ds = load_dataset(collect(config(tmp_path, "transitions=null", "episodes=7", "segment_episodes=3", "shard_episodes=2")))
    assert ds.num_episodes == 7


@pytest.mark.parametrize("kill_after", [0.3, 1.0, 1.7])
def test_sigkill_at_any_point_then_resume_ends_byte_identical(tmp_path, kill_after):
    args = [*RANDOM, "transitions=20000", "segment_transitions=4000", "shard_transitions=500"]
    reference = collect(config(tmp_path, *args[len(RANDOM):], out="ref"))
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "rlgen.cli", "collect", str(ROOT / "configs/collect/minigrid_doorkey.yaml"), *args, f"out_dir={out}"]
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 60
    while not (out / "collect_config.json").exists() and time.time() < deadline and p.poll() is None:
        time.sleep(0.02)
    time.sleep(kill_after)
    p.kill()
    p.wait()
    assert not (out / "manifest.json").exists(), "the kill came after the collection finished; nothing was tested"
    if out.exists() and not (out / "manifest.json").exists():
        for shard in (out / "shards").glob("*.zst"):  # whatever finished is readable
            from rlgen.data.format import decode_shard

            decode_shard(shard)
    assert subprocess.run(cmd, capture_output=True).returncode == 0
    assert fingerprint(out) == fingerprint(reference)
    assert load_dataset(out).verify() == []


def test_resolve_skill_reads_the_ladder(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    rungs = [{"step": s, "checkpoint": f"ladder/step_{s}.zip", "mean_return": r} for s, r in [(100, 0.1), (200, 0.45), (300, 0.6), (400, 1.0)]]
    (run / "ladder.json").write_text(json.dumps({"rungs": rungs}))
    base = ["env=minigrid/empty-5x5", f"policy_run={run}"]

    def skill(*extra):
        return resolve_skill(load_config(ROOT / "configs/collect/minigrid_doorkey.yaml", [*base, *extra], schema=CollectConfig))

    assert [p["step"] for p in skill("skill=expert")] == [400]
    assert [p["step"] for p in skill("skill=medium")] == [200]  # 0.45 is nearest 0.5 * 1.0
    assert [p["step"] for p in skill("skill=medium", "medium_fraction=0.65")] == [300]
    assert [p["label"] for p in skill("skill=mixed")] == ["expert", "medium"]
    (run / "ladder.json").write_text(json.dumps({"rungs": rungs[-1:]}))
    with pytest.raises(RlgenError, match="single ladder rung"):
        skill("skill=mixed")
    with pytest.raises(RlgenError, match="is not a directory"):
        resolve_skill(load_config(ROOT / "configs/collect/minigrid_doorkey.yaml", ["env=minigrid/empty-5x5", f"policy_run={tmp_path / 'nope'}"], schema=CollectConfig))


def test_mixed_collection_from_a_ppo_run(tmp_path):
    from rlgen.agents.ppo_sb3 import train_ppo

    tiny = ["env=minigrid/empty-5x5", "num_envs=4", "split.num_levels=10", "ppo.n_steps=32", "ppo.num_minibatches=2", "ppo.n_epochs=1",
            "ladder.every_steps=128", "ladder.episodes=4", "checkpoint_every=128", "eval_num_envs=4", "progress=false", "device=cpu",
            "total_steps=256", f"out_dir={tmp_path / 'run'}"]  # fmt: skip
    run = train_ppo(load_config(ROOT / "configs/ppo/minigrid_doorkey.yaml", tiny, schema=PPOConfig))
    cfg = load_config(ROOT / "configs/collect/minigrid_doorkey.yaml", [
        "env=minigrid/empty-5x5", "split.num_levels=10", f"policy_run={run}", "skill=mixed", "transitions=400", "num_envs=4",
        "progress=false", "device=cpu", f"out_dir={tmp_path / 'mixed'}"], schema=CollectConfig)  # fmt: skip
    ds = load_dataset(collect(cfg))
    policies = {p["label"]: p for p in ds.manifest["policies"]}
    assert policies["expert"]["step"] == 256 and policies["medium"]["step"] == 128
    assert set(ds.episodes["policy"]) <= {"expert", "medium"} and len(ds.episodes) > 1
    assert set(ds.manifest["returns_by_policy"]) == set(ds.episodes["policy"])


def test_collect_config_errors(tmp_path):
    from rlgen.errors import ConfigError

    with pytest.raises(ConfigError, match="skill=expert needs policy_run"):
        load_config(ROOT / "configs/collect/minigrid_doorkey.yaml", ["policy_run=null"], schema=CollectConfig)
    with pytest.raises(ConfigError, match="skill"):
        load_config(ROOT / "configs/collect/minigrid_doorkey.yaml", ["skill=great"], schema=CollectConfig)
