"""A user's own procedurally generated environment, registered from outside rlgen, gets everything the built-in
suites get: splits, the duplicate check, collection, offline training and train vs held-out evaluation."""

import hashlib
import json

import gymnasium as gym
import numpy as np
import pytest
import yaml

from rlgen.cli import main
from rlgen.envs import LevelSet, LevelSplit, Suite, available_suites, get_suite, register_suite
from rlgen.errors import SplitError

STEPS = 12


class Corridor(gym.Env):
    """A 5-cell corridor; the level decides where the agent starts and which end is the goal. Observation:
    (3, 5, 5) uint8, row 0 the agent, row 1 the goal; actions 0 left, 1 right, 2 stay; reward 1 at the goal."""

    observation_space = gym.spaces.Box(0, 255, (3, 5, 5), np.uint8)
    action_space = gym.spaces.Discrete(3)

    def reset(self, *, seed=None, options=None):
        layout = np.random.default_rng(seed).integers(0, 2, size=2)  # a function of the level alone: 4 layouts
        self.pos, self.goal, self.t = 1 + int(layout[0]) * 2, 4 * int(layout[1]), 0
        return self._obs(), {}

    def step(self, action):
        self.pos = int(np.clip(self.pos + (-1, 1, 0)[int(action)], 0, 4))
        self.t += 1
        done = self.pos == self.goal
        return self._obs(), float(done), done, self.t >= STEPS and not done, {}

    def _obs(self):
        obs = np.zeros((3, 5, 5), np.uint8)
        obs[0, 2, self.pos] = 255
        obs[1, 2, self.goal] = 255
        return obs


class OnLevels(gym.Wrapper):
    """Reset on a level drawn from the level set; ``info["level"]`` on every step."""

    def __init__(self, env, levels, seed):
        super().__init__(env)
        self.levels, self.rng, self.level = levels, np.random.default_rng(seed), -1

    def reset(self, *, seed=None, options=None):
        if seed is not None:
            self.rng = np.random.default_rng(seed)
        self.level = int(self.levels.sample(self.rng))
        obs, info = self.env.reset(seed=self.level)
        return obs, {**info, "level": self.level}

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        return obs, reward, terminated, truncated, {**info, "level": self.level}


class ToySuite:
    """The Suite protocol for Corridor."""

    def env_names(self):
        return ("corridor",)

    def canonical_env(self, env):
        if env != "corridor":
            raise SplitError(f"unknown toy env {env!r}; allowed: corridor")
        return env

    def resolve_options(self, env, options):
        if options:
            raise SplitError(f"toy envs take no options, got {sorted(options)}")
        return {}

    def default_split(self, env, num_levels=None, options=None, validation_levels=50):
        n = 100 if num_levels is None else num_levels
        return LevelSplit("toy", env, train=range(n), validation=range(n, n + validation_levels), held_out=range(n + validation_levels, 10_000),
                          options=options)  # fmt: skip

    def make(self, env, levels, num_envs, seed, options):
        return gym.vector.SyncVectorEnv([lambda i=i: OnLevels(Corridor(), levels, seed + i) for i in range(num_envs)])

    def normalize(self, env, returns, options):
        return np.asarray(returns, dtype=np.float64)

    def default_encoder(self, env, options):
        return "minigrid_cnn"

    def episode_steps(self, env, options):
        return STEPS

    def level_fingerprints(self, env, levels, options, rollout_steps=0):
        out = []
        for level in levels:
            obs, _ = Corridor().reset(seed=int(level))
            out.append(hashlib.blake2b(obs.tobytes(), digest_size=16).digest())
        return out


@pytest.fixture(scope="module", autouse=True)
def toy_suite():
    register_suite("toy", ToySuite())


def test_a_registered_suite_is_a_suite_like_the_others():
    assert "toy" in available_suites() and isinstance(get_suite("toy"), Suite)
    split = LevelSplit.default("toy", "corridor", num_levels=20)
    assert split.train == LevelSet("0-19") and split.held_out == LevelSet("70-9999")
    with pytest.raises(SplitError, match="suite 'procgen' is built in"):
        register_suite("procgen", ToySuite())
    class Partial(ToySuite):
        make = normalize = None

    with pytest.raises(SplitError, match="suite 'partial' lacks make, normalize; a suite needs: env_names, canonical_env"):
        register_suite("partial", Partial())


def test_collect_train_and_evaluate_on_a_users_suite(tmp_path, capsys):
    assert main(["splits", "check", "toy/corridor", "split.num_levels=20", "--levels", "20", "--held-out", "20"]) == 0
    assert "distinct training layouts     4 of 20" in capsys.readouterr().out  # four layouts: every held-out level repeats one

    collect = tmp_path / "collect.yaml"
    collect.write_text(yaml.safe_dump({"env": "toy/corridor", "split": {"num_levels": 20}, "skill": "random", "transitions": 300, "num_envs": 2,
                                       "shard_transitions": 100, "out_dir": str(tmp_path / "data"), "progress": False}))  # fmt: skip
    assert main(["collect", str(collect)]) == 0
    manifest = json.loads((tmp_path / "data" / "manifest.json").read_text())
    assert manifest["env"] == "toy/corridor" and manifest["observation_space"]["shape"] == [3, 5, 5] and manifest["counts"]["transitions"] >= 300
    assert main(["datasets", "verify", str(tmp_path / "data")]) == 0

    run = tmp_path / "bc"
    assert main(["train", "configs/offline/bc.yaml", f"dataset={tmp_path / 'data'}", "steps=30", "batch_size=16", "eval.enabled=false",
                 "checkpoint_every=30", "progress=false", f"out_dir={run}", "device=cpu"]) == 0  # fmt: skip
    assert main(["evaluate", str(run), "--episodes", "6"]) == 0
    rows = [json.loads(line) for line in (run / "results.jsonl").read_text().splitlines()]
    assert {r["which"] for r in rows} == {"train", "held_out"} and all(r["env"] == "toy/corridor" for r in rows)
    held = next(r for r in rows if r["which"] == "held_out")
    assert all(70 <= level < 10_000 for level in held["levels"]) and all(0 < n <= STEPS for n in held["lengths"])
