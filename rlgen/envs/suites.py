"""Suite registry and ``make_env``: the one way to get a vector env for a level split.

A suite is a module with ``NAME``, ``env_names()``, ``canonical_env(env)``,
``resolve_options(env, options)``, ``make_vector_env(env, levels, num_envs, seed, options)`` and
``level_fingerprints(env, levels, options, rollout_steps)``; optionally
``default_split(env, num_levels, options)`` when the default split depends on the env or options
(xland: a finite set of rulesets). Suite modules import their heavy dependencies (EnvPool, MiniGrid,
xminigrid/JAX) only when an env is named or made.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import TYPE_CHECKING

import gymnasium as gym

from rlgen.envs.levels import LevelSet, LevelSpec
from rlgen.errors import SplitError

if TYPE_CHECKING:
    from rlgen.envs.splits import LevelSplit

#: Suite name -> module implementing it.
SUITES: dict[str, str] = {
    "procgen": "rlgen.envs.procgen",
    "minigrid": "rlgen.envs.minigrid",
    "xland": "rlgen.envs.xland",
}


def get_suite(name: str) -> ModuleType:
    """The suite module called ``name``; an unknown name is a ``SplitError`` listing the suites."""
    key = str(name).strip().lower()
    if key not in SUITES:
        raise SplitError(f"unknown suite {name!r}; allowed: {', '.join(SUITES)}")
    return importlib.import_module(SUITES[key])


def parse_env_id(text: str) -> tuple[str, str]:
    """``"procgen/coinrun"`` -> ``("procgen", "coinrun")``, checked against the registry."""
    suite, sep, env = str(text).partition("/")
    if not sep or not env:
        raise SplitError(f"expected SUITE/ENV such as procgen/coinrun or minigrid/doorkey-5x5, got {text!r}")
    module = get_suite(suite)
    return module.NAME, module.canonical_env(env)


def make_env(
    split: "LevelSplit",
    which: str = "train",
    num_envs: int = 1,
    seed: int = 0,
    levels: LevelSpec | None = None,
) -> gym.vector.VectorEnv:
    """A Gymnasium vector env whose episodes start only on ``split``'s ``which`` levels.

    Args:
        split: the level split.
        which: ``"train"``, ``"validation"`` or ``"held_out"``.
        num_envs: number of parallel envs (batched numpy in and out).
        seed: fixes the level sequence and the envs' randomness.
        levels: optionally a subset of the ``which`` set to restrict episodes to further
            (e.g. the first 50 training levels); a level outside the ``which`` set is an error.

    Returns:
        A ``gymnasium.vector.VectorEnv`` with next-step autoreset; ``info["level"]`` is an int
        array with each env's current level id.
    """
    allowed = split.levels(which)
    if levels is not None:
        chosen = LevelSet(levels)
        outside = chosen - allowed
        if outside:
            raise SplitError(f"levels {outside.describe()} are not {which} levels of {split.id} ({allowed.describe()})")
        if not chosen:
            raise SplitError("levels= is empty")
        allowed = chosen
    suite = get_suite(split.suite)
    return suite.make_vector_env(split.env, allowed, int(num_envs), int(seed), split.options)
