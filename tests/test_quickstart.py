"""`rlgen quickstart`: its config is valid and complete, and the command runs end to end (with tiny budgets;
the real budget is measured by bench/quickstart.py, not by a timed test)."""

from __future__ import annotations

import json

import pytest
import torch
import yaml

from rlgen.cli import main
from rlgen.pipeline.quickstart import QUICKSTART_CONFIG, load_quickstart

TINY = [
    "ppo.set.total_steps=512", "ppo.set.ladder.every_steps=256", "ppo.set.checkpoint_every=256", "ppo.set.ladder.episodes=2",
    "datasets.transitions=[300]", "offline.per_algo.bc.steps=3", "offline.per_algo.cql.steps=3", "offline.per_algo.dt.steps=2",
    "offline.per_algo.dt.n_layers=1", "evaluation.episodes=2", "evaluation.num_envs=2", "workers=1", "device=cpu",
]  # fmt: skip


@pytest.fixture(autouse=True)
def one_torch_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_quickstart_config_is_the_whole_study():
    study, stages = load_quickstart()
    kinds = [s.kind for s in stages]
    assert study.envs == ["minigrid/MiniGrid-DoorKey-6x6-v0"]
    assert kinds.count("ppo") == 1 and kinds.count("collect") == 2 and kinds.count("offline") == 6 and kinds[-1] == "report"
    assert {s.config["algo"] for s in stages if s.kind == "offline"} == {"bc", "cql", "dt"}
    assert {s.config["skill"] for s in stages if s.kind == "collect"} == {"expert", "mixed"}
    evals = [s for s in stages if s.kind == "evaluate"]
    assert len(evals) == 8 and all(s.config["which"] == ["train", "held_out"] for s in evals)  # PPO, 6 offline, random


def test_print_config(capsys):
    assert main(["quickstart", "--print-config"]) == 0
    assert yaml.safe_load(capsys.readouterr().out) == yaml.safe_load(QUICKSTART_CONFIG.read_text())


def test_quickstart_runs_end_to_end(tmp_path, capsys):
    out = tmp_path / "qs"
    assert main(["quickstart", f"out_dir={out}", *TINY]) == 0
    text = capsys.readouterr().out
    assert "18 stages: 0 up to date, 18 to run" in text and f"report: {out}/report/report.md" in text
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("agent "))
    table = lines[start:next(i for i, line in enumerate(lines) if line.startswith(("warning:", "stages:")))]
    assert [line.split()[0] for line in table[1:]] == ["bc-expert", "bc-mixed", "cql-expert", "cql-mixed", "dt-expert", "dt-mixed", "ppo", "random"]
    assert table[0].split()[:4] == ["agent", "env", "runs", "train"] and all(line.endswith("evaluation noise only: 1 run") for line in table[1:])
    assert "warning: 8 of 8 rows have fewer than 3 runs (8 with 1 run: CI over episodes, evaluation noise only)" in text
    assert "evaluation noise only: 1 run" in (out / "report" / "report.md").read_text()
    rows = [json.loads(line) for f in out.glob("eval/**/results.jsonl") for line in f.read_text().splitlines()]
    assert {r["which"] for r in rows} == {"train", "held_out"} and all(min(r["levels"]) >= 250 for r in rows if r["which"] == "held_out")
    assert {(r["algorithm"], r["dataset_skill"], r["dataset_transitions"], r["study"]) for r in rows if r["algorithm"] == "cql"} == {
        ("cql", "expert", 300, "quickstart"), ("cql", "mixed", 300, "quickstart")}  # fmt: skip
    assert len({r["run_id"] for r in rows}) == 8
