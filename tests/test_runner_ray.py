"""The Ray runner: a local Ray instance runs two tiny runs (PPO seeds 0 and 1, their evaluations, the report)."""

from __future__ import annotations

import json

import pytest
import yaml

from rlgen.cli import main
from rlgen.pipeline.stages import read_record

ray = pytest.importorskip("ray")  # in the `test` extra; optional for users (`rlgen[ray]`)

STUDY = {
    "name": "tiny-ray",
    "out_dir": "study",
    "envs": ["minigrid/empty-5x5"],
    "split": {"num_levels": 20},
    "seeds": [0, 1],
    "device": "cpu",
    "ppo": {"set": {"num_envs": 4, "total_steps": 256, "checkpoint_every": 256, "eval_num_envs": 2,
                    "ppo": {"n_steps": 64, "num_minibatches": 2, "n_epochs": 1, "network": "minigrid_cnn", "normalize_reward": False},
                    "ladder": {"every_steps": 256, "episodes": 2}}},
    "evaluation": {"episodes": 2, "num_envs": 2},
    "runner": "ray",
    "resources": {"default": {"num_cpus": 1}},
}  # fmt: skip


def test_ray_runner_runs_two_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "study.yaml").write_text(yaml.safe_dump(STUDY))
    assert main(["run", "study.yaml"]) == 0, capsys.readouterr()
    out = capsys.readouterr().out
    assert "5 stages: 0 up to date, 5 to run" in out
    for sid in ("ppo/empty-5x5-s0", "ppo/empty-5x5-s1", "eval/ppo/empty-5x5-s0", "eval/ppo/empty-5x5-s1", "report"):
        assert read_record(tmp_path / "study" / sid)["status"] == "done", sid
    seeds = {json.loads(line)["train_seed"] for f in (tmp_path / "study/eval/ppo").glob("*/results.jsonl") for line in f.read_text().splitlines()}
    assert seeds == {0, 1}
    assert (tmp_path / "study/logs/ppo__empty-5x5-s0.log").is_file()  # each task's output goes to its log
    assert not ray.is_initialized()  # the runner shut down the Ray it started


def test_without_an_address_a_fresh_local_ray_starts_with_its_dashboard_off(tmp_path, monkeypatch):
    """``address="local"``: Ray then ignores ``RAY_ADDRESS`` and the cluster an earlier ``ray start``
    recorded in its temp dir (attaching to a dead one hung for over 10 minutes)."""
    from rlgen.pipeline.ray_scheduler import RayExecutor

    calls = []
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", lambda **kwargs: calls.append(kwargs))
    monkeypatch.setattr(ray, "shutdown", lambda: None)
    RayExecutor(tmp_path / "logs", None).close()
    assert calls and calls[0]["address"] == "local" and calls[0]["include_dashboard"] is False
    assert calls[0]["dashboard_host"] == "127.0.0.1"


def test_an_address_where_no_cluster_answers_fails_fast_with_one_line(tmp_path):
    import socket
    import subprocess
    import sys
    import time

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    (tmp_path / "study.yaml").write_text(yaml.safe_dump(STUDY))
    t0 = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "rlgen.cli", "run", "study.yaml", f"ray.address=127.0.0.1:{port}"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=120)  # fmt: skip
    elapsed = time.perf_counter() - t0
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1 and f"ray.address=127.0.0.1:{port}" in result.stderr and "no Ray cluster can be reached" in result.stderr
    assert elapsed < 60


@pytest.fixture
def not_ray():
    """A plain TCP listener on 127.0.0.1 that accepts connections and never answers: not a Ray cluster."""
    import socket
    import threading

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    held = []

    def accept() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:  # closed at teardown
                return
            held.append(conn)

    threading.Thread(target=accept, daemon=True).start()
    yield f"127.0.0.1:{server.getsockname()[1]}"
    server.close()
    for conn in held:
        conn.close()


def test_an_address_that_accepts_tcp_but_is_not_ray_fails_within_the_timeout(tmp_path, not_ray):
    """The TCP check passes there, and Ray itself (which rewrites the address to the node's IP) retried for
    over 10 minutes; the trial join in a child process is killed at ray.connect_timeout_s."""
    import subprocess
    import sys
    import time

    (tmp_path / "study.yaml").write_text(yaml.safe_dump(STUDY))
    t0 = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "rlgen.cli", "run", "study.yaml", f"ray.address={not_ray}", "ray.connect_timeout_s=3"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=120)  # fmt: skip
    elapsed = time.perf_counter() - t0
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1 and f"ray.address={not_ray}: could not join a Ray cluster there within ray.connect_timeout_s=3 s" in result.stderr
    assert elapsed < 60, elapsed  # the 3 s deadline plus the command's start-up (seconds here)
    print(f"failed after {elapsed:.1f} s")


def test_an_address_of_a_live_cluster_is_joined(tmp_path, monkeypatch):
    """The trial join must not refuse a real cluster: a local Ray head in a child process, joined by address."""
    import subprocess
    import sys

    from rlgen.pipeline.ray_scheduler import RayExecutor

    monkeypatch.setenv("RAY_AUTH_MODE", "token")  # a new local cluster uses token authentication; joining it needs this
    head_code = ("import sys, ray; ctx = ray.init(include_dashboard=False, num_cpus=1, log_to_driver=False); "
                 "print(ctx.address_info['gcs_address'], flush=True); sys.stdin.read(); ray.shutdown()")  # fmt: skip
    head = subprocess.Popen([sys.executable, "-c", head_code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        address = head.stdout.readline().strip()
        assert ":" in address, "the head did not start"
        executor = RayExecutor(tmp_path / "logs", address, connect_timeout_s=60)
        try:
            assert ray.is_initialized() and ray.cluster_resources().get("CPU") == 1.0
        finally:
            executor.close()
        assert not ray.is_initialized()
    finally:
        head.stdin.close()
        try:
            head.wait(timeout=60)
        except subprocess.TimeoutExpired:
            head.kill()
