import json

import numpy as np
import pytest

from rlgen.envs import LevelSplit
from rlgen.evaluation import (
    EvalResult,
    RandomPolicy,
    evaluate_on_levels,
    evaluation_levels,
    generalization_gap,
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


class GlobalRngPolicy:
    """Samples from torch's, numpy's and Python's global generators, as SB3, d3rlpy's DT sampler and
    plain scripts do."""

    def act(self, obs, deterministic=False):
        import random

        import torch

        n = len(obs)
        a = torch.randint(0, 3, (n,)).numpy() + np.random.randint(0, 2, n) + np.array([random.randint(0, 1) for _ in range(n)])
        return a % 3


def test_evaluation_does_not_depend_on_what_was_evaluated_before():
    # Before: torch's generator was never seeded, so held-out results changed when train ran first.
    split = LevelSplit.minigrid("empty-5x5", num_levels=10)
    alone = evaluate_on_levels(GlobalRngPolicy(), split, "held_out", episodes=8, seed=1, num_envs=4)
    evaluate_on_levels(GlobalRngPolicy(), split, "train", episodes=8, seed=1, num_envs=4)
    after = evaluate_on_levels(GlobalRngPolicy(), split, "held_out", episodes=8, seed=1, num_envs=4)
    assert after.lengths.tolist() == alone.lengths.tolist() and after.returns.tolist() == alone.returns.tolist()
    assert len(set(alone.lengths.tolist())) > 1  # the policy's randomness does show in the episodes


def test_a_policys_own_generator_is_reseeded_and_global_generators_are_restored():
    import random

    import torch

    split = LevelSplit.minigrid("empty-5x5", num_levels=10)
    policy = RandomPolicy(3, seed=0)  # its own generator, reseeded through its `reseed` hook
    first = evaluate_on_levels(policy, split, "held_out", episodes=6, seed=2, num_envs=3)
    np.random.seed(123)
    torch.manual_seed(123)
    random.seed(123)
    before = (np.random.get_state()[1].copy(), torch.get_rng_state().clone(), random.getstate())
    second = evaluate_on_levels(policy, split, "held_out", episodes=6, seed=2, num_envs=3)
    assert second.lengths.tolist() == first.lengths.tolist()
    # an evaluation inside a training loop leaves the loop's randomness where it was
    assert np.array_equal(np.random.get_state()[1], before[0]) and torch.equal(torch.get_rng_state(), before[1]) and random.getstate() == before[2]
    other = evaluate_on_levels(policy, split, "held_out", episodes=6, seed=3, num_envs=3)
    assert other.lengths.tolist() != first.lengths.tolist()  # the seed still matters


def test_any_policy_evaluates_an_object_a_function_and_an_sb3_model():
    # Before: a function or an SB3 model reached `agent.act` and raised a raw AttributeError.
    from stable_baselines3 import PPO

    from rlgen.agents.sb3_vec_env import RlgenVecEnv
    from rlgen.envs import make_env

    split = LevelSplit.minigrid("empty-5x5")

    class Forward:
        def act(self, obs, deterministic=False):
            return np.full(len(obs), 2)

    by_object = evaluate_on_levels(Forward(), split, "train", episodes=3, num_envs=2)
    by_function = evaluate_on_levels(lambda obs: np.full(len(obs), 2), split, "train", episodes=3, num_envs=2)
    assert by_function.lengths.tolist() == by_object.lengths.tolist() == [100, 100, 100]

    model = PPO("MlpPolicy", RlgenVecEnv(make_env(split, "train", num_envs=1)), n_steps=8, batch_size=8, seed=0, device="cpu")
    by_model = evaluate_on_levels(model, split, "held_out", episodes=4, seed=1, num_envs=2, deterministic=True)
    again = evaluate_on_levels(model.policy, split, "held_out", episodes=4, seed=1, num_envs=2, deterministic=True)  # an SB3 policy too
    assert by_model.lengths.tolist() == again.lengths.tolist() and split.held_out.contains(by_model.levels).all()

    with pytest.raises(RlgenError, match="cannot evaluate a int: give an object with act"):
        evaluate_on_levels(3, split, "train", episodes=1)
