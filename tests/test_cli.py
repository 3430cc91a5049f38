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
