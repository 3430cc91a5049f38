"""The ``minigrid`` suite: Farama MiniGrid environments, a level being the reset seed.

Each env draws its next level uniformly from the level set at every reset (its own generator,
seeded from ``SeedSequence([seed, env index])``, ``rlgen.envs.seeding``) and resets MiniGrid with that seed, so the
layout is a function of the level id alone. Observations are channel-first uint8 images:

* ``view="partial"`` (default): the agent's 7x7 egocentric view, MiniGrid's symbolic encoding
  (object, colour, state), shape ``(3, 7, 7)``;
* ``view="full"``: the whole grid in the same symbolic encoding, the agent drawn as its own object
  with its direction as state (the observations of MiniGrid's ``FullyObsWrapper``), shape ``(3, W, H)``:
  a layout is seen whole, so a policy can memorise it (more room for a generalization gap than the
  egocentric view);
* ``view="partial_rgb"``: the same view rendered, ``(3, 7*tile, 7*tile)``;
* ``view="full_rgb"``: the whole grid rendered, ``(3, H*tile, W*tile)``.

Vectorized with Gymnasium's ``SyncVectorEnv`` (next-step autoreset, like EnvPool).
``info["level"]`` holds each env's current level id.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

import gymnasium as gym
import numpy as np

from rlgen.envs.levels import LevelSet
from rlgen.envs.seeding import env_seed
from rlgen.envs.splits import LevelSplit
from rlgen.errors import SplitError

VIEWS: tuple[str, ...] = ("partial", "full", "partial_rgb", "full_rgb")

DEFAULT_OPTIONS: dict[str, Any] = {
    "view": "partial",
    "tile_size": 8,
    "max_steps": None,  # None: the environment's own limit
}


@lru_cache(maxsize=1)
def _registry() -> dict[str, str]:
    """Short lower-case name (``doorkey-5x5``) -> newest registered id (``MiniGrid-DoorKey-5x5-v0``)."""
    import minigrid  # noqa: F401, PLC0415 - registers the MiniGrid ids with Gymnasium

    out: dict[str, tuple[int, str]] = {}
    for env_id in gym.registry:
        if not env_id.startswith("MiniGrid-"):
            continue
        base, _, version = env_id.rpartition("-v")
        short = base[len("MiniGrid-") :].lower()
        v = int(version) if version.isdigit() else 0
        if short not in out or v > out[short][0]:
            out[short] = (v, env_id)
    return {k: v[1] for k, v in sorted(out.items())}


def env_names() -> tuple[str, ...]:
    return tuple(_registry().values())


def canonical_env(env: str) -> str:
    registry = _registry()
    name = str(env).strip()
    if name in gym.registry and name.startswith("MiniGrid-"):
        return name
    short = name.lower().removeprefix("minigrid-")
    short = short.rpartition("-v")[0] if short.rpartition("-v")[2].isdigit() else short
    if short in registry:
        return registry[short]
    raise SplitError(f"unknown MiniGrid env {env!r}; allowed: {', '.join(registry)} (or their MiniGrid-...-vN ids)")


def resolve_options(env: str, options: Mapping[str, Any]) -> dict[str, Any]:
    unknown = set(options) - set(DEFAULT_OPTIONS)
    if unknown:
        raise SplitError(f"unknown MiniGrid option(s) {sorted(unknown)}; allowed: {', '.join(DEFAULT_OPTIONS)}")
    out = {**DEFAULT_OPTIONS, **options}
    if out["view"] not in VIEWS:
        raise SplitError(f"MiniGrid option view={out['view']!r}; allowed: {', '.join(VIEWS)}")
    tile = out["tile_size"]
    if not isinstance(tile, int) or isinstance(tile, bool) or not 1 <= tile <= 64:
        raise SplitError(f"MiniGrid option tile_size={tile!r} must be an int in 1..64")
    steps = out["max_steps"]
    if steps is not None and (not isinstance(steps, int) or isinstance(steps, bool) or steps < 1):
        raise SplitError(f"MiniGrid option max_steps={steps!r} must be an int >= 1 or null")
    return out


class ChannelFirst(gym.ObservationWrapper):
    """``(H, W, C)`` uint8 images to ``(C, H, W)``."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        space = env.observation_space
        assert isinstance(space, gym.spaces.Box)
        self.observation_space = gym.spaces.Box(
            low=0, high=255, shape=(space.shape[2], space.shape[0], space.shape[1]), dtype=np.uint8
        )

    def observation(self, observation: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(np.transpose(observation, (2, 0, 1)))


class FullSymbolicView(gym.Wrapper):
    """The whole grid in MiniGrid's symbolic encoding, the agent as ``(agent, red, direction)``:
    ``FullyObsWrapper``'s observations, about twice as fast.

    MiniGrid builds the egocentric view in every ``step``/``reset`` (``gen_obs`` -> ``gen_obs_grid``:
    slice, rotate, visibility), which ``FullyObsWrapper`` then throws away; measured here it was 2/3 of
    a DoorKey-6x6 step. This wrapper replaces ``gen_obs`` on its own env instance with the full-grid
    encoding, so each step encodes the grid once. (No MiniGrid env reads ``gen_obs`` for anything
    else; ``agent_sees`` would, and is unused by the envs.) A test checks it against
    ``FullyObsWrapper`` step for step.
    """

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        base = env.unwrapped
        base.gen_obs = self._full_obs  # an instance attribute: only this env changes
        image = gym.spaces.Box(low=0, high=255, shape=(base.width, base.height, 3), dtype=np.uint8)
        # the base env's own space too: gym.make's env checker compares the base env's observations with it
        base.observation_space = gym.spaces.Dict({**base.observation_space.spaces, "image": image})
        self.observation_space = base.observation_space

    def _full_obs(self) -> dict[str, Any]:
        from minigrid.core.constants import COLOR_TO_IDX, OBJECT_TO_IDX  # noqa: PLC0415

        base = self.env.unwrapped
        image = base.grid.encode()
        image[base.agent_pos[0], base.agent_pos[1]] = (OBJECT_TO_IDX["agent"], COLOR_TO_IDX["red"], base.agent_dir)
        return {"image": image, "direction": base.agent_dir, "mission": base.mission}


class LevelSampling(gym.Wrapper):
    """Reset on a level drawn from ``levels``; report it as ``info["level"]`` on every step.

    ``reset(seed=s)`` reseeds the level generator with ``s`` (:class:`MiniGridVectorEnv` passes env ``i``
    its own ``env_seed(seed, i)``); ``reset()`` draws the next level from the running generator.
    """

    def __init__(self, env: gym.Env, levels: LevelSet, seed: int) -> None:
        super().__init__(env)
        self.levels = levels
        self._rng = np.random.default_rng(seed)
        self.level = -1

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
        if seed is not None:
            self._rng = np.random.default_rng(seed)
        self.level = int(self.levels.sample(self._rng))
        obs, info = self.env.reset(seed=self.level, options=options)
        info["level"] = self.level
        return obs, info

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        info["level"] = self.level
        return obs, reward, terminated, truncated, info


def normalize(env: str, returns: np.ndarray, options: Mapping[str, Any]) -> np.ndarray:
    """Suite protocol. MiniGrid's reward is ``1 - 0.9 * steps / max_steps`` on success and 0 otherwise,
    so returns already lie in [0, 1]: R_min = 0, R_max = 1."""
    return np.asarray(returns, dtype=np.float64)


class MiniGridVectorEnv(gym.vector.SyncVectorEnv):
    """Gymnasium's ``SyncVectorEnv`` plus ``reset_envs`` (reset some envs now); ``reset(seed=s)`` gives env
    ``i`` the seed ``env_seed(s, i)`` (Gymnasium's would be ``s + i``, a stream shared with seed ``s + 1``)."""

    #: Whether :meth:`rgb_frames` shades the cells the agent sees (set by :func:`make` for the partial views).
    highlight = False

    def reset(self, *, seed: int | list[int] | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
        if isinstance(seed, (int, np.integer)):
            seed = [env_seed(int(seed), i) for i in range(self.num_envs)]
        return super().reset(seed=seed, options=options)

    def reset_envs(self, env_ids: np.ndarray) -> tuple[np.ndarray, dict[str, Any]]:
        """Reset only ``env_ids``; returns their first observations and ``{"level": ...}``.
        Their next ``step`` is an ordinary step (no pending autoreset)."""
        obs, levels = [], []
        for i in np.asarray(env_ids, dtype=np.int64):
            o, info = self.envs[i].reset()
            self._autoreset_envs[i] = False
            obs.append(o)
            levels.append(info["level"])
        return np.stack(obs), {"level": np.asarray(levels, dtype=np.int64)}

    def rgb_frames(self, tile_size: int = 32) -> np.ndarray:
        """Each env's whole grid drawn as RGB, ``(num_envs, H * tile_size, W * tile_size, 3)`` uint8: what
        ``render_mode="rgb_array"`` renders (``get_frame``), whatever the observation view; the partial views
        get MiniGrid's highlight of what the agent sees. For pictures (``rlgen enjoy``), never for training."""
        return np.stack([e.unwrapped.get_frame(highlight=self.highlight, tile_size=tile_size) for e in self.envs])


def make_single_env(env: str, options: Mapping[str, Any]) -> gym.Env:
    """One MiniGrid env with rlgen's observation wrappers (no level sampling)."""
    from minigrid.wrappers import ImgObsWrapper, RGBImgObsWrapper, RGBImgPartialObsWrapper  # noqa: PLC0415

    kwargs = {"max_steps": options["max_steps"]} if options["max_steps"] is not None else {}
    e = gym.make(env, **kwargs)
    if options["view"] == "full":
        e = FullSymbolicView(e)
    elif options["view"] == "partial_rgb":
        e = RGBImgPartialObsWrapper(e, tile_size=options["tile_size"])
    elif options["view"] == "full_rgb":
        e = RGBImgObsWrapper(e, tile_size=options["tile_size"])
    return ChannelFirst(ImgObsWrapper(e))


def default_split(env: str, num_levels: int | None = None, options: Mapping[str, Any] | None = None,
                  validation_levels: int = 50) -> LevelSplit:  # fmt: skip
    """Suite protocol: reset seeds laid out like Procgen's levels (train 0-199, validation 200-249, held-out 250-)."""
    return LevelSplit.minigrid(env, num_levels=200 if num_levels is None else num_levels, validation_levels=validation_levels,
                               options=dict(options or {}))  # fmt: skip


def default_encoder(env: str, options: Mapping[str, Any]) -> str:
    """Suite protocol: the small CNN for the symbolic views (partial and full), the IMPALA CNN for rendered views."""
    return "minigrid_cnn" if options.get("view", "partial") in ("partial", "full") else "impala"


def episode_steps(env: str, options: Mapping[str, Any]) -> int:
    """Suite protocol: 1000, the bound DT's timestep table has had for MiniGrid (kept so existing checkpoints load;
    MiniGrid's own limits are lower for the small grids)."""
    return 1000


def make(env: str, levels: LevelSet, num_envs: int, seed: int, options: Mapping[str, Any]) -> gym.vector.VectorEnv:
    """Suite protocol: ``num_envs`` MiniGrid envs drawing their reset seeds from ``levels``."""
    if num_envs < 1:
        raise SplitError(f"num_envs must be >= 1, got {num_envs}")
    options = dict(options)

    def thunk(i: int) -> Any:
        return lambda: LevelSampling(make_single_env(env, options), levels, seed=env_seed(seed, i))

    venv = MiniGridVectorEnv([thunk(i) for i in range(num_envs)])
    venv.highlight = options["view"] in ("partial", "partial_rgb")
    return venv


def level_fingerprints(env: str, levels: np.ndarray, options: Mapping[str, Any], rollout_steps: int = 0) -> list[bytes]:
    """One digest per level: the full grid, agent pose and mission at reset, plus the agent's views
    along a fixed action sequence."""
    e = make_single_env(env, options)
    actions = np.random.default_rng(0).integers(0, e.action_space.n, size=max(rollout_steps, 0))
    out: list[bytes] = []
    for level in levels:
        obs, _ = e.reset(seed=int(level))
        base = e.unwrapped
        digest = hashlib.blake2b(base.grid.encode().tobytes(), digest_size=16)
        digest.update(np.asarray([*base.agent_pos, base.agent_dir], dtype=np.int64).tobytes())
        digest.update(str(getattr(base, "mission", "")).encode())
        for a in actions:
            obs, _, terminated, truncated, _ = e.step(int(a))
            digest.update(obs.tobytes())
            if terminated or truncated:
                break
        out.append(digest.digest())
    e.close()
    return out
