"""`rlgen report`'s learning curves: tiny real PPO and BC runs log their evaluations to TensorBoard during
training; the report draws them (mean over runs, a band over runs) beside the bar chart and links the figure."""

import shutil
from pathlib import Path

import numpy as np
import pytest

from rlgen.cli import main
from rlgen.evaluation.stats import bootstrap_mean_ci
from rlgen.report.curves import across_runs, read_run_curves

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures" / "old_runs"
pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py
PPO = ["env=minigrid/empty-5x5", "num_envs=4", "split.num_levels=10", "ppo.n_steps=32", "ppo.num_minibatches=2", "ppo.n_epochs=1",
       "ladder.every_steps=128", "ladder.episodes=2", "checkpoint_every=128", "eval_num_envs=2", "progress=false", "device=cpu",
       "total_steps=256"]  # fmt: skip
BC = ["dataset=dataset", "steps=4", "batch_size=8", "network=minigrid_cnn", "eval.enabled=true", "eval.every_steps=2", "eval.episodes=2",
      "eval_num_envs=2", "checkpoint_every=4", "progress=false", "device=cpu"]  # fmt: skip


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> Path:
    """One PPO run (rungs at 128 and 256 env steps) and two BC seeds (evaluations at gradient steps 2 and 4), evaluated."""
    root = tmp_path_factory.mktemp("curves")
    shutil.copytree(FIXTURES / "dataset", root / "dataset")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        assert main(["train", str(ROOT / "configs/ppo/minigrid_doorkey.yaml"), *PPO, "out_dir=runs/ppo"]) == 0
        for seed in (0, 1):
            assert main(["train", str(ROOT / "configs/offline/bc.yaml"), *BC, f"seed={seed}", f"out_dir=runs/bc{seed}"]) == 0
        for run in ("runs/ppo", "runs/bc0", "runs/bc1"):
            assert main(["evaluate", run, "--episodes", "2"]) == 0
    return root


def test_runs_log_train_validation_and_held_out_curves(study):
    ppo = read_run_curves(study / "runs" / "ppo")
    assert ppo.normalized and set(ppo.curves) == {"train", "validation", "held_out"}
    assert all(s.tolist() == [128, 256] for s, _ in ppo.curves.values())
    bc = read_run_curves(study / "runs" / "bc0")
    assert set(bc.curves) == {"train", "validation", "held_out"} and bc.curves["held_out"][0].tolist() == [2, 4]


def test_report_draws_the_curves_beside_the_bars_and_links_them(study, capsys):
    assert main(["report", str(study / "runs"), "--out", str(study / "rep")]) == 0
    md = (study / "rep" / "report.md").read_text()
    assert (study / "rep" / "learning_curves.png").stat().st_size > 10_000
    assert "![Learning curves: train vs held-out levels over training](learning_curves.png)" in md
    assert md.index("train_vs_held_out.png") < md.index("learning_curves.png")  # right after the bar chart
    assert "no evaluation curves" not in md


def test_runs_without_curves_are_named_and_nothing_breaks(study, tmp_path, capsys):
    shutil.copytree(FIXTURES / "ppo", tmp_path / "old_ppo")  # trained before TensorBoard curves were kept in fixtures: no tb/
    assert main(["report", str(tmp_path), "--out", str(tmp_path / "rep")]) == 0
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "learning curves: no evaluation curves in TensorBoard (tb/) for ppo" in md
    assert not (tmp_path / "rep" / "learning_curves.png").exists() and "learning_curves.png" not in md


def test_across_runs_is_the_mean_of_run_scores_with_a_band_over_runs():
    runs = [(np.array([10, 20, 30]), np.array([0.1, 0.5, 0.9])), (np.array([10, 20]), np.array([0.3, 0.7])),
            (np.array([10, 20]), np.array([0.2, 0.0]))]  # fmt: skip
    steps, mean, low, high = across_runs(runs, seed=0)
    assert steps.tolist() == [10, 20]  # only the steps every run logged
    np.testing.assert_allclose(mean, [0.2, 0.4])
    assert (low[1], high[1]) == bootstrap_mean_ci(np.array([0.5, 0.7, 0.0]), seed=0)  # over the 3 run scores, never episodes
    assert across_runs(runs[:1])[2] is None  # one run: no band
