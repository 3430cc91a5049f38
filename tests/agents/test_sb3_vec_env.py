"""The SB3 adapter must give each env exactly the transitions the raw env gives, with SB3's
same-step autoreset instead of the raw env's next-step autoreset."""

import numpy as np
import pytest

from rlgen.agents.sb3_vec_env import RlgenVecEnv
from rlgen.envs import LevelSplit, make_env

N = 4


def per_env_actions(n_actions: int, steps: int) -> list[list[int]]:
    rng = np.random.default_rng(1)
    return [rng.integers(0, n_actions, size=steps).tolist() for _ in range(N)]


def raw_episodes(env, actions, steps):
    """Per env: list of episodes, each a list of (obs, reward, done) after every real action."""
    streams = [iter(a) for a in actions]
    obs, info = env.reset(seed=0)
    episodes = [[[(obs[i].copy(), 0.0, False)]] for i in range(N)]
    resetting = np.zeros(N, dtype=bool)
    for _ in range(steps):
        act = np.array([0 if resetting[i] else next(streams[i]) for i in range(N)])
        obs, reward, term, trunc, info = env.step(act)
        for i in range(N):
            if resetting[i]:  # next-step autoreset: this step started a new episode
                episodes[i].append([(obs[i].copy(), 0.0, False)])
            else:
                episodes[i][-1].append((obs[i].copy(), float(reward[i]), bool(term[i] or trunc[i])))
        resetting = term | trunc
    return episodes


def adapter_episodes(venv, actions, steps):
    streams = [iter(a) for a in actions]
    venv.seed(0)
    obs = venv.reset()
    episodes = [[[(obs[i].copy(), 0.0, False)]] for i in range(N)]
    for _ in range(steps):
        obs, reward, done, infos = venv.step(np.array([next(s) for s in streams]))
        for i in range(N):
            if done[i]:
                episodes[i][-1].append((infos[i]["terminal_observation"], float(reward[i]), True))
                episodes[i].append([(obs[i].copy(), 0.0, False)])
            else:
                episodes[i][-1].append((obs[i].copy(), float(reward[i]), False))
    return episodes


@pytest.mark.parametrize(("split", "n_actions"), [(LevelSplit.minigrid("empty-5x5"), 3), (LevelSplit.procgen("bigfish"), 15)])
def test_adapter_matches_raw_env_transition_for_transition(split, n_actions):
    steps = 300
    actions = per_env_actions(n_actions, steps * 2)
    raw = raw_episodes(make_env(split, "train", num_envs=N, seed=0), actions, steps)
    ours = adapter_episodes(RlgenVecEnv(make_env(split, "train", num_envs=N, seed=0)), actions, steps)
    compared = 0
    for i in range(N):
        complete_raw = [e for e in raw[i] if e[-1][2]]
        complete_ours = [e for e in ours[i] if e[-1][2]]
        k = min(len(complete_raw), len(complete_ours))
        assert k >= 1, "each env must finish at least one episode"
        for a, b in zip(complete_raw[:k], complete_ours[:k]):
            assert len(a) == len(b)
            for (oa, ra, da), (ob, rb, db) in zip(a, b):
                np.testing.assert_array_equal(oa, ob)
                assert np.float32(ra) == np.float32(rb) and da == db
            compared += 1
    assert compared >= N


def test_episode_info_reports_return_length_and_level():
    split = LevelSplit.procgen("bigfish", num_levels=10)
    venv = RlgenVecEnv(make_env(split, "train", num_envs=8, seed=0))
    venv.reset()
    rng = np.random.default_rng(0)
    seen = []
    for _ in range(400):
        _, _, done, infos = venv.step(rng.integers(0, 15, size=8))
        seen += [infos[i]["episode"] for i in np.flatnonzero(done)]
    assert seen and all(0 <= ep["level"] < 10 and ep["l"] >= 1 for ep in seen)
