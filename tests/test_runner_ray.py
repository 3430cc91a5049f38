"""The Ray runner: a local Ray instance runs two tiny runs (PPO seeds 0 and 1, their evaluations, the report)."""

from __future__ import annotations

import json

import pytest
import yaml

from rlgen.cli import main
from rlgen.pipeline.stages import read_record

ray = pytest.importorskip("ray")  # in the `test` extra; optional for users (`rlgen[ray]`)

STUDY = {
    "name": "tiny-ray",
    "out_dir": "study",
    "envs": ["minigrid/empty-5x5"],
    "split": {"num_levels": 20},
    "seeds": [0, 1],
    "device": "cpu",
    "ppo": {"set": {"num_envs": 4, "total_steps": 256, "checkpoint_every": 256, "eval_num_envs": 2,
                    "ppo": {"n_steps": 64, "num_minibatches": 2, "n_epochs": 1, "network": "minigrid_cnn", "normalize_reward": False},
                    "ladder": {"every_steps": 256, "episodes": 2}}},
    "evaluation": {"episodes": 2, "num_envs": 2},
    "runner": "ray",
    "resources": {"default": {"num_cpus": 1}},
}  # fmt: skip


def test_ray_runner_runs_two_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "study.yaml").write_text(yaml.safe_dump(STUDY))
    assert main(["run", "study.yaml"]) == 0, capsys.readouterr()
    out = capsys.readouterr().out
    assert "5 stages: 0 up to date, 5 to run" in out
    for sid in ("ppo/empty-5x5-s0", "ppo/empty-5x5-s1", "eval/ppo/empty-5x5-s0", "eval/ppo/empty-5x5-s1", "report"):
        assert read_record(tmp_path / "study" / sid)["status"] == "done", sid
    seeds = {json.loads(line)["train_seed"] for f in (tmp_path / "study/eval/ppo").glob("*/results.jsonl") for line in f.read_text().splitlines()}
    assert seeds == {0, 1}
    assert (tmp_path / "study/logs/ppo__empty-5x5-s0.log").is_file()  # each task's output goes to its log
    assert not ray.is_initialized()  # the runner shut down the Ray it started
