"""`rlgen report` on hand-made results.jsonl files: statistics over runs, identity-keyed rows,
latest evaluation wins, tolerant reading, rliable aggregates, probability of improvement."""

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from rliable import metrics

from rlgen.cli import main
from rlgen.errors import RlgenError
from rlgen.report import make_report, per_game_table

ROOT = Path(__file__).resolve().parents[1]

# (the newer APIs are imported inside the tests that use them, so that every test of behaviour the
# old code had runs, and fails, on the old code too)

COINRUN, BIGFISH = "procgen/coinrun", "procgen/bigfish"


def row(algo, env, which, scores, seed=0, t=0.0, run_id=None, **extra):
    scores = list(map(float, scores))
    run_id = run_id or f"{algo}-{env}-{seed}-{extra.get('dataset_transitions')}-{extra.get('dataset_levels')}-{extra.get('dataset_skill')}"
    return {"agent": algo, "algo": algo, "algorithm": algo, "run_id": run_id, "train_seed": seed, "env": env, "which": which, "seed": 0,
            "run": run_id, "returns": scores, "normalized": scores, "levels": list(range(len(scores))), "time": t, **extra}  # fmt: skip


def write_rows(path, rows, extra_lines=()):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows) + "".join(line + "\n" for line in extra_lines))
    return path


def binary(mean, n=100):
    """``n`` episodes of 0/1 outcomes with exactly this mean."""
    k = round(mean * n)
    return [1.0] * k + [0.0] * (n - k)


def read_csv(path):
    with path.open() as f:
        return list(csv.DictReader(f))


def three_seeds():
    """One agent, three training seeds whose held-out means spread from 0.18 to 0.82."""
    rows = []
    for seed, (tr, ho) in enumerate([(0.30, 0.18), (0.62, 0.48), (0.95, 0.82)]):
        rows.append(row("bc", COINRUN, "train", binary(tr), seed, run=f"runs/bc-s{seed}"))
        rows.append(row("bc", COINRUN, "held_out", binary(ho), seed, run=f"runs/bc-s{seed}"))
    return rows


def test_three_runs_give_a_ci_over_runs_that_covers_the_spread(tmp_path):
    # Before: episodes pooled across runs gave held-out 0.493 [0.437, 0.550] and gap [0.050, 0.210].
    write_rows(tmp_path / "r" / "results.jsonl", three_seeds())
    make_report([tmp_path / "r"], out_dir=tmp_path / "rep")
    (t,) = read_csv(tmp_path / "rep" / "per_game.csv")
    assert int(t["runs"]) == 3 and float(t["held_out"]) == pytest.approx((0.18 + 0.48 + 0.82) / 3)
    # a bootstrap of 3 run means: all three draws of the lowest run have probability 1/27 > 2.5%
    assert float(t["held_out_lo"]) <= 0.18 + 1e-9 and float(t["held_out_hi"]) >= 0.82 - 1e-9
    # the gap is paired within each run (0.12, 0.14, 0.13), then bootstrapped over runs
    assert float(t["gap"]) == pytest.approx(0.13)
    assert 0.12 - 1e-9 <= float(t["gap_lo"]) <= float(t["gap_hi"]) <= 0.14 + 1e-9


def test_two_datasets_give_two_rows(tmp_path):
    rows = []
    for size, (tr, ho) in {1000: (0.9, 0.3), 10000: (0.9, 0.7)}.items():
        for seed in range(2):
            rows += [row("bc", COINRUN, "train", [tr] * 5, seed, dataset_transitions=size, dataset_skill="expert"),
                     row("bc", COINRUN, "held_out", [ho] * 5, seed, dataset_transitions=size, dataset_skill="expert")]  # fmt: skip
    write_rows(tmp_path / "r" / "results.jsonl", rows)
    rep = make_report([tmp_path / "r"], out_dir=tmp_path / "rep")
    table = read_csv(tmp_path / "rep" / "per_game.csv")
    assert len(table) == 2  # before: one row, the two datasets' runs pooled as 4 runs
    got = {(t["agent"], t["dataset_transitions"]): (int(t["runs"]), float(t["held_out"])) for t in table}
    assert got == {("bc-1k", "1000"): (2, pytest.approx(0.3)), ("bc-10k", "10000"): (2, pytest.approx(0.7))}
    assert "gap_vs_size.png" in rep.plots and "gap_vs_levels.png" not in rep.plots


def test_gap_plots_hold_the_other_axis_fixed():
    from rlgen.report.plots import gap_lines

    rows = []
    for levels in (25, 200):
        for size in (1000, 10000):
            gap = 0.4 - levels / 1000 - size / 100000
            for seed in range(2):
                extra = {"dataset_levels": levels, "dataset_transitions": size, "dataset_skill": "expert", "train_levels": levels}
                rows += [row("bc", COINRUN, "train", [0.9] * 4, seed, **extra), row("bc", COINRUN, "held_out", [0.9 - gap] * 4, seed, **extra)]
    table = per_game_table(rows)
    assert len(table) == 4
    by_levels = gap_lines(table, "levels")
    assert sorted(len(pts) for pts in by_levels.values()) == [2, 2]  # one line per dataset size
    for pts in by_levels.values():
        assert len({t.agent.dataset_transitions for _, t in pts}) == 1 and [x for x, _ in pts] == [25, 200]
        for x, t in pts:  # each point is one table row: its gap and CI are the table's
            assert t.gap == pytest.approx(0.4 - x / 1000 - t.agent.dataset_transitions / 100000)
    by_size = gap_lines(table, "size")
    assert sorted(len({t.agent.levels for _, t in pts}) for pts in by_size.values()) == [1, 1]


def test_levels_axis_lines_join_runs_whose_split_digests_differ_by_their_training_levels(tmp_path):
    """Real rows carry the split digest of their training levels (a dataset of 10 levels: those 10), so it differs
    along the levels axis; a line still joins them, but never across split options (the CPU study's gap_vs_levels)."""
    from rlgen.report.plots import gap_lines, plot_gap_vs

    rows = []
    for view in ("full", "partial"):
        for levels in (10, 50, 200):
            extra = {"dataset_levels": levels, "dataset_transitions": 30000, "dataset_skill": "expert", "train_levels": levels,
                     "split_digest": f"{view}-{levels}", "split_options": {"view": view}}  # fmt: skip
            for seed in range(2):
                rid = f"bc-{view}-{levels}-{seed}"
                rows += [row("bc", COINRUN, "train", [0.9] * 4, seed, run_id=rid, **extra),
                         row("bc", COINRUN, "held_out", [0.9 - 1 / levels] * 4, seed, run_id=rid, **extra)]  # fmt: skip
    table = per_game_table(rows)
    lines = gap_lines(table, "levels")
    assert sorted([x for x, _ in pts] for pts in lines.values()) == [[10, 50, 200], [10, 50, 200]]  # before: no line at all
    for pts in lines.values():
        assert len({t.agent.split_options for _, t in pts}) == 1
    assert plot_gap_vs(table, "levels", tmp_path / "gap_vs_levels.png") and (tmp_path / "gap_vs_levels.png").stat().st_size > 0


def test_one_run_rows_are_labelled(tmp_path, capsys):
    rows = [row("bc", COINRUN, "train", [0.9, 0.8, 1.0], dataset_transitions=1000), row("bc", COINRUN, "held_out", [0.5, 0.4, 0.6], dataset_transitions=1000),
            row("cql", COINRUN, "train", [0.7] * 3, dataset_transitions=1000), row("cql", COINRUN, "held_out", [0.7] * 3, dataset_transitions=1000)]  # fmt: skip
    write_rows(tmp_path / "r" / "results.jsonl", rows)
    assert main(["report", str(tmp_path / "r"), "--out", str(tmp_path / "rep")]) == 0
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if x.startswith("bc "))
    assert line.endswith("evaluation noise only: 1 run")
    assert "warning: 2 of 2 rows have fewer than 3 runs" in out and "P(cql > bc)" not in out
    text = (tmp_path / "rep" / "report.md").read_text()
    assert "| **evaluation noise only: 1 run** |" in text and "fewer than 3 runs" in text
    assert "0.900 (no CI: 1 run)" in text  # the across-games IQM: nothing to resample with one run per game
    assert "Not computed for 1 pair(s) with 1 run per game on a side" in text  # P(X > Y) of two numbers is no probability
    assert read_csv(tmp_path / "rep" / "per_game.csv")[0]["ci_over"] == "evaluation noise only: 1 run"


def test_latest_evaluation_of_a_run_wins(tmp_path, capsys):
    rows = [row("bc", COINRUN, "train", [0.2] * 4, t=1.0), row("bc", COINRUN, "held_out", [0.1] * 4, t=1.0),
            row("bc", COINRUN, "train", [0.8] * 4, t=2.0), row("bc", COINRUN, "held_out", [0.6] * 4, t=2.0)]  # fmt: skip
    write_rows(tmp_path / "r" / "results.jsonl", rows)
    assert main(["report", str(tmp_path / "r"), "--out", str(tmp_path / "rep")]) == 0
    assert "dropped 2 earlier row(s)" in capsys.readouterr().out
    (t,) = read_csv(tmp_path / "rep" / "per_game.csv")
    assert (t["runs"], float(t["train"]), float(t["held_out"])) == ("1", pytest.approx(0.8), pytest.approx(0.6))


def test_torn_lines_and_incomplete_rows_are_skipped_with_a_warning(tmp_path, capsys):
    good = three_seeds()
    no_env = {k: v for k, v in good[0].items() if k != "env"}
    path = write_rows(tmp_path / "r" / "results.jsonl", good, extra_lines=[json.dumps(no_env), "null", '{"env": "procgen/coinrun", "whi'])
    assert main(["report", str(tmp_path / "r"), "--out", str(tmp_path / "rep")]) == 0
    captured = capsys.readouterr()
    assert f"{path}:7: skipped: missing key 'env'" in captured.err
    assert f"{path}:8: skipped: not a JSON object (NoneType)" in captured.err
    assert f"{path}:9: skipped: not a JSON row" in captured.err
    assert read_csv(tmp_path / "rep" / "per_game.csv")[0]["runs"] == "3"
    assert f"{path}:9: skipped" in (tmp_path / "rep" / "report.md").read_text()


def hand_made():
    rows = []
    for env, (tr, ho) in {COINRUN: (0.8, 0.5), BIGFISH: (0.6, 0.2)}.items():
        for seed in range(4):
            rows.append(row("bc", env, "train", [tr] * 10, seed, train_levels=200, dataset_transitions=1000))
            rows.append(row("bc", env, "held_out", [ho] * 10, seed, train_levels=200, dataset_transitions=1000))
            rows.append(row("cql", env, "train", [tr - 0.1 + 0.02 * seed] * 10, seed, train_levels=200, dataset_transitions=1000))
            rows.append(row("cql", env, "held_out", [ho - 0.1 + 0.02 * seed] * 10, seed, train_levels=200, dataset_transitions=1000))
    return rows


def test_aggregates_are_rliables_metrics_over_run_scores():
    from rlgen.report import aggregate_table

    table = per_game_table(hand_made())
    aggs = {(a.label, a.which): a for a in aggregate_table(table)}
    m = np.array([[0.4 + 0.02 * s, 0.1 + 0.02 * s] for s in range(4)])  # cql held-out run scores, (runs, games): bigfish, coinrun
    got = aggs[("cql", "held_out")]
    assert got.games == [BIGFISH, COINRUN] and got.runs == 4
    for name, fn in (("IQM", metrics.aggregate_iqm), ("mean", metrics.aggregate_mean), ("median", metrics.aggregate_median),
                     ("optimality gap", metrics.aggregate_optimality_gap)):  # fmt: skip
        assert got.metrics[name].value == pytest.approx(float(fn(m)))
        lo, hi = got.metrics[name].ci
        assert lo <= got.metrics[name].value <= hi
    assert aggs[("bc", "held_out")].metrics["IQM"].value == pytest.approx(0.35)
    assert aggs[("bc", "gap")].metrics["mean"].value == pytest.approx(0.35) and "optimality gap" not in aggs[("bc", "gap")].metrics
    assert aggs[("bc", "train")].metrics["IQM"].ci == pytest.approx((0.7, 0.7))  # identical runs: no spread
    # the bootstrap replicates are computed in one batch: equal to rliable's functions replicate by replicate
    from rlgen.evaluation.stats import BATCHED_METRICS, aggregate_metrics

    reps = np.random.default_rng(0).random((20, 5, 3)) * 1.2
    for name, fn in aggregate_metrics().items():
        assert BATCHED_METRICS[name](reps) == pytest.approx([fn(r) for r in reps]), name


def test_probability_of_improvement_equals_a_hand_computation():
    from rlgen.report import improvement_table
    from rlgen.evaluation.stats import _pairwise_improvement, probability_of_improvement

    x = np.array([[0.5, 0.2], [0.7, 0.4], [0.9, 0.6]])  # (runs, games)
    y = np.array([[0.4, 0.4], [0.6, 0.5], [0.8, 0.1]])
    # game 1: pairs with x > y: 1 + 2 + 3 = 6 of 9; game 2: 1 + (1 + a tie 0.5) + 3 = 5.5 of 9
    hand = (6 / 9 + 5.5 / 9) / 2
    est = probability_of_improvement(x, y)
    assert est.value == pytest.approx(hand) and est.ci[0] <= hand <= est.ci[1] and 0 <= est.ci[0] and est.ci[1] <= 1
    # the vectorized replicate statistic is rliable's Mann-Whitney definition
    rng = np.random.default_rng(0)
    for _ in range(5):
        a, b = rng.integers(0, 4, (5, 3)) / 4, rng.integers(0, 4, (3, 3)) / 4
        assert _pairwise_improvement(a[None], b[None]).mean() == pytest.approx(metrics.probability_of_improvement(a, b))
    # through the report: each offline agent against BC on the same data
    rows = []
    for g, env in enumerate((COINRUN, BIGFISH)):
        for s in range(3):
            for algo, m in (("cql", x), ("bc", y)):
                rows += [row(algo, env, "train", [1.0], s, dataset_transitions=1000), row(algo, env, "held_out", [m[s, g]], s, dataset_transitions=1000)]
    (imp,) = [p for p in improvement_table(per_game_table(rows)) if p.which == "held_out"]
    assert (imp.x, imp.y, imp.runs_x, imp.runs_y, len(imp.games)) == ("cql", "bc", 3, 3, 2)
    assert imp.estimate.value == pytest.approx(hand)


def test_report_files_and_cli(tmp_path, capsys):
    write_rows(tmp_path / "runs" / "a" / "results.jsonl", hand_made())
    rep = make_report([tmp_path / "runs"])
    for name in ("report.md", "per_game.csv", "aggregates.csv", "train_vs_held_out.png", "performance_profiles.png"):
        assert (rep.path.parent / name).is_file(), name
    text = rep.path.read_text()
    assert "| bc | procgen/coinrun | bc | - | 200 | 1000 | - | 4 | 0.800 [0.800, 0.800] | 0.500 [0.500, 0.500] | +0.300 [+0.300, +0.300] | 4 runs |" in text
    assert "## Probability of improvement" in text and "| cql | bc | held-out | 2 | 4 / 4 |" in text
    assert main(["report", str(tmp_path / "runs"), "--out", str(tmp_path / "rep")]) == 0
    out = capsys.readouterr().out
    assert "IQM bc" in out and "P(cql > bc) held-out" in out and "report:" in out


def test_report_errors(tmp_path):
    with pytest.raises(RlgenError, match="no results.jsonl"):
        make_report([tmp_path])
    write_rows(tmp_path / "x" / "results.jsonl", [row("bc", COINRUN, "train", [1.0])])
    with pytest.raises(RlgenError, match="both train and held-out"):
        make_report([tmp_path / "x"])


# --- review findings of issue 12: rows never merge different experiments, and say what they rest on ----------


def test_runs_on_different_splits_or_score_scales_never_share_a_row(tmp_path):
    # Before: easy (normalized) and hard (raw) Procgen PPO runs were one row of 4 runs: 2.867 [0.483, 5.250].
    rows = []
    for s in range(2):
        easy = {"split_digest": "e" * 16, "held_out_digest": "E" * 16, "split_options": {"distribution_mode": "easy"}}
        hard = {"split_digest": "h" * 16, "held_out_digest": "H" * 16, "split_options": {"distribution_mode": "hard"}}
        rows += [row("ppo", COINRUN, w, [0.5] * 4, s, run_id=f"easy{s}", **easy) for w in ("train", "held_out")]
        rows += [{**row("ppo", COINRUN, w, [10.0, 0.0], s, run_id=f"hard{s}", **hard), "normalized": None} for w in ("train", "held_out")]
        # rows of an older rlgen (no split digest): normalized and raw scores still never mix
        rows += [{**row("bc", COINRUN, w, [10.0], s, run_id=f"raw{s}"), "normalized": None if s else [1.0]} for w in ("train", "held_out")]
    write_rows(tmp_path / "r" / "results.jsonl", rows)
    rep = make_report([tmp_path / "r"], out_dir=tmp_path / "rep")
    got = {(t.label, t.runs, t.normalized, round(t.train, 3)) for t in rep.table}
    assert got == {("ppo[distribution_mode=easy]", 2, True, 0.5), ("ppo-raw[distribution_mode=hard]", 2, False, 5.0),
                   ("bc", 1, True, 1.0), ("bc-raw", 1, False, 10.0)}  # fmt: skip
    assert any("performance profiles leave out bc-raw, ppo-raw[distribution_mode=hard]" in n for n in rep.notes)


def test_runs_with_other_settings_are_other_agents_and_repeated_seeds_count_once(tmp_path, capsys):
    # Before: BC with 60 and 600 steps were "bc 2 runs", and the same config and seed twice a zero-width CI.
    def bc(run_id, seed, scores, digest, settings, t):
        return [row("bc", COINRUN, w, scores, seed, run_id=run_id, t=t, config_digest=digest, settings=settings, dataset_transitions=1000)
                for w in ("train", "held_out")]  # fmt: skip

    rows = bc("a", 0, [0.7], "d1", {"steps": 60}, 1.0) + bc("b", 0, [0.3], "d2", {"steps": 600, "learning_rate": 0.003}, 1.0)
    rows += bc("c", 1, [0.9], "d1", {"steps": 60}, 1.0) + bc("twin", 1, [0.5], "d1", {"steps": 60}, 2.0)  # c again, seed and all
    write_rows(tmp_path / "r" / "results.jsonl", rows)
    assert main(["report", str(tmp_path / "r"), "--out", str(tmp_path / "rep")]) == 0
    captured = capsys.readouterr()
    table = {t["agent"]: t for t in read_csv(tmp_path / "rep" / "per_game.csv")}
    # labels name every key in which the two configs differ (a key left at its default says so)
    first = "bc[learning_rate=default,steps=60]"
    assert set(table) == {first, "bc[learning_rate=0.003,steps=600]"}
    # seeds 0 and 1 of the first config; the repeated seed 1 counts once (the latest evaluated)
    assert table[first]["runs"] == "2" and float(table[first]["held_out"]) == pytest.approx(0.6)
    assert table[first]["run_ids"] == "a twin"
    assert "2 runs with the same config and seed 1 (c, twin) are not independent seeds: counted once (the latest evaluated, twin)" in captured.err


def test_a_run_takes_the_identity_of_its_latest_row_and_stays_paired(tmp_path):
    # Before: re-evaluating held-out levels only with another study label split the run in two halves, neither paired.
    old = [row("ppo", COINRUN, w, [0.6], run_id="p", t=1.0, study="quick") for w in ("train", "held_out")]
    again = [row("ppo", COINRUN, "held_out", [0.5], run_id="p", t=2.0, study=None)]
    table = per_game_table(old + again)
    assert [(t.agent.study, t.runs, t.held_out) for t in table] == [(None, 1, 0.5)]


def test_rows_of_unfinished_runs_are_flagged(tmp_path, capsys):
    rows = []
    for s, finished in enumerate([True, False, True]):
        rows += [row("bc", COINRUN, w, [0.5 + 0.1 * s], s, finished=finished, step=100 if finished else 40) for w in ("train", "held_out")]
    write_rows(tmp_path / "r" / "results.jsonl", rows)
    assert main(["report", str(tmp_path / "r"), "--out", str(tmp_path / "rep")]) == 0
    out = capsys.readouterr().out
    assert next(x for x in out.splitlines() if x.startswith("bc ")).endswith("3 runs; 1 of 3 unfinished")
    assert "warning: 1 of 1 rows include runs evaluated before they finished training (bc on procgen/coinrun)" in out
    assert read_csv(tmp_path / "rep" / "per_game.csv")[0]["unfinished"] == "1"
    assert "**3 runs; 1 of 3 unfinished**" in (tmp_path / "rep" / "report.md").read_text()


def test_greedy_offline_agents_are_compared_with_sampling_baselines_of_their_study():
    # CQL acts greedily, BC and PPO sample; a PPO of another study is the fallback only.
    rows = []
    for s in range(2):
        data = {"dataset_transitions": 1000, "dataset_skill": "expert", "study": "q"}
        rows += [row("cql", COINRUN, w, [0.3 + s / 10], s, deterministic=True, **data) for w in ("train", "held_out")]
        rows += [row("bc", COINRUN, w, [0.2 + s / 10], s, **data) for w in ("train", "held_out")]
        rows += [row("ppo", COINRUN, w, [0.9 + s / 100], s, study="q", run_id=f"ppo-q-{s}") for w in ("train", "held_out")]
        rows += [row("ppo", COINRUN, w, [0.1 + s / 100], s, study="other", run_id=f"ppo-other-{s}") for w in ("train", "held_out")]
    from rlgen.report import improvement_table

    pairs = {(p.x, p.y) for p in improvement_table(per_game_table(rows)) if p.which == "held_out"}
    assert pairs == {("cql@q", "bc@q"), ("cql@q", "ppo@q"), ("bc@q", "ppo@q")}


def test_one_agent_on_two_real_games_aggregates_across_them(tmp_path):
    """Re-review of issue 12: one PPO config trained on DoorKey-5x5 and DoorKey-6x6 became two agents ("over 1
    game" each), since the split digest hashed the env and the config digest kept `env` as a setting. The
    identity is computed here as `rlgen evaluate` computes it, from real configs and splits (the held-out
    levels of the two games differ after duplicates are dropped)."""
    from rlgen.agents.identity import agent_identity
    from rlgen.agents.run_dir import write_resolved_config
    from rlgen.config import PPOConfig, load_config
    from rlgen.report import aggregate_table, improvement_table

    rng = np.random.default_rng(0)
    rows = []
    for env in ("minigrid/doorkey-5x5", "minigrid/doorkey-6x6"):
        for algo_lr, name in ((0.001, "ppo"), (0.01, "ppo-fast")):
            for seed in (0, 1, 2):
                cfg = load_config(ROOT / "configs/ppo/minigrid_doorkey.yaml", [f"env={env}", f"seed={seed}", f"ppo.learning_rate={algo_lr}",
                                  "split.num_levels=20", "split.drop_duplicates=true", f"out_dir={tmp_path / name / env / str(seed)}"], schema=PPOConfig)  # fmt: skip
                split = cfg.level_split()
                write_resolved_config(cfg, cfg.out_dir, extra={"split": split.to_dict()})
                ident = agent_identity(cfg.out_dir, "ppo", cfg, {"split": split.to_dict()}, split)
                for which, mean in (("train", 0.8), ("held_out", 0.5)):
                    returns = np.clip(rng.normal(mean, 0.1, 8), 0, 1).round(3).tolist()
                    rows.append({**ident, "which": which, "levels": "-", "returns": returns, "lengths": [10] * 8, "deterministic": False})
    (tmp_path / "results.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    table = per_game_table(json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines())
    assert len(table) == 4 and {t.runs for t in table} == {3}
    aggs = aggregate_table(table, reps=200)
    assert len({a.label for a in aggs}) == 2  # two agents (two learning rates), not four
    assert {len(a.games) for a in aggs} == {2}  # each aggregated over both games
    assert {(t.label, t.env) for t in table} == {(label, env) for label in {a.label for a in aggs}
                                                 for env in ("minigrid/MiniGrid-DoorKey-5x5-v0", "minigrid/MiniGrid-DoorKey-6x6-v0")}  # fmt: skip
    assert improvement_table(table, reps=200) is not None


def test_probability_of_improvement_uses_every_run_on_the_shared_games():
    """Re-review of issue 12: each agent's runs were cut to its fewest runs over *all* its games before the
    games shared with the baseline were picked: CQL with 5 runs on coinrun and 2 on bigfish against BC on
    coinrun only entered P(CQL > BC) with 2 of its 5 coinrun runs."""
    from rlgen.report import improvement_table

    rows = []
    for s in range(5):
        for algo, held_out in (("cql", 0.2 + 0.1 * s), ("bc", 0.4)):
            rows += [row(algo, COINRUN, "train", [1.0], s, dataset_transitions=1000), row(algo, COINRUN, "held_out", [held_out], s, dataset_transitions=1000)]
    for s in range(2):
        rows += [row("cql", BIGFISH, "train", [1.0], s, dataset_transitions=1000), row("cql", BIGFISH, "held_out", [0.5], s, dataset_transitions=1000)]
    (imp,) = [p for p in improvement_table(per_game_table(rows)) if p.which == "held_out" and p.y == "bc"]
    assert (imp.runs_x, imp.runs_y, imp.games) == (5, 5, [COINRUN])
    assert imp.estimate.value == pytest.approx((0 + 0 + 0.5 + 1 + 1) / 5)  # 0.2, 0.3 < 0.4; 0.4 ties; 0.5, 0.6 > 0.4
