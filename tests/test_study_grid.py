"""`datasets.only`: a study keeps a part of its skills x levels x transitions grid, and may train only some
offline algorithms on a cell (the CPU findings study: six algorithms on two datasets, BC and IQL on the
levels and size axes). Planning only; nothing runs."""

from __future__ import annotations

import pytest
import yaml

from rlgen.cli import main
from rlgen.pipeline import load_study

STUDY = {
    "name": "grid",
    "out_dir": "study",
    "envs": ["minigrid/empty-5x5"],
    "split": {"num_levels": 20},
    "seeds": [0],
    "device": "cpu",
    "ppo": {"set": {"num_envs": 4, "total_steps": 512, "checkpoint_every": 256, "ladder": {"every_steps": 256, "episodes": 2}}},
    "datasets": {"skills": ["expert", "mixed"], "levels": [5, None], "transitions": [100, 200, 400]},
    "offline": {"algos": ["bc", "cql", "iql"], "set": {"steps": 3, "network": "minigrid_cnn"}},
}
ONLY = [
    {"skill": "mixed", "levels": None, "transitions": 200},           # one cell, every algorithm
    {"skill": "expert", "transitions": 200, "algos": ["bc", "iql"]},  # the levels axis at 200
    {"skill": "expert", "levels": 5, "algos": ["bc"]},                # the size axis at 5 levels
]


def plan(tmp_path, monkeypatch, only):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "study.yaml").write_text(yaml.safe_dump({**STUDY, "datasets": {**STUDY["datasets"], "only": only}}, sort_keys=False))
    return load_study("study.yaml")[1]


def test_only_keeps_the_listed_cells_and_their_algorithms(tmp_path, monkeypatch):
    stages = plan(tmp_path, monkeypatch, ONLY)
    data = {s.id: (s.kind, s.deps) for s in stages if s.kind in ("collect", "subset")}
    # per (skill, levels) the largest kept size is collected and the smaller kept sizes are its subsets
    assert data == {
        "data/empty-5x5-expert-5lv-400-s0": ("collect", ("ppo/empty-5x5-s0",)),
        "data/empty-5x5-expert-5lv-200-s0": ("subset", ("data/empty-5x5-expert-5lv-400-s0",)),
        "data/empty-5x5-expert-5lv-100-s0": ("subset", ("data/empty-5x5-expert-5lv-400-s0",)),
        "data/empty-5x5-expert-200-s0": ("collect", ("ppo/empty-5x5-s0",)),
        "data/empty-5x5-mixed-200-s0": ("collect", ("ppo/empty-5x5-s0",)),
    }
    offline = sorted(s.id for s in stages if s.kind == "offline")
    assert offline == sorted([
        *(f"offline/empty-5x5-mixed-200-s0/{a}-s0" for a in ("bc", "cql", "iql")),   # listed without algos: all of them
        "offline/empty-5x5-expert-200-s0/bc-s0", "offline/empty-5x5-expert-200-s0/iql-s0",
        "offline/empty-5x5-expert-5lv-200-s0/bc-s0", "offline/empty-5x5-expert-5lv-200-s0/iql-s0",  # matches two entries: bc and iql
        "offline/empty-5x5-expert-5lv-100-s0/bc-s0", "offline/empty-5x5-expert-5lv-400-s0/bc-s0",
    ])  # fmt: skip
    assert {s.id for s in stages if s.kind == "evaluate"} >= {"eval/" + sid for sid in offline}


def test_without_only_the_whole_grid(tmp_path, monkeypatch):
    stages = plan(tmp_path, monkeypatch, None)
    assert sum(s.kind in ("collect", "subset") for s in stages) == 2 * 2 * 3
    assert sum(s.kind == "offline" for s in stages) == 2 * 2 * 3 * 3


@pytest.mark.parametrize(
    ("only", "expected"),
    [
        ([{"skill": "medium"}], "datasets.only[0].skill = \"medium\" is not in datasets.skills [\"expert\", \"mixed\"]"),
        ([{"skill": "expert"}, {"levels": 50}], "datasets.only[1].levels = 50 is not in datasets.levels [5, null]"),
        ([{"size": 200}], "datasets.only[0] has the key 'size'; allowed: skill, levels, transitions, algos"),
        ([{"transitions": 200, "algos": ["bc", "dt"]}], "datasets.only[0].algos names 'dt', which is not in offline.algos [\"bc\", \"cql\", \"iql\"]"),
        ([{"transitions": 200, "algos": []}], "datasets.only[0].algos = []: list at least one algorithm of offline.algos"),
        ([], "datasets.only must list at least one cell; leave it out for the whole grid"),
    ],
)
def test_bad_only_is_one_line_naming_the_value(tmp_path, monkeypatch, capsys, only, expected):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "study.yaml").write_text(yaml.safe_dump(STUDY, sort_keys=False))
    assert main(["run", "study.yaml", f"datasets.only={yaml.safe_dump(only, default_flow_style=True).strip()}", "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err and expected in err, err
