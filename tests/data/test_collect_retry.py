"""A failed `rlgen collect` writes nothing, so its corrected retry runs (issue 13, item 4); bad collect
input is one line naming the value; the mixed-data recipe warns when the ladder is too coarse (issue 12, item 9)."""

import json
import logging
from pathlib import Path

import pytest

from rlgen.cli import main
from rlgen.config import CollectConfig, load_config
from rlgen.data import load_dataset
from rlgen.collect.manifest import COLLECT_CONFIG
from rlgen.collect.skills import resolve_skill

ROOT = Path(__file__).resolve().parents[2]
CONFIG = str(ROOT / "configs/collect/minigrid_doorkey.yaml")
SMALL = ["env=minigrid/empty-5x5", "split.num_levels=10", "transitions=200", "num_envs=2", "progress=false", "device=cpu"]


def ladder(run: Path, returns: list[float], files: bool = True) -> Path:
    """A hand-made ladder.json (and empty placeholder checkpoints: only their presence is checked here)."""
    run.mkdir(parents=True, exist_ok=True)
    rungs = [{"step": 100 * (i + 1), "checkpoint": f"ladder/step_{100 * (i + 1):010d}.zip", "mean_return": r} for i, r in enumerate(returns)]
    (run / "ladder.json").write_text(json.dumps({"rungs": rungs}))
    if files:
        for r in rungs:
            (run / r["checkpoint"]).parent.mkdir(exist_ok=True)
            (run / r["checkpoint"]).write_bytes(b"")
    return run


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err


@pytest.mark.parametrize("broken", ["missing_run", "no_ladder", "empty_ladder", "missing_checkpoint", "checkpoint_outside"])
def test_a_failed_collect_leaves_nothing_and_the_fixed_command_runs(tmp_path, capsys, broken):
    run = tmp_path / "run"
    if broken == "no_ladder":
        run.mkdir()
    elif broken == "empty_ladder":
        ladder(run, [])
    elif broken == "missing_checkpoint":
        ladder(run, [0.2, 0.9], files=False)
    elif broken == "checkpoint_outside":
        ladder(run, [0.2, 0.9])
        data = json.loads((run / "ladder.json").read_text())
        data["rungs"][-1]["checkpoint"] = "../../elsewhere.zip"
        (run / "ladder.json").write_text(json.dumps(data))
    out = tmp_path / "data" / "e"
    assert main(["collect", CONFIG, *SMALL, "skill=expert", f"policy_run={run}", f"out_dir={out}"]) == 2
    assert str(run) in one_line_error(capsys)
    assert not out.exists(), "a failed collect must not write anything"
    assert main(["collect", CONFIG, *SMALL, "skill=random", f"out_dir={out}"]) == 0  # the corrected command
    assert load_dataset(out).num_transitions >= 200


def test_a_directory_without_finished_work_is_not_a_conflicting_run(tmp_path):
    out = tmp_path / "e"
    out.mkdir()
    (out / COLLECT_CONFIG).write_text(json.dumps({"skill": "expert", "policy_run": "runs/missing"}))  # what the old code left
    assert main(["collect", CONFIG, *SMALL, "skill=random", f"out_dir={out}"]) == 0
    # finished work is protected: a finished segment with another config is refused
    assert main(["collect", CONFIG, *SMALL, "skill=random", "transitions=300", f"out_dir={out}"]) == 2


def test_out_dir_that_is_a_file_and_too_many_envs_are_one_line_errors(tmp_path, capsys):
    f = tmp_path / "file"
    f.write_text("x")
    assert main(["collect", CONFIG, *SMALL, "skill=random", f"out_dir={f}"]) == 2
    assert "is a file" in one_line_error(capsys) and f.read_text() == "x"
    assert main(["collect", CONFIG, *SMALL, "skill=random", "num_envs=100000", f"out_dir={tmp_path / 'n'}"]) == 2
    err = one_line_error(capsys)
    assert "`num_envs` = 100000" in err and "1,024" in err
    assert not (tmp_path / "n").exists()


def rungs_config(run: Path, *extra: str) -> CollectConfig:
    return load_config(CONFIG, ["env=minigrid/empty-5x5", f"policy_run={run}", *extra], schema=CollectConfig)


def test_coarse_ladder_warns_with_the_rung_returns(tmp_path, caplog):
    run = ladder(tmp_path / "run", [0.02, 0.05, 0.133, 0.96])  # the DoorKey ladder of issue 12: nothing near 0.48
    with caplog.at_level(logging.WARNING, logger="rlgen"):
        specs = resolve_skill(rungs_config(run, "skill=mixed"))
    assert [s["label"] for s in specs] == ["expert", "medium"]
    [warning] = [r.getMessage() for r in caplog.records]
    assert "within 0.1" in warning and "0.133" in warning and "0.96" in warning and "ladder.every_steps" in warning
    assert "\n" not in warning
    caplog.clear()
    run = ladder(tmp_path / "fine", [0.02, 0.3, 0.45, 0.7, 0.96])
    with caplog.at_level(logging.WARNING, logger="rlgen"):
        resolve_skill(rungs_config(run, "skill=mixed"))
        resolve_skill(rungs_config(run, "skill=expert"))
    assert caplog.records == []


def test_the_default_recipe_targets_75_percent_of_expert(tmp_path):
    cfg = load_config(CONFIG, ["policy_run=x", "skill=mixed"], schema=CollectConfig)
    assert cfg.mixed_expert_fraction + (1 - cfg.mixed_expert_fraction) * cfg.medium_fraction == pytest.approx(0.75)


def test_a_failed_xland_collect_leaves_nothing(tmp_path, capsys):
    pytest.importorskip("xminigrid")  # the `jax` extra
    out = tmp_path / "x"
    args = ["collect", str(ROOT / "configs/collect/xland_trivial.yaml"), "split.num_levels=100", "split.options.num_rulesets=200",
            "progress=false", "device=cpu", f"out_dir={out}"]  # fmt: skip
    assert main([*args, f"policy_run={tmp_path / 'missing'}"]) == 2
    assert "missing" in one_line_error(capsys) and not out.exists()


def test_the_manifest_records_the_return_as_a_fraction_of_the_expert(tmp_path, caplog):
    from rlgen.collect.skills import return_vs_expert

    run = ladder(tmp_path / "run", [0.1, 0.45, 0.9])
    cfg = rungs_config(run, "skill=mixed")
    rows = [{"policy": "expert", "return": r} for r in (1.0, 0.8)] + [{"policy": "medium", "return": r} for r in (0.4, 0.2)]
    with caplog.at_level(logging.WARNING, logger="rlgen"):
        rv = return_vs_expert(cfg, resolve_skill(cfg), rows)
    assert rv["mean_return"] == pytest.approx(0.6) and rv["expert_return"] == pytest.approx(0.9)  # the dataset's expert episodes
    assert rv["fraction"] == pytest.approx(0.6 / 0.9) and rv["target_fraction"] == pytest.approx(0.75)
    assert caplog.records == []  # 67% is within 0.1 of 75%
    cfg = rungs_config(run, "skill=medium")
    with caplog.at_level(logging.WARNING, logger="rlgen"):
        rv = return_vs_expert(cfg, resolve_skill(cfg), [{"policy": "medium", "return": 0.1}])
    assert rv["expert_return"] == pytest.approx(0.9) and "ladder" in rv["expert_return_from"]  # no expert episodes: the rung's return
    assert rv["fraction"] == pytest.approx(0.1 / 0.9)
    [warning] = [r.getMessage() for r in caplog.records]
    assert "11% of the expert's" in warning and "aims at 50%" in warning
