import json
import shutil
import subprocess

import pytest

from rlgen.cli import main


def test_splits_show(capsys):
    assert main(["splits", "show", "procgen/coinrun"]) == 0
    out = capsys.readouterr().out
    assert "train       0-199 (200 levels)" in out
    assert "held_out    250- " in out


def test_splits_show_json_with_override(capsys):
    assert main(["splits", "show", "minigrid/doorkey-5x5", "split.num_levels=20", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["env"] == "MiniGrid-DoorKey-5x5-v0" and data["train"] == "0-19"


def test_splits_check_reports_duplicates(capsys, tmp_path):
    report = tmp_path / "check.json"
    assert main(["splits", "check", "minigrid/empty-5x5", "--levels", "3", "--held-out", "4", "--json", str(report)]) == 0
    out = capsys.readouterr().out
    assert "held-out duplicating training 4 (100.0%)" in out
    assert json.loads(report.read_text())["report"]["duplicated_held_out"] == [250, 251, 252, 253]


def test_bad_input_is_one_line_without_traceback(capsys):
    assert main(["splits", "show", "procgen/coinrun", "split.trian=3"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err and "split.trian" in err


def test_console_script_is_installed():
    exe = shutil.which("rlgen")
    assert exe, "`pip install -e .` must install the rlgen console script"
    result = subprocess.run([exe, "splits", "show", "procgen/bigfish"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "bigfish" in result.stdout
    result = subprocess.run([exe, "--help"], capture_output=True, text=True, timeout=120)
    assert "splits" in result.stdout and "quickstart" in result.stdout


TRAIN_TINY = ["env=minigrid/empty-5x5", "num_envs=4", "split.num_levels=10", "ppo.n_steps=16", "ppo.num_minibatches=2", "ppo.n_epochs=1",
              "total_steps=64", "ladder.every_steps=64", "ladder.episodes=1", "eval_num_envs=1", "progress=false", "device=cpu"]  # fmt: skip


@pytest.mark.parametrize(
    ("override", "names"),
    [
        ("name=../../escaped", "`name`"), ("name=/tmp/rlgen-absolute-name", "`name`"), ("algo=[ppo]", "`algo`"),
        ("seed=99999999999999999999", "`seed`"), ("out_dir=afile", "afile"), ("ppo.learning_rate=.inf", "`ppo.learning_rate`"),
        ("num_envs=100000", "`num_envs`"), ("ppo.ent_coef=.inf", "`ppo.ent_coef`"),
    ],
)  # fmt: skip
def test_train_bad_input_is_one_line_and_writes_nothing(tmp_path, monkeypatch, capsys, override, names):
    from pathlib import Path

    cwd = tmp_path / "a" / "b"
    cwd.mkdir(parents=True)
    (cwd / "afile").write_text("not a directory")
    monkeypatch.chdir(cwd)
    config = Path(__file__).resolve().parents[1] / "configs/ppo/minigrid_doorkey.yaml"
    assert main(["train", str(config), *TRAIN_TINY, override]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err and names in err, err
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["a", "afile", "b"]  # nothing written, inside or outside
    assert not Path("/tmp/rlgen-absolute-name").exists()
