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


@pytest.mark.parametrize(
    ("override", "names"),
    [("out_dir=''", "out_dir ''"), ("total_steps=true", "`total_steps`"), ("ppo.n_steps=1000000000", "`ppo.n_steps`"),
     ("ladder.episodes=1000000000", "`ladder.episodes`")],
)  # fmt: skip
def test_train_refuses_empty_out_dirs_booleans_and_huge_sizes_before_any_work(tmp_path, monkeypatch, capsys, override, names):
    from pathlib import Path

    monkeypatch.chdir(tmp_path)
    config = Path(__file__).resolve().parents[1] / "configs/ppo/minigrid_doorkey.yaml"
    assert main(["train", str(config), *TRAIN_TINY, override]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err and names in err, err
    assert list(tmp_path.iterdir()) == []  # no runs/ppo or anything else


def test_evaluate_refuses_huge_episode_counts_and_seeds_before_loading(tmp_path, capsys):
    assert main(["evaluate", str(tmp_path / "no-run"), "--episodes", "1000000000"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--episodes 1000000000: must be 1 to 1,000,000" in err, err
    assert main(["evaluate", str(tmp_path / "no-run"), "--seed", "99999999999999999999"]) == 2
    assert "--seed 99999999999999999999: must be 0 to 4,294,967,295" in capsys.readouterr().err


def test_report_prints_the_skipped_lines_before_its_error(tmp_path, capsys):
    (tmp_path / "results.jsonl").write_text('{"torn": \n[1, 2]\n')
    assert main(["report", str(tmp_path)]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 3 and all(line.startswith("rlgen: warning: ") and "results.jsonl:" in line for line in lines[:2]), lines
    assert lines[-1].startswith("rlgen: error: no agent has both train and held-out results")


# --- an out_dir (or a run directory to evaluate) where nothing can be written ----------------------


def unprivileged(cmd: list[str]) -> list[str]:
    """``cmd`` run without root's power to write anywhere (as the review did: setpriv drops DAC override)."""
    import os

    if os.geteuid() != 0:
        return cmd
    if not shutil.which("setpriv"):
        pytest.skip("running as root without setpriv: cannot drop the capability that writes into read-only directories")
    return ["setpriv", "--inh-caps=-dac_override,-dac_read_search", "--bounding-set=-dac_override,-dac_read_search", *cmd]


@pytest.fixture
def read_only(tmp_path):
    d = tmp_path / "ro"
    d.mkdir()
    d.chmod(0o555)
    yield d
    d.chmod(0o755)


@pytest.mark.parametrize("where", ["ro/run", "ro"])
def test_train_into_an_unwritable_out_dir_is_one_line_naming_it(tmp_path, read_only, where):
    import sys
    from pathlib import Path

    out = tmp_path / where
    config = Path(__file__).resolve().parents[1] / "configs/ppo/minigrid_doorkey.yaml"
    cmd = unprivileged([sys.executable, "-m", "rlgen.cli", "train", str(config), *TRAIN_TINY, f"out_dir={out}"])
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr and str(out) in result.stderr
    assert "cannot write there" in result.stderr and "Permission denied" in result.stderr, result.stderr
    assert list(read_only.iterdir()) == []


def test_evaluate_checks_it_can_write_results_before_evaluating(tmp_path):
    import sys
    from pathlib import Path

    run = tmp_path / "run"
    config = Path(__file__).resolve().parents[1] / "configs/ppo/minigrid_doorkey.yaml"
    assert main(["train", str(config), *TRAIN_TINY, f"out_dir={run}"]) == 0
    run.chmod(0o555)
    try:
        result = subprocess.run(unprivileged([sys.executable, "-m", "rlgen.cli", "evaluate", str(run), "--episodes", "2"]),
                                capture_output=True, text=True, timeout=300)  # fmt: skip
    finally:
        run.chmod(0o755)
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1 and str(run) in result.stderr and "results.jsonl" in result.stderr, result.stderr
    assert result.stdout == ""  # refused before evaluating: no header, no result line
    assert not (run / "results.jsonl").exists()
