"""Run directories and datasets written before the package re-layout still load, act and evaluate the same.

``tests/fixtures/old_runs/`` was made by ``tests/fixtures/make_old_runs.sh`` with the code of commit 9f1f0ce
(before the re-layout); each run's ``results.jsonl`` holds that code's own ``rlgen evaluate --episodes 4``.
Evaluation is a function of (policy, level set, seed), so today's code must give the same episodes.
"""

import importlib.util
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from rlgen.agents import load_agent
from rlgen.cli import main
from rlgen.data import load_dataset
from rlgen.envs import LevelSplit, make_env

FIXTURES = Path(__file__).parent / "fixtures" / "old_runs"
RUNS = ["ppo", "bc", "iql", "dt", "ppo_jax"]


@pytest.fixture
def old_runs(tmp_path, monkeypatch):
    root = tmp_path / "old_runs"
    shutil.copytree(FIXTURES, root)
    monkeypatch.chdir(root)  # the runs name their dataset and policy run relative to where they were made
    return root


def rows_by_which(path: Path) -> dict[str, dict]:
    return {r["which"]: r for r in map(json.loads, path.read_text().splitlines())}


@pytest.mark.parametrize("run", RUNS)
def test_an_old_run_evaluates_to_the_same_episodes(old_runs, run):
    if run == "ppo_jax" and importlib.util.find_spec("xminigrid") is None:
        pytest.skip("the JAX PPO run needs the jax extra: pip install 'rlgen[jax]'")
    before = rows_by_which(old_runs / run / "results.jsonl")
    assert main(["evaluate", run, "--episodes", "4", "--which", "train", "held_out"]) == 0
    after = rows_by_which(old_runs / run / "results.jsonl")
    for which in ("train", "held_out"):
        for key in ("run_id", "algorithm", "levels", "returns", "lengths", "dataset", "dataset_levels", "dataset_transitions"):
            assert after[which][key] == before[which][key], (run, which, key)


@pytest.mark.parametrize("run", ["bc", "iql", "dt"])
def test_an_old_offline_run_loads_without_its_dataset(old_runs, run):
    # A checkpoint is self-contained: shapes come from the run, never from reopening the dataset (before: DatasetError).
    split = LevelSplit.from_dict(json.loads((old_runs / "dataset" / "manifest.json").read_text())["split"])
    shutil.rmtree(old_runs / "dataset")
    agent = load_agent(old_runs / run)
    assert agent.num_actions == 7 and agent.algo == run
    env = make_env(split, "train", num_envs=3, seed=0)
    obs, _ = env.reset()
    env.close()
    assert agent.act(np.asarray(obs), deterministic=True).shape == (3,)


def test_an_old_dataset_loads_verifies_and_samples(old_runs):
    ds = load_dataset("dataset")
    assert ds.verify() == []
    batch = ds.sample_transitions(8)
    assert batch["obs"].shape == (8, 3, 5, 5) and batch["actions"].shape == (8,)
