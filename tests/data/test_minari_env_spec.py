"""Minari both ways (issue 16, item 7): an exported dataset carries the env spec of its training levels, so Minari's
``recover_environment()`` works; a dataset recorded by Minari's own ``DataCollector`` on an rlgen Gymnasium id
imports without ``--env``, each episode's level being the one its reset seed started."""

import shutil
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

from rlgen.cli import main
from rlgen.data import load_dataset
from rlgen.envs import LevelSplit

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "old_runs" / "dataset"


@pytest.fixture(autouse=True)
def minari_home(tmp_path, monkeypatch):
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))


def test_an_exported_dataset_recovers_an_env_on_its_training_levels(tmp_path):
    import minari

    data = shutil.copytree(FIXTURE, tmp_path / "data")
    assert main(["datasets", "export", str(data), "--minari", "rlgen/doorkey/expert-v0"]) == 0
    mds = minari.load_dataset("rlgen/doorkey/expert-v0")
    assert mds.spec.env_spec.id == "rlgen/minigrid-doorkey-5x5-train-v0"
    env = mds.recover_environment()
    split = LevelSplit.from_dict(load_dataset(data).manifest["split"])
    levels = {env.reset(seed=s)[1]["level"] for s in range(30)}
    assert levels <= set(split.train) and len(levels) > 5  # the dataset's own 20 training levels, its view (full_rgb, tile 1)
    assert env.observation_space.shape == load_dataset(data).observation_shape


def test_a_minari_datacollector_dataset_on_an_rlgen_id_imports_without_env(tmp_path):
    from minari import DataCollector

    env = DataCollector(gym.make("rlgen/minigrid-empty-5x5-train-v0", options={"max_steps": 4}))  # infos not recorded
    seeds = [3, 11, 12]
    for seed in seeds:
        env.reset(seed=seed)
        done = False
        while not done:
            _, _, terminated, truncated, _ = env.step(env.action_space.sample())
            done = terminated or truncated
    env.create_dataset("toy/collected-v0", algorithm_name="random")
    assert main(["datasets", "import", "toy/collected-v0", str(tmp_path / "imported")]) == 0
    ds = load_dataset(tmp_path / "imported")
    probe = gym.make("rlgen/minigrid-empty-5x5-train-v0")
    expected = [probe.reset(seed=s)[1]["level"] for s in seeds]
    assert ds.env == "minigrid/MiniGrid-Empty-5x5-v0" and ds.num_episodes == 3
    assert ds.episodes["level"].tolist() == expected and len(set(expected)) == 3


def test_a_dataset_whose_env_spec_names_no_rlgen_env_still_needs_env(tmp_path, capsys):
    from minari import DataCollector

    env = DataCollector(gym.make("CartPole-v1"))
    env.reset(seed=0)
    env.step(0)
    env.step(0)
    # not a uint8 image dataset either, but the env is what is missing first for a user: say so
    env.create_dataset("toy/cartpole-v0", algorithm_name="random")
    assert main(["datasets", "import", "toy/cartpole-v0", str(tmp_path / "x")]) == 2
    assert np.size(capsys.readouterr().err.strip().splitlines()) == 1
