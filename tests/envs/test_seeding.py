"""No two seeds, segments or envs share a level stream, and every seed a config accepts works on every suite
(review of issue 13, findings 2 and 3).

With ``seed + i`` per env, env 1 of seed 0 replayed env 0 of seed 1: PPO seeds 0 and 1 shared 3 of their 4
envs' level streams, and collection segment k + 1 replayed segment k shifted by one env. Procgen refused
any seed past 2**31 (EnvPool asserts int32), so ``seed=3000`` failed in collection (3000 * 1,000,003).
"""

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from rlgen.cli import main
from rlgen.config import MAX_SEED
from rlgen.data import load_dataset
from rlgen.envs import LevelSplit, make_env

ROOT = Path(__file__).resolve().parents[2]
MANY_LEVELS = LevelSplit.minigrid("empty-5x5", num_levels=1_000_000)  # streams over 10**6 levels: equal draws mean a shared stream


def level_streams(env, reset_seed: int | None, draws: int = 6) -> list[tuple[int, ...]]:
    """Each env's first ``draws`` levels: the reset (as SB3 does it: ``reset(seed=)``), then ``reset_envs`` of all."""
    _, info = env.reset(seed=reset_seed)
    streams = [[int(x)] for x in info["level"]]
    for _ in range(draws - 1):
        _, info = env.reset_envs(np.arange(env.num_envs))
        for i, x in enumerate(info["level"]):
            streams[i].append(int(x))
    env.close()
    return [tuple(s) for s in streams]


@pytest.mark.parametrize("reseed", [False, True], ids=["constructed", "reset(seed=)"])
def test_training_seeds_share_no_env_stream(reseed):
    streams = []
    for seed in range(4):  # 4 seeds of a study, 4 envs each
        streams += level_streams(make_env(MANY_LEVELS, "train", num_envs=4, seed=seed), seed if reseed else None)
    assert len(set(streams)) == len(streams) == 16
    firsts = [s[0] for s in streams]
    assert len(set(firsts)) == 16  # not even one shifted copy


def test_collection_segments_share_no_env_stream(tmp_path):
    """The review's sampled repro: 37 episodes on 14 levels of 200 with segments of 8 episodes and 5 envs. Here
    on 10**6 levels, where independent streams repeat a level with probability below 0.1%."""
    out = tmp_path / "d"
    args = ["collect", str(ROOT / "configs/collect/minigrid_doorkey.yaml"), "env=minigrid/empty-5x5", "split.num_levels=1000000",
            "skill=random", "transitions=null", "episodes=40", "num_envs=5", "segment_episodes=8", "shard_episodes=4",
            "progress=false", "device=cpu", f"out_dir={out}"]  # fmt: skip
    assert main(args) == 0
    levels = load_dataset(out).episodes["level"]
    assert len(levels) == 40 and len(set(levels.tolist())) == 40


def test_procgen_accepts_every_config_seed_and_seeds_share_no_stream():
    split = LevelSplit.procgen("bigfish", num_levels=1_000_000)
    streams = []
    for seed in (0, 1, 3000 * 1_000_003, MAX_SEED):
        env = make_env(split, "train", num_envs=2, seed=seed)
        streams += level_streams(env, seed, draws=3)  # reset(seed=) rebuilds the pool with that seed: SB3's path
    assert len(set(streams)) == len(streams)


def test_procgen_collect_with_a_large_seed(tmp_path):
    """The review's repro: `rlgen collect configs/collect/procgen_coinrun.yaml skill=random seed=3000 ...` gave an
    AssertionError traceback (EnvPool's int32 seed) after writing collect_config.json and segments/."""
    out = tmp_path / "pcs"
    args = ["collect", str(ROOT / "configs/collect/procgen_coinrun.yaml"), "skill=random", "seed=3000", "transitions=100", "num_envs=2",
            "split.options.max_episode_steps=60", "progress=false", "device=cpu", f"out_dir={out}"]  # fmt: skip
    assert main(args) == 0
    assert load_dataset(out).num_transitions >= 100


def test_xland_accepts_wide_seeds_without_collisions():
    if importlib.util.find_spec("xminigrid") is None:
        pytest.skip("needs the jax extra")
    from rlgen.envs import get_suite

    split = get_suite("xland").default_split("MiniGrid-Empty-6x6", num_levels=100_000)
    a = make_env(split, "train", num_envs=3, seed=5)
    b = make_env(split, "train", num_envs=3, seed=5 + 2**32)  # PRNGKey alone keeps the low 32 bits: the same key
    c = make_env(split, "train", num_envs=3, seed=(5, 0))  # a (seed, segment) stream
    firsts = [tuple(e.reset()[1]["level"].tolist()) for e in (a, b, c)]
    assert len(set(firsts)) == 3


def test_bad_seeds_are_one_line_errors():
    from rlgen.errors import SplitError

    for bad in (-1, 2**63, 1.5, "7", True, ()):
        with pytest.raises(SplitError, match="seed"):
            make_env(MANY_LEVELS, "train", num_envs=1, seed=bad)
