"""The Gymnasium vector env of the xland suite: :class:`JaxEnv`'s functions jitted over a batch,
numpy in and out, next-step autoreset (as EnvPool and Gymnasium)."""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from typing import Any

import gymnasium as gym
import numpy as np

from rlgen.envs.levels import LevelSet
from rlgen.envs.xland.jax_env import JaxEnv, LevelSampler, make_jax_env
from rlgen.envs.xland.rulesets import check_levels


@lru_cache(maxsize=16)
def _vector_fns(jenv: JaxEnv) -> dict[str, Any]:
    import jax  # noqa: PLC0415
    import jax.numpy as jnp  # noqa: PLC0415

    def reset(keys: Any, sampler: LevelSampler) -> tuple[Any, Any]:
        return jax.vmap(lambda k: jenv.reset_sampled(k, sampler))(keys)

    def step(state: Any, actions: Any, pending: Any, sampler: LevelSampler) -> tuple[Any, ...]:
        """Next-step autoreset (EnvPool/Gymnasium): an env whose last step ended ignores its action
        and starts the next episode."""

        def one(s: Any, a: Any, p: Any) -> tuple[Any, ...]:
            stepped, obs, reward, terminated, truncated = jenv.step(s, a)
            rng, k = jax.random.split(s.rng)
            fresh, fresh_obs = jenv.reset_sampled(k, sampler)
            fresh = fresh.replace(rng=rng)
            sel = lambda a_, b_: jnp.where(p, a_, b_)  # noqa: E731
            out = jax.tree_util.tree_map(sel, fresh, stepped)
            zero = jnp.zeros((), dtype=bool)
            return (out, sel(fresh_obs, obs), jnp.where(p, 0.0, reward), jnp.where(p, zero, terminated),
                    jnp.where(p, zero, truncated))

        return jax.vmap(one)(state, actions, pending)

    def reset_some(state: Any, keys: Any, mask: Any, sampler: LevelSampler) -> tuple[Any, Any]:
        fresh, obs = reset(keys, sampler)
        sel = lambda a, b: jnp.where(mask.reshape((-1,) + (1,) * (a.ndim - 1)), a, b)  # noqa: E731
        return jax.tree_util.tree_map(sel, fresh, state), obs

    return {"reset": jax.jit(reset), "step": jax.jit(step), "reset_some": jax.jit(reset_some)}


class XLandVectorEnv(gym.vector.VectorEnv):
    """A batch of xminigrid envs behind Gymnasium's vector API (numpy in and out, next-step autoreset).

    Each episode starts on a level drawn uniformly from ``levels``; ``info["level"]`` holds each env's
    current level id. The JAX functions are compiled once per env and batch size.
    """

    def __init__(self, env: str, levels: LevelSet, num_envs: int, seed: int, options: Mapping[str, Any]) -> None:
        import jax  # noqa: PLC0415

        check_levels(env, levels, options)
        self.jenv = make_jax_env(env, options)
        self.num_envs = num_envs
        self.sampler = LevelSampler.from_levels(levels)
        self.single_observation_space = gym.spaces.Box(0, 255, shape=self.jenv.obs_shape, dtype=np.uint8)
        self.single_action_space = gym.spaces.Discrete(self.jenv.num_actions)
        self.observation_space = gym.vector.utils.batch_space(self.single_observation_space, num_envs)
        self.action_space = gym.vector.utils.batch_space(self.single_action_space, num_envs)
        self.metadata = {"autoreset_mode": "next_step"}
        self._fns = _vector_fns(self.jenv)
        self._seed = seed
        self._key = self._root_key(seed)
        self._state: Any = None
        self._pending = np.zeros(num_envs, dtype=bool)

    @staticmethod
    def _root_key(seed: int) -> Any:
        """``PRNGKey(seed)`` for 32-bit seeds (as before); wider seeds (``make_env``'s go up to 2**63) fold their
        high bits in, since ``PRNGKey`` alone keeps only the low 32 and ``s`` and ``s + 2**32`` would collide."""
        import jax  # noqa: PLC0415

        key = jax.random.PRNGKey(int(seed) & 0xFFFFFFFF)
        return key if int(seed) < 2**32 else jax.random.fold_in(key, int(seed) >> 32)

    def _keys(self, n: int) -> Any:
        import jax  # noqa: PLC0415

        self._key, sub = jax.random.split(self._key)
        return jax.random.split(sub, n)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        import jax  # noqa: PLC0415

        if seed is not None:
            self._key = self._root_key(seed)
        self._state, obs = self._fns["reset"](self._keys(self.num_envs), self.sampler)
        self._pending = np.zeros(self.num_envs, dtype=bool)
        return np.asarray(obs), {"level": np.asarray(self._state.level, dtype=np.int64)}

    def step(self, actions: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        if self._state is None:
            raise RuntimeError("call reset() before step()")
        actions = np.asarray(actions, dtype=np.int32).reshape(self.num_envs)
        self._state, obs, reward, terminated, truncated = self._fns["step"](self._state, actions, self._pending, self.sampler)
        terminated, truncated = np.asarray(terminated), np.asarray(truncated)
        self._pending = terminated | truncated
        info = {"level": np.asarray(self._state.level, dtype=np.int64)}
        return np.asarray(obs), np.asarray(reward, dtype=np.float32), terminated, truncated, info

    def reset_envs(self, env_ids: np.ndarray) -> tuple[np.ndarray, dict[str, Any]]:
        """Reset only ``env_ids`` now; returns their first observations and ``{"level": ...}``."""
        ids = np.asarray(env_ids, dtype=np.int64)
        mask = np.zeros(self.num_envs, dtype=bool)
        mask[ids] = True
        self._state, obs = self._fns["reset_some"](self._state, self._keys(self.num_envs), mask, self.sampler)
        self._pending[ids] = False
        return np.asarray(obs)[ids], {"level": np.asarray(self._state.level, dtype=np.int64)[ids]}

    def rgb_frames(self, tile_size: int = 32) -> np.ndarray:
        """Each env's grid drawn by xminigrid's RGB renderer (the agent's view highlighted), ``(num_envs,
        H * tile_size, W * tile_size, 3)`` uint8. For pictures (``rlgen enjoy``): a Python loop over cells, slow."""
        import jax  # noqa: PLC0415
        from xminigrid.rendering.rgb_render import render  # noqa: PLC0415

        if self._state is None:
            raise RuntimeError("call reset() before rgb_frames()")
        inner = jax.device_get(self._state.timestep.state)
        view = int(self.jenv.params.view_size)
        return np.stack([render(np.asarray(inner.grid[i]), jax.tree.map(lambda x: x[i], inner.agent), view, tile_size)
                         for i in range(self.num_envs)])  # fmt: skip

    def close(self, **kwargs: Any) -> None:
        self._state = None
