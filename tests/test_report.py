import json

import numpy as np
import pytest

from rlgen.cli import main
from rlgen.errors import RlgenError
from rlgen.report import iqm_across_games, make_report, per_game_table


def row(algo, env, which, scores, seed=0, **extra):
    scores = list(map(float, scores))
    return {"agent": algo, "algo": algo, "env": env, "which": which, "seed": seed, "run": f"{algo}-{env}-{seed}",
            "returns": scores, "normalized": scores, "levels": list(range(len(scores))), **extra}  # fmt: skip


def write_rows(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def hand_made():
    rows = []
    for env, (tr, ho) in {"procgen/coinrun": (0.8, 0.5), "procgen/bigfish": (0.6, 0.2)}.items():
        for seed in range(4):
            rows.append(row("bc", env, "train", [tr] * 10, seed, train_levels=200, dataset_transitions=1000))
            rows.append(row("bc", env, "held_out", [ho] * 10, seed, train_levels=200, dataset_transitions=1000))
            rows.append(row("cql", env, "train", [tr - 0.1] * 10, seed, train_levels=50, dataset_transitions=10000))
            rows.append(row("cql", env, "held_out", [ho - 0.1] * 10, seed, train_levels=50, dataset_transitions=10000))
    return rows


def test_per_game_gap_and_iqm_on_known_numbers():
    rows = hand_made()
    table = {(t.algo, t.env): t for t in per_game_table(rows)}
    t = table[("bc", "procgen/coinrun")]
    assert (t.train, t.held_out, t.gap, t.runs) == pytest.approx((0.8, 0.5, 0.3, 4))
    assert t.gap_ci == pytest.approx((0.3, 0.3))  # constant scores: no spread
    assert table[("cql", "procgen/bigfish")].gap == pytest.approx(0.4)
    held = iqm_across_games(rows, "held_out")
    # bc held-out run scores: 4 runs x {0.5, 0.2}; the IQM of 8 values, 4 of each, is their mean over the middle half
    assert held["bc"][0] == pytest.approx(0.35)
    assert held["cql"][0] == pytest.approx(0.25)
    assert iqm_across_games(rows, "train")["bc"][0] == pytest.approx(0.7)


def test_iqm_trims_outlier_runs():
    rows = [row("bc", "procgen/coinrun", "held_out", [s], seed) for seed, s in enumerate([0.0, 0.4, 0.5, 0.6, 0.5, 0.4, 0.5, 1.0])]
    assert iqm_across_games(rows, "held_out")["bc"][0] == pytest.approx(np.mean([0.4, 0.4, 0.5, 0.5]), abs=0.06)


def test_report_files_and_cli(tmp_path, capsys):
    write_rows(tmp_path / "runs" / "a" / "results.jsonl", hand_made())
    report, table, agg = make_report([tmp_path / "runs"])
    for name in ("report.md", "per_game.csv", "train_vs_held_out.png", "gap_vs_levels.png", "gap_vs_size.png"):
        assert (report.parent / name).is_file(), name
    text = report.read_text()
    assert "| bc | procgen/coinrun | 4 | 0.800 [0.800, 0.800] | 0.500 [0.500, 0.500] | 0.300 [0.300, 0.300] |" in text
    assert "![Train vs held-out levels, IQM across games](train_vs_held_out.png)" in text
    assert main(["report", str(tmp_path / "runs"), "--out", str(tmp_path / "rep")]) == 0
    out = capsys.readouterr().out
    assert "IQM bc" in out and "report:" in out


def test_report_errors(tmp_path):
    with pytest.raises(RlgenError, match="no results.jsonl"):
        make_report([tmp_path])
    write_rows(tmp_path / "x" / "results.jsonl", [row("bc", "procgen/coinrun", "train", [1.0])])
    with pytest.raises(RlgenError, match="both train and held-out"):
        make_report([tmp_path / "x"])
