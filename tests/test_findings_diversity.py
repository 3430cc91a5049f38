"""bench/findings_diversity.py: the XLand diversity study's verdict per agent, from results rows (the rule: P(held-out
at all rulesets > at 10) with a 95% CI over runs that excludes 0.5)."""

from __future__ import annotations

import json

import pytest

from tests.bench_scripts import load_bench


def load_script():
    return load_bench("findings_diversity")


def rows_of(algo, levels, held_out_means, held_out_digest="h"):
    """One run per held-out mean (seed = index), train score 0.8, on `levels` training rulesets."""
    out = []
    for seed, mean in enumerate(held_out_means):
        rid = f"{algo}-{levels}-{seed}"
        for which, score in (("train", 0.8), ("held_out", mean)):
            out.append({"agent": algo, "algorithm": algo, "run_id": rid, "train_seed": seed, "env": "xland/XLand-MiniGrid-R1-9x9", "which": which,
                        "seed": 0, "returns": [score] * 4, "normalized": [score] * 4, "levels": list(range(4)), "time": 0.0,
                        "train_levels": levels, "held_out_digest": held_out_digest})  # fmt: skip
    return out


def write(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_one_verdict_per_agent(tmp_path, capsys):
    rows = (rows_of("ppo_jax", 10, [0.20, 0.25, 0.30]) + rows_of("ppo_jax", 100, [0.4, 0.5, 0.45]) + rows_of("ppo_jax", 7950, [0.60, 0.65, 0.70])
            + rows_of("bc_jax", 10, [0.5, 0.6, 0.4, 0.55, 0.45]) + rows_of("bc_jax", 7950, [0.45, 0.6, 0.5, 0.4, 0.55])
            + rows_of("cql_jax", 10, [0.7, 0.72, 0.74, 0.76, 0.78]) + rows_of("cql_jax", 7950, [0.3, 0.32, 0.34, 0.36, 0.38]))  # fmt: skip
    write(tmp_path / "s" / "results.jsonl", rows)
    assert load_script().main([str(tmp_path / "s")]) == 0
    out = capsys.readouterr().out
    assert "- ppo_jax: rises" in out and "- bc_jax: inconclusive" in out and "- cql_jax: does not rise" in out, out
    assert "P(held-out at 7950 > at 10) = 1.000 [1.000, 1.000] over 3 vs 3 runs" in out
    assert "| 100 | 3 | 0.800 [0.800, 0.800] | 0.450" in out  # the middle N is in the table, not in the verdict


def test_rows_on_different_held_out_sets_are_refused(tmp_path):
    write(tmp_path / "s" / "results.jsonl", rows_of("bc_jax", 10, [0.5, 0.6], "h1") + rows_of("bc_jax", 7950, [0.5, 0.6], "h2"))
    with pytest.raises(SystemExit, match="2 different held-out level sets"):
        load_script().main([str(tmp_path / "s")])
