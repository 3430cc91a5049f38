"""configs/study/cpu_findings.yaml: its plan is the study docs/findings_cpu.md describes, and it runs end to end
at a tiny budget (every stage, the report, and bench/findings.py's three claims)."""

from __future__ import annotations

import io
from contextlib import redirect_stdout
from pathlib import Path

import pytest
import torch
import yaml

from rlgen.cli import main
from rlgen.pipeline import load_study
from tests.bench_scripts import load_bench

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "study" / "cpu_findings.yaml"
#: The study's dataset sizes, shrunk for the tiny run (the `datasets.only` cells are rewritten to match).
TINY_SIZES = {10_000: 100, 30_000: 200, 100_000: 400}


def tiny_overrides(out: Path) -> list[str]:
    cfg = yaml.safe_load(CONFIG.read_text())
    only = [{**e, **({"transitions": TINY_SIZES[e["transitions"]]} if "transitions" in e else {})} for e in cfg["datasets"]["only"]]
    steps = [f"offline.per_algo.{a}.{k}={v}" for a in cfg["offline"]["algos"] for k, v in (("steps", 2 if a in ("dt", "bct") else 3), ("batch_size", 16))]
    return [
        f"out_dir={out}", "seeds=[0,1]", "device=cpu", "workers=1", "split.options.max_steps=30",  # failed episodes end at 30 steps, not 360
        "ppo.set.total_steps=512", "ppo.set.ladder.every_steps=256", "ppo.set.checkpoint_every=256", "ppo.set.ladder.episodes=2",
        "ppo.set.num_envs=4", "ppo.set.ppo.n_steps=64", "ppo.set.ppo.num_minibatches=2", "ppo.set.ppo.n_epochs=1",
        f"datasets.transitions={[TINY_SIZES[n] for n in cfg['datasets']['transitions']]}",
        "datasets.only=" + yaml.safe_dump(only, default_flow_style=True, width=10_000).strip(),
        "datasets.set.num_envs=4", "datasets.set.shard_transitions=100", *steps,
        "offline.per_algo.dt.n_layers=1", "offline.per_algo.bct.n_layers=1", "evaluation.episodes=2", "evaluation.num_envs=2",
    ]  # fmt: skip


def test_the_plan_is_the_documented_study(monkeypatch):
    monkeypatch.chdir(ROOT)  # the study's base configs are relative to the repository root
    study, stages = load_study(CONFIG)
    assert study.envs == ["minigrid/MiniGrid-DoorKey-6x6-v0"] and study.seeds == [0, 1, 2, 3, 4]
    assert (study.split.num_levels, study.split.drop_duplicates, study.split.options) == (200, True, {"view": "full"})
    assert len(stages) == 242 and [s.kind for s in stages].count("ppo") == 5
    offline: dict[str, set[str]] = {}
    by_id = {s.id: s for s in stages}
    for s in stages:
        if s.kind == "offline":
            data = s.id.split("/")[1].rsplit("-s", 1)[0]  # doorkey-6x6-expert-50lv-10k
            offline.setdefault(data, set()).add(s.id.rsplit("/", 1)[1])
            # a whole replicate per seed: the dataset of seed s comes from PPO seed s
            (dep,) = s.deps
            root = by_id[by_id[dep].deps[0]] if by_id[dep].kind == "subset" else by_id[dep]
            assert root.deps == (f"ppo/doorkey-6x6-s{s.config['seed']}",), s.id
    every = {f"{a}-s{k}" for a in ("bc", "bcq", "cql", "iql", "dt", "bct") for k in range(5)}
    bc_iql = {f"{a}-s{k}" for a in ("bc", "iql") for k in range(5)}
    assert offline == {
        "doorkey-6x6-expert-30k": every, "doorkey-6x6-mixed-30k": every,                         # (a), (b)
        "doorkey-6x6-expert-10lv-30k": bc_iql, "doorkey-6x6-expert-50lv-30k": bc_iql,            # (c) levels axis (and 200 levels above)
        "doorkey-6x6-expert-50lv-10k": bc_iql, "doorkey-6x6-expert-50lv-100k": bc_iql,           # (c) size axis
    }  # fmt: skip


@pytest.fixture(scope="module")
def tiny_study(tmp_path_factory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("cpu_findings") / "study"
    cwd, threads = Path.cwd(), torch.get_num_threads()
    import os

    os.chdir(ROOT)
    torch.set_num_threads(1)
    buf = io.StringIO()
    try:
        with redirect_stdout(buf):
            code = main(["run", str(CONFIG), *tiny_overrides(out)])
    finally:
        os.chdir(cwd)
        torch.set_num_threads(threads)
    assert code == 0, buf.getvalue()[-3000:]
    return out, buf.getvalue()


def test_tiny_study_runs_end_to_end(tiny_study):
    out, text = tiny_study
    assert "98 stages: 0 up to date, 98 to run" in text and "stages: 98 done" in text
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("agent "))
    table = [line.split() for line in lines[start + 1:] if line.split() and line.split()[0] != "warning:"][: 22]
    offline = {f"{a}-{d}" for a in ("bc", "bcq", "cql", "iql", "dt", "bct") for d in ("expert-200lv-200", "mixed-200lv-200")}
    offline |= {f"{a}-expert-{d}" for a in ("bc", "iql") for d in ("10lv-200", "50lv-100", "50lv-200", "50lv-400")}
    # one row per agent, with its run count: 2 seeds each, the random baseline 1
    assert {row[0]: int(row[2]) for row in table} == {**dict.fromkeys(offline, 2), "ppo-200lv": 2, "random-200lv": 1}
    assert (out / "report" / "report.md").is_file() and (out / "report" / "train_vs_held_out.png").is_file()


def test_findings_script_gives_a_verdict_per_claim(tiny_study, capsys):
    findings = load_bench("findings")
    assert findings.main([str(tiny_study[0]), "--size", "200"]) == 0
    text = capsys.readouterr().out
    verdicts = [line for line in text.splitlines() if line.startswith("**Verdict")]
    assert [v.split(":")[0] for v in verdicts] == ["**Verdict (a)", "**Verdict (b)", "**Verdict (c)"]
    assert all(any(w in v for w in ("reproduced", "not reproduced", "inconclusive")) for v in verdicts)
    assert "(12 of 12" in verdicts[0] or " of 12 comparisons" in verdicts[0]  # 6 algorithms x expert, mixed vs PPO
    assert " of 10 comparisons" in verdicts[1] and " of 2 comparisons" in verdicts[2]  # 5 vs BC x 2 datasets; BC and IQL
    assert "| bc | levels | 10 levels, 200 | 2 |" in text and "| iql | size | 50 levels, 400 | 2 |" in text
