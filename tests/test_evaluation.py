import json

import numpy as np
import pytest

from rlgen.envs import LevelSplit
from rlgen.evaluation import (
    EvalResult,
    RandomPolicy,
    append_results,
    evaluate_on_levels,
    evaluation_levels,
    generalization_gap,
    read_results,
)
from rlgen.errors import RlgenError


def test_level_lists_are_fixed_by_seed_and_inside_the_set():
    split = LevelSplit.procgen("coinrun")
    a = evaluation_levels(split, "held_out", 50, seed=0)
    assert np.array_equal(a, evaluation_levels(split, "held_out", 50, seed=0))
    assert not np.array_equal(a, evaluation_levels(split, "held_out", 50, seed=1))
    assert len(set(a.tolist())) == 50 and split.held_out.contains(a).all()
    train = evaluation_levels(split, "train", 450, seed=0)  # more episodes than levels: cycle
    assert np.bincount(train).max() == 3 and set(train.tolist()) == set(range(200))


@pytest.mark.parametrize("which", ["train", "validation", "held_out"])
def test_evaluation_runs_exactly_the_requested_levels(which):
    split = LevelSplit.procgen("bigfish")
    result = evaluate_on_levels(RandomPolicy(15), split, which, episodes=12, seed=3, num_envs=4)
    assert np.array_equal(result.levels, evaluation_levels(split, which, 12, seed=3))
    assert split.levels(which).contains(result.levels).all()
    assert (result.lengths > 0).all()
    np.testing.assert_allclose(result.normalized, (result.returns - 1.0) / 39.0)


def test_levels_outside_the_set_are_refused():
    split = LevelSplit.minigrid("doorkey-5x5")
    with pytest.raises(RlgenError, match=r"levels \[3\] are not held_out levels"):
        evaluate_on_levels(RandomPolicy(7), split, "held_out", levels=[3, 300])


def test_minigrid_episode_returns_match_a_plain_loop():
    split = LevelSplit.minigrid("empty-5x5")

    class Forward:
        def act(self, obs, deterministic=False):
            return np.full(len(obs), 2)  # always "forward": hits the wall, never the goal

    result = evaluate_on_levels(Forward(), split, "train", episodes=3, num_envs=2)
    assert result.returns.tolist() == [0.0, 0.0, 0.0]
    assert result.lengths.tolist() == [100, 100, 100]  # Empty-5x5's limit: 4 * 5 * 5 steps


def test_gap_arithmetic():
    gap = generalization_gap(np.ones(20), np.zeros(20))
    assert (gap.gap, gap.ci_low, gap.ci_high) == (1.0, 1.0, 1.0)
    train, held = np.array([0.2, 0.4, 0.6, 0.8]), np.array([0.1, 0.3])
    gap = generalization_gap(train, held, seed=0)
    assert gap.gap == pytest.approx(0.5 - 0.2)
    assert gap.ci_low < gap.gap < gap.ci_high
    assert gap.ci_low >= 0.2 - 0.3 - 1e-9 and gap.ci_high <= 0.8 - 0.1 + 1e-9  # bounded by extreme resamples


def test_gap_uses_normalized_returns():
    def result(returns):
        r = np.array(returns, dtype=float)
        return EvalResult("procgen/coinrun", "train", 0, False, np.arange(len(r)), r, np.ones(len(r), int), (r - 5) / 5)

    gap = generalization_gap(result([10, 10]), result([5, 10]))
    assert gap.normalized and gap.gap == pytest.approx(0.5)


def test_results_jsonl_round_trip(tmp_path):
    split = LevelSplit.minigrid("empty-5x5")
    r = evaluate_on_levels(RandomPolicy(3), split, "held_out", episodes=2)
    path = append_results(tmp_path / "results.jsonl", [r.to_row(agent="random")])
    append_results(path, [r.to_row(agent="random")])
    rows = read_results(path)
    assert len(rows) == 2 and rows[0]["levels"] == r.levels.tolist() and rows[0]["which"] == "held_out"
    path.write_text(path.read_text() + "{broken\n")
    with pytest.raises(RlgenError, match=r"results.jsonl:3: not a JSON row"):
        read_results(path)
    json.dumps(rows[0])
