from pathlib import Path

import numpy as np
import pytest

from rlgen.data import Episode, write_dataset

ENV = "minigrid/MiniGrid-Empty-5x5-v0"
SHAPE = (3, 5, 5)


def make_episodes(rng: np.random.Generator, n: int, levels: int = 10, policy: str = "expert") -> list[Episode]:
    """Episodes of 1-12 steps whose observations encode (episode, step) so tests can check alignment:
    pixel [0, 0, 0] = episode % 256, pixel [1, 0, 0] = step. Reward 1 on the last step of even
    episodes, else 0.01 per step."""
    eps = []
    for i in range(n):
        t = int(rng.integers(1, 13))
        obs = rng.integers(0, 256, (t + 1, *SHAPE), dtype=np.uint8)
        obs[:, 0, 0, 0] = i % 256
        obs[:, 1, 0, 0] = np.arange(t + 1)
        rewards = np.full(t, 0.01, np.float32)
        if i % 2 == 0:
            rewards[-1] = 1.0
        term = np.zeros(t, bool)
        trunc = np.zeros(t, bool)
        (term if i % 3 else trunc)[-1] = True
        eps.append(Episode(obs, rng.integers(0, 4, t), rewards, term, trunc, level=i % levels, policy=policy))
    return eps


def manifest(**extra) -> dict:
    return {"env": ENV, "skill": "expert", "observation_space": {"shape": list(SHAPE), "dtype": "uint8"}, "action_space": {"n": 4},
            "policies": [{"label": "expert"}], **extra}  # fmt: skip


@pytest.fixture
def episodes() -> list[Episode]:
    return make_episodes(np.random.default_rng(0), 60)


@pytest.fixture
def dataset_dir(tmp_path: Path, episodes: list[Episode]) -> Path:
    return write_dataset(tmp_path / "toy", episodes, manifest(), shard_transitions=100)
