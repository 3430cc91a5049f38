"""Review of the XLand diversity study's pipeline change (issue 17, part 5): `ppo.levels` and `datasets.only`."""

from __future__ import annotations

import pytest
import yaml

from rlgen.cli import main
from rlgen.pipeline import load_study
from tests.test_study_ppo_levels import STUDY


def _write(tmp_path, monkeypatch, **changes):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "study.yaml").write_text(yaml.safe_dump({**STUDY, **changes}, sort_keys=False))


def test_datasets_only_names_a_cell_of_the_ppo_levels_axis(tmp_path, monkeypatch):
    """With ppo.levels the datasets' levels axis is ppo.levels (datasets.levels must be left out), so `datasets.only`
    must be able to name those values. Before: `{levels: 10}` was refused as "not in datasets.levels [null]"."""
    _write(tmp_path, monkeypatch, datasets={**STUDY["datasets"], "only": [{"levels": 10, "algos": ["bc_jax"]}, {"levels": None}]})
    stages = {s.id: s for s in load_study("study.yaml")[1]}
    offline = sorted(sid for sid, s in stages.items() if s.kind == "offline")
    assert offline == ["offline/xland-minigrid-r1-9x9-expert-10lv-300-s0/bc_jax-s0_1_2",
                       "offline/xland-minigrid-r1-9x9-expert-300-s0/bc-s0", "offline/xland-minigrid-r1-9x9-expert-300-s0/bc-s1",
                       "offline/xland-minigrid-r1-9x9-expert-300-s0/bc-s2", "offline/xland-minigrid-r1-9x9-expert-300-s0/bc_jax-s0_1_2"]  # fmt: skip
    assert not any("100lv" in sid for sid, s in stages.items() if s.kind == "collect")  # 100 matches no entry


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({}, "datasets.only[0].levels = 50 is not in ppo.levels [10, 100, null]"),
        ({"ppo": {k: v for k, v in STUDY["ppo"].items() if k != "levels"}}, "datasets.only[0].levels = 50 is not in datasets.levels [null]"),
    ],
)
def test_datasets_only_levels_outside_the_axis_is_one_line(tmp_path, monkeypatch, capsys, changes, expected):
    _write(tmp_path, monkeypatch, datasets={**STUDY["datasets"], "only": [{"levels": 50}]}, **changes)
    assert main(["run", "study.yaml", "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err and expected in err, err


# was: ppo.levels [700, null] with 700 training levels planned two PPOs per seed on the same levels 0-699 (two stage ids,
# two report rows both labelled -700lv)
def test_ppo_levels_naming_all_levels_twice_is_refused(tmp_path, monkeypatch, capsys):
    _write(tmp_path, monkeypatch, ppo={**STUDY["ppo"], "levels": [700, None]})
    assert main(["run", "study.yaml", "--dry-run"]) == 2
    assert "700" in capsys.readouterr().err
