"""Gymnasium ids for rlgen's level sets: ``gymnasium.make("rlgen/minigrid-doorkey-6x6-heldout-v0")``.

The scheme is ``rlgen/<suite>-<env>-<which>-v0``:

* ``<suite>-<env>``: ``procgen-coinrun`` (the 16 Procgen games) or ``minigrid-doorkey-6x6`` (MiniGrid's envs by
  rlgen's short name, when MiniGrid is installed);
* ``<which>``: ``train``, ``validation`` or ``heldout``: the level set of the suite's default split
  (train 0-199, validation 200-249, held-out 250- for both suites; ``num_levels=``, ``validation_levels=``
  and ``options=`` given to ``make`` change it as in a config's ``env`` block).

``import rlgen.envs`` registers them (Gymnasium 1.0 loads no plugin entry points, so something must be
imported first, as with ``import minigrid``); ``gymnasium.make("rlgen.envs:rlgen/...")`` imports it for you.
XLand ids are not registered: listing XLand's envs imports JAX. ``gymnasium.make`` gives one env,
``gymnasium.make_vec(id, num_envs=n)`` rlgen's own vector env (EnvPool for Procgen, next-step autoreset).

Levels: every reset starts an episode on a level drawn from the named set, from a stream fixed by the seed:
after ``reset(seed=s)`` the levels are those of ``rlgen.envs.make_env(split, which, num_envs, seed=s)``
(env ``i`` of a vector env draws from ``SeedSequence([s, i])``); before the first seeded reset, those of
``seed=`` given to ``make`` (default 0), so an unseeded env is reproducible too. ``reset()`` without a
seed draws the next level of the running stream. ``info["level"]`` is the current level id.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import gymnasium as gym
import numpy as np

from rlgen.envs.splits import LevelSplit
from rlgen.envs.suites import get_suite, make_env, parse_env_id
from rlgen.errors import SplitError

NAMESPACE = "rlgen"
VERSION = 0
#: Level-set names in ids -> ``LevelSplit.levels`` names (ids may not hold ``_`` comfortably: ``heldout``).
WHICH_IN_IDS: dict[str, str] = {"train": "train", "validation": "validation", "heldout": "held_out"}


def gym_id(suite: str, env: str, which: str) -> str:
    """The Gymnasium id of ``suite``/``env``'s ``which`` levels: ``gym_id("minigrid", "doorkey-6x6", "held_out")``
    is ``"rlgen/minigrid-doorkey-6x6-heldout-v0"``."""
    word = which.replace("_", "")
    if word not in WHICH_IN_IDS:
        raise SplitError(f"which={which!r} is not one of: {', '.join(WHICH_IN_IDS.values())}")
    return f"{NAMESPACE}/{suite}-{env}-{word}-v{VERSION}"


def _split(env: str, num_levels: int | None, validation_levels: int, options: Mapping[str, Any] | None,
           split: Mapping[str, Any] | None = None) -> LevelSplit:  # fmt: skip
    if split is not None:  # an exact split (``LevelSplit.to_dict``): what a dataset's env spec records
        return LevelSplit.from_dict(split)
    suite, _, name = env.partition("/")
    return get_suite(suite).default_split(get_suite(suite).canonical_env(name), num_levels=num_levels,
                                          options=dict(options or {}), validation_levels=validation_levels)  # fmt: skip


def make_vector(num_envs: int = 1, *, env: str, which: str, num_levels: int | None = None, validation_levels: int = 50,
                options: Mapping[str, Any] | None = None, seed: int = 0, split: Mapping[str, Any] | None = None,
                **unused: Any) -> gym.vector.VectorEnv:  # fmt: skip
    """``gymnasium.make_vec``'s entry point: ``make_env`` of the default split (``env`` is ``suite/name``), or of
    ``split`` (a ``LevelSplit.to_dict()``) when given. The suites' vector envs reseed their level streams on
    ``reset(seed=s)`` exactly as ``make_env(seed=s)``."""
    unused.pop("max_episode_steps", None)  # make_vec passes the spec's; episode limits are the suite's options
    if unused:
        raise SplitError(f"unknown argument(s) {sorted(unused)}; allowed: num_levels, validation_levels, options, seed, split")
    return make_env(_split(env, num_levels, validation_levels, options, split), which, num_envs=num_envs, seed=seed)


class LevelSetEnv(gym.Env):
    """One env on a level set: a 1-env rlgen vector env with its batch axis removed.

    Observations, actions and spaces are the suite's (e.g. uint8 ``(3, 7, 7)`` for MiniGrid's partial view,
    ``(3, 64, 64)`` for Procgen); ``info["level"]`` is an int.
    """

    metadata: dict[str, Any] = {"render_modes": []}

    def __init__(self, *, env: str, which: str, num_levels: int | None = None, validation_levels: int = 50,
                 options: Mapping[str, Any] | None = None, seed: int = 0, split: Mapping[str, Any] | None = None) -> None:  # fmt: skip
        self._vec = make_vector(1, env=env, which=which, num_levels=num_levels, validation_levels=validation_levels,
                                options=options, seed=seed, split=split)  # fmt: skip
        self.observation_space = self._vec.single_observation_space
        self.action_space = self._vec.single_action_space
        self._started = False

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
        super().reset(seed=seed)
        if seed is not None or not self._started:
            obs, info = self._vec.reset(seed=seed)
        else:  # next level of the running stream, now (the vector env would autoreset only on the next step)
            obs, info = self._vec.reset_envs(np.array([0]))  # type: ignore[attr-defined]
        self._started = True
        return obs[0], _unbatched(info)

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self._vec.step(np.asarray([action]))
        return obs[0], float(reward[0]), bool(terminated[0]), bool(truncated[0]), _unbatched(info)

    def close(self) -> None:
        self._vec.close()


def _unbatched(info: Mapping[str, Any]) -> dict[str, Any]:
    """A vector env's info of one env: element 0 of each array; Gymnasium's ``_key`` masks dropped."""
    out: dict[str, Any] = {}
    for key, value in info.items():
        if key.startswith("_"):
            continue
        item = value[0] if isinstance(value, np.ndarray) and value.ndim and len(value) == 1 else value
        out[key] = item.item() if isinstance(item, np.generic) else item
    return out


def _env_names(suite: str) -> tuple[str, ...]:
    """Short names of ``suite``'s envs, as in configs' ``env: suite/name``."""
    if suite == "procgen":
        from rlgen.envs.procgen import GAMES  # noqa: PLC0415 - a constant; EnvPool is imported only by make

        return GAMES
    import importlib.util  # noqa: PLC0415

    if importlib.util.find_spec("minigrid") is None:
        return ()
    from rlgen.envs.minigrid import _registry  # noqa: PLC0415 - imports MiniGrid (about 0.1 s) for its env list

    return tuple(_registry())


def env_spec_of(split: LevelSplit, which: str = "train") -> gym.envs.registration.EnvSpec:
    """A Gymnasium ``EnvSpec`` of ``split``'s ``which`` levels, exact (the split travels in its kwargs): what an
    exported dataset records, so ``gymnasium.make(spec)`` (Minari's ``recover_environment()``) rebuilds the env
    without importing rlgen first (the entry point names the module)."""
    short = _short_name(split.suite, split.env)
    kwargs = {"env": split.id, "which": which, "split": split.to_dict()}
    return gym.envs.registration.EnvSpec(gym_id(split.suite, short, which), entry_point=f"{__name__}:LevelSetEnv",
                                         vector_entry_point=f"{__name__}:make_vector", kwargs=kwargs)  # fmt: skip


def rlgen_env_of_spec(spec: Any) -> str | None:
    """The rlgen env (``suite/name``) an ``EnvSpec`` makes: rlgen's own (its ``env`` kwarg), a MiniGrid id
    (``MiniGrid-DoorKey-6x6-v0`` -> ``minigrid/MiniGrid-DoorKey-6x6-v0``); None for anything else."""
    if spec is None:
        return None
    entry = str(getattr(spec, "entry_point", "") or "")
    kwargs = getattr(spec, "kwargs", None) or {}
    if entry.startswith(f"{__name__}:") and isinstance(kwargs.get("env"), str):
        suite, name = parse_env_id(kwargs["env"])  # canonical: "minigrid/empty-5x5" -> "minigrid/MiniGrid-Empty-5x5-v0"
        return f"{suite}/{name}"
    env_id = str(getattr(spec, "id", "") or "")
    if env_id.startswith("MiniGrid-"):
        return f"minigrid/{env_id}"
    return None


def _short_name(suite: str, canonical: str) -> str:
    """The name ids use for a canonical env: MiniGrid's short name (``doorkey-6x6``), else the canonical one."""
    if suite == "minigrid":
        from rlgen.envs.minigrid import _registry  # noqa: PLC0415

        return next((short for short, full in _registry().items() if full == canonical), canonical)
    return canonical


def register_gymnasium_ids(suites: tuple[str, ...] = ("procgen", "minigrid")) -> list[str]:
    """Register ``rlgen/<suite>-<env>-<which>-v0`` for ``suites``; returns the ids (idempotent)."""
    ids = []
    for suite in suites:
        for name in _env_names(suite):
            for word in WHICH_IN_IDS:
                env_id = gym_id(suite, name, word)
                ids.append(env_id)
                if env_id in gym.registry:
                    continue
                kwargs = {"env": f"{suite}/{name}", "which": WHICH_IN_IDS[word]}
                gym.register(env_id, entry_point=f"{__name__}:LevelSetEnv", vector_entry_point=f"{__name__}:make_vector",
                             kwargs=kwargs, disable_env_checker=False)  # fmt: skip
    return ids
