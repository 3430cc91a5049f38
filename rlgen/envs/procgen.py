"""The ``procgen`` suite: the 16 Procgen games through EnvPool, with per-game constants.

A level is Procgen's ``level_seed``. EnvPool draws each episode's level uniformly from
``[start_level, start_level + num_levels)``, so a contiguous level set maps straight onto those two
knobs. A non-contiguous set (e.g. a held-out set with duplicate levels dropped) runs on its
bounding range, and an env that draws a level outside the set is reset again before the agent
sees it (EnvPool resets single envs in sync mode), so no excluded level ever reaches the agent.

Observations: uint8 ``(3, 64, 64)``, channel first. Actions: ``Discrete(15)``.
Autoreset: EnvPool's, which is Gymnasium's "next step" mode: the step after a terminal or truncated
step ignores its action and returns the first observation of a new episode with reward 0.
``info["level"]`` holds each env's current level id (on a terminal step: the level that ended).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import gymnasium as gym
import numpy as np

from rlgen.envs.levels import LevelSet
from rlgen.envs.qt_libs import load_qt_libraries
from rlgen.envs.seeding import pool_seed
from rlgen.envs.splits import LevelSplit
from rlgen.errors import SplitError

GAMES: tuple[str, ...] = (
    "bigfish", "bossfight", "caveflyer", "chaser", "climber", "coinrun", "dodgeball", "fruitbot",
    "heist", "jumper", "leaper", "maze", "miner", "ninja", "plunder", "starpilot",
)  # fmt: skip

#: Episode step limit per game (Procgen 0.10.7 game timeouts, as EnvPool 1.2.5 registers them).
EPISODE_STEPS: dict[str, int] = {
    "bigfish": 6000, "bossfight": 4000, "caveflyer": 1000, "chaser": 1000, "climber": 1000,
    "coinrun": 1000, "dodgeball": 1000, "fruitbot": 1000, "heist": 1000, "jumper": 1000,
    "leaper": 500, "maze": 500, "miner": 1000, "ninja": 1000, "plunder": 4000, "starpilot": 1000,
}  # fmt: skip

#: Distribution modes each game supports (EnvPool 1.2.5 registrations, from procgen's game.cpp).
DISTRIBUTION_MODES: dict[str, tuple[str, ...]] = {
    "bigfish": ("easy", "hard"), "bossfight": ("easy", "hard"),
    "caveflyer": ("easy", "hard", "memory", "exploration"), "chaser": ("easy", "hard", "extreme"),
    "climber": ("easy", "hard", "exploration"), "coinrun": ("easy", "hard", "exploration"),
    "dodgeball": ("easy", "hard", "extreme", "memory"), "fruitbot": ("easy", "hard"),
    "heist": ("easy", "hard", "memory", "exploration"), "jumper": ("easy", "hard", "memory", "exploration"),
    "leaper": ("easy", "hard", "extreme", "exploration"), "maze": ("easy", "hard", "memory", "exploration"),
    "miner": ("easy", "hard", "memory"), "ninja": ("easy", "hard", "exploration"),
    "plunder": ("easy", "hard"), "starpilot": ("easy", "hard", "extreme"),
}  # fmt: skip

#: (R_min, R_max) per game for normalized return (R - R_min) / (R_max - R_min).
#: Source: Cobbe et al., "Leveraging Procedural Generation to Benchmark Reinforcement Learning",
#: ICML 2020, appendix table of normalization constants. Easy mode uses the easy columns: the
#: reference offline study's code used the hard-mode ranges for jumper and leaper in easy mode,
#: which we do not repeat.
RETURN_RANGES: dict[str, dict[str, tuple[float, float]]] = {
    "easy": {
        "coinrun": (5.0, 10.0), "starpilot": (2.5, 64.0), "caveflyer": (3.5, 12.0),
        "dodgeball": (1.5, 19.0), "fruitbot": (-1.5, 32.4), "chaser": (0.5, 13.0),
        "miner": (1.5, 13.0), "jumper": (3.0, 10.0), "leaper": (3.0, 10.0), "maze": (5.0, 10.0),
        "bigfish": (1.0, 40.0), "heist": (3.5, 10.0), "climber": (2.0, 12.6),
        "plunder": (4.5, 30.0), "ninja": (3.5, 10.0), "bossfight": (0.5, 13.0),
    },
    "hard": {
        "coinrun": (5.0, 10.0), "starpilot": (1.5, 35.0), "caveflyer": (2.0, 13.4),
        "dodgeball": (1.5, 19.0), "fruitbot": (-0.5, 27.2), "chaser": (0.5, 14.2),
        "miner": (1.5, 20.0), "jumper": (1.0, 10.0), "leaper": (1.5, 10.0), "maze": (4.0, 10.0),
        "bigfish": (0.0, 40.0), "heist": (2.0, 10.0), "climber": (1.0, 12.6),
        "plunder": (3.0, 30.0), "ninja": (2.0, 10.0), "bossfight": (0.5, 13.0),
    },
}  # fmt: skip

NUM_ACTIONS = 15

#: Options a split may set, with defaults. ``max_episode_steps`` defaults to the game's limit.
DEFAULT_OPTIONS: dict[str, Any] = {
    "distribution_mode": "easy",
    "use_backgrounds": True,
    "restrict_themes": False,
    "use_monochrome_assets": False,
    "paint_vel_info": False,
    "max_episode_steps": None,
}

#: Smallest fraction of a non-contiguous level set's bounding range that the set must fill;
#: below it, resetting until an allowed level comes up would waste too many resets.
MIN_LEVEL_DENSITY = 0.5


def env_names() -> tuple[str, ...]:
    return GAMES


def canonical_env(env: str) -> str:
    game = str(env).strip().lower()
    if game not in GAMES:
        raise SplitError(f"unknown Procgen game {env!r}; allowed: {', '.join(GAMES)}")
    return game


def resolve_options(env: str, options: Mapping[str, Any]) -> dict[str, Any]:
    """Fill defaults and check types; an unknown key or bad value is a ``SplitError``."""
    unknown = set(options) - set(DEFAULT_OPTIONS)
    if unknown:
        raise SplitError(
            f"unknown Procgen option(s) {sorted(unknown)}; allowed: {', '.join(DEFAULT_OPTIONS)}"
        )
    out = {**DEFAULT_OPTIONS, **options}
    mode = out["distribution_mode"]
    if mode not in DISTRIBUTION_MODES[env]:
        raise SplitError(
            f"distribution_mode {mode!r} is not available for {env}; allowed: {', '.join(DISTRIBUTION_MODES[env])}"
        )
    for key in ("use_backgrounds", "restrict_themes", "use_monochrome_assets", "paint_vel_info"):
        if not isinstance(out[key], bool):
            raise SplitError(f"Procgen option {key}={out[key]!r} must be true or false")
    if out["max_episode_steps"] is None:
        out["max_episode_steps"] = EPISODE_STEPS[env]
    elif not isinstance(out["max_episode_steps"], int) or isinstance(out["max_episode_steps"], bool) or out["max_episode_steps"] < 1:
        raise SplitError(f"Procgen option max_episode_steps={out['max_episode_steps']!r} must be an int >= 1")
    return out


def return_range(game: str, distribution_mode: str = "easy") -> tuple[float, float]:
    """(R_min, R_max) of ``game`` in ``distribution_mode`` (easy or hard)."""
    game = canonical_env(game)
    if distribution_mode not in RETURN_RANGES:
        raise SplitError(
            f"no published return range for distribution_mode {distribution_mode!r}; "
            f"normalized returns exist for: {', '.join(RETURN_RANGES)}"
        )
    return RETURN_RANGES[distribution_mode][game]


def normalized_return(game: str, returns: np.ndarray | float, distribution_mode: str = "easy") -> np.ndarray:
    """``(R - R_min) / (R_max - R_min)`` with the Procgen paper's constants; same shape as ``returns``."""
    lo, hi = return_range(game, distribution_mode)
    return (np.asarray(returns, dtype=np.float64) - lo) / (hi - lo)


def normalize(env: str, returns: np.ndarray, options: Mapping[str, Any]) -> np.ndarray | None:
    """Suite protocol: normalized returns, or None for modes without published ranges."""
    mode = options.get("distribution_mode", "easy")
    if mode not in RETURN_RANGES:
        return None
    return normalized_return(env, returns, mode)


def _import_envpool() -> Any:
    load_qt_libraries()
    import envpool  # noqa: PLC0415 - heavy, and needs Qt loaded first

    return envpool


def _task_id(game: str, distribution_mode: str) -> str:
    return f"{game.capitalize()}{distribution_mode.capitalize()}-v0"


def _pool_kwargs(options: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in options.items() if k != "distribution_mode"}


class ProcgenVectorEnv(gym.vector.VectorEnv):
    """A Gymnasium vector env over an EnvPool Procgen pool, restricted to a level set.

    Args:
        game: one of ``GAMES``.
        levels: the levels episodes may start on.
        num_envs: parallel environments.
        seed: any int in ``[0, 2**63)``; it fixes the level sequence. EnvPool seeds env ``i`` of a pool with
            ``pool_seed + i`` and asserts an int32 seed, so the pool gets ``seeding.pool_seed(seed, num_envs)``,
            a hash of ``seed`` that leaves room for every env in the int32 range.
        options: resolved Procgen options (``resolve_options``).
    """

    metadata = {"autoreset_mode": "next_step", "render_modes": []}

    def __init__(self, game: str, levels: LevelSet, num_envs: int, seed: int, options: Mapping[str, Any]) -> None:
        if num_envs < 1:
            raise SplitError(f"num_envs must be >= 1, got {num_envs}")
        bounds = levels.bounding_range()
        density = len(levels) / len(bounds)
        if density < MIN_LEVEL_DENSITY:
            raise SplitError(
                f"level set {levels.describe()} fills only {density:.0%} of its range {bounds.start}-"
                f"{bounds.stop - 1}; Procgen needs a level set that fills at least "
                f"{MIN_LEVEL_DENSITY:.0%} of its bounding range"
            )
        self.game = game
        self.levels = levels
        self.options = dict(options)
        self.num_envs = num_envs
        self._seed = int(seed)
        self._bounds = bounds
        self._filter = None if levels.is_contiguous else levels
        self._pool = self._make_pool(self._seed)
        self.single_observation_space = self._pool.observation_space
        self.single_action_space = gym.spaces.Discrete(NUM_ACTIONS)
        self.observation_space = gym.vector.utils.batch_space(self.single_observation_space, num_envs)
        self.action_space = gym.vector.utils.batch_space(self.single_action_space, num_envs)

    def _make_pool(self, seed: int) -> Any:
        envpool = _import_envpool()
        return envpool.make_gymnasium(
            _task_id(self.game, self.options["distribution_mode"]),
            num_envs=self.num_envs,
            seed=pool_seed(seed, self.num_envs),
            start_level=self._bounds.start,
            num_levels=len(self._bounds),
            # one worker thread per env when there are few: thread hand-offs dominate a 1-env pool
            num_threads=self.num_envs if self.num_envs <= 8 else 0,
            **_pool_kwargs(self.options),
        )

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        if seed is not None:
            # EnvPool seeds at construction only; a fresh pool costs well under a millisecond.
            self._pool.close()
            self._seed = int(seed)
            self._pool = self._make_pool(self._seed)
        obs, info = self._pool.reset()
        if self._filter is not None:
            obs, info = self._redraw(obs, info, np.ones(self.num_envs, dtype=bool))
        info["level"] = info["level_seed"]
        return obs, info

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self._pool.step(np.asarray(actions))
        if self._filter is not None:
            obs, info = self._redraw(obs, info, info["elapsed_step"] == 0)
        info["level"] = info["level_seed"]
        return obs, reward, terminated, truncated, info

    def reset_envs(self, env_ids: np.ndarray) -> tuple[np.ndarray, dict[str, Any]]:
        """Reset only ``env_ids`` now (for same-step autoreset adapters such as SB3's).

        Returns their first observations ``(len(env_ids), 3, 64, 64)`` and info arrays of that length;
        their next ``step`` is an ordinary step.
        """
        ids = np.asarray(env_ids, dtype=np.int32)
        obs, info = self._pool.reset(ids)
        if self._filter is not None:
            for _ in range(1000):
                bad = ~self._filter.contains(info["level_seed"])
                if not bad.any():
                    break
                again_obs, again_info = self._pool.reset(ids[bad])
                obs[bad] = again_obs
                info["level_seed"][bad] = again_info["level_seed"]
        info["level"] = info["level_seed"]
        return obs, info

    def _redraw(self, obs: np.ndarray, info: dict[str, Any], new_episode: np.ndarray, max_tries: int = 1000) -> tuple[np.ndarray, dict[str, Any]]:
        """Reset envs whose new episode started outside the level set until it starts inside."""
        assert self._filter is not None
        for _ in range(max_tries):
            bad = new_episode & ~self._filter.contains(info["level_seed"])
            if not bad.any():
                return obs, info
            ids = np.flatnonzero(bad).astype(np.int32)
            sub_obs, sub_info = self._pool.reset(ids)
            obs[ids] = sub_obs
            for key, value in sub_info.items():
                if isinstance(value, np.ndarray) and key in info and key != "env_id":
                    info[key][ids] = value
        raise RuntimeError(f"could not draw a level from {self.levels.describe()} in {max_tries} resets")

    def close_extras(self, **kwargs: Any) -> None:
        pool = getattr(self, "_pool", None)  # absent if __init__ failed
        if pool is not None:
            pool.close()


def make(env: str, levels: LevelSet, num_envs: int, seed: int, options: Mapping[str, Any]) -> ProcgenVectorEnv:
    """Suite protocol: the vector env of ``levels``."""
    return ProcgenVectorEnv(env, levels, num_envs, seed, options)


def default_split(env: str, num_levels: int | None = None, options: Mapping[str, Any] | None = None,
                  validation_levels: int = 50) -> LevelSplit:  # fmt: skip
    """Suite protocol: the reference study's split (train 0-199, validation 200-249, held-out 250-)."""
    return LevelSplit.procgen(env, num_levels=200 if num_levels is None else num_levels, validation_levels=validation_levels,
                              options=dict(options or {}))  # fmt: skip


def default_encoder(env: str, options: Mapping[str, Any]) -> str:
    """Suite protocol: the IMPALA CNN, the Procgen standard."""
    return "impala"


def episode_steps(env: str, options: Mapping[str, Any]) -> int:
    """Suite protocol: the game's own step limit (``EPISODE_STEPS``), whatever ``max_episode_steps`` says:
    it sizes DT's timestep table, so it must not change for existing checkpoints."""
    return EPISODE_STEPS[env]


def level_fingerprints(env: str, levels: np.ndarray, options: Mapping[str, Any], rollout_steps: int = 0) -> list[bytes]:
    """One digest per level: the first observation, plus the frames of a fixed action sequence.

    Two levels with equal digests look identical to the agent at the start (and, with
    ``rollout_steps``, along the same scripted rollout). Level generation depends on the level seed
    only, so the env seed does not enter the digest.
    """
    envpool = _import_envpool()
    actions = np.random.default_rng(0).integers(0, NUM_ACTIONS, size=max(rollout_steps, 0))
    out: list[bytes] = []
    task_id = _task_id(env, options["distribution_mode"])
    for level in levels:
        pool = envpool.make_gymnasium(task_id, num_envs=1, seed=0, start_level=int(level), num_levels=1, **_pool_kwargs(options))
        obs, _ = pool.reset()
        digest = hashlib.blake2b(obs.tobytes(), digest_size=16)
        for a in actions:
            obs, _, terminated, truncated, _ = pool.step(np.array([a]))
            digest.update(obs.tobytes())
            if terminated[0] or truncated[0]:
                break
        pool.close()
        out.append(digest.digest())
    return out
