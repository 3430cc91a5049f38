"""The ``xland`` suite (JAX): XLand-MiniGrid, a level being a ruleset id, and xminigrid's MiniGrid
ports, a level being a reset seed (``jax.random.PRNGKey(level)``), so a port's layout is a function of
the level id alone. XLand's room layout and object positions are random per episode, as in XLand-MiniGrid.

Six actions; reward ``1 - 0.9 * t / max_steps`` on success, else 0, so returns lie in [0, 1].
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

import gymnasium as gym
import numpy as np

from rlgen.envs.levels import LevelSet
from rlgen.envs.splits import LevelSplit
from rlgen.envs.xland.jax_env import NAME, make_jax_env
from rlgen.envs.xland.rulesets import (
    PORT_PREFIX,
    RULESET_KINDS,
    XLAND_PREFIX,
    _require_xminigrid,
    check_levels,
    is_xland,
    load_rulesets,
    ruleset_path,
)
from rlgen.envs.xland.vector_env import XLandVectorEnv
from rlgen.errors import SplitError

XLAND_DEFAULT_OPTIONS: dict[str, Any] = {
    "rulesets": "trivial",      # generator kind (see RULESET_KINDS)
    "num_rulesets": 10_000,     # rulesets generated; level ids are 0..num_rulesets-1
    "ruleset_seed": 0,
    "ruleset_file": None,       # load this .npz instead of generating (its kind/count/seed are checked)
    "goal_obs": True,           # add the goal encoding as 5 observation channels
    "view_size": None,          # None: the env's own (5 for XLand)
    "max_steps": None,          # None: the env's own (3 * H * W for XLand)
}  # fmt: skip
PORT_DEFAULT_OPTIONS: dict[str, Any] = {"view_size": None, "max_steps": None}


@lru_cache(maxsize=1)
def _registry() -> dict[str, str]:
    """Short lower-case name (``r1-9x9``, ``doorkey-5x5``) -> xminigrid id."""
    xminigrid = _require_xminigrid()
    out: dict[str, str] = {}
    for env_id in xminigrid.registered_environments():
        short = env_id.lower().removeprefix(XLAND_PREFIX.lower()).removeprefix(PORT_PREFIX.lower())
        out[short] = env_id
    return dict(sorted(out.items()))


def env_names() -> tuple[str, ...]:
    return tuple(_registry().values())


def canonical_env(env: str) -> str:
    registry = _registry()
    name = str(env).strip()
    if name in registry.values():
        return name
    short = name.lower().removeprefix(XLAND_PREFIX.lower()).removeprefix(PORT_PREFIX.lower())
    if short in registry:
        return registry[short]
    raise SplitError(f"unknown xland env {env!r}; allowed: {', '.join(registry)} (or their xminigrid ids)")


def _int_option(name: str, value: Any, low: int, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise SplitError(f"xland option {name}={value!r} must be an int >= {low}" + (" or null" if allow_none else ""))


def resolve_options(env: str, options: Mapping[str, Any]) -> dict[str, Any]:
    env = canonical_env(env)
    defaults = XLAND_DEFAULT_OPTIONS if is_xland(env) else PORT_DEFAULT_OPTIONS
    unknown = set(options) - set(defaults)
    if unknown:
        kind = "XLand" if is_xland(env) else "MiniGrid-port"
        raise SplitError(f"unknown {kind} option(s) {sorted(unknown)} for {env}; allowed: {', '.join(defaults)}")
    out = {**defaults, **options}
    view = out["view_size"]
    _int_option("view_size", view, 3, allow_none=True)
    if view is not None and view % 2 == 0:
        raise SplitError(f"xland option view_size={view} must be odd")
    _int_option("max_steps", out["max_steps"], 1, allow_none=True)
    if is_xland(env):
        if out["rulesets"] not in RULESET_KINDS:
            raise SplitError(f"xland option rulesets={out['rulesets']!r}; allowed: {', '.join(RULESET_KINDS)}")
        _int_option("num_rulesets", out["num_rulesets"], 1)
        _int_option("ruleset_seed", out["ruleset_seed"], 0)
        if not isinstance(out["goal_obs"], bool):
            raise SplitError(f"xland option goal_obs={out['goal_obs']!r} must be true or false")
        if out["ruleset_file"] is not None and not isinstance(out["ruleset_file"], str):
            raise SplitError(f"xland option ruleset_file={out['ruleset_file']!r} must be a path or null")
    return out


def default_split(env: str, num_levels: int | None = None, options: Mapping[str, Any] | None = None,
                  validation_levels: int = 50, **kwargs: Any) -> "LevelSplit":
    """XLand envs: train on ruleset ids ``0..num_levels-1`` (default: 80% of ``num_rulesets``),
    validate on the next ``validation_levels``, hold out every remaining ruleset id.
    MiniGrid ports: seeds, as the minigrid suite (train 0-199, validation 200-249, held-out 250-)."""
    from rlgen.envs.levels import LEVEL_ID_LIMIT  # noqa: PLC0415

    env = canonical_env(env)
    opts = resolve_options(env, dict(options or {}))
    if is_xland(env):
        total = int(opts["num_rulesets"])
        n = num_levels if num_levels is not None else int(total * 0.8) - validation_levels
        if n < 1 or n + validation_levels >= total:
            raise SplitError(
                f"xland/{env}: {n} training + {validation_levels} validation rulesets leave no held-out rulesets "
                f"of num_rulesets={total}; lower split.num_levels or raise split.options.num_rulesets"
            )
        end = total
    else:
        n = num_levels if num_levels is not None else 200
        end = LEVEL_ID_LIMIT
        if n < 1:
            raise SplitError(f"num_levels must be >= 1, got {n}")
    return LevelSplit(NAME, env, train=range(0, n), validation=range(n, n + validation_levels),
                      held_out=range(n + validation_levels, end), options=opts, **kwargs)


def normalize(env: str, returns: np.ndarray, options: Mapping[str, Any]) -> np.ndarray:
    """Suite protocol. xminigrid's reward is ``1 - 0.9 * steps / max_steps`` on success, else 0, and an
    episode ends on success: returns already lie in [0, 1]."""
    return np.asarray(returns, dtype=np.float64)


def default_encoder(env: str, options: Mapping[str, Any]) -> str:
    """Suite protocol: the small CNN, for XLand-MiniGrid's small symbolic grids."""
    return "minigrid_cnn"


def episode_steps(env: str, options: Mapping[str, Any]) -> int:
    """Suite protocol: 1000, the bound DT's timestep table has had for xland (kept so existing checkpoints load)."""
    return 1000


def make(env: str, levels: LevelSet, num_envs: int, seed: int, options: Mapping[str, Any]) -> gym.vector.VectorEnv:
    """Suite protocol: ``num_envs`` xminigrid envs stepped as one jitted batch."""
    if num_envs < 1:
        raise SplitError(f"num_envs must be >= 1, got {num_envs}")
    return XLandVectorEnv(env, levels, num_envs, seed, options)


def level_fingerprints(env: str, levels: np.ndarray, options: Mapping[str, Any], rollout_steps: int = 0) -> list[bytes]:
    """One digest per level. XLand: the ruleset's canonical encoding (layouts are random per episode,
    so the task is the ruleset); ports: the grid and agent pose at reset, plus the views along a fixed
    action sequence."""
    levels = np.asarray(levels, dtype=np.int64)
    check_levels(env, LevelSet(levels.tolist()), options)
    if is_xland(env):
        rs = load_rulesets(options)
        return [hashlib.blake2b(rs.encoding(int(i)), digest_size=16).digest() for i in levels]
    import jax  # noqa: PLC0415

    jenv = make_jax_env(env, options)
    actions = np.random.default_rng(0).integers(0, jenv.num_actions, size=max(rollout_steps, 0))

    @jax.jit
    def first(level: Any) -> tuple[Any, Any]:
        state, obs = jenv.reset(jax.random.PRNGKey(0), level)
        return state, obs

    step = jax.jit(jenv.step)
    out: list[bytes] = []
    for level in levels:
        state, obs = first(int(level))
        ts = state.timestep
        digest = hashlib.blake2b(np.asarray(ts.state.grid).tobytes(), digest_size=16)
        digest.update(np.asarray([*np.asarray(ts.state.agent.position), int(ts.state.agent.direction)], dtype=np.int64).tobytes())
        for a in actions:
            state, obs, _, terminated, truncated = step(state, int(a))
            digest.update(np.asarray(obs).tobytes())
            if bool(terminated) or bool(truncated):
                break
        out.append(digest.digest())
    return out


def rulesets_info(split: LevelSplit) -> dict[str, Any] | None:
    """What a run or dataset should record about the rulesets of ``split`` (None for the ports)."""
    if split.suite != NAME or not is_xland(split.env):
        return None
    rs = load_rulesets(split.options)
    return {**dict(rs.meta), "file": str(ruleset_path(split.options)), "sha256": rs.sha256(), "max_rules": int(rs.rules.shape[1]),
            "max_init_tiles": int(rs.init_tiles.shape[1])}


