"""The ``Suite`` protocol, the suite registry and ``make_env``: the one way to get a vector env for a level split.

A suite is an environment family whose levels can be named by integer ids (Procgen's level seeds,
MiniGrid's reset seeds, XLand's ruleset ids). Anything with the methods of :class:`Suite` is one: a
class instance, or a module with those functions (rlgen's own suites are modules). Register your
own with :func:`register_suite` and it gets level splits, ``rlgen splits check``, collection,
training and evaluation like the built-in ones::

    from rlgen.envs import register_suite
    register_suite("toy", ToySuite())          # then env="toy/<name>" works everywhere

Built-in suites are registered by module name and imported only when first used, so importing
``rlgen.envs`` never imports EnvPool or JAX (it imports MiniGrid, when installed, to register its Gymnasium ids).
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import gymnasium as gym
import numpy as np

from rlgen.envs.levels import LevelSet, LevelSpec
from rlgen.envs.seeding import stream_seed
from rlgen.errors import SplitError

if TYPE_CHECKING:
    from rlgen.envs.splits import LevelSplit


@runtime_checkable
class Suite(Protocol):
    """What an environment family provides. ``env`` is always the canonical id (``canonical_env``'s),
    ``options`` always resolved (``resolve_options``'s)."""

    def env_names(self) -> tuple[str, ...]:
        """The canonical ids of the suite's environments (listed in error messages)."""

    def canonical_env(self, env: str) -> str:
        """``env`` in canonical form (short names accepted); an unknown env is a ``SplitError`` listing them."""

    def resolve_options(self, env: str, options: Mapping[str, Any]) -> dict[str, Any]:
        """Options with defaults filled in; an unknown option or a bad value is a ``SplitError``."""

    def default_split(self, env: str, num_levels: int | None = None, options: Mapping[str, Any] | None = None,
                      validation_levels: int = 50) -> "LevelSplit":  # fmt: skip
        """The suite's split of ``env``: training levels ``0..num_levels-1`` (``None``: the suite's default
        count), then ``validation_levels`` validation levels, then held-out levels."""

    def make(self, env: str, levels: LevelSet, num_envs: int, seed: int, options: Mapping[str, Any]) -> gym.vector.VectorEnv:
        """A Gymnasium vector env (next-step autoreset) whose episodes start only on ``levels``, with
        ``info["level"]`` an int array of each env's current level and ``reset_envs(ids)`` resetting some envs now."""

    def normalize(self, env: str, returns: np.ndarray, options: Mapping[str, Any]) -> np.ndarray | None:
        """Normalized returns (same shape), or None where the suite has no return range."""

    def default_encoder(self, env: str, options: Mapping[str, Any]) -> str:
        """The network agents use with ``network: auto`` (a name of ``rlgen.config.ENCODER_NAMES``)."""

    def episode_steps(self, env: str, options: Mapping[str, Any]) -> int:
        """An upper bound on episode length (sizes the timestep embedding of the sequence agents)."""

    def level_fingerprints(self, env: str, levels: np.ndarray, options: Mapping[str, Any], rollout_steps: int = 0) -> list[bytes]:
        """One digest per level: equal digests mean the agent cannot tell the levels apart (``rlgen splits check``)."""


#: The protocol's methods, checked when a suite is registered.
SUITE_METHODS: tuple[str, ...] = tuple(
    name for name in Suite.__dict__ if not name.startswith("_") and callable(Suite.__dict__[name])
)

#: rlgen's own suites: name -> module, imported on first use.
BUILTIN_SUITES: dict[str, str] = {
    "procgen": "rlgen.envs.procgen",
    "minigrid": "rlgen.envs.minigrid",
    "xland": "rlgen.envs.xland.suite",
}

_registry: dict[str, Suite | str] = dict(BUILTIN_SUITES)
_NAME = re.compile(r"^[a-z][a-z0-9_-]*$")


def _missing_methods(suite: Any) -> list[str]:
    return [m for m in SUITE_METHODS if not callable(getattr(suite, m, None))]


def register_suite(name: str, suite: Suite | str) -> None:
    """Make ``suite`` available as ``name`` (``env: name/<env>`` in configs, ``LevelSplit(name, ...)``).

    Args:
        name: lower-case letters, digits, ``-`` and ``_``; not one of the built-in suites.
        suite: an object with the methods of :class:`Suite`, or the name of a module that has them
            (imported on first use).

    Raises:
        SplitError: a bad or built-in name, or a suite object missing some of the protocol's methods.
    """
    key = str(name).strip().lower()
    if not _NAME.match(key):
        raise SplitError(f"suite name {name!r} must be lower-case letters, digits, '-' or '_' (it is the part before '/' in env ids)")
    if key in BUILTIN_SUITES:
        raise SplitError(f"suite {key!r} is built in; register yours under another name")
    if not isinstance(suite, str):
        missing = _missing_methods(suite)
        if missing:
            raise SplitError(f"suite {key!r} lacks {', '.join(missing)}; a suite needs: {', '.join(SUITE_METHODS)}")
    _registry[key] = suite


def available_suites() -> tuple[str, ...]:
    """The names of the registered suites, built-in ones first."""
    return tuple(_registry)


def suite_name(name: str) -> str:
    """The registry key of suite ``name`` (case and spaces ignored); an unknown name is a ``SplitError`` listing the suites."""
    key = str(name).strip().lower()
    if key not in _registry:
        raise SplitError(f"unknown suite {name!r}; allowed: {', '.join(_registry)}")
    return key


def get_suite(name: str) -> Suite:
    """The suite called ``name``; an unknown name is a ``SplitError`` listing the suites."""
    key = suite_name(name)
    entry = _registry[key]
    if isinstance(entry, str):
        entry = importlib.import_module(entry)  # type: ignore[assignment]
        missing = _missing_methods(entry)
        if missing:  # pragma: no cover - a broken suite module
            raise SplitError(f"suite module {_registry[key]!r} lacks {', '.join(missing)}")
    return entry  # type: ignore[return-value]


def parse_env_id(text: str) -> tuple[str, str]:
    """``"procgen/coinrun"`` -> ``("procgen", "coinrun")``, checked against the registry."""
    suite, sep, env = str(text).partition("/")
    if not sep or not env:
        raise SplitError(f"expected SUITE/ENV such as procgen/coinrun or minigrid/doorkey-5x5, got {text!r}")
    name = suite_name(suite)
    return name, get_suite(name).canonical_env(env)


def make_env(
    split: "LevelSplit",
    which: str = "train",
    num_envs: int = 1,
    seed: int | Sequence[int] = 0,
    levels: LevelSpec | None = None,
) -> gym.vector.VectorEnv:
    """A Gymnasium vector env whose episodes start only on ``split``'s ``which`` levels.

    Args:
        split: the level split.
        which: ``"train"``, ``"validation"`` or ``"held_out"``.
        num_envs: number of parallel envs (batched numpy in and out).
        seed: fixes the level sequence and the envs' randomness: an int in ``[0, 2**63)``, or a sequence of
            such ints naming one of many streams (``(seed, segment)``); the suite gets it as one int
            (``rlgen.envs.seeding.stream_seed``). The built-in suites seed env ``i`` from
            ``SeedSequence([seed, i])``, so no two seeds, segments or envs share a level stream.
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
    if int(num_envs) < 1:
        raise SplitError(f"num_envs must be >= 1, got {num_envs}")
    return get_suite(split.suite).make(split.env, allowed, int(num_envs), stream_seed(seed), split.options)


def normalize_returns(split: "LevelSplit", returns: np.ndarray) -> np.ndarray | None:
    """``split``'s suite's normalized returns of ``returns`` (None where it has no return range)."""
    return get_suite(split.suite).normalize(split.env, np.asarray(returns, dtype=np.float64), split.options)
