"""Environment suites and level splits; imports nothing of rlgen above it.

>>> from rlgen.envs import make_env, LevelSplit
>>> split = LevelSplit.procgen("coinrun")          # train 0-199, validation 200-249, held-out 250-
>>> env = make_env(split, which="held_out", num_envs=64, seed=0)

Your own procedurally generated environment family: implement :class:`Suite` and ``register_suite`` it.

Importing this package registers Gymnasium ids for the Procgen and MiniGrid level sets
(``gymnasium.make("rlgen/minigrid-doorkey-6x6-heldout-v0")``, ``rlgen.envs.gymnasium_ids``).
"""

from rlgen.envs.gymnasium_ids import gym_id, register_gymnasium_ids
from rlgen.envs.leakage import DuplicateReport, drop_duplicates, find_duplicate_levels
from rlgen.envs.levels import LEVEL_ID_LIMIT, LevelSet
from rlgen.envs.splits import WHICH, LevelSplit
from rlgen.envs.suites import Suite, available_suites, get_suite, make_env, normalize_returns, parse_env_id, register_suite

__all__ = ["LEVEL_ID_LIMIT", "WHICH", "DuplicateReport", "LevelSet", "LevelSplit", "Suite", "available_suites", "drop_duplicates",
           "find_duplicate_levels", "get_suite", "gym_id", "make_env", "normalize_returns", "parse_env_id", "register_suite"]  # fmt: skip

register_gymnasium_ids()
