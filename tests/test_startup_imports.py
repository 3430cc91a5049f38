"""Start-up (issue 18, part 4): the happy path of a command imports only the libraries its agent needs, so a
PPO run pays no d3rlpy import and an offline run no stable-baselines3 import (the seconds they cost are timed
by bench/startup.py; this checks the import set, not the time)."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures" / "old_runs"
HEAVY = ("torch", "stable_baselines3", "d3rlpy", "jax", "ray", "envpool")


@pytest.mark.parametrize(("run", "absent"), [("ppo", {"d3rlpy", "jax", "ray"}), ("bc", {"stable_baselines3", "jax", "ray"})])
def test_evaluate_imports_only_what_its_agent_needs(run, absent, tmp_path):
    shutil.copytree(FIXTURES / run, tmp_path / run)
    shutil.copytree(FIXTURES / "dataset", tmp_path / "dataset")  # an offline run names its dataset
    code = (f"import sys; from rlgen.cli import main; rc = main(['evaluate', {str(tmp_path / run)!r}, '--episodes', '1']); "
            f"print(rc, sorted(m for m in {HEAVY!r} if m in sys.modules))")  # fmt: skip
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    rc, imported = result.stdout.strip().splitlines()[-1].split(" ", 1)
    assert rc == "0" and "torch" in imported  # it did run the agent
    assert not absent & set(eval(imported)), imported
