"""XLand-MiniGrid as pure JAX functions, for JAX agents: :class:`JaxEnv` (``reset``, ``step``,
``step_autoreset``; vmap and jit them) and :class:`LevelSampler`, a ``LevelSet`` on device.

Observations are channel-first uint8 ``(C, V, V)``: the agent's egocentric ``V x V`` view as xminigrid
encodes it, channel 0 the tile id, channel 1 the colour id; with ``goal_obs`` five more channels carry
the ruleset's goal encoding, broadcast over the view.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from functools import lru_cache
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from rlgen.envs.levels import LevelSet
from rlgen.envs.xland.rulesets import GOAL_CHANNELS, Rulesets, _require_xminigrid, check_levels, is_xland, load_rulesets
from rlgen.errors import SplitError

if TYPE_CHECKING:
    from rlgen.envs.splits import LevelSplit

NAME = "xland"


class LevelSampler(NamedTuple):
    """A ``LevelSet`` on device: uniform draws over its intervals (int32; any size up to 2**31-1)."""

    starts: Any  # (k,) int32
    offsets: Any  # (k,) int32, cumulative lengths before each interval
    total: Any  # () int32

    @classmethod
    def from_levels(cls, levels: LevelSet) -> "LevelSampler":
        import jax.numpy as jnp  # noqa: PLC0415

        if not levels:
            raise SplitError("cannot sample from an empty level set")
        lengths = np.array([len(r) for r in levels.intervals], dtype=np.int64)
        offsets = np.cumsum(lengths) - lengths
        starts = np.array([r.start for r in levels.intervals], dtype=np.int64)
        return cls(jnp.asarray(starts, dtype=jnp.int32), jnp.asarray(offsets, dtype=jnp.int32),
                   jnp.asarray(int(lengths.sum()), dtype=jnp.int32))

    def sample(self, key: Any) -> Any:
        import jax  # noqa: PLC0415
        import jax.numpy as jnp  # noqa: PLC0415

        idx = jax.random.randint(key, (), 0, self.total, dtype=jnp.int32)
        j = jnp.searchsorted(self.offsets, idx, side="right") - 1
        return self.starts[j] + (idx - self.offsets[j])


def _env_state_class() -> type:
    from flax import struct  # noqa: PLC0415

    class EnvState(struct.PyTreeNode):
        """One env: xminigrid's timestep, the level (ruleset id or seed) and the env's own PRNG key."""

        timestep: Any
        level: Any
        rng: Any

    return EnvState


@lru_cache(maxsize=1)
def _EnvState() -> type:
    return _env_state_class()


class JaxEnv:
    """Pure functions over one env's state, to ``jax.vmap`` and ``jax.jit``.

    Args:
        env: canonical env id; ``options``: resolved suite options.

    The level sampler is an argument of the functions that draw levels, not part of the env, so one
    compiled function serves every level set.
    """

    def __init__(self, env: str, options: Mapping[str, Any]) -> None:
        xminigrid = _require_xminigrid()
        import jax.numpy as jnp  # noqa: PLC0415

        self.env_id = env
        self.options = dict(options)
        kwargs = {k: options[k] for k in ("view_size", "max_steps") if options.get(k) is not None}
        self.env, self.params = xminigrid.make(env, **kwargs)
        self.xland = is_xland(env)
        self.goal_obs = bool(options.get("goal_obs", False)) and self.xland
        self.rulesets: Rulesets | None = None
        if self.xland:
            self.rulesets = load_rulesets(options)
            self._goals = jnp.asarray(self.rulesets.goals)
            self._rules = jnp.asarray(self.rulesets.rules)
            self._tiles = jnp.asarray(self.rulesets.init_tiles)
        view = int(self.params.view_size)
        channels = 2 + (GOAL_CHANNELS if self.goal_obs else 0)
        self.obs_shape: tuple[int, int, int] = (channels, view, view)
        self.num_actions = int(self.env.num_actions(self.params))
        self.max_steps = int(self.params.max_steps)

    @property
    def num_levels(self) -> int | None:
        """Number of rulesets (XLand); None for the ports (any seed is a level)."""
        return len(self.rulesets) if self.rulesets is not None else None

    def observe(self, timestep: Any) -> Any:
        import jax.numpy as jnp  # noqa: PLC0415

        obs = jnp.transpose(timestep.observation, (2, 0, 1)).astype(jnp.uint8)
        if self.goal_obs:
            v = obs.shape[-1]
            goal = jnp.broadcast_to(timestep.state.goal_encoding.astype(jnp.uint8)[:, None, None], (GOAL_CHANNELS, v, v))
            obs = jnp.concatenate([obs, goal], axis=0)
        return obs

    def reset(self, key: Any, level: Any) -> tuple[Any, Any]:
        """Start an episode on ``level``: returns ``(state, obs)``. ``key`` seeds the env's randomness
        (XLand: layout and object positions; ports: only the state's key, the layout is the level's)."""
        import jax  # noqa: PLC0415
        import jax.numpy as jnp  # noqa: PLC0415
        from xminigrid.types import RuleSet  # noqa: PLC0415

        level = jnp.asarray(level, dtype=jnp.int32)
        key, reset_key = jax.random.split(key)
        if self.xland:
            ruleset = RuleSet(goal=self._goals[level], rules=self._rules[level], init_tiles=self._tiles[level])
            timestep = self.env.reset(self.params.replace(ruleset=ruleset), reset_key)
        else:
            timestep = self.env.reset(self.params, jax.random.PRNGKey(level))
        return _EnvState()(timestep=timestep, level=level, rng=key), self.observe(timestep)

    def step(self, state: Any, action: Any) -> tuple[Any, Any, Any, Any, Any]:
        """One step, no reset: ``(state, obs, reward, terminated, truncated)``."""
        import jax.numpy as jnp  # noqa: PLC0415

        timestep = self.env.step(self.params, state.timestep, action)
        last = timestep.step_type == 2
        terminated = last & (timestep.discount == 0)
        truncated = last & ~terminated
        reward = timestep.reward.astype(jnp.float32)
        return state.replace(timestep=timestep), self.observe(timestep), reward, terminated, truncated

    def sample_level(self, key: Any, sampler: LevelSampler) -> Any:
        return sampler.sample(key)

    def reset_sampled(self, key: Any, sampler: LevelSampler) -> tuple[Any, Any]:
        """Reset on a level drawn from ``sampler``."""
        import jax  # noqa: PLC0415

        k_level, k_reset = jax.random.split(key)
        return self.reset(k_reset, sampler.sample(k_level))

    def step_autoreset(self, state: Any, action: Any, sampler: LevelSampler) -> dict[str, Any]:
        """Step; when the episode ends, start the next one (level from ``sampler``) in the same call.

        Returns a dict: ``state`` and ``obs`` to continue from (the next episode's first when this one
        ended), ``final_obs`` (the observation this step produced), ``reward``, ``terminated``,
        ``truncated``, ``level`` (the level this step ran on).
        """
        import jax  # noqa: PLC0415

        new_state, obs, reward, terminated, truncated = self.step(state, action)
        done = terminated | truncated
        rng, k = jax.random.split(new_state.rng)
        new_state = new_state.replace(rng=rng)
        reset_state, reset_obs = self.reset_sampled(k, sampler)
        pick = lambda a, b: jax.numpy.where(done, a, b)  # noqa: E731  (done is per env: a scalar before vmap)
        out_state = jax.tree_util.tree_map(pick, reset_state, new_state)
        return {
            "state": out_state,
            "obs": pick(reset_obs, obs),
            "final_obs": obs,
            "reward": reward,
            "terminated": terminated,
            "truncated": truncated,
            "level": state.level,
        }


@lru_cache(maxsize=16)
def _jax_env_cached(env: str, options_json: str) -> JaxEnv:
    return JaxEnv(env, json.loads(options_json))


def make_jax_env(env: str, options: Mapping[str, Any]) -> JaxEnv:
    """The (cached) :class:`JaxEnv` for canonical ``env`` and resolved ``options``."""
    return _jax_env_cached(env, json.dumps(dict(options), sort_keys=True))


def jax_env_for_split(split: "LevelSplit") -> JaxEnv:
    """The :class:`JaxEnv` of a split, after checking its level ids are valid for the env."""
    if split.suite != NAME:
        raise SplitError(f"{split.id} is not an xland env; JAX agents train on xland/... envs")
    jenv = make_jax_env(split.env, split.options)
    for which in ("train", "validation", "held_out"):
        check_levels(split.env, getattr(split, which), split.options)
    return jenv
