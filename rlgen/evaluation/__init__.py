"""Evaluation below the agents: episodes of any policy on level sets, batched JAX episodes, statistics over
runs and the generalization gap, ``results.jsonl`` rows. Imports nothing of agents, collect or pipeline:
whatever needs a trained run composes ``rlgen.agents`` with this package (``rlgen evaluate``, the pipeline).

    from rlgen.evaluation import evaluate_on_levels, generalization_gap
    train = evaluate_on_levels(policy, split, "train", episodes=100)      # policy: act(), an SB3 model or obs -> actions
"""

from rlgen.evaluation.episodes import (
    DrivenPolicy,
    EpisodicPolicy,
    EvalResult,
    Policy,
    RandomPolicy,
    as_policy,
    evaluate_on_levels,
    evaluation_levels,
    policy_seed,
    seeded_policy_rngs,
)
from rlgen.evaluation.stats import Gap, bootstrap_mean_ci, generalization_gap

__all__ = ["DrivenPolicy", "EpisodicPolicy", "EvalResult", "Gap", "Policy", "RandomPolicy", "as_policy", "bootstrap_mean_ci",
           "evaluate_on_levels", "evaluation_levels", "generalization_gap", "policy_seed", "seeded_policy_rngs"]  # fmt: skip
