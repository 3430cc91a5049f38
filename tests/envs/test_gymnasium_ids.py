"""Gymnasium ids (issue 16, item 6): ``gymnasium.make("rlgen/<suite>-<env>-<which>-v0")`` and ``make_vec`` give
envs on the named level set, with the level streams of ``rlgen.envs.make_env`` for the reset seed."""

import subprocess
import sys

import gymnasium as gym
import numpy as np
import pytest

import rlgen.envs  # noqa: F401 - registers the ids
from rlgen.envs import LevelSplit, gym_id, make_env
from rlgen.errors import SplitError


def test_ids_follow_the_documented_scheme_and_are_registered():
    assert gym_id("minigrid", "doorkey-6x6", "held_out") == "rlgen/minigrid-doorkey-6x6-heldout-v0"
    for which in ("train", "validation", "heldout"):
        assert f"rlgen/minigrid-doorkey-6x6-{which}-v0" in gym.registry
        assert f"rlgen/procgen-coinrun-{which}-v0" in gym.registry
    with pytest.raises(SplitError, match="test"):
        gym_id("minigrid", "doorkey-6x6", "test")


def test_each_reset_draws_a_level_of_the_named_set_seeded_from_the_reset_seed():
    split = LevelSplit.minigrid("doorkey-6x6")
    env = gym.make("rlgen/minigrid-doorkey-6x6-heldout-v0", options={"max_steps": 3})
    levels, lengths = [], []
    obs, info = env.reset(seed=5)
    assert env.observation_space.contains(obs)
    levels.append(info["level"])
    for _ in range(4):  # three steps then truncation (max_steps=3), then a reset without a seed: the next level
        steps, done = 0, False
        while not done:
            obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
            steps, done = steps + 1, terminated or truncated
            assert info["level"] == levels[-1]
        lengths.append(steps)
        obs, info = env.reset()
        levels.append(info["level"])
    assert all(n <= 3 for n in lengths) and lengths.count(3) >= 3
    assert all(level in split.held_out for level in levels) and len(set(levels)) == len(levels)
    # the same stream as rlgen's own env 0 of a vector env seeded 5
    vec = make_env(LevelSplit.minigrid("doorkey-6x6", options={"max_steps": 3}), "held_out", num_envs=1, seed=5)
    expected = [int(vec.reset()[1]["level"][0])] + [int(vec.reset_envs(np.array([0]))[1]["level"][0]) for _ in range(4)]
    assert levels == expected
    assert env.reset(seed=5)[1]["level"] == levels[0]  # a seeded reset restarts the stream
    assert env.reset(seed=6)[1]["level"] != levels[0]


def test_train_and_validation_ids_stay_on_their_levels():
    split = LevelSplit.minigrid("doorkey-6x6")
    for word, which in (("train", "train"), ("validation", "validation")):
        env = gym.make(f"rlgen/minigrid-doorkey-6x6-{word}-v0")
        levels = {env.reset(seed=s)[1]["level"] for s in range(20)}
        assert levels <= set(split.levels(which)) and len(levels) > 5


def test_make_vec_is_rlgens_vector_env_with_its_seeding():
    vec = gym.make_vec("rlgen/minigrid-doorkey-6x6-train-v0", num_envs=3)
    assert vec.num_envs == 3 and vec.observation_space.shape == (3, 3, 7, 7)
    _, info = vec.reset(seed=11)
    _, expected = make_env(LevelSplit.minigrid("doorkey-6x6"), "train", num_envs=3, seed=11).reset()
    assert list(info["level"]) == list(expected["level"])
    assert all(0 <= level < 200 for level in info["level"])


def test_procgen_ids():
    env = gym.make("rlgen/procgen-coinrun-heldout-v0")
    obs, info = env.reset(seed=1)
    assert obs.shape == (3, 64, 64) and info["level"] >= 250
    vec = gym.make_vec("rlgen/procgen-coinrun-train-v0", num_envs=2)
    _, info = vec.reset(seed=1)
    assert all(0 <= level < 200 for level in info["level"])


def test_make_with_the_module_prefix_needs_no_import_of_rlgen():
    code = ("import gymnasium as gym; e = gym.make('rlgen.envs:rlgen/minigrid-doorkey-5x5-validation-v0'); "
            "print(e.reset(seed=0)[1]['level'])")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert 200 <= int(out.stdout.split()[-1]) < 250
