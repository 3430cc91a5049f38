"""LevelSplit: which levels an agent may train on, and which are held out for evaluation.

A split is data. It is frozen, checked at construction (the three level sets are pairwise
disjoint) and saved with every run and dataset, so a result always says which levels it saw.
The suites translate it into their own knobs (EnvPool's ``start_level``/``num_levels``,
MiniGrid's reset seed). Constructing one runs nothing: dropping held-out levels that duplicate
training levels is :func:`rlgen.envs.leakage.drop_duplicates`, which returns a new split that records
what it dropped.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Literal

from rlgen.envs.levels import LEVEL_ID_LIMIT, LevelSet, LevelSpec
from rlgen.envs.suites import get_suite, suite_name
from rlgen.errors import SplitError

Which = Literal["train", "validation", "held_out"]
WHICH: tuple[str, ...] = ("train", "validation", "held_out")


@dataclasses.dataclass(frozen=True, init=False)
class LevelSplit:
    """Training, validation and held-out levels of one environment of one suite.

    Args:
        suite: a registered suite (``rlgen.envs.available_suites()``: procgen, minigrid, xland and any
            of ``rlgen.envs.register_suite``).
        env: the environment within the suite (``"coinrun"``, ``"MiniGrid-DoorKey-5x5-v0"``...);
            short names (``"doorkey-5x5"``) are accepted and stored in canonical form.
        train, held_out, validation: level sets; anything ``LevelSet`` accepts
            (``range(0, 200)``, ``"250-"``, a list of ints).
        options: suite options (Procgen: ``distribution_mode``; MiniGrid: ``view``...).
            Unknown options are an error; missing ones take the suite's defaults.
        drop_duplicates: the held-out set had the levels duplicating a training level removed, by
            :func:`rlgen.envs.leakage.drop_duplicates` (which sets this, ``duplicate_check_levels``
            and ``dropped_levels``); ``True`` needs ``dropped_levels``.
        duplicate_check_levels: how many held-out levels that check looks at (its default count).
        dropped_levels: the held-out ids the check removed (None when it did not run).

    Raises:
        SplitError: unknown suite/env/option, an empty train or held-out set, or overlapping sets
            (the message names the overlapping levels).
    """

    suite: str
    env: str
    train: LevelSet
    held_out: LevelSet
    validation: LevelSet
    options: Mapping[str, Any]
    drop_duplicates: bool
    duplicate_check_levels: int
    dropped_levels: tuple[int, ...] | None

    def __init__(
        self,
        suite: str,
        env: str,
        train: LevelSpec,
        held_out: LevelSpec,
        validation: LevelSpec = (),
        options: Mapping[str, Any] | None = None,
        drop_duplicates: bool = False,
        duplicate_check_levels: int = 1000,
        dropped_levels: tuple[int, ...] | list[int] | None = None,
    ) -> None:
        suite_impl = get_suite(suite)
        env = suite_impl.canonical_env(env)
        opts = suite_impl.resolve_options(env, dict(options or {}))
        train_set, held_set, val_set = LevelSet(train), LevelSet(held_out), LevelSet(validation)
        if not train_set:
            raise SplitError(f"{suite}/{env}: the training level set is empty")
        if not held_set:
            raise SplitError(f"{suite}/{env}: the held-out level set is empty")
        for (name_a, a), (name_b, b) in (
            (("train", train_set), ("held_out", held_set)),
            (("train", train_set), ("validation", val_set)),
            (("validation", val_set), ("held_out", held_set)),
        ):
            overlap = a & b
            if overlap:
                raise SplitError(
                    f"{suite}/{env}: {name_a} and {name_b} levels overlap in {overlap.describe()}; "
                    "a held-out level must never be a training level"
                )
        if duplicate_check_levels < 1:
            raise SplitError(f"duplicate_check_levels must be >= 1, got {duplicate_check_levels}")

        set_ = object.__setattr__
        set_(self, "suite", suite_name(suite))
        set_(self, "env", env)
        set_(self, "train", train_set)
        set_(self, "validation", val_set)
        set_(self, "options", MappingProxyType(opts))
        set_(self, "drop_duplicates", bool(drop_duplicates))
        set_(self, "duplicate_check_levels", int(duplicate_check_levels))

        if drop_duplicates and dropped_levels is None:
            raise SplitError(f"{suite}/{env}: drop_duplicates=True needs the dropped_levels of a duplicate check; "
                             "make the split with rlgen.envs.leakage.drop_duplicates(split)")
        if drop_duplicates:
            held_set = held_set - LevelSet(dropped_levels or ())
        set_(self, "held_out", held_set)
        set_(self, "dropped_levels", tuple(int(x) for x in dropped_levels) if dropped_levels is not None else None)
        if not held_set:
            raise SplitError(f"{suite}/{env}: every checked held-out level duplicates a training level")

    # --- named constructors ---------------------------------------------------------------------
    @classmethod
    def procgen(
        cls,
        game: str,
        num_levels: int = 200,
        start_level: int = 0,
        distribution_mode: str = "easy",
        validation_levels: int = 50,
        **kwargs: Any,
    ) -> "LevelSplit":
        """The reference study's Procgen split: train ``start_level .. start_level+num_levels-1``
        (0-199), validation the next ``validation_levels`` (200-249), held-out everything after (250-).
        """
        if num_levels < 1:
            raise SplitError(f"num_levels must be >= 1, got {num_levels}")
        train_end = start_level + num_levels
        val_end = train_end + validation_levels
        options = {"distribution_mode": distribution_mode, **kwargs.pop("options", {})}
        return cls(
            "procgen",
            game,
            train=range(start_level, train_end),
            validation=range(train_end, val_end),
            held_out=range(val_end, LEVEL_ID_LIMIT),
            options=options,
            **kwargs,
        )

    @classmethod
    def minigrid(
        cls,
        env: str,
        num_levels: int = 200,
        validation_levels: int = 50,
        **kwargs: Any,
    ) -> "LevelSplit":
        """MiniGrid with reset seeds as levels, laid out like Procgen: train 0..num_levels-1,
        validation the next ``validation_levels``, held-out everything after."""
        if num_levels < 1:
            raise SplitError(f"num_levels must be >= 1, got {num_levels}")
        return cls(
            "minigrid",
            env,
            train=range(0, num_levels),
            validation=range(num_levels, num_levels + validation_levels),
            held_out=range(num_levels + validation_levels, LEVEL_ID_LIMIT),
            **kwargs,
        )

    @classmethod
    def default(cls, suite: str, env: str, num_levels: int | None = None, options: Mapping[str, Any] | None = None) -> "LevelSplit":
        """The suite's default split for ``env`` (``Suite.default_split``)."""
        return get_suite(suite).default_split(env, num_levels=num_levels, options=options)

    # --- access ---------------------------------------------------------------------------------
    def levels(self, which: str) -> LevelSet:
        """The level set named by ``which`` (``"train"``, ``"validation"`` or ``"held_out"``)."""
        if which not in WHICH:
            raise SplitError(f"which={which!r} is not one of: {', '.join(WHICH)}")
        levels = getattr(self, which)
        if not levels:
            raise SplitError(f"{self.suite}/{self.env}: the {which} level set is empty")
        return levels

    def with_train(self, levels: LevelSpec) -> "LevelSplit":
        """This split with training levels ``levels`` when they are a non-empty strict subset of its
        training levels (a dataset collected on fewer levels is evaluated on exactly those); else itself."""
        chosen = LevelSet(levels)
        if not chosen or len(chosen) >= len(self.train) or not chosen.issubset(self.train):
            return self
        return LevelSplit.from_dict({**self.to_dict(), "train": str(chosen)})

    def __hash__(self) -> int:
        return hash(self.to_json())

    @property
    def id(self) -> str:
        return f"{self.suite}/{self.env}"

    # --- serialization --------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Plain JSON/YAML data; ``LevelSplit.from_dict`` rebuilds an equal split without re-checking
        duplicates."""
        return {
            "suite": self.suite,
            "env": self.env,
            "train": str(self.train),
            "validation": str(self.validation) if self.validation else "",
            "held_out": str(self.held_out),
            "options": dict(self.options),
            "drop_duplicates": self.drop_duplicates,
            "duplicate_check_levels": self.duplicate_check_levels,
            "dropped_levels": list(self.dropped_levels) if self.dropped_levels is not None else None,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "LevelSplit":
        allowed = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - allowed
        if unknown:
            raise SplitError(f"unknown LevelSplit keys {sorted(unknown)}; allowed: {sorted(allowed)}")
        missing = {"suite", "env", "train", "held_out"} - set(data)
        if missing:
            raise SplitError(f"LevelSplit data misses keys {sorted(missing)}")
        return cls(**dict(data))

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    def describe(self) -> str:
        lines = [
            f"suite       {self.suite}",
            f"env         {self.env}",
            f"train       {self.train.describe()}",
            f"validation  {self.validation.describe() if self.validation else '(none)'}",
            f"held_out    {self.held_out.describe()}",
            f"options     {', '.join(f'{k}={v}' for k, v in sorted(self.options.items())) or '(none)'}",
        ]
        if self.drop_duplicates:
            n = len(self.dropped_levels or ())
            lines.append(
                f"duplicates  {n} held-out levels dropped after checking the first "
                f"{self.duplicate_check_levels}"
            )
        return "\n".join(lines)
