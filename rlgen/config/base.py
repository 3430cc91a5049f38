"""What every config shares: the strict pydantic base, the level split section, the keys every command understands.

Conventions shared by all commands: ``name``; ``out_dir`` (default ``runs/<name>``); top-level
``seed`` and ``device`` (``auto`` | ``cpu`` | ``cuda`` | ``cuda:N``); ``env`` as ``SUITE/ENV``;
``split`` for the levels. Nothing here imports torch, SB3, d3rlpy or JAX: a config is checked before
any of them loads.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from pathlib import Path
from typing import Annotated, Any, ClassVar, Union

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from rlgen.devices import check_device_name
from rlgen.envs.leakage import drop_duplicates
from rlgen.envs.levels import LevelSet
from rlgen.envs.splits import LevelSplit
from rlgen.envs.suites import get_suite, parse_env_id
from rlgen.errors import RlgenError

LevelsField = Union[str, int, list[int], None]

#: The largest seed: numpy's legacy seeding (used by SB3 and Gymnasium) takes 32-bit seeds.
MAX_SEED = 2**32 - 1
#: The most envs stepped at once, per suite (``default`` for the others), and why. CPU suites create one env
#: object (MiniGrid) or one EnvPool slot (Procgen) each; XLand-MiniGrid's envs are rows of a JAX batch.
#: A schema may lower these for its command (``RlgenConfig.num_envs_limits``; collection does).
MAX_NUM_ENVS: dict[str, tuple[int, str]] = {
    "xland": (65_536, "XLand-MiniGrid's envs are rows of one JAX batch"),
    "default": (4_096, "each env is an env object or an EnvPool slot in host memory"),
}


@dataclasses.dataclass(frozen=True)
class Limit:
    """The upper bound of a size-like key and why it is there (README, "Limits of size-like keys").

    Generous for GPU-scale use: each is far above what the reference study or a large GPU run sets, and
    refuses a typo (``ppo.n_steps=10**9``) with one line before anything allocates, instead of a
    traceback from an allocation deep inside torch, numpy or JAX minutes later.
    """

    value: int
    why: str

    def check(self, v: Any) -> Any:
        if v is not None and v > self.value:
            raise ValueError(f"at most {self.value:,} ({self.why})")
        return v

    @property
    def field(self) -> AfterValidator:
        """For ``Annotated[int, LIMITS["..."].field]``."""
        return AfterValidator(self.check)


#: Upper bounds of the size-like keys of every schema, by what they count (see :class:`Limit`).
LIMITS: dict[str, Limit] = {
    "env_steps": Limit(100_000_000_000, "10^11 env steps, 4,000x the reference study's 25M per game; more is a typo"),
    "gradient_steps": Limit(10_000_000_000, "10^10 gradient steps, 100,000x the offline default of 100,000; more is a typo"),
    "episodes": Limit(1_000_000, "every episode's return and level is kept in memory and in its results.jsonl row; "
                                 "a million episodes make a 40 to 55 MB row, and the error of a mean shrinks only as 1/sqrt(episodes)"),
    "ppo_rollout": Limit(1_048_576, "SB3's rollout buffer holds num_envs x n_steps observations as float32 in host memory: "
                                    "1,048,576 are 51 GB of Procgen frames; the reference uses 64 x 256 = 16,384"),
    "jax_rollout": Limit(16_777_216, "the rollout of num_envs x n_steps transitions lives in device memory (16,777,216 = "
                                     "65,536 envs x 256 steps)"),
    "epochs": Limit(1_000, "passes over each rollout; PPO uses 1 to 10"),
    "width": Limit(16_384, "a hidden layer of 16,384 units is a 1 GB float32 weight matrix already"),
    "batch_size": Limit(65_536, "a batch of observations goes to the device as float32: 65,536 Procgen frames are 3.2 GB, "
                                "before any activation"),
    "sequence_frames": Limit(1_048_576, "a DT/BCT batch holds batch_size x context_length frames (as float32 on the device)"),
    "context_length": Limit(1_024, "attention memory grows with the square of the tokens, 3 per step (DT) or 2 (BCT); "
                                   "the DT paper uses 30 on Atari, the offline default is 10"),
    "embed_dim": Limit(8_192, "the transformer's width; GPT-3's is 12,288"),
    "n_layers": Limit(128, "transformer blocks; GPT-3 has 96"),
    "n_heads": Limit(128, "attention heads per block; GPT-3 has 96"),
    "transformer_params": Limit(2_000_000_000, "12 x n_layers x embed_dim^2 parameters: 8 GB of float32 weights, 32 GB "
                                               "with gradients and Adam's two moments"),
    "duplicate_check_levels": Limit(1_000_000, "each level is generated and fingerprinted by the duplicate check"),
}


def _admits(annotation: Any, kinds: tuple[type, ...]) -> bool:
    """Whether a field of type ``annotation`` accepts a value of one of ``kinds`` (Annotated, unions, Any unwrapped)."""
    if annotation is Any:
        return True
    origin = typing.get_origin(annotation)
    if origin is Annotated:
        return _admits(typing.get_args(annotation)[0], kinds)
    if origin in (Union, types.UnionType):
        return any(_admits(a, kinds) for a in typing.get_args(annotation))
    if origin is typing.Literal:
        return any(isinstance(a, kinds) for a in typing.get_args(annotation))
    return isinstance(annotation, type) and issubclass(annotation, kinds)


def _list_items(annotation: Any) -> Any:
    """The item type when ``annotation`` is (Annotated/Optional) ``list[X]``, else None."""
    origin = typing.get_origin(annotation)
    if origin is Annotated:
        return _list_items(typing.get_args(annotation)[0])
    if origin is list:
        return (typing.get_args(annotation) or (Any,))[0]
    if origin in (Union, types.UnionType):
        items = [_list_items(a) for a in typing.get_args(annotation)]
        return next((i for i in items if i is not None), None)
    return None


def _bool_where_number(annotation: Any, v: Any) -> bool:
    """``v`` is true/false given to a number field (pydantic would take ``true`` as 1), or holds one in a list of numbers."""
    if isinstance(v, bool):
        return _admits(annotation, (int, float)) and not _admits(annotation, (bool,))
    items = _list_items(annotation)
    if isinstance(v, list) and items is not None:
        return any(_bool_where_number(items, x) for x in v)
    return False


class StrictModel(BaseModel):
    # allow_inf_nan=False: every float field of every config refuses inf and nan (`learning_rate=.inf`)
    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False, allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_for_numbers(cls, v: Any, info: ValidationInfo) -> Any:
        """Strict numbers: ``total_steps=true`` is refused, not read as 1 (pydantic's lax mode takes bools as ints)."""
        field = cls.model_fields.get(info.field_name or "")
        if field is not None and _bool_where_number(field.annotation, v):
            raise ValueError(f"true/false is not {'a number' if _admits(field.annotation, (float,)) else 'an integer'} here")
        return v


def check_name(v: str) -> str:
    """A ``name`` is a name, not a path (``out_dir`` is the path key): no separators, no ``..``."""
    if "/" in v or "\\" in v or "\0" in v or v in (".", ".."):
        raise ValueError("a name is not a path: no '/', '\\', '.' or '..' (choose where outputs go with out_dir)")
    return v


def check_out_dir(v: str) -> str:
    """``out_dir`` must be a non-empty path, a directory or not existing yet, and no part of it may be an existing file."""
    if not v.strip() or "\0" in v:
        raise ValueError(f"out_dir {v!r} is not a directory path; give a directory (it is created when missing), or leave out_dir "
                         "out for the default")
    p = Path(v)
    for part in (p, *p.parents):
        if part.exists() or part.is_symlink():
            if not part.is_dir():
                where = "is a file" if part == p else f"has a file in its path ({part})"
                raise ValueError(f"out_dir {v!r} {where}; out_dir must be a directory, or a path that does not exist yet")
            break
    return v


#: The image encoders of ``rlgen.agents.networks`` by name (``network:`` keys take these or ``auto``);
#: kept here so that checking a config imports no torch (a test checks ``networks.ENCODERS`` equals it).
ENCODER_NAMES: tuple[str, ...] = ("impala", "nature", "minigrid_cnn")


def check_network_name(name: str) -> str:
    """Config validation: ``auto`` or one of ``ENCODER_NAMES``."""
    if name != "auto" and name not in ENCODER_NAMES:
        raise ValueError(f"network {name!r} is not one of: auto, {', '.join(ENCODER_NAMES)}")
    return name


#: Field types that check themselves: a name (not a path), a device, a network.
Name = Annotated[str, AfterValidator(check_name)]
DeviceName = Annotated[str, AfterValidator(check_device_name)]
NetworkName = Annotated[str, AfterValidator(check_network_name)]


class SplitConfig(StrictModel):
    """Which levels to train on and hold out. Empty fields take the suite's defaults
    (Procgen and MiniGrid: train 0-199, validation 200-249, held-out 250-).

    Level sets are text with inclusive bounds (``"0-199"``, ``"250-"``, ``"1,5,9-12"``), one int,
    or a list of ints.
    """

    num_levels: int | None = Field(default=None, ge=1, description="train on levels 0..num_levels-1 (instead of `train`)")
    train: LevelsField = None
    validation: LevelsField = None
    held_out: LevelsField = None
    options: dict[str, Any] = Field(default_factory=dict, description="suite options, e.g. distribution_mode")
    drop_duplicates: bool = False
    duplicate_check_levels: Annotated[int, LIMITS["duplicate_check_levels"].field] = Field(default=1000, ge=1)

    @field_validator("train", "validation", "held_out")
    @classmethod
    def _levels(cls, v: LevelsField) -> LevelsField:
        if v is not None:
            LevelSet(v)  # raises SplitError (a ValueError) with the reason
        return v

    @model_validator(mode="after")
    def _exclusive(self) -> "SplitConfig":
        if self.num_levels is not None and self.train is not None:
            raise ValueError("give either split.num_levels or split.train, not both")
        return self


class RlgenConfig(StrictModel):
    """Keys every command understands."""

    #: ``load_config`` names a config after its file unless the file sets ``name``.
    name_from_file: ClassVar[bool] = True
    #: suite -> (most envs at once, why); ``default`` for suites not listed.
    num_envs_limits: ClassVar[dict[str, tuple[int, str]]] = MAX_NUM_ENVS

    name: Name = Field(default="rlgen", min_length=1, description="a name, not a path (see out_dir)")
    env: str = Field(default="procgen/coinrun", description="SUITE/ENV, e.g. procgen/coinrun, minigrid/doorkey-5x5")
    split: SplitConfig = Field(default_factory=SplitConfig)
    num_envs: int = Field(default=64, ge=1, description="envs stepped at once; at most MAX_NUM_ENVS of the suite")
    seed: int = Field(default=0, ge=0, le=MAX_SEED)
    device: DeviceName = "auto"
    out_dir: str | None = Field(default=None, description="default: runs/<name>")

    @field_validator("env")
    @classmethod
    def _env(cls, v: str) -> str:
        suite, env = parse_env_id(v)
        return f"{suite}/{env}"

    @model_validator(mode="after")
    def _defaults_and_split(self) -> "RlgenConfig":
        if self.out_dir is None:
            self.out_dir = str(Path("runs") / self.name)
        check_out_dir(self.out_dir)
        suite = self.env.split("/", 1)[0]
        limits = self.num_envs_limits
        limit, why = limits.get(suite, limits["default"])
        for key in ("num_envs", "eval_num_envs"):
            n = getattr(self, key, None)
            if n is not None and n > limit:
                raise ValueError(f"key `{key}` = {n}: at most {limit:,} envs at once for {suite} ({why})")
        try:
            self.level_split(check_duplicates=False)  # overlaps, unknown options: fail now
        except RlgenError as e:
            raise ValueError(f"split of {self.env}: {e}") from None
        return self

    def level_split(self, check_duplicates: bool = True) -> LevelSplit:
        """The ``LevelSplit`` this config describes: the suite's default split, with the levels the
        config names. With ``split.drop_duplicates`` and ``check_duplicates``, held-out duplicates of
        training levels are dropped (``rlgen.envs.leakage.drop_duplicates``: seconds for hundreds of levels)."""
        suite, env = self.env.split("/", 1)
        s = self.split
        default = get_suite(suite).default_split(env, num_levels=s.num_levels, options=s.options)
        split = LevelSplit(
            suite,
            env,
            train=s.train if s.train is not None else default.train,
            validation=s.validation if s.validation is not None else default.validation,
            held_out=s.held_out if s.held_out is not None else default.held_out,
            options=s.options,
            duplicate_check_levels=s.duplicate_check_levels,
        )
        return drop_duplicates(split) if s.drop_duplicates and check_duplicates else split



def human_count(n: int) -> str:
    """1000000 -> '1M', 200000 -> '200k', 1234 -> '1234'."""
    for div, suffix in ((1_000_000, "M"), (1_000, "k")):
        if n >= div and n % div == 0:
            return f"{n // div}{suffix}"
    return str(n)


class LadderSettings(StrictModel):
    """The skill ladder: every ``every_steps`` env steps, evaluate on training levels and keep a checkpoint."""

    every_steps: Annotated[int, LIMITS["env_steps"].field] = Field(default=1_000_000, ge=1)
    episodes: Annotated[int, LIMITS["episodes"].field] = Field(default=32, ge=1)
    deterministic: bool = False


CHECKPOINT_EVERY_HELP = "env steps between resumable checkpoints; at most (and by default) a tenth of total_steps"


def checkpoint_interval(checkpoint_every: int | None, total_steps: int) -> int:
    """``min(checkpoint_every, ceil(total_steps / 10))``: every run keeps about ten resumable
    checkpoints at least, so a kill never loses more than a tenth of it (a value larger than the run
    would otherwise never checkpoint)."""
    tenth = max(1, math.ceil(total_steps / 10))
    return tenth if checkpoint_every is None else min(checkpoint_every, tenth)


class OnlineConfig(RlgenConfig):
    """What the online algorithms' configs share: a length in env steps, a skill ladder, resumable
    checkpoints. A subclass names its ``algo`` (``ALGO``) and what it is (``WHAT``, for the error)."""

    ALGO: ClassVar[str] = ""
    WHAT: ClassVar[str] = ""
    #: The most transitions one rollout (num_envs x n_steps) may hold (a ``LIMITS`` entry).
    ROLLOUT_LIMIT: ClassVar[Limit] = LIMITS["ppo_rollout"]

    algo: str = ""
    total_steps: Annotated[int, LIMITS["env_steps"].field] = Field(default=25_000_000, ge=1, description="environment steps")
    ladder: LadderSettings = Field(default_factory=LadderSettings)
    checkpoint_every: Annotated[int | None, LIMITS["env_steps"].field] = Field(default=None, ge=1, description=CHECKPOINT_EVERY_HELP)
    eval_num_envs: int = Field(default=16, ge=1, description="episodes run at once in evaluations")
    held_out_curve: bool = Field(default=True, description="at each ladder rung also log the held-out-level return to TensorBoard "
                                 "(never used for selection)")
    progress: bool = True

    def checkpoint_interval(self) -> int:
        """Env steps between resumable checkpoints (see :func:`checkpoint_interval`)."""
        return checkpoint_interval(self.checkpoint_every, self.total_steps)

    @field_validator("algo")
    @classmethod
    def _algo(cls, v: str) -> str:
        if v != cls.ALGO:
            raise ValueError(f"algo {v!r} is not one of: {cls.ALGO} (this schema is {cls.WHAT}'s)")
        return v

    def check_rollout(self, section: str, n_steps: int, num_minibatches: int) -> None:
        """``num_envs * n_steps`` must split into ``num_minibatches`` equal minibatches, and fit ``ROLLOUT_LIMIT``."""
        batch = self.num_envs * n_steps
        if batch > self.ROLLOUT_LIMIT.value:
            raise ValueError(f"key `{section}.n_steps` = {n_steps}: num_envs x {section}.n_steps = {self.num_envs:,} x {n_steps:,} = "
                             f"{batch:,} transitions per rollout; at most {self.ROLLOUT_LIMIT.value:,} ({self.ROLLOUT_LIMIT.why})")  # fmt: skip
        if batch % num_minibatches:
            raise ValueError(f"num_envs * {section}.n_steps = {self.num_envs} * {n_steps} = {batch} must be divisible by "
                             f"{section}.num_minibatches = {num_minibatches}")  # fmt: skip
