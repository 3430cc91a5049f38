"""`rlgen quickstart`: its config is valid and complete, and the command runs end to end (with tiny budgets;
the real budget is measured by bench/quickstart.py, not by a timed test)."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import pytest
import yaml

from rlgen.cli import main
from rlgen.pipeline.quickstart import QUICKSTART_CONFIG, load_quickstart
from tests.bench_scripts import load_bench

TINY = [
    "ppo.set.total_steps=512", "ppo.set.ladder.every_steps=256", "ppo.set.checkpoint_every=256", "ppo.set.ladder.episodes=2",
    "datasets.transitions=[300]", "offline.per_algo.bc.steps=3", "offline.per_algo.cql.steps=3", "offline.per_algo.dt.steps=2",
    "offline.per_algo.dt.n_layers=1", "evaluation.episodes=2", "evaluation.num_envs=2", "workers=1", "device=cpu",
    "split.options.max_steps=30",  # failed episodes end at 30 steps, not 360
]  # fmt: skip


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py


def test_quickstart_config_is_the_whole_study():
    study, stages = load_quickstart()
    kinds = [s.kind for s in stages]
    assert study.envs == ["minigrid/MiniGrid-DoorKey-6x6-v0"]
    assert (study.split.num_levels, study.split.drop_duplicates, study.split.options) == (25, True, {"view": "full"})
    assert kinds.count("ppo") == 3 and kinds.count("collect") == 6 and kinds.count("offline") == 18 and kinds[-1] == "report"
    assert {s.config["algo"] for s in stages if s.kind == "offline"} == {"bc", "cql", "dt"}
    assert {s.config["skill"] for s in stages if s.kind == "collect"} == {"expert", "mixed"}
    evals = [s for s in stages if s.kind == "evaluate"]
    assert len(evals) == 21 and all(s.config["which"] == ["train", "held_out"] for s in evals)  # 3 PPO, 18 offline
    # each seed is a whole replicate: offline seed s trains on data collected from PPO seed s
    by_id = {s.id: s for s in stages}
    for s in stages:
        if s.kind == "offline":
            (data,) = s.deps
            assert by_id[data].deps == (f"ppo/doorkey-6x6-s{s.config['seed']}",) and by_id[data].config["seed"] == s.config["seed"]


def test_dry_run_lists_three_seeds_per_agent(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["quickstart", "--dry-run"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[-1] == "49 stages in runs/quickstart"
    seeds = defaultdict(set)
    for line in lines[1:-1]:
        state, kind, sid = line.split()
        assert state == "new"
        if kind == "offline":  # offline/doorkey-6x6-<skill>-30k-s<seed>/<algo>-s<seed>
            data, run = sid.split("/")[1:]
            seeds[(run.rsplit("-s", 1)[0], data.split("-")[2])].add(int(run.rsplit("-s", 1)[1]))
        elif kind == "ppo":
            seeds[("ppo", None)].add(int(sid.rsplit("-s", 1)[1]))
    assert len(seeds) == 7 and all(len(s) >= 3 for s in seeds.values()), seeds


def test_print_config(capsys):
    assert main(["quickstart", "--print-config"]) == 0
    assert yaml.safe_load(capsys.readouterr().out) == yaml.safe_load(QUICKSTART_CONFIG.read_text())


def test_quickstart_runs_end_to_end(tmp_path, capsys):
    out = tmp_path / "qs"
    assert main(["quickstart", f"out_dir={out}", *TINY]) == 0
    text = capsys.readouterr().out
    assert "49 stages: 0 up to date, 49 to run" in text and f"report: {out}/report/report.md" in text
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("agent "))
    table = lines[start:next(i for i, line in enumerate(lines) if line.startswith(("warning:", "stages:")))]
    # one row per agent, each over its three replicates
    assert [line.split()[0] for line in table[1:]] == ["bc-expert", "bc-mixed", "cql-expert", "cql-mixed", "dt-expert", "dt-mixed", "ppo"]
    assert table[0].split()[:4] == ["agent", "env", "runs", "train"]
    assert all(line.split()[2] == "3" and line.endswith("3 runs") for line in table[1:]), table
    assert "warning:" not in text and "| 3 | " in (out / "report" / "report.md").read_text() and "**evaluation noise only: 1 run** |" not in (out / "report" / "report.md").read_text()
    rows = [json.loads(line) for f in out.glob("eval/**/results.jsonl") for line in f.read_text().splitlines()]
    assert {r["which"] for r in rows} == {"train", "held_out"} and all(min(r["levels"]) >= 75 for r in rows if r["which"] == "held_out")  # validation 25-74
    assert all(max(r["levels"]) < 25 for r in rows if r["which"] == "train")
    assert {(r["algorithm"], r["dataset_skill"], r["dataset_transitions"], r["study"], r["train_seed"]) for r in rows if r["algorithm"] == "cql"} == {
        ("cql", skill, 300, "quickstart", seed) for skill in ("expert", "mixed") for seed in (0, 1, 2)}  # fmt: skip
    assert len({r["run_id"] for r in rows}) == 21
    # bench/quickstart.py's per-stage table, from the stage records
    breakdown = {what: (n, total, longest) for what, n, total, longest in _bench().stage_breakdown(out)}
    assert list(breakdown) == ["ppo", "collect", "offline bc", "offline cql", "offline dt", "evaluate bc-expert", "evaluate bc-mixed",
                               "evaluate cql-expert", "evaluate cql-mixed", "evaluate dt-expert", "evaluate dt-mixed", "evaluate ppo", "report"]  # fmt: skip
    assert [breakdown[k][0] for k in ("ppo", "collect", "offline bc", "evaluate ppo", "report")] == [3, 6, 6, 3, 1]
    assert all(0 <= longest <= total for _, total, longest in breakdown.values()) and breakdown["ppo"][1] > 0


def _bench():
    return load_bench("quickstart")


def test_bench_measures_host_speed():
    bench = _bench()
    assert bench.bc_updates_per_s(5) > 0 and bench.env_steps_per_s(64) > 0
