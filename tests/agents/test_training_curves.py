"""TensorBoard curves of offline training (issue 16, item 5): a run shorter than ``eval.every_steps`` still gets
its final evaluation; validation- and held-out-level returns are logged (the held-out one under a name that says
it is never used for selection, and kept out of the history early stopping reads); diagnostics such as DT's
grad_norm are not filed under ``train/loss/``."""

import json
import shutil
from pathlib import Path

from rlgen.agents.offline_train import train_offline
from rlgen.config import OfflineConfig, load_config

ROOT = Path(__file__).resolve().parents[2]
FIXTURE = ROOT / "tests" / "fixtures" / "old_runs" / "dataset"
HELD_OUT_CURVE = "eval/held_out_levels_never_used_for_selection"  # the name a user sees in TensorBoard


def _scalars(tb_dir: Path) -> dict[str, list[int]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(tb_dir), size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: [e.step for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def _dataset(tmp_path: Path) -> Path:
    return Path(shutil.copytree(FIXTURE, tmp_path / "data"))  # a copy: loading writes a cache beside the dataset


def test_a_short_dt_run_logs_its_final_evaluation_on_every_level_set_and_no_diagnostic_as_a_loss(tmp_path):
    dataset = _dataset(tmp_path)
    cfg = load_config(ROOT / "configs/offline/dt.yaml", [f"dataset={dataset}", f"out_dir={tmp_path / 'dt'}", "steps=3", "batch_size=4",
                      "context_length=2", "n_layers=1", "n_heads=1", "embed_dim=8", "network=minigrid_cnn", "eval.episodes=1",
                      "eval.every_steps=1000", "checkpoint_every=3", "progress=false", "device=cpu"], schema=OfflineConfig)  # fmt: skip
    run = train_offline(cfg)
    scalars = _scalars(run / "tb")
    for group in ("eval/train_levels", "eval/validation_levels", HELD_OUT_CURVE):
        assert scalars.get(f"{group}/mean_return") == [3], (group, sorted(scalars))
    assert "train/grad_norm" in scalars and not [t for t in scalars if t.startswith("train/loss/") and "norm" in t], sorted(scalars)
    history = json.loads((run / "checkpoints/latest/state.json").read_text())["eval_history"]
    assert [sorted(row) for row in history] == [["step", "train", "validation"]]  # early stopping never sees held-out levels


def test_the_held_out_curve_can_be_turned_off_and_does_not_block_a_resume(tmp_path):
    dataset = _dataset(tmp_path)
    args = [f"dataset={dataset}", f"out_dir={tmp_path / 'bc'}", "batch_size=4", "network=minigrid_cnn", "eval.episodes=1",
            "eval.every_steps=2", "checkpoint_every=2", "progress=false", "device=cpu", "held_out_curve=false"]  # fmt: skip
    train_offline(load_config(ROOT / "configs/offline/bc.yaml", [*args, "steps=2"], schema=OfflineConfig))
    run = train_offline(load_config(ROOT / "configs/offline/bc.yaml", [*args[:-1], "held_out_curve=true", "steps=4"], schema=OfflineConfig))
    assert _scalars(run / "tb")[f"{HELD_OUT_CURVE}/mean_return"] == [4]  # only the resumed part asked for it


PPO_TINY = ["env=minigrid/empty-5x5", "num_envs=4", "split.num_levels=10", "ppo.n_steps=32", "ppo.num_minibatches=2", "ppo.n_epochs=1",
            "ladder.every_steps=128", "ladder.episodes=2", "checkpoint_every=128", "eval_num_envs=2", "progress=false", "device=cpu"]  # fmt: skip


def test_every_ppo_rung_logs_train_validation_and_held_out_returns_and_only_the_first_two_reach_the_ladder(tmp_path):
    from rlgen.agents.ppo_sb3 import train_ppo
    from rlgen.config import PPOConfig

    out = tmp_path / "ppo"
    cfg = load_config(ROOT / "configs/ppo/minigrid_doorkey.yaml", [*PPO_TINY, f"out_dir={out}", "total_steps=256"], schema=PPOConfig)
    run = train_ppo(cfg)
    scalars = _scalars(run / "tb/ppo_1")
    for group in ("eval/train_levels", "eval/validation_levels", HELD_OUT_CURVE):
        assert scalars.get(f"{group}/mean_return") == [128, 256], (group, sorted(scalars))  # every rung, the final one too
    rungs = json.loads((run / "ladder.json").read_text())["rungs"]
    assert [sorted(r["validation"]) for r in rungs] == [["mean_normalized", "mean_return"]] * 2
    assert "held_out" not in json.dumps(rungs)  # what rung selection reads never holds held-out returns


def test_the_ppo_held_out_curve_can_be_turned_off_and_does_not_block_a_resume(tmp_path):
    from rlgen.agents.ppo_sb3 import train_ppo
    from rlgen.config import PPOConfig

    args = [*PPO_TINY, f"out_dir={tmp_path / 'ppo'}"]
    train_ppo(load_config(ROOT / "configs/ppo/minigrid_doorkey.yaml", [*args, "total_steps=128", "held_out_curve=false"], schema=PPOConfig))
    run = train_ppo(load_config(ROOT / "configs/ppo/minigrid_doorkey.yaml", [*args, "total_steps=256"], schema=PPOConfig))
    scalars = _scalars(run / "tb/ppo_1")
    assert scalars[f"{HELD_OUT_CURVE}/mean_return"] == [256] and scalars["eval/validation_levels/mean_return"] == [128, 256]
