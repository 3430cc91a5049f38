"""Run directories and datasets written before the package re-layout still load, act and evaluate the same.

``tests/fixtures/old_runs/`` was made by ``tests/fixtures/make_old_runs.sh`` with the code of commit 9f1f0ce
(before the re-layout); each run's ``results.jsonl`` holds that code's own ``rlgen evaluate --episodes 4``, and
its ``actions.json`` that code's greedy and seeded sampled actions on fixed observations
(``tests/fixtures/old_runs_actions.py``). Today's code must evaluate on the same levels with the same identity
and act the same; its sampled episodes differ from that code's, because evaluation now samples each episode
from its own uniforms (so that results do not depend on how many episodes run at once).
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
    (old_runs / run / "results.jsonl").unlink()  # today's rows must be written by today's evaluation, not left over
    assert main(["evaluate", run, "--episodes", "4", "--which", "train", "held_out"]) == 0
    after = rows_by_which(old_runs / run / "results.jsonl")
    for which in ("train", "held_out"):
        # Not the returns: the sampled evaluations of today draw actions from per-episode uniforms (independent of
        # num_envs), so they differ from that code's; what the policy does is test_an_old_run_acts_as_the_code_that_wrote_it's.
        for key in ("run_id", "algorithm", "levels", "dataset", "dataset_levels", "dataset_transitions"):
            assert after[which][key] == before[which][key], (run, which, key)


@pytest.mark.parametrize("run", RUNS)
def test_an_old_run_acts_as_the_code_that_wrote_it(old_runs, run):
    if run == "ppo_jax" and importlib.util.find_spec("xminigrid") is None:
        pytest.skip("the JAX PPO run needs the jax extra: pip install 'rlgen[jax]'")
    import sys

    sys.path.insert(0, str(FIXTURES.parent))
    try:
        from old_runs_actions import actions
    finally:
        sys.path.remove(str(FIXTURES.parent))
    reference = json.loads((old_runs / run / "actions.json").read_text())
    obs = np.asarray(reference["obs"], dtype=np.uint8).reshape(reference["obs_shape"])
    assert actions(load_agent(run).agent, obs) == {"greedy": reference["greedy"], "sampled": reference["sampled"]}


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
