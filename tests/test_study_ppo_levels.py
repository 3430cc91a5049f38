"""`ppo.levels`: one PPO per (seed, N) on the first N training levels, its datasets collected on those N, its
agents evaluated on those N and on ONE held-out set shared by every N; JAX offline agents (schema with `seeds`)
train the seeds that share a dataset as one seed group with one evaluation per member. Planning only."""

from __future__ import annotations

import pytest
import yaml

from rlgen.cli import main
from rlgen.pipeline import load_study
from rlgen.pipeline.stages import study_split

SPLIT = {"num_levels": 700, "options": {"rulesets": "trivial", "num_rulesets": 1000, "ruleset_seed": 0}}
STUDY = {
    "name": "xdiv",
    "out_dir": "study",
    "envs": ["xland/XLand-MiniGrid-R1-9x9"],
    "split": SPLIT,
    "seeds": [0, 1, 2],
    "device": "cpu",
    "ppo": {"algo": "ppo_jax", "levels": [10, 100, None], "set": {"num_envs": 16, "total_steps": 1024, "ladder": {"every_steps": 512, "episodes": 4}}},
    "datasets": {"seeds": [0], "transitions": [300]},
    "offline": {"algos": ["bc_jax", "bc"], "set": {"steps": 3, "network": "minigrid_cnn"}},
    "evaluation": {"episodes": 4},
}


def plan(tmp_path, monkeypatch, **changes):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "study.yaml").write_text(yaml.safe_dump({**STUDY, **changes}, sort_keys=False))
    return {s.id: s for s in load_study("study.yaml")[1]}


def test_one_ppo_per_seed_and_levels_with_its_own_datasets(tmp_path, monkeypatch):
    stages = plan(tmp_path, monkeypatch)
    ppo = {sid: s for sid, s in stages.items() if s.kind == "ppo"}
    assert sorted(ppo) == sorted(f"ppo/xland-minigrid-r1-9x9{lv}-s{seed}" for seed in (0, 1, 2) for lv in ("-10lv", "-100lv", ""))
    # the PPO of N trains on the first N training levels; the one of `null` on the study's split as it is
    assert ppo["ppo/xland-minigrid-r1-9x9-10lv-s1"].config["split"]["train"] == "0-9"
    assert ppo["ppo/xland-minigrid-r1-9x9-100lv-s0"].config["split"]["train"] == "0-99"
    assert ppo["ppo/xland-minigrid-r1-9x9-s2"].config["split"] == {**stages["ppo/xland-minigrid-r1-9x9-s2"].config["split"], "num_levels": 700, "train": None}
    # each dataset comes from the PPO of its levels (datasets.seeds [0]: from seed 0's PPOs), collected on those levels
    data = {sid: (s.deps, s.config["levels"], s.config["policy_run"]) for sid, s in stages.items() if s.kind == "collect"}
    assert data == {
        "data/xland-minigrid-r1-9x9-expert-10lv-300-s0": (("ppo/xland-minigrid-r1-9x9-10lv-s0",), 10, stages["ppo/xland-minigrid-r1-9x9-10lv-s0"].dir),
        "data/xland-minigrid-r1-9x9-expert-100lv-300-s0": (("ppo/xland-minigrid-r1-9x9-100lv-s0",), 100, stages["ppo/xland-minigrid-r1-9x9-100lv-s0"].dir),
        "data/xland-minigrid-r1-9x9-expert-300-s0": (("ppo/xland-minigrid-r1-9x9-s0",), None, stages["ppo/xland-minigrid-r1-9x9-s0"].dir),
    }
    # every PPO is evaluated on its own N training levels
    assert stages["eval/ppo/xland-minigrid-r1-9x9-10lv-s2"].config["first_levels"] == 10
    assert stages["eval/ppo/xland-minigrid-r1-9x9-s2"].config["first_levels"] is None


def test_jax_agents_train_the_seeds_of_a_dataset_as_one_seed_group(tmp_path, monkeypatch):
    # without ppo.levels: the seed group does not depend on it (before: one bc_jax stage per seed)
    ppo = {k: v for k, v in STUDY["ppo"].items() if k != "levels"}
    stages = plan(tmp_path, monkeypatch, ppo=ppo)
    data = "xland-minigrid-r1-9x9-expert-300-s0"
    offline = {sid: s for sid, s in stages.items() if s.kind == "offline"}
    # bc_jax: one stage for the three seeds; bc (torch, no `seeds` in its schema): one stage per seed, as before
    assert sorted(offline) == [f"offline/{data}/bc-s0", f"offline/{data}/bc-s1", f"offline/{data}/bc-s2", f"offline/{data}/bc_jax-s0_1_2"]
    group = offline[f"offline/{data}/bc_jax-s0_1_2"]
    assert group.config["seeds"] == [0, 1, 2] and group.deps == (f"data/{data}",)
    # one evaluation per member, on the member's run directory
    for seed in (0, 1, 2):
        ev = stages[f"eval/offline/{data}/bc_jax-s{seed}"]
        assert ev.deps == (group.id,) and ev.config["run_dir"] == f"{group.dir}/seed_{seed}"
    assert stages["report"].deps == tuple(sid for sid in stages if sid.startswith("eval/"))


def test_a_seed_group_of_n_levels_is_evaluated_on_its_n_levels(tmp_path, monkeypatch):
    stages = plan(tmp_path, monkeypatch)
    group = stages["offline/xland-minigrid-r1-9x9-expert-10lv-300-s0/bc_jax-s0_1_2"]
    assert group.deps == ("data/xland-minigrid-r1-9x9-expert-10lv-300-s0",)
    for seed in (0, 1, 2):
        assert stages[f"eval/offline/xland-minigrid-r1-9x9-expert-10lv-300-s0/bc_jax-s{seed}"].config["first_levels"] == 10


def test_the_held_out_levels_are_the_same_for_every_n(tmp_path, monkeypatch):
    stages = plan(tmp_path, monkeypatch)
    evals = [s for s in stages.values() if s.kind == "evaluate"]
    splits = {(s.config["first_levels"]): study_split(s.config["env"], s.config["split"], first_levels=s.config["first_levels"]) for s in evals}
    assert sorted(splits, key=lambda n: n or 10**9) == [10, 100, None]
    assert {str(s.held_out) for s in splits.values()} == {"750-999"}  # what default_split holds out of 700 training rulesets
    assert {n: len(s.train) for n, s in splits.items()} == {10: 10, 100: 100, None: 700}
    # and the PPO of N, whose own default split would hold out N+50..999, names the study's held-out levels
    for sid in ("ppo/xland-minigrid-r1-9x9-10lv-s0", "ppo/xland-minigrid-r1-9x9-100lv-s0"):
        assert stages[sid].config["split"]["held_out"] == "750-999" and stages[sid].config["split"]["validation"] == "700-749"


def test_without_ppo_levels_the_plan_is_as_before(tmp_path, monkeypatch):
    stages = plan(tmp_path, monkeypatch, ppo={**STUDY["ppo"], "levels": [None]}, offline={"algos": ["bc"], "set": {"steps": 3}})
    assert sorted(sid for sid, s in stages.items() if s.kind == "ppo") == ["ppo/xland-minigrid-r1-9x9-s0", "ppo/xland-minigrid-r1-9x9-s1", "ppo/xland-minigrid-r1-9x9-s2"]
    assert stages["ppo/xland-minigrid-r1-9x9-s0"].config["split"]["num_levels"] == 700


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("ppo.levels=[10,701]", "key `ppo.levels` = 701: xland/XLand-MiniGrid-R1-9x9 has only 700 training levels in this split"),
        ("ppo.levels=[0,10]", "ppo.levels value 0 must be >= 1"),
        ("ppo.levels=[10,10]", "ppo.levels lists 10 twice"),
        ("ppo.levels=[]", "ppo.levels must list at least one value"),
        ("datasets.levels=[5]", "datasets.levels = [5] with ppo.levels: each dataset is collected on the levels of the PPO it comes from"),
        ("offline.set.seeds=[0,1]", "key `offline.set.seeds` is decided by the study (`offline.seeds` or `seeds`"),
    ],
)
def test_bad_ppo_levels_are_one_line_naming_the_value(tmp_path, monkeypatch, capsys, override, expected):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "study.yaml").write_text(yaml.safe_dump(STUDY, sort_keys=False))
    assert main(["run", "study.yaml", override, "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err and expected in err, err


def test_ppo_levels_with_reuse_is_refused(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "study.yaml").write_text(yaml.safe_dump({**STUDY, "ppo": {"algo": "ppo_jax", "levels": [10], "reuse": "runs/x-s{seed}"}}))
    assert main(["run", "study.yaml", "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "ppo.levels = [10] trains one PPO per number of levels; ppo.reuse uses existing runs" in err, err


def _online_row(which, levels, settings, score, seed):
    """A PPO row as the evaluation stage writes it: its config digest covers its settings (split.train...)."""
    import json as _json

    digest = str(abs(hash(_json.dumps(settings, sort_keys=True))))
    return {"agent": "ppo_jax", "algorithm": "ppo_jax", "run_id": f"ppo-{levels}-{digest}-{seed}", "train_seed": seed, "env": "xland/XLand-MiniGrid-R1-9x9",
            "which": which, "seed": 0, "returns": [score] * 4, "normalized": [score] * 4, "levels": list(range(4)), "time": 0.0,
            "train_levels": levels, "split_digest": f"split-{levels}", "held_out_digest": "held-out-8000-9999", "config_digest": digest,
            "settings": settings, "split_options": {"rulesets": "trivial"}}  # fmt: skip


def test_gap_vs_levels_joins_the_ppo_of_each_n_into_one_line():
    """A PPO of N names its training levels in its config (split.train), so its config digest differs by N; the
    levels axis still joins them (as it does datasets of N levels), never PPOs that differ in another setting."""
    from rlgen.report import per_game
    from rlgen.report.plots import gap_lines

    rows = []
    for levels, split in ((10, {"split.train": "0-9", "split.held_out": "8000-9999"}), (100, {"split.train": "0-99", "split.held_out": "8000-9999"}),
                          (7950, {"split.num_levels": 7950})):  # fmt: skip
        for lr in (0.001, 0.0003):
            settings = {**split, "ppo_jax.learning_rate": lr, "total_steps": 500000}
            for seed in (0, 1):
                rows += [_online_row(w, levels, settings, s, seed) for w, s in (("train", 0.8), ("held_out", 0.8 - 10 / levels))]
    table = per_game(rows, seed=0).rows
    assert len(table) == 6
    lines = gap_lines(table, "levels")
    assert sorted([x for x, _ in pts] for pts in lines.values()) == [[10, 100, 7950], [10, 100, 7950]]  # before: no line at all
    for pts in lines.values():  # one line per learning rate
        assert len({dict(t.agent.settings)["ppo_jax.learning_rate"] for _, t in pts}) == 1


ROOT = __import__("pathlib").Path(__file__).resolve().parents[1]
SHRUNKEN = ["device=cpu", "split.num_levels=700", "split.options.num_rulesets=1000", "seeds=[0,1]", "ppo.seeds=[0]", "ppo.levels=[10,null]",
            "ppo.set.num_envs=64", "ppo.set.total_steps=2048", "ppo.set.log_every_steps=1024", "ppo.set.ladder.every_steps=1024",
            "ppo.set.ladder.episodes=20", "ppo.set.checkpoint_every=1024", "ppo.set.eval_num_envs=20", "ppo.set.ppo_jax.hidden_dim=32",
            "datasets.transitions=[400]", "datasets.set.num_envs=16", "offline.algos=[bc_jax]", "offline.per_algo.bc_jax.steps=4",
            "offline.per_algo.bc_jax.batch_size=32", "offline.set.sync_every=2", "offline.set.checkpoint_every=4", "evaluation.episodes=10",
            "evaluation.num_envs=10"]  # fmt: skip


def test_shrunken_shipped_study_runs_end_to_end_with_rows_per_n_and_seed(tmp_path, monkeypatch, capsys):
    """configs/study/xland_diversity.yaml itself, shrunk by overrides (2 N, 1 PPO seed, 2 offline seeds, tiny steps):
    `rlgen run` finishes, and the report has a row per N for PPO and for the agent, the agent's with one run per seed."""
    import json

    pytest.importorskip("xminigrid")
    monkeypatch.chdir(ROOT)  # the study's base configs are paths relative to the repository
    out = tmp_path / "study"
    assert main(["run", "configs/study/xland_diversity.yaml", f"out_dir={out}", *SHRUNKEN]) == 0
    printed = capsys.readouterr().out
    assert "stages: 13 done" in printed, printed
    rows = [json.loads(line) for f in sorted(out.glob("eval/**/results.jsonl")) for line in f.read_text().splitlines()]
    cells = sorted({(r["algorithm"], r["train_levels"], r["train_seed"]) for r in rows})
    assert cells == [("bc_jax", 10, 0), ("bc_jax", 10, 1), ("bc_jax", 700, 0), ("bc_jax", 700, 1), ("ppo_jax", 10, 0), ("ppo_jax", 700, 0)]
    held_out = {json.dumps(r["levels"]) for r in rows if r["which"] == "held_out"}
    assert len(held_out) == 1 and min(json.loads(held_out.pop())) >= 750  # one held-out set, every cell
    assert all(max(r["levels"]) < 10 for r in rows if r["which"] == "train" and r["train_levels"] == 10)
    # the closing table: one row per agent and N; the seed group's two members are two runs
    table = {line.split()[0]: line.split()[2] for line in printed.splitlines() if line.startswith(("bc_jax", "ppo_jax"))}
    assert table == {"bc_jax-10lv": "2", "bc_jax-700lv": "2", "ppo_jax-10lv": "1", "ppo_jax-700lv": "1"}, printed
    assert (out / "report" / "gap_vs_levels.png").is_file()
