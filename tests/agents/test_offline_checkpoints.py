"""Offline checkpoints: one TensorBoard curve across resumes, a checkpoint at least every tenth of a run,
and no resume from a model file that lost its optimizer state."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from rlgen.agents.offline import D3rlpyAgent
from rlgen.agents.offline_train import train_offline
from rlgen.cli import main
from rlgen.config import OfflineConfig, load_config
from tests.agents.test_offline import bandit_dataset

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return bandit_dataset(tmp_path_factory.mktemp("data") / "d", 60, p_correct=0.5)


def bc_config(data: Path, out: Path, *extra: str) -> OfflineConfig:
    return load_config(ROOT / "configs/offline/bc.yaml", [f"dataset={data}", "network=minigrid_cnn", "batch_size=16", "device=cpu",
                       "progress=false", f"out_dir={out}", *extra], schema=OfflineConfig)  # fmt: skip


def scalar_steps(tb_dir: Path) -> dict[str, list[int]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(tb_dir), size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: [e.step for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def test_a_resumed_run_has_every_logged_step_once_in_tensorboard(tmp_path, data):
    """Resumed at its step-100 checkpoint, the run must keep the points logged at step 100 (a purge from
    step 100 dropped them, and nothing logs them again: a hole at every resume)."""
    common = ["eval.every_steps=50", "eval.episodes=2", "eval_num_envs=2", "checkpoint_every=50"]
    run = train_offline(bc_config(data, tmp_path / "bc", *common, "steps=100"))
    train_offline(bc_config(data, tmp_path / "bc", *common, "steps=200"))
    steps = scalar_steps(run / "tb")
    assert steps["train/loss/loss"] == [50, 100, 150, 200]
    assert steps["eval/train_levels/mean_return"] == [50, 100, 150, 200]


class Killed(BaseException):
    """Stands for SIGKILL: nothing catches it."""


def test_a_short_run_checkpoints_although_its_config_says_every_10000_steps(tmp_path, data, monkeypatch):
    """The shipped configs say ``checkpoint_every: 10000``: a run of 40 steps checkpoints every 4 (a tenth), so
    a kill at step 25 loses 1 step, not all 25."""
    cfg = bc_config(data, tmp_path / "bc", "eval.enabled=false", "steps=40")
    assert cfg.checkpoint_every == 10_000 and cfg.checkpoint_interval() == 4
    assert bc_config(data, tmp_path / "x", "steps=40", "checkpoint_every=null").checkpoint_interval() == 4
    assert bc_config(data, tmp_path / "x", "steps=40", "checkpoint_every=3").checkpoint_interval() == 3
    update = D3rlpyAgent.update
    calls = []

    def dies_at_25(self, batch):  # noqa: ANN001, ANN202
        calls.append(1)
        if len(calls) == 25:
            raise Killed
        return update(self, batch)

    monkeypatch.setattr(D3rlpyAgent, "update", dies_at_25)
    with pytest.raises(Killed):
        train_offline(cfg)
    assert json.loads((tmp_path / "bc/checkpoints/latest/state.json").read_text())["step"] == 24
    monkeypatch.setattr(D3rlpyAgent, "update", update)
    train_offline(cfg)
    assert json.loads((tmp_path / "bc/checkpoints/latest/state.json").read_text())["step"] == 40


def test_a_checkpoint_without_optimizer_state_refuses_to_resume(tmp_path, data, capsys):
    """d3rlpy only warns and resumes with a fresh Adam: another run than the checkpointed one."""
    args = ["train", str(ROOT / "configs/offline/bc.yaml"), f"dataset={data}", "network=minigrid_cnn", "batch_size=16", "device=cpu",
            "progress=false", "eval.enabled=false", "checkpoint_every=3", f"out_dir={tmp_path / 'bc'}"]  # fmt: skip
    assert main([*args, "steps=6"]) == 0
    path = tmp_path / "bc/checkpoints/latest/model.d3"
    state = torch.load(path, weights_only=True)
    state["optim"] = {"lr_scheduler": None}  # the optimizer's state gone
    torch.save(state, path)
    capsys.readouterr()
    assert main([*args, "steps=12"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(path) in err and "no optimizer state" in err, err
    assert json.loads((tmp_path / "bc/checkpoints/latest/state.json").read_text())["step"] == 6
    assert main(["evaluate", str(tmp_path / "bc"), "--episodes", "2"]) == 0  # the weights still evaluate
