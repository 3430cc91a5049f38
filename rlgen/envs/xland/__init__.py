"""XLand-MiniGrid (JAX): a task is a ruleset; and xminigrid's single-task MiniGrid ports (pip extra ``rlgen[jax]``).

* ``XLand-MiniGrid-R{1,2,4,6,9}-{H}x{W}`` (short: ``r1-9x9``): a *level is a ruleset id*; the rulesets are
  generated here (``rulesets``), never downloaded, and split by id into training and held-out tasks.
* ``MiniGrid-*`` ports (short: ``doorkey-5x5``): one fixed task; a *level is a reset seed*.

Modules: ``rulesets`` (generation, the cache file, level-id checks), ``jax_env`` (pure functions for JAX
agents), ``vector_env`` (the Gymnasium vector env), ``suite`` (the suite protocol). Importing this package
imports neither xminigrid nor JAX; they load when an env is named or made.
"""

from rlgen.envs.xland.jax_env import JaxEnv, LevelSampler, jax_env_for_split, make_jax_env
from rlgen.envs.xland.rulesets import (
    GOAL_CHANNELS,
    RULESET_KINDS,
    RulesetKind,
    Rulesets,
    check_levels,
    describe_ruleset,
    generate_rulesets,
    is_xland,
    load_rulesets,
    ruleset_path,
)
from rlgen.envs.xland.suite import canonical_env, default_split, env_names, resolve_options, rulesets_info
from rlgen.envs.xland.vector_env import XLandVectorEnv

__all__ = ["GOAL_CHANNELS", "RULESET_KINDS", "JaxEnv", "LevelSampler", "RulesetKind", "Rulesets", "XLandVectorEnv", "canonical_env",
           "check_levels", "default_split", "describe_ruleset", "env_names", "generate_rulesets", "is_xland", "jax_env_for_split",
           "load_rulesets", "make_jax_env", "resolve_options", "ruleset_path", "rulesets_info"]  # fmt: skip
