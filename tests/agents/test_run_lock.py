"""One trainer per run directory: a second ``rlgen train`` on the same ``out_dir`` is refused with one
line naming the process that holds it, for PPO, JAX PPO and offline; the kernel releases the lock
when its holder dies, however it dies."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rlgen.agents.run_dir import LOCK, run_dir_lock
from rlgen.cli import main
from rlgen.errors import RlgenError

ROOT = Path(__file__).resolve().parents[2]
TINY = [
    "env=minigrid/empty-5x5", "num_envs=4", "split.num_levels=10", "ppo.n_steps=32", "ppo.num_minibatches=2",
    "ppo.n_epochs=1", "ladder.every_steps=10000000", "ladder.episodes=2", "eval_num_envs=2", "progress=false", "device=cpu",
]  # fmt: skip
HOLD = "import sys, time; from rlgen.agents.run_dir import run_dir_lock\nwith run_dir_lock(sys.argv[1]):\n    print('held', flush=True); time.sleep(120)"


def wait_for_holder(run_dir: Path, pid: int, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if json.loads((run_dir / LOCK).read_text())["pid"] == pid:
                return
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.1)
    raise AssertionError(f"process {pid} never took the lock of {run_dir}")


def test_a_second_ppo_train_on_the_same_directory_is_refused(tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "rlgen.cli", "train", str(ROOT / "configs/ppo/minigrid_doorkey.yaml"), *TINY, f"out_dir={out}", "total_steps=10000000"]
    first = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_for_holder(out, first.pid)
        second = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        assert second.returncode == 2, second.stderr
        assert second.stderr.count("\n") == 1 and "Traceback" not in second.stderr
        assert f"in use by process {first.pid}" in second.stderr and "rlgen.cli train" in second.stderr
        assert first.poll() is None  # the first one trains on, undisturbed
        first.send_signal(signal.SIGKILL)  # no clean-up at all: the kernel releases the lock
        first.wait(timeout=30)
        with run_dir_lock(out):  # the retry is not blocked
            pass
    finally:
        first.kill()
        first.wait(timeout=30)


@pytest.fixture
def holder(tmp_path):
    """A separate process holding the lock of ``tmp_path / 'run'``."""
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(out)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    yield out, proc.pid
    proc.kill()
    proc.wait(timeout=30)


def test_the_lock_names_its_holder_and_is_released_when_it_dies(holder):
    out, pid = holder
    with pytest.raises(RlgenError, match=f"in use by process {pid}"):
        with run_dir_lock(out):
            pass
    import os

    os.kill(pid, signal.SIGKILL)
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            with run_dir_lock(out):
                return
        except RlgenError:
            time.sleep(0.1)
    raise AssertionError("the lock outlived its holder")


def test_offline_train_takes_the_lock_before_any_work(holder, capsys):
    out, pid = holder
    # a real dataset: a missing one is refused even earlier, by the input checks before any import (issue 16)
    dataset = ROOT / "tests/fixtures/old_runs/dataset"
    assert main(["train", str(ROOT / "configs/offline/bc.yaml"), f"dataset={dataset}", f"out_dir={out}"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"in use by process {pid}" in err


def test_jax_train_takes_the_lock_before_any_work(holder, capsys, tmp_path_factory, monkeypatch):
    pytest.importorskip("xminigrid", reason="the JAX PPO needs the jax extra: pip install 'rlgen[jax]'")
    monkeypatch.setenv("RLGEN_CACHE", str(tmp_path_factory.getbasetemp() / "rlgen-cache"))
    out, pid = holder
    assert main(["train", str(ROOT / "configs/ppo_jax/xland_trivial.yaml"), "progress=false", f"out_dir={out}"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"in use by process {pid}" in err
