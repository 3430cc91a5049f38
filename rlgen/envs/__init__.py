"""Environment suites and level splits.

>>> from rlgen.envs import make_env, LevelSplit
>>> split = LevelSplit.procgen("coinrun")          # train 0-199, validation 200-249, held-out 250-
>>> env = make_env(split, which="held_out", num_envs=64, seed=0)
"""

from rlgen.envs.levels import LEVEL_ID_LIMIT, LevelSet
from rlgen.envs.splits import WHICH, LevelSplit
from rlgen.envs.suites import SUITES, get_suite, make_env, parse_env_id

__all__ = ["LEVEL_ID_LIMIT", "LevelSet", "LevelSplit", "SUITES", "WHICH", "get_suite", "make_env", "parse_env_id"]
