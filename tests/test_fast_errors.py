"""Config and path errors come before the heavy imports: every one below is one line (exit 2) from a process
that never imported torch, d3rlpy, stable-baselines3 or JAX (they take seconds; the errors must not).

One subprocess runs every case through ``rlgen.cli.main`` and prints, per case, the exit status, the error
line and which heavy modules were loaded by then (``sys.modules`` only grows, so a case that imported one
shows it from that case on).
"""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures" / "old_runs"
HEAVY = ("torch", "d3rlpy", "stable_baselines3", "jax")

RUNNER = """
import contextlib, io, json, sys
from rlgen.cli import main
out = []
for args in json.loads(sys.argv[1]):
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            rc = main(args)
        except SystemExit as e:  # argparse
            rc = e.code
    out.append({"args": args, "rc": rc, "stderr": err.getvalue(), "heavy": sorted(m for m in %r if m in sys.modules)})
print(json.dumps(out))
""" % (HEAVY,)


def run_cases(cases, cwd):
    proc = subprocess.run([sys.executable, "-c", RUNNER, json.dumps(cases)], capture_output=True, text=True, timeout=300, cwd=cwd,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "HOME": str(cwd)})  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    from rlgen.agents.run_dir import write_resolved_config
    from rlgen.config import OfflineConfig, load_config

    monkeypatch.chdir(tmp_path)
    shutil.copytree(FIXTURES / "dataset", tmp_path / "data" / "doorkey-5x5")
    shutil.copytree(FIXTURES / "ppo", tmp_path / "runs" / "ppo")
    # an unfinished offline run of another config in runs/taken: its config and checkpoint state
    other = load_config(None, ["algo=bc", "dataset=data/doorkey-5x5", "steps=4", "batch_size=8", "out_dir=runs/taken"], schema=OfflineConfig)
    write_resolved_config(other, tmp_path / "runs" / "taken")
    (tmp_path / "runs" / "taken" / "checkpoints" / "latest").mkdir(parents=True)
    (tmp_path / "runs" / "taken" / "checkpoints" / "latest" / "state.json").write_text(json.dumps({"step": 2, "finished": False}))
    return tmp_path


CASES = [
    # (argv, what the one error line must say)
    (["train", "configs/offline/bc.yaml", "steps=30"], "no dataset at 'data/coinrun-expert-1M'"),
    (["train", "configs/offline/bc.yaml", "dataset=data/doorkey-5x5", "env=procgen/coinrun"], "doorkey"),
    (["train", "configs/offline/cql.yaml", "dataset=data/doorkey-5x5", "batch_size=60000"], "batch_size=60,000 is larger than the dataset"),
    (["train", "configs/offline/bc.yaml", "dataset=data/doorkey-5x5", "steps=4", "batch_size=8", "learning_rate=0.1", "out_dir=runs/taken"],
     "holds a run with a different config"),
    (["train", "configs/offline/bc.yaml", "stepz=30"], "unknown key `stepz` (did you mean `steps`?)"),
    (["train", "configs/ppo/minigrid_doorkey.yaml", "total_steps=0"], "key `total_steps` = 0"),
    (["train", "configs/ppo/minigrid_doorkey.yaml", "algo=sac"], "key `algo` = 'sac'"),
    (["train", "no/such/config.yaml"], "config file 'no/such/config.yaml' does not exist"),
    (["evaluate", "runs/none"], "'runs/none' is not a run directory"),
    (["evaluate", "runs/ppo", "--checkpoint", "../../etc/passwd"], "leaves the run directory"),
    (["evaluate", "runs/ppo", "--checkpoint", "ladder/step_9.pt"], "ladder/step_9.pt"),
    (["evaluate", "runs/ppo", "--episodes", "0"], "--episodes 0: must be 1 to"),
    (["collect", "configs/collect/minigrid_doorkey.yaml", "policy_run=runs/missing"], "policy_run 'runs/missing' is not a directory"),
    (["datasets", "info", "data/none"], "no dataset at 'data/none'"),
    (["datasets", "export", "data/none", "--minari", "rlgen/x-v0"], "no dataset at 'data/none'"),
    (["report", "runs/none"], "runs/none"),
    (["splits", "check", "minigrid/doorkey-5x5", "--levels", "0"], "--levels and --held-out must be >= 1"),
]  # fmt: skip


def test_config_and_path_errors_are_one_line_before_any_heavy_import(workdir):
    (workdir / "configs").symlink_to(ROOT / "configs")
    results = run_cases([args for args, _ in CASES], workdir)
    for (args, expected), r in zip(CASES, results):
        lines = r["stderr"].strip().splitlines()
        assert r["rc"] == 2, (args, r)
        assert len(lines) == 1 and lines[0].startswith("rlgen: error: ") and expected in lines[0], (args, r["stderr"])
        assert r["heavy"] == [], f"{args}: {r['heavy']} imported before the error"


def test_the_input_checks_name_the_trainers_own_checkpoint_paths():
    from rlgen.agents import inputs, offline, ppo_sb3
    from rlgen.agents.ppo_jax.agent import LATEST as JAX_LATEST

    assert (inputs.PPO_LATEST, inputs.ONLINE_STATE) == (ppo_sb3.LATEST, ppo_sb3.STATE)
    assert inputs.PPO_JAX_LATEST == JAX_LATEST and offline.CHECKPOINT_DIR == inputs.CHECKPOINT_DIR
