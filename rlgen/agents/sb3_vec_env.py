"""Adapter from an rlgen vector env (Gymnasium, next-step autoreset) to stable-baselines3's ``VecEnv``.

SB3 expects *same-step* autoreset: the step on which an episode ends returns the first observation
of the next episode, with the last observation in ``infos[i]["terminal_observation"]``. rlgen's
envs (EnvPool, Gymnasium 1.0) autoreset on the *next* step instead. The adapter resets just the
finished envs right away (``reset_envs``), so no step is wasted and no env is stepped one at a
time. Episode return, length and level go into ``infos[i]["episode"]`` as ``VecMonitor`` would.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from rlgen.agents.quiet import silence_gym_banner
from rlgen.errors import RlgenError

silence_gym_banner()

from stable_baselines3.common.vec_env.base_vec_env import VecEnv, VecEnvStepReturn  # noqa: E402


class RlgenVecEnv(VecEnv):
    """SB3 ``VecEnv`` over a ``make_env`` vector env. Observations are passed through unchanged."""

    def __init__(self, env: gym.vector.VectorEnv) -> None:
        if not hasattr(env, "reset_envs"):
            raise RlgenError(f"{type(env).__name__} has no reset_envs(); make it with rlgen.envs.make_env")
        self.env = env
        super().__init__(env.num_envs, env.single_observation_space, env.single_action_space)
        self._actions: np.ndarray | None = None
        self._episode_return = np.zeros(self.num_envs, dtype=np.float64)
        self._episode_length = np.zeros(self.num_envs, dtype=np.int64)
        self._levels = np.zeros(self.num_envs, dtype=np.int64)
        self._seed: int | None = None

    def reset(self) -> np.ndarray:
        obs, info = self.env.reset(seed=self._seed)
        self._seed = None
        self._levels = np.asarray(info["level"], dtype=np.int64).copy()
        self._episode_return[:] = 0.0
        self._episode_length[:] = 0
        self.reset_infos = [{} for _ in range(self.num_envs)]
        return obs

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = np.asarray(actions)

    def step_wait(self) -> VecEnvStepReturn:
        obs, reward, terminated, truncated, info = self.env.step(self._actions)
        reward = np.asarray(reward, dtype=np.float32)
        self._episode_return += reward
        self._episode_length += 1
        done = np.logical_or(terminated, truncated)
        infos: list[dict[str, Any]] = [{} for _ in range(self.num_envs)]
        if done.any():
            ids = np.flatnonzero(done)
            terminal = obs[ids].copy()
            new_obs, new_info = self.env.reset_envs(ids)
            for k, i in enumerate(ids):  # only over finished envs
                infos[i]["terminal_observation"] = terminal[k]
                infos[i]["TimeLimit.truncated"] = bool(truncated[i] and not terminated[i])
                infos[i]["episode"] = {
                    "r": float(self._episode_return[i]),
                    "l": int(self._episode_length[i]),
                    "level": int(self._levels[i]),
                }
            obs[ids] = new_obs
            self._levels[ids] = new_info["level"]
            self._episode_return[ids] = 0.0
            self._episode_length[ids] = 0
        return obs, reward, done, infos

    def close(self) -> None:
        self.env.close()

    def seed(self, seed: int | None = None) -> list[int | None]:
        self._seed = seed
        return [seed] * self.num_envs

    # SB3's VecEnv API for per-env attributes; rlgen envs expose none of these, so keep them minimal.
    def get_attr(self, attr_name: str, indices: Any = None) -> list[Any]:
        return [getattr(self.env, attr_name, None)] * len(self._indices(indices))

    def set_attr(self, attr_name: str, value: Any, indices: Any = None) -> None:
        setattr(self.env, attr_name, value)

    def env_method(self, method_name: str, *method_args: Any, indices: Any = None, **method_kwargs: Any) -> list[Any]:
        raise NotImplementedError(f"RlgenVecEnv does not forward per-env method calls ({method_name})")

    def env_is_wrapped(self, wrapper_class: type, indices: Any = None) -> list[bool]:
        return [False] * len(self._indices(indices))

    def _indices(self, indices: Any) -> list[int]:
        if indices is None:
            return list(range(self.num_envs))
        if isinstance(indices, int):
            return [indices]
        return list(indices)
