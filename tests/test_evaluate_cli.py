"""`rlgen evaluate` on tiny real runs: one run counts once however it is named, evaluations do not
depend on their order, and rows carry the full identity of the agent."""

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from rlgen.cli import main
from rlgen.data import Episode, write_dataset
from rlgen.envs import LevelSplit

ROOT = Path(__file__).resolve().parents[1]
TINY_PPO = [
    "env=minigrid/empty-5x5", "num_envs=4", "split.num_levels=10", "ppo.n_steps=32", "ppo.num_minibatches=2", "ppo.n_epochs=1",
    "ladder.every_steps=128", "ladder.episodes=4", "checkpoint_every=128", "eval_num_envs=4", "progress=false", "device=cpu", "total_steps=128",
]  # fmt: skip


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def ppo_run(tmp_path_factory) -> Path:
    """A PPO run of 128 env steps (its policy is still close to uniform: episodes vary)."""
    run = tmp_path_factory.mktemp("ppo") / "run"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert main(["train", str(ROOT / "configs/ppo/minigrid_doorkey.yaml"), *TINY_PPO, f"out_dir={run}"]) == 0
    finally:
        torch.set_num_threads(threads)
    return run


def rows_of(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "results.jsonl").read_text().splitlines()]


def test_held_out_alone_equals_held_out_after_train(ppo_run, tmp_path, capsys):
    # Before: torch's generator was not seeded: held-out 0.251 alone, 0.120 after train (20 episodes).
    run = tmp_path / "run"
    import shutil

    shutil.copytree(ppo_run, run)
    assert main(["evaluate", str(run), "--episodes", "10", "--which", "held_out"]) == 0
    alone = [r for r in rows_of(run) if r["which"] == "held_out"][-1]
    assert main(["evaluate", str(run), "--episodes", "10", "--which", "train", "held_out"]) == 0
    after = [r for r in rows_of(run) if r["which"] == "held_out"][-1]
    assert (after["returns"], after["lengths"]) == (alone["returns"], alone["lengths"])
    assert len(set(alone["lengths"])) > 1  # sampled actions do change the episodes


def test_one_run_evaluated_by_relative_and_absolute_path_counts_once(ppo_run, tmp_path, monkeypatch, capsys):
    import shutil

    shutil.copytree(ppo_run, tmp_path / "runs" / "p")
    monkeypatch.chdir(tmp_path)
    assert main(["evaluate", "runs/p", "--episodes", "3", "--random-baseline"]) == 0
    assert main(["evaluate", str(tmp_path / "runs" / "p"), "--episodes", "3", "--random-baseline"]) == 0
    assert main(["report", "runs", "--out", "rep"]) == 0
    with open("rep/per_game.csv") as f:
        table = {r.get("agent") or r["algo"]: r for r in csv.DictReader(f)}
    assert table["ppo"]["runs"] == "1" and table["random"]["runs"] == "1"  # before: 2 runs each, episodes counted twice
    assert "replaced 4 earlier row(s)" in capsys.readouterr().out
    rows = rows_of(tmp_path / "runs" / "p")
    assert sorted((r["agent"], r["which"]) for r in rows) == [("ppo", "held_out"), ("ppo", "train"), ("random", "held_out"), ("random", "train")]
    run_id = json.loads((tmp_path / "runs" / "p" / "run.json").read_text())["run_id"]
    ppo, rnd = rows[0], rows[-1]
    assert (ppo["run_id"], ppo["algorithm"], ppo["train_seed"], ppo["train_levels"], ppo["dataset"]) == (run_id, "ppo", 0, 10, None)
    assert rnd["algorithm"] == "random" and rnd["run_id"].startswith("random-") and rnd["run_id"] != run_id


def offline_dataset(path: Path) -> Path:
    """One-step episodes on levels 0-9 of a 50-level split, collected (as its config says) on the first 10 levels."""
    rng = np.random.default_rng(0)
    split = LevelSplit.minigrid("empty-5x5", num_levels=50)
    eps = [Episode(rng.integers(0, 255, (2, 3, 7, 7), dtype=np.uint8), np.array([int(rng.integers(0, 7))]), np.array([1.0], np.float32),
                   np.array([True]), np.array([False]), level=i % 10) for i in range(80)]  # fmt: skip
    return write_dataset(path, eps, {"env": split.id, "skill": "expert", "split": split.to_dict(), "config": {"levels": 10, "transitions": 80},
                                     "observation_space": {"shape": [3, 7, 7], "dtype": "uint8"}, "action_space": {"n": 7},
                                     "policies": [{"label": "expert"}]})  # fmt: skip


def test_sampled_evaluations_do_not_depend_on_how_many_episodes_run_at_once(ppo_run):
    # Before: sampled actions came from one generator in batch order: the random baseline scored held-out
    # 0.027 / 0.027 / 0.050 at num_envs 1 / 4 / 16.
    from rlgen.agents import load_agent

    run = load_agent(ppo_run)
    for policy in (None, run.random_policy(seed=0)):  # the run's PPO (SB3), and the random baseline
        results = [run.evaluate("held_out", episodes=8, seed=0, num_envs=n, policy=policy) for n in (1, 3, 8)]
        for r in results[1:]:
            assert (r.returns.tolist(), r.lengths.tolist()) == (results[0].returns.tolist(), results[0].lengths.tolist())
        assert len(set(results[0].lengths.tolist())) > 1  # sampled actions do change the episodes
        assert [r.to_row()["num_envs"] for r in results] == [1, 3, 8]  # recorded: other policies may depend on it


def test_a_run_directory_from_before_run_json_keeps_its_id_when_moved(ppo_run, tmp_path, capsys):
    # Before: evaluating an old run directory recorded a path-derived id but wrote no run.json; after a move the
    # next evaluation recorded another id, and the report counted one run as 2.
    import shutil

    old = tmp_path / "legacy" / "p"
    shutil.copytree(ppo_run, old)
    (old / "run.json").unlink()
    assert main(["evaluate", str(old), "--episodes", "3"]) == 0
    assert "had no run.json" in capsys.readouterr().err
    first = json.loads((old / "run.json").read_text())["run_id"]
    assert [r["run_id"] for r in rows_of(old)] == [first, first]
    moved = tmp_path / "legacy" / "q"
    old.rename(moved)
    assert main(["evaluate", str(moved), "--episodes", "3"]) == 0
    assert "had no run.json" not in capsys.readouterr().err
    assert [r["run_id"] for r in rows_of(moved)] == [first, first]
    assert main(["report", str(tmp_path / "legacy"), "--out", str(tmp_path / "rep")]) == 0
    with open(tmp_path / "rep" / "per_game.csv") as f:
        assert [r["runs"] for r in csv.DictReader(f)] == ["1"]


def test_offline_rows_carry_the_dataset_identity_and_use_its_training_levels(tmp_path, capsys):
    data = offline_dataset(tmp_path / "toy")
    run = tmp_path / "bc"
    assert main(["train", str(ROOT / "configs/offline/bc.yaml"), f"dataset={data}", "network=minigrid_cnn", "batch_size=16", "device=cpu",
                 "progress=false", "eval.enabled=false", "steps=2", "seed=3", f"out_dir={run}"]) == 0  # fmt: skip
    assert main(["evaluate", str(run), "--episodes", "6"]) == 0
    train, held = rows_of(run)
    assert max(train["levels"]) < 10  # "train" means the levels the data came from, not the split's 50
    # BC samples from its own generator: evaluation reseeds it, so held-out alone equals held-out after train
    assert main(["evaluate", str(run), "--episodes", "6", "--which", "held_out"]) == 0
    (alone,) = [r for r in rows_of(run) if r["which"] == "held_out"]
    assert (alone["returns"], alone["lengths"]) == (held["returns"], held["lengths"]) and len(set(held["lengths"])) > 1
    for r in (train, held):
        assert (r["algorithm"], r["dataset"], r["dataset_skill"], r["dataset_levels"], r["dataset_transitions"], r["train_seed"]) == (
            "bc", "toy", "expert", 10, 80, 3)  # fmt: skip
        assert r["run_id"] == json.loads((run / "run.json").read_text())["run_id"] and r["train_levels"] == 10
    assert min(held["levels"]) >= 100
