"""`rlgen run`: a tiny real study end to end, skipping, recomputing, crash-resume, failures in a sweep,
config errors. The study runs once (module fixture, relative out_dir); tests that change it work on
a copy, which keeps every hash because stage paths count relative to the study directory."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from rlgen.cli import main
from rlgen.pipeline import load_study
from rlgen.pipeline.stages import read_record, stage_state

TINY = {
    "name": "tiny",
    "out_dir": "study",
    "envs": ["minigrid/empty-5x5"],
    "split": {"num_levels": 20},
    "seeds": [0],
    "device": "cpu",
    "ppo": {"set": {"num_envs": 4, "total_steps": 512, "checkpoint_every": 256, "eval_num_envs": 2,
                    "ppo": {"n_steps": 64, "num_minibatches": 2, "n_epochs": 1, "network": "minigrid_cnn", "normalize_reward": False},
                    "ladder": {"every_steps": 256, "episodes": 2}}},
    "datasets": {"skills": ["expert"], "transitions": [300], "set": {"num_envs": 4, "shard_transitions": 100}},
    "offline": {"algos": ["bc"], "set": {"steps": 20, "batch_size": 16, "network": "minigrid_cnn", "checkpoint_every": 20, "eval": {"enabled": False}}},
    "evaluation": {"episodes": 3, "num_envs": 3},
    "workers": 1,
}  # fmt: skip
STAGES = ["ppo/empty-5x5-s0", "eval/ppo/empty-5x5-s0", "data/empty-5x5-expert-300-s0", "offline/empty-5x5-expert-300-s0/bc-s0",
          "eval/offline/empty-5x5-expert-300-s0/bc-s0", "report"]  # fmt: skip


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py


def write_study(directory: Path, **changes) -> Path:
    data = {**TINY, **changes}
    path = directory / "study.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def results(study_dir: Path) -> dict[tuple[str, str], dict]:
    """(agent, which) -> the evaluation row, from every eval stage's results.jsonl."""
    out = {}
    for f in sorted(study_dir.glob("eval/**/results.jsonl")):
        for line in f.read_text().splitlines():
            row = json.loads(line)
            out[(row["agent"], row["which"])] = row
    return out


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> tuple[Path, str]:
    """The tiny study, run once to completion; returns its directory (the cwd of the run) and the output."""
    base = tmp_path_factory.mktemp("tiny")
    write_study(base)
    cwd = os.getcwd()
    os.chdir(base)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        import io
        from contextlib import redirect_stdout

        buf = io.StringIO()
        with redirect_stdout(buf):
            code = main(["run", "study.yaml"])
    finally:
        os.chdir(cwd)
        torch.set_num_threads(threads)
    out = buf.getvalue()
    assert code == 0, out
    return base, out


@pytest.fixture
def copy(finished, tmp_path, monkeypatch) -> Path:
    """A copy of the finished study to change; the cwd is its base."""
    work = tmp_path / "copy"
    shutil.copytree(finished[0], work)
    monkeypatch.chdir(work)
    return work


def test_end_to_end(finished):
    base, out = finished
    study = base / "study"
    assert "6 stages: 0 up to date, 6 to run" in out
    for sid in STAGES:
        assert read_record(study / sid)["status"] == "done", sid
    rows = results(study)
    assert set(rows) == {("ppo", "train"), ("ppo", "held_out"), ("bc", "train"), ("bc", "held_out")}
    bc = rows[("bc", "held_out")]
    assert bc["episodes"] == 3 and min(bc["levels"]) >= 20 and bc["dataset"] == "empty-5x5-expert-300-s0" and bc["train_levels"] == 20
    assert max(rows[("bc", "train")]["levels"]) < 20
    assert (study / "report" / "report.md").is_file() and (study / "report" / "train_vs_held_out.png").is_file()
    assert "report: study/report/report.md" in out
    # the closing table: one line per agent with train, held-out and gap
    assert any(line.startswith("bc ") and "[" in line for line in out.splitlines())
    assert json.loads((study / "data/empty-5x5-expert-300-s0/manifest.json").read_text())["skill"] == "expert"


def test_rerun_skips_every_stage(copy, capsys):
    before = {sid: read_record(copy / "study" / sid)["time"] for sid in STAGES}
    assert main(["run", "study.yaml"]) == 0
    out = capsys.readouterr().out
    assert "6 stages: 6 up to date, 0 to run" in out and "stages: 6 up to date" in out
    assert {sid: read_record(copy / "study" / sid)["time"] for sid in STAGES} == before


def test_edited_config_recomputes_only_what_changed(copy, capsys):
    study, stages = load_study("study.yaml", ["offline.set.steps=25"])
    states = {s.id: stage_state(s) for s in stages}
    assert states == {**dict.fromkeys(STAGES[:3], "done"), **dict.fromkeys(STAGES[3:], "changed")}
    before = {sid: read_record(copy / "study" / sid)["time"] for sid in STAGES}
    assert main(["run", "study.yaml", "offline.set.steps=25"]) == 0
    assert "6 stages: 3 up to date, 3 to run" in capsys.readouterr().out
    after = {sid: read_record(copy / "study" / sid)["time"] for sid in STAGES}
    assert [sid for sid in STAGES if after[sid] != before[sid]] == STAGES[3:]
    state = json.loads((copy / "study/offline/empty-5x5-expert-300-s0/bc-s0/checkpoints/latest/state.json").read_text())
    assert state["step"] == 25  # recomputed from scratch with the new config


def test_killed_run_resumes_and_matches_an_uninterrupted_run(finished, tmp_path):
    """SIGKILL `rlgen run` in the middle of the collection stage; the re-run keeps PPO, continues the
    collection and ends with exactly the results of the uninterrupted run."""
    work = tmp_path / "killed"
    work.mkdir()
    write_study(work)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "rlgen.cli", "run", "study.yaml"], cwd=work, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
    record = work / "study/data/empty-5x5-expert-300-s0/stage.json"
    deadline = time.time() + 240
    try:
        while time.time() < deadline and proc.poll() is None:
            if record.is_file() and '"running"' in record.read_text():
                break
            time.sleep(0.02)
        assert proc.poll() is None, "the run ended before the collection stage started"
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    killed_ppo = read_record(work / "study/ppo/empty-5x5-s0")
    assert killed_ppo["status"] == "done" and read_record(work / "study/data/empty-5x5-expert-300-s0")["status"] == "running"

    result = subprocess.run([sys.executable, "-m", "rlgen.cli", "run", "study.yaml"], cwd=work, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "continuing an interrupted run" in result.stdout
    assert read_record(work / "study/ppo/empty-5x5-s0")["time"] == killed_ppo["time"]  # not recomputed
    ours, reference = results(work / "study"), results(finished[0] / "study")
    assert set(ours) == set(reference)
    for key, row in reference.items():
        assert ours[key]["returns"] == row["returns"] and ours[key]["levels"] == row["levels"], key


def test_failed_run_is_reported_and_the_sweep_goes_on(copy, capsys):
    """Three offline algorithms on two worker processes; CQL cannot start (no such GPU): its evaluation
    is blocked, IQL and the random baseline still run, the report covers what finished, exit 1."""
    if torch.cuda.device_count() > 7:  # pragma: no cover
        pytest.skip("needs a machine without a GPU number 7")
    code = main(["run", "study.yaml", "workers=2", "offline.algos=[bc,cql,iql]", "offline.per_algo.cql.device=cuda:7",
                 "evaluation.random_baseline=true"])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 1
    cql = "offline/empty-5x5-expert-300-s0/cql-s0"
    assert f"FAILED  {cql}: RlgenError: device='cuda:7' but CUDA is not available" in out
    assert f"blocked eval/{cql}: needs {cql}, which failed" in out
    study = copy / "study"
    assert read_record(study / "offline/empty-5x5-expert-300-s0/iql-s0")["status"] == "done"
    assert read_record(study / "eval/random/empty-5x5")["status"] == "done"
    assert read_record(study / "report")["status"] == "incomplete"  # the next run redoes it
    assert {r["agent"] for r in results(study).values()} == {"ppo", "bc", "iql", "random"}
    assert (study / "logs" / f"{cql.replace('/', '__')}.log").is_file()
    report = (study / "report" / "report.md").read_text()
    assert "| iql |" in report and "| cql |" not in report


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("offline.algos=[bc,dqn]", "key `offline.algos` = ['bc', 'dqn']: unknown algorithm 'dqn'; allowed: bc, bcq, cql, iql, dt, bct"),
        ("offline.set.stepz=3", "unknown key `stepz` (did you mean `steps`?)"),
        ("datasets.skills=[expert,great]", "key `datasets.skills.1` = 'great'"),
        ("runner=slurm", "key `runner` = 'slurm'"),
        ("ppo.set.seed=3", "key `ppo.set.seed` is decided by the study (`seeds`); remove it"),
        ("datasets.transitions=[0]", "transitions value 0 must be >= 1"),
        ("resources.gpu.num_gpus=1", "unknown stage kind 'gpu'; allowed: default, ppo, collect, subset, offline, evaluate, report"),
        ("envs=[minigrid/nope]", "unknown MiniGrid env 'nope'"),
        ("ppo.config=configs/ppo/{gmae}.yaml", "key `ppo.config` = 'configs/ppo/{gmae}.yaml': cannot fill in 'gmae'"),
        ("seeds=[0,0]", "seeds lists 0 twice"),
    ],
)
def test_config_errors_are_one_line_naming_the_key(tmp_path, monkeypatch, capsys, override, expected):
    monkeypatch.chdir(tmp_path)
    write_study(tmp_path)
    assert main(["run", "study.yaml", override, "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err and expected in err, err


def test_dry_run_lists_the_stages(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    write_study(tmp_path)
    assert main(["run", "study.yaml", "seeds=[0,1]", "datasets.skills=[expert,mixed]", "--dry-run"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[-1] == "17 stages in study"  # per seed: ppo, its eval, 2 datasets, 2 bc, 2 evals; + report
    assert "new      offline   offline/empty-5x5-mixed-300-s1/bc-s1" in lines


def test_stage_configs_layer_base_file_study_and_set(tmp_path, monkeypatch):
    """Base file < the study's keys (device too) < `set` < `per_algo`."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bc.yaml").write_text(yaml.safe_dump({"algo": "bc", "steps": 7, "batch_size": 8, "device": "auto", "seed": 5, "dataset": "elsewhere"}))
    write_study(tmp_path, offline={"config": "{algo}.yaml", "algos": ["bc"], "set": {"batch_size": 9}, "per_algo": {"bc": {"batch_size": 10}}})
    _, stages = load_study("study.yaml")
    bc = next(s for s in stages if s.kind == "offline").config
    assert (bc["steps"], bc["batch_size"], bc["device"], bc["seed"]) == (7, 10, "cpu", 0)
    assert bc["dataset"] == "study/data/empty-5x5-expert-300-s0"


def test_reuse_an_existing_ppo_run(finished, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run = finished[0] / "study/ppo/empty-5x5-s0"
    write_study(tmp_path, ppo={"reuse": str(run)})
    _, stages = load_study("study.yaml")
    assert [s.kind for s in stages][:2] == ["external", "evaluate"] and stages[0].dir == str(run)
    assert next(s for s in stages if s.kind == "collect").config["policy_run"] == str(run)
    write_study(tmp_path, ppo={"reuse": str(run)}, split={"num_levels": 50})
    with pytest.raises(Exception, match="make `split` match the run"):
        load_study("study.yaml")


def test_one_run_per_study_directory(copy, capsys):
    from rlgen.pipeline.study_run import _Lock

    with _Lock(copy / "study"):
        assert main(["run", "study.yaml"]) == 2
    assert "another `rlgen run` is working on study" in capsys.readouterr().err


def test_pipeline_rows_carry_the_identity_rlgen_evaluate_writes(copy, capsys):
    """The evaluation stage and `rlgen evaluate` name an agent from the same place: the run directory."""
    from rlgen.evaluation.results import IDENTITY_FIELDS

    rows = results(copy / "study")
    offline = copy / "study/offline/empty-5x5-expert-300-s0/bc-s0"
    bc = rows[("bc", "held_out")]
    assert bc["run_id"] == json.loads((offline / "run.json").read_text())["run_id"]
    assert (bc["algorithm"], bc["dataset_skill"], bc["dataset_levels"], bc["dataset_transitions"], bc["study"], bc["train_seed"]) == (
        "bc", "expert", 20, 300, "tiny", 0)  # fmt: skip
    assert rows[("ppo", "held_out")]["run_id"] == json.loads((copy / "study/ppo/empty-5x5-s0/run.json").read_text())["run_id"]
    assert main(["evaluate", str(offline), "--episodes", "3"]) == 0
    (cli,) = [json.loads(line) for line in (offline / "results.jsonl").read_text().splitlines() if json.loads(line)["which"] == "held_out"]
    # the study label is the run's (its run.json, written when the pipeline created it): a by-hand evaluation
    # keeps the run in its study (before: study None, and the run left its row and its comparisons)
    assert json.loads((offline / "run.json").read_text())["study"] == "tiny"
    assert {k: cli[k] for k in IDENTITY_FIELDS} == {k: bc[k] for k in IDENTITY_FIELDS}



@pytest.mark.parametrize("layout", ["checkpoints/latest/state.json", "checkpoints/state.json"])
def test_the_progress_hint_reads_torch_and_jax_offline_checkpoints(tmp_path, layout):
    # checkpoints/state.json: a JAX agents' commit (one seed or a seed group); it showed nothing before
    import json

    from rlgen.pipeline.plan import Stage
    from rlgen.pipeline.scheduler import progress_hint

    (tmp_path / layout).parent.mkdir(parents=True)
    (tmp_path / layout).write_text(json.dumps({"step": 500, "finished": False}))
    stage = Stage(id="offline/d/bc_jax-s0_1", kind="offline", dir=str(tmp_path), config={"steps": 1500}, deps=(), hash="h")
    assert progress_hint(stage) == "500/1,500 updates"
