"""The checks before training continues in a run directory: the same config whenever it holds work (not only
a checkpoint), the directory as the run's identity (a moved run resumes), a dataset by its content, and a
policy that must fit the env it is loaded for."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
import yaml

from rlgen.agents import load_agent
from rlgen.agents.offline_train import train_offline
from rlgen.agents.ppo_sb3 import PPOAgent, train_ppo
from rlgen.agents.ppo_sb3_policy import build_policy
from rlgen.cli import main
from rlgen.config import OfflineConfig, PPOConfig, load_config
from rlgen.errors import RlgenError
from tests.agents.test_offline import bandit_dataset

ROOT = Path(__file__).resolve().parents[2]
TINY = [
    "env=minigrid/empty-5x5", "num_envs=4", "split.num_levels=10", "ppo.n_steps=32", "ppo.num_minibatches=2",
    "ppo.n_epochs=1", "ladder.every_steps=128", "ladder.episodes=2", "eval_num_envs=2", "progress=false", "device=cpu",
]  # fmt: skip


def ppo_config(out: Path | str, *extra: str) -> PPOConfig:
    return load_config(ROOT / "configs/ppo/minigrid_doorkey.yaml", [*TINY, f"out_dir={out}", *extra], schema=PPOConfig)


def offline_config(data: Path, out: Path | str, *extra: str) -> OfflineConfig:
    return load_config(ROOT / "configs/offline/bc.yaml", [f"dataset={data}", "network=minigrid_cnn", "batch_size=16", "device=cpu",
                       "progress=false", "eval.enabled=false", "checkpoint_every=3", f"out_dir={out}", *extra], schema=OfflineConfig)  # fmt: skip


def steps_of(run: Path) -> int:
    return json.loads((run / "checkpoints/state.json").read_text())["num_timesteps"]


# --- 7: any work in the directory, not only a checkpoint ---------------------------------------------


def test_a_run_killed_before_its_first_checkpoint_refuses_another_config(tmp_path):
    """A run with ladder rungs but no checkpoint yet (killed in between) continued with another config would
    mix two experiments in one ladder (seen: rungs [1000, 2000 (lr 0.01), 1500, 3000, 4096])."""
    run = train_ppo(ppo_config(tmp_path / "mix", "total_steps=256", "ppo.learning_rate=0.01"))
    shutil.rmtree(run / "checkpoints")  # as if killed after its rungs, before the first checkpoint
    with pytest.raises(RlgenError, match=r"different config \(keys differ: ladder, ppo\)") as info:
        train_ppo(ppo_config(tmp_path / "mix", "total_steps=384", "ladder.every_steps=192"))
    assert "\n" not in str(info.value)
    assert [r["step"] for r in json.loads((run / "ladder.json").read_text())["rungs"]] == [128, 256]  # untouched
    train_ppo(ppo_config(tmp_path / "mix", "total_steps=256", "ppo.learning_rate=0.01"))  # the same config: starts over
    assert steps_of(run) == 256


def test_a_start_that_failed_before_any_work_takes_a_corrected_config(tmp_path):
    run = tmp_path / "failed"
    train_ppo(ppo_config(run, "total_steps=128"))
    for p in run.iterdir():  # what a start that failed after writing its config leaves: config.yaml, run.json, .lock
        if p.name not in ("config.yaml", "run.json", ".lock"):
            shutil.rmtree(p) if p.is_dir() else p.unlink()
    train_ppo(ppo_config(run, "total_steps=128", "ppo.learning_rate=0.002"))
    assert yaml.safe_load((run / "config.yaml").read_text())["ppo"]["learning_rate"] == 0.002


# --- 8: the directory is the identity; a dataset is its content --------------------------------------


def test_a_moved_run_resumes_under_another_path_and_name(tmp_path, monkeypatch):
    first = train_ppo(ppo_config(tmp_path / "sp", "total_steps=128", "name=first"))
    run_id = json.loads((first / "run.json").read_text())["run_id"]
    shutil.move(str(first), tmp_path / "sp2")
    monkeypatch.chdir(tmp_path)
    for out, total in (("sp2", 256), ("./sp2/", 384), (str(tmp_path / "sp2"), 512)):  # relative, dotted, absolute
        train_ppo(ppo_config(out, f"total_steps={total}", "name=second"))
        assert steps_of(tmp_path / "sp2") == total
    assert json.loads((tmp_path / "sp2/run.json").read_text())["run_id"] == run_id
    assert [r["step"] for r in json.loads((tmp_path / "sp2/ladder.json").read_text())["rungs"]] == [128, 256, 384, 512]


@pytest.fixture
def two_datasets(tmp_path) -> tuple[Path, Path]:
    return bandit_dataset(tmp_path / "dsA", 60, p_correct=0.5, seed=0), bandit_dataset(tmp_path / "dsB", 60, p_correct=0.5, seed=1)


def test_an_offline_run_resumes_on_its_dataset_moved_elsewhere(tmp_path, two_datasets):
    data, _ = two_datasets
    run = train_offline(offline_config(data, tmp_path / "bc", "steps=6"))
    moved = shutil.move(str(data), tmp_path / "moved")
    train_offline(offline_config(Path(moved), tmp_path / "bc", "steps=12"))
    assert json.loads((run / "checkpoints/latest/state.json").read_text())["step"] == 12
    assert yaml.safe_load((run / "config.yaml").read_text())["resolved"]["dataset"]["path"] == str(moved)


def test_another_dataset_at_the_same_path_is_refused(tmp_path, two_datasets):
    data, other = two_datasets
    run = train_offline(offline_config(data, tmp_path / "bc", "steps=6"))
    shutil.rmtree(data)
    shutil.copytree(other, data)  # re-collected in place: same path, other content
    with pytest.raises(RlgenError, match=r"different config \(keys differ: dataset\)"):
        train_offline(offline_config(data, tmp_path / "bc", "steps=12"))
    assert json.loads((run / "checkpoints/latest/state.json").read_text())["step"] == 6


def test_a_train_refused_for_a_corrupt_shard_does_not_block_the_retry_on_another_dataset(tmp_path, two_datasets):
    """Re-review of issue 13: a shard swapped for another dataset's made `rlgen train` fail correctly, but only
    after config.yaml and tb/ were written, so the retry with a good dataset was refused as "a different config"."""
    data, other = two_datasets
    bad = tmp_path / "swapped"
    shutil.copytree(data, bad)
    shard = next((bad / "shards").iterdir())
    shutil.copyfile(next((other / "shards").iterdir()), shard)  # same size, other content: the sha256 differs
    out = tmp_path / "bc"
    with pytest.raises(RlgenError, match=r"sha256 differs"):
        train_offline(offline_config(bad, out, "steps=6"))
    assert not (out / "config.yaml").exists() and not (out / "tb").exists()  # nothing written before the data was checked
    train_offline(offline_config(other, out, "steps=6"))
    assert json.loads((out / "checkpoints/latest/state.json").read_text())["step"] == 6


# --- 14 (load part): the policy must fit the env it is loaded for -------------------------------------


def test_a_policy_that_does_not_fit_its_configs_env_is_one_line(tmp_path, capsys):
    run = train_ppo(ppo_config(tmp_path / "p", "total_steps=128"))
    path = run / "config.yaml"
    data = yaml.safe_load(path.read_text())
    data["split"]["options"] = data["resolved"]["split"]["options"] = {"view": "full"}  # 5x5 grid, not the 7x7 view
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(RlgenError, match=r"takes observations \[3, 7, 7\] and 7 actions, the env gives \[3, 5, 5\] and 7"):
        load_agent(run)
    assert main(["evaluate", str(run), "--episodes", "2"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err and str(run) in err
    assert not (run / "results.jsonl").exists()


def test_a_run_whose_config_was_emptied_is_one_line(tmp_path, capsys):
    run = train_ppo(ppo_config(tmp_path / "p", "total_steps=128"))
    (run / "config.yaml").write_text("{}\n")  # read as the default config: procgen/coinrun
    assert main(["evaluate", str(run), "--episodes", "2"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "the env gives [3, 64, 64] and 15" in err, err


def test_an_offline_model_is_checked_against_its_env_too(tmp_path, two_datasets):
    data, _ = two_datasets
    run = train_offline(offline_config(data, tmp_path / "bc", "steps=3"))
    assert load_agent(run).agent.observation_shape == (3, 7, 7)  # fits: loads
    path = run / "config.yaml"
    config = yaml.safe_load(path.read_text())
    config["resolved"]["split"]["options"] = {"view": "full"}
    path.write_text(yaml.safe_dump(config))
    with pytest.raises(RlgenError, match=r"takes observations \[3, 7, 7\] and 3 actions, the env gives \[3, 5, 5\] and 7"):
        load_agent(run)


def test_a_policy_with_more_actions_than_the_env_is_refused(tmp_path):
    run = train_ppo(ppo_config(tmp_path / "p", "total_steps=128"))
    ckpt = run / "ladder/step_0000000128.pt"
    payload = torch.load(ckpt, weights_only=True)
    assert payload["arch"]["num_actions"] == 7
    bigger = PPOAgent(build_policy({**payload["arch"], "num_actions": 15}), {**payload["arch"], "num_actions": 15})
    bigger.save(ckpt, num_timesteps=128)
    with pytest.raises(RlgenError, match=r"takes observations \[3, 7, 7\] and 15 actions, the env gives \[3, 7, 7\] and 7"):
        load_agent(run)
