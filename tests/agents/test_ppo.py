import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from rlgen.agents.ppo_sb3 import PPOAgent, train_ppo
from rlgen.agents.ppo_sb3 import load_run as load_run_agent
from rlgen.cli import main
from rlgen.config import PPOConfig, load_config
from rlgen.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]

TINY = [
    "env=minigrid/empty-5x5", "num_envs=4", "split.num_levels=10", "ppo.n_steps=32", "ppo.num_minibatches=2",
    "ppo.n_epochs=1", "ppo.normalize_reward=true", "ladder.every_steps=128", "ladder.episodes=4",
    "checkpoint_every=128", "eval_num_envs=4", "progress=false", "device=cpu",
]


def tiny_config(tmp_path: Path, *extra: str) -> PPOConfig:
    return load_config(ROOT / "configs/ppo/minigrid_doorkey.yaml", [*TINY, f"out_dir={tmp_path / 'run'}", *extra], schema=PPOConfig)


def test_train_writes_ladder_checkpoints_and_config(tmp_path):
    run = train_ppo(tiny_config(tmp_path, "total_steps=256"))
    ladder = json.loads((run / "ladder.json").read_text())
    steps = [r["step"] for r in ladder["rungs"]]
    assert steps == [128, 256]  # every 128 steps, the last one being the final ("expert") policy
    for rung in ladder["rungs"]:
        assert (run / rung["checkpoint"]).is_file()
        assert 0.0 <= rung["mean_normalized"] <= 1.0 and rung["episodes"] == 4
    assert ladder["split"]["train"] == "0-9"
    assert (run / "config.yaml").is_file() and (run / "checkpoints/latest.pt").is_file()
    assert json.loads((run / "checkpoints/state.json").read_text()) == {**json.loads((run / "checkpoints/state.json").read_text()), "num_timesteps": 256, "finished": True}


def test_save_load_gives_identical_actions(tmp_path):
    run = train_ppo(tiny_config(tmp_path, "total_steps=128"))
    agent = load_run_agent(run, device="cpu")
    obs = np.random.default_rng(0).integers(0, 11, size=(32, 3, 7, 7), dtype=np.uint8)
    path = agent.save(tmp_path / "copy.pt")
    again = PPOAgent.load(path, device="cpu")
    np.testing.assert_array_equal(agent.act(obs, deterministic=True), again.act(obs, deterministic=True))


def test_resume_continues_the_step_count_and_the_tensorboard_run(tmp_path):
    run = train_ppo(tiny_config(tmp_path, "total_steps=128"))
    run = train_ppo(tiny_config(tmp_path, "total_steps=384"))
    state = json.loads((run / "checkpoints/state.json").read_text())
    assert state["num_timesteps"] == 384 and state["finished"]
    assert [p.name for p in (run / "tb").iterdir()] == ["ppo_1"]
    assert [r["step"] for r in json.loads((run / "ladder.json").read_text())["rungs"]] == [128, 256, 384]


def test_resume_with_a_different_config_is_refused(tmp_path):
    train_ppo(tiny_config(tmp_path, "total_steps=128"))
    with pytest.raises(Exception, match="different config.*ppo"):
        train_ppo(tiny_config(tmp_path, "total_steps=256", "ppo.learning_rate=0.1"))


def test_sigterm_saves_a_checkpoint_that_resumes(tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "rlgen.cli", "train", str(ROOT / "configs/ppo/minigrid_doorkey.yaml"), *TINY,
           f"out_dir={out}", "total_steps=10000000", "checkpoint_every=10000000", "ladder.every_steps=10000000"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not (out / "tb").exists() and time.time() < deadline:
        time.sleep(0.2)
    time.sleep(2.0)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "checkpoint saved" in err and "Traceback" not in err
    state = json.loads((out / "checkpoints/state.json").read_text())
    assert state["num_timesteps"] > 0 and not state["finished"]
    assert not (out / "ladder.json").exists()
    load_run_agent(out, device="cpu")  # an interrupted run's latest checkpoint is still evaluable
    cfg = load_config(ROOT / "configs/ppo/minigrid_doorkey.yaml", [*TINY, f"out_dir={out}", f"total_steps={state['num_timesteps'] + 128}",
                                                                    "checkpoint_every=10000000", "ladder.every_steps=10000000"], schema=PPOConfig)
    train_ppo(cfg)
    assert json.loads((out / "checkpoints/state.json").read_text())["num_timesteps"] >= state["num_timesteps"] + 128


def test_cli_train_then_evaluate(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", str(ROOT / "configs/ppo/minigrid_doorkey.yaml"), *TINY, f"out_dir={out}", "total_steps=128"]) == 0
    assert main(["evaluate", str(out), "--episodes", "4", "--random-baseline"]) == 0
    text = capsys.readouterr().out
    assert "gap (normalized train - held-out)" in text
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert {(r["agent"], r["which"]) for r in rows} == {("ppo", "train"), ("ppo", "held_out"), ("random", "train"), ("random", "held_out")}
    assert all(min(r["levels"]) >= 60 for r in rows if r["which"] == "held_out")


def test_evaluate_a_directory_that_is_not_a_run(tmp_path, capsys):
    assert main(["evaluate", str(tmp_path)]) == 2
    assert "is not a run directory" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("override", "match"),
    [("algo=sac", "algo 'sac' is not one of: ppo"), ("ppo.num_minibatches=3", "must be divisible by ppo.num_minibatches = 3"),
     ("ppo.network=resnet", "network 'resnet' is not one of"), ("ppo.lr=0.1", "unknown key `ppo.lr`")],
)
def test_train_config_errors(tmp_path, override, match):
    with pytest.raises(ConfigError, match=match):
        tiny_config(tmp_path, override)


def test_procgen_cpu_config_trains_the_nature_cnn(tmp_path):
    overrides = ["num_envs=4", "total_steps=128", "ppo.n_steps=32", "ppo.num_minibatches=2", "ppo.n_epochs=1", "ladder.every_steps=128",
                 "ladder.episodes=2", "checkpoint_every=128", "eval_num_envs=2", "progress=false", "device=cpu", f"out_dir={tmp_path / 'run'}"]  # fmt: skip
    cfg = load_config(ROOT / "configs/ppo/procgen_coinrun_cpu.yaml", overrides, schema=PPOConfig)
    run = train_ppo(cfg)
    agent = load_run_agent(run, device="cpu")
    assert type(agent.policy.features_extractor.encoder).__name__ == "NatureEncoder"
    obs = np.random.default_rng(0).integers(0, 256, size=(8, 3, 64, 64), dtype=np.uint8)
    assert agent.act(obs, deterministic=True).shape == (8,)


def test_checkpoint_every_defaults_to_a_tenth_and_never_exceeds_it():
    def interval(*extra):
        return load_config(ROOT / "configs/ppo/minigrid_doorkey.yaml", ["total_steps=20000", *extra], schema=PPOConfig).checkpoint_interval()

    assert interval() == 2000
    assert interval("checkpoint_every=50000") == 2000  # larger than the run: it would never checkpoint
    assert interval("checkpoint_every=500") == 500


def _scalars(tb_dir: Path) -> dict[str, list[int]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(tb_dir), size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: [e.step for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def test_killed_runs_resume_into_one_tensorboard_curve_with_each_step_once(tmp_path):
    """SIGKILL mid-run (after a checkpoint, with steps logged past it), twice; each resume continues
    the same TensorBoard run, and every scalar has each step once. ``checkpoint_every`` is left at its
    default (a tenth of the run), as in the shipped configs that set it larger than short runs."""
    out = tmp_path / "run"
    total = 5120  # 40 rollouts of 4 envs x 32 steps; a checkpoint every 512 steps
    cmd = [sys.executable, "-m", "rlgen.cli", "train", str(ROOT / "configs/ppo/minigrid_doorkey.yaml"), *TINY, f"out_dir={out}",
           f"total_steps={total}", "checkpoint_every=null", "ladder.every_steps=1024", "ladder.episodes=2"]  # fmt: skip
    killed_at = []
    for kill_after in (1024, 3072):
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        deadline = time.time() + 120
        state: dict = {}
        while time.time() < deadline and proc.poll() is None:
            try:
                state = json.loads((out / "checkpoints/state.json").read_text())
            except (OSError, ValueError):
                state = {}
            if state.get("num_timesteps", 0) >= kill_after:
                break
            time.sleep(0.05)
        assert proc.poll() is None, f"the run ended before it could be killed: {proc.stderr.read()}"
        assert state.get("num_timesteps", 0) >= kill_after, "no checkpoint within the run"
        time.sleep(0.5)  # let it log past the checkpoint
        proc.kill()
        proc.wait(timeout=30)
        killed_at.append(json.loads((out / "checkpoints/state.json").read_text())["num_timesteps"])
    assert main(["train", str(ROOT / "configs/ppo/minigrid_doorkey.yaml"), *TINY, f"out_dir={out}", f"total_steps={total}",
                 "checkpoint_every=null", "ladder.every_steps=1024", "ladder.episodes=2"]) == 0  # fmt: skip
    assert json.loads((out / "checkpoints/state.json").read_text())["num_timesteps"] == total
    assert [p.name for p in (out / "tb").iterdir()] == ["ppo_1"]
    scalars = _scalars(out / "tb/ppo_1")
    assert "eval/train_levels/mean_return" in scalars and "train/value_loss" in scalars
    for tag, steps in scalars.items():
        assert steps == sorted(set(steps)), f"{tag}: steps {steps} (killed at {killed_at})"
    rollout = scalars["time/fps"]
    assert rollout[-1] == total and rollout[0] == 128  # from the first rollout to the end, one curve
    assert scalars["eval/train_levels/mean_return"] == [1024, 2048, 3072, 4096, total]
    # every update's losses once, at the step of its update: no hole at a resume (checkpoints sit between rollouts)
    assert scalars["train/value_loss"] == list(range(128, total + 1, 128)), f"killed at {killed_at}"
    assert all(step % 128 == 0 for step in killed_at)


def test_checkpoints_sit_between_rollouts_whatever_checkpoint_every_says(tmp_path, monkeypatch):
    """A checkpoint taken mid-rollout resumes into a run that collects whole rollouts from there and
    overshoots the uninterrupted run's step count (seen: 24,888 instead of 24,576 after 15 kills)."""
    from rlgen.agents import ppo_sb3

    saved = []
    original = ppo_sb3.save_checkpoint

    def recording(model, run_dir, finished, at=None):  # noqa: ANN001, ANN202
        step = original(model, run_dir, finished, at)
        saved.append(step)
        return step

    monkeypatch.setattr(ppo_sb3, "save_checkpoint", recording)
    # rollouts of 4 envs x 32 steps = 128; the first rollout boundary at or past each 200 steps, then the end
    run = train_ppo(tiny_config(tmp_path, "total_steps=2048", "checkpoint_every=200", "ladder.every_steps=100000"))
    assert saved == [256, 512, 640, 896, 1024, 1280, 1408, 1664, 1920, 2048]
    assert json.loads((run / "checkpoints/state.json").read_text())["num_timesteps"] == 2048


def test_a_run_stopped_mid_rollout_resumes_to_the_step_count_of_an_uninterrupted_one(tmp_path, monkeypatch):
    import signal as signals

    from rlgen.agents.ppo_sb3 import LadderCallback
    from rlgen.errors import TrainingInterrupted

    on_step = LadderCallback._on_step

    def signalled(self):  # noqa: ANN001, ANN202 - SIGTERM arrives at env step 200, in the middle of the second rollout
        if self.num_timesteps == 200:
            signals.raise_signal(signals.SIGTERM)
        return on_step(self)

    monkeypatch.setattr(LadderCallback, "_on_step", signalled)
    with pytest.raises(TrainingInterrupted, match="128 env steps"):
        train_ppo(tiny_config(tmp_path, "total_steps=500", "checkpoint_every=1000", "ladder.every_steps=100000"))
    run = tmp_path / "run"
    state = json.loads((run / "checkpoints/state.json").read_text())
    assert state["num_timesteps"] == 128 and not state["finished"]  # the boundary before the stop
    monkeypatch.setattr(LadderCallback, "_on_step", on_step)
    train_ppo(tiny_config(tmp_path, "total_steps=500", "checkpoint_every=1000", "ladder.every_steps=100000"))
    uninterrupted = train_ppo(tiny_config(tmp_path / "u", "total_steps=500", "checkpoint_every=1000", "ladder.every_steps=100000"))
    assert json.loads((run / "checkpoints/state.json").read_text())["num_timesteps"] == 512
    assert json.loads((uninterrupted / "checkpoints/state.json").read_text())["num_timesteps"] == 512


def test_a_kill_between_the_last_checkpoint_and_its_state_file_still_finishes(tmp_path):
    run = train_ppo(tiny_config(tmp_path, "total_steps=128"))
    state = json.loads((run / "checkpoints/state.json").read_text())
    (run / "checkpoints/state.json").write_text(json.dumps({**state, "finished": False}))  # latest saved, state.json not yet
    train_ppo(tiny_config(tmp_path, "total_steps=128"))
    assert json.loads((run / "checkpoints/state.json").read_text())["finished"]
    assert [r["step"] for r in json.loads((run / "ladder.json").read_text())["rungs"]] == [128]
