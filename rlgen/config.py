"""Config schema, YAML loading and ``key.sub=value`` overrides.

Every command reads one YAML file into :class:`RlgenConfig` (pydantic, ``extra="forbid"``), after
applying command-line overrides to the raw data, so an unknown key, a wrong type or an unknown
game fails before any work starts, as one line naming the key, the bad value and what is allowed.
The resolved config (every default filled in) is written beside each run's outputs with
:func:`write_resolved_config` so the run can be reproduced exactly.

Conventions shared by all commands: ``name``; ``out_dir`` (default ``runs/<name>``); top-level
``seed`` and ``device`` (``auto`` | ``cpu`` | ``cuda`` | ``cuda:N``); ``env`` as ``SUITE/ENV``;
``split`` for the levels.
"""

from __future__ import annotations

import difflib
import json
import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal, Union

import pydantic
import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from rlgen.envs.levels import LevelSet
from rlgen.envs.splits import LevelSplit
from rlgen.envs.suites import get_suite, parse_env_id
from rlgen.errors import ConfigError, RlgenError

LevelsField = Union[str, int, list[int], None]

_DEVICE = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")

#: The largest seed: numpy's legacy seeding (used by SB3 and Gymnasium) takes 32-bit seeds.
MAX_SEED = 2**32 - 1
#: The most envs stepped at once, per suite (``default`` for the others), and why. CPU suites create one env
#: object (MiniGrid) or one EnvPool slot (Procgen) each; XLand-MiniGrid's envs are rows of a JAX batch.
#: A schema may lower these for its command (``RlgenConfig.num_envs_limits``; collection does).
MAX_NUM_ENVS: dict[str, tuple[int, str]] = {
    "xland": (65_536, "XLand-MiniGrid's envs are rows of one JAX batch"),
    "default": (4_096, "each env is an env object or an EnvPool slot in host memory"),
}


class StrictModel(BaseModel):
    # allow_inf_nan=False: every float field of every config refuses inf and nan (`learning_rate=.inf`)
    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False, allow_inf_nan=False)


def check_name(v: str) -> str:
    """A ``name`` is a name, not a path (``out_dir`` is the path key): no separators, no ``..``."""
    if "/" in v or "\\" in v or "\0" in v or v in (".", ".."):
        raise ValueError("a name is not a path: no '/', '\\', '.' or '..' (choose where outputs go with out_dir)")
    return v


def check_out_dir(v: str) -> str:
    """``out_dir`` must be a directory or not exist yet, and no part of it may be an existing file."""
    p = Path(v)
    for part in (p, *p.parents):
        if part.exists() or part.is_symlink():
            if not part.is_dir():
                where = "is a file" if part == p else f"has a file in its path ({part})"
                raise ValueError(f"out_dir {v!r} {where}; out_dir must be a directory, or a path that does not exist yet")
            break
    return v


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
    duplicate_check_levels: int = Field(default=1000, ge=1)

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

    name: str = Field(default="rlgen", min_length=1, description="a name, not a path (see out_dir)")
    env: str = Field(default="procgen/coinrun", description="SUITE/ENV, e.g. procgen/coinrun, minigrid/doorkey-5x5")
    split: SplitConfig = Field(default_factory=SplitConfig)
    num_envs: int = Field(default=64, ge=1, description="envs stepped at once; at most MAX_NUM_ENVS of the suite")
    seed: int = Field(default=0, ge=0, le=MAX_SEED)
    device: str = "auto"
    out_dir: str | None = Field(default=None, description="default: runs/<name>")

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return check_name(v)

    @field_validator("env")
    @classmethod
    def _env(cls, v: str) -> str:
        suite, env = parse_env_id(v)
        return f"{suite}/{env}"

    @field_validator("device")
    @classmethod
    def _device(cls, v: str) -> str:
        if not _DEVICE.match(v):
            raise ValueError(f"device {v!r} is not one of: auto, cpu, cuda, cuda:N")
        return v

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
        """The ``LevelSplit`` this config describes. With ``split.drop_duplicates`` and
        ``check_duplicates``, this runs the duplicate check (seconds for hundreds of levels)."""
        suite, env = self.env.split("/", 1)
        s = self.split
        kwargs: dict[str, Any] = {"options": s.options, "duplicate_check_levels": s.duplicate_check_levels}
        kwargs["drop_duplicates"] = s.drop_duplicates and check_duplicates
        suite_module = get_suite(suite)
        if hasattr(suite_module, "default_split"):  # suites whose default split depends on env and options
            default = suite_module.default_split(env, num_levels=s.num_levels, options=s.options)
        else:
            default = LevelSplit.default(suite, env, num_levels=s.num_levels or 200, options=s.options)
        return LevelSplit(
            suite,
            env,
            train=s.train if s.train is not None else default.train,
            validation=s.validation if s.validation is not None else default.validation,
            held_out=s.held_out if s.held_out is not None else default.held_out,
            **kwargs,
        )


# --- loading -------------------------------------------------------------------------------------


def parse_overrides(overrides: Sequence[str]) -> dict[str, Any]:
    """``["a.b=1", "c=[1, 2]"]`` -> ``{"a": {"b": 1}, "c": [1, 2]}``; values are parsed as YAML."""
    out: dict[str, Any] = {}
    for item in overrides:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key or any(not part for part in key.split(".")):
            raise ConfigError(f"override {item!r} must look like key=value or key.sub=value")
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError as e:
            raise ConfigError(f"override {item!r}: value is not valid YAML ({e.problem})") from None
        node = out
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r} conflicts with an earlier override of {part!r}")
        node[parts[-1]] = value
    return out


def merge(base: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """Recursive dict merge; ``update`` wins. Mappings merge key by key, anything else replaces."""
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def read_yaml(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file {str(p)!r} does not exist")
    try:
        data = yaml.safe_load(p.read_text())
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{p}:{where} is not valid YAML ({getattr(e, 'problem', e)})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: top level must be a mapping of keys, got {type(data).__name__}")
    return data


def load_config(
    path: str | Path | None = None,
    overrides: Sequence[str] = (),
    schema: type[RlgenConfig] = RlgenConfig,
) -> RlgenConfig:
    """Read ``path`` (optional), apply ``key=value`` overrides, validate against ``schema``.

    ``name`` defaults to the file's stem. Raises ``ConfigError`` with one line on any problem.
    """
    data: dict[str, Any] = read_yaml(path) if path is not None else {}
    if path is not None and "name" not in data and schema.name_from_file:
        data["name"] = Path(path).stem
    data = merge(data, parse_overrides(overrides))
    return validate_config(data, schema, source=str(path) if path is not None else "config")


def validate_config(data: Mapping[str, Any], schema: type[RlgenConfig] = RlgenConfig, source: str = "config") -> RlgenConfig:
    try:
        return schema.model_validate(dict(data))
    except pydantic.ValidationError as e:
        raise ConfigError(f"{source}: {_one_line(e, schema)}") from None
    except RlgenError as e:  # raised outside a field validator (model validators)
        raise ConfigError(f"{source}: {e}") from None


def _one_line(error: pydantic.ValidationError, schema: type[BaseModel]) -> str:
    """The first error, as 'key `a.b` = value: problem; allowed: ...'."""
    err = error.errors(include_url=False)[0]
    loc = [str(p) for p in err["loc"]]
    key = ".".join(loc) or "(top level)"
    kind = err["type"]
    value = err.get("input")
    if kind == "extra_forbidden":
        allowed = _allowed_keys(schema, loc[:-1])
        hint = difflib.get_close_matches(loc[-1], allowed, n=1)
        did_you_mean = f" (did you mean `{'.'.join(loc[:-1] + hint[:1])}`?)" if hint else ""
        return f"unknown key `{key}`{did_you_mean}; allowed keys here: {', '.join(allowed)}"
    msg = err["msg"].removeprefix("Value error, ")
    if kind == "missing":
        return f"missing required key `{key}`"
    if kind.endswith("_type") or kind.endswith("_parsing"):
        return f"key `{key}` = {value!r}: {msg.lower()}"
    return f"key `{key}` = {value!r}: {msg}" if loc else msg


def _allowed_keys(schema: type[BaseModel], path: Sequence[str]) -> list[str]:
    model: Any = schema
    for part in path:
        field = getattr(model, "model_fields", {}).get(part)
        if field is None:
            return []
        model = field.annotation
        args = getattr(model, "__args__", ())
        model = next((a for a in args if isinstance(a, type) and issubclass(a, BaseModel)), model)
    return list(getattr(model, "model_fields", {}))


# --- saving --------------------------------------------------------------------------------------


def config_to_dict(cfg: BaseModel) -> dict[str, Any]:
    return json.loads(cfg.model_dump_json())


def write_resolved_config(cfg: RlgenConfig, directory: str | Path, extra: Mapping[str, Any] | None = None) -> Path:
    """Write ``config.yaml`` (every key, defaults filled in) into ``directory``; returns its path.

    ``extra`` adds derived facts worth keeping (e.g. the resolved ``LevelSplit``) under ``resolved``.
    Gives the directory its run id (``run.json``, written once: see ``rlgen.run_identity``).
    """
    from rlgen.run_identity import ensure_run_id

    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    ensure_run_id(d)
    data = config_to_dict(cfg)
    if extra:
        data["resolved"] = dict(extra)
    path = d / "config.yaml"
    tmp = path.with_suffix(".yaml.tmp")
    tmp.write_text(yaml.safe_dump(data, sort_keys=False))
    tmp.replace(path)
    return path


# --- training ------------------------------------------------------------------------------------


class PPOSettings(StrictModel):
    """PPO hyperparameters. Defaults: the Procgen paper / CleanRL ``ppo_procgen``."""

    n_steps: int = Field(default=256, ge=1, description="steps per env per rollout")
    num_minibatches: int = Field(default=8, ge=1)
    n_epochs: int = Field(default=3, ge=1)
    learning_rate: float = Field(default=5e-4, gt=0)
    gamma: float = Field(default=0.999, gt=0, le=1)
    gae_lambda: float = Field(default=0.95, ge=0, le=1)
    clip_range: float = Field(default=0.2, gt=0)
    clip_range_vf: float | None = Field(default=None, gt=0, description="SB3's value clipping around the rollout's values (null: none); the Procgen configs set 0.2, as the reference")
    ent_coef: float = Field(default=0.01, ge=0)
    vf_coef: float = Field(default=0.5, ge=0)
    max_grad_norm: float = Field(default=0.5, gt=0)
    normalize_reward: bool = True
    network: str = Field(default="auto", description="auto | impala | nature | minigrid_cnn")

    @field_validator("network")
    @classmethod
    def _network(cls, v: str) -> str:
        from rlgen.agents.networks import check_network_name

        return check_network_name(v)


class LadderSettings(StrictModel):
    """The skill ladder: every ``every_steps`` env steps, evaluate on training levels and keep a checkpoint."""

    every_steps: int = Field(default=1_000_000, ge=1)
    episodes: int = Field(default=32, ge=1)
    deterministic: bool = False


CHECKPOINT_EVERY_HELP = "env steps between resumable checkpoints; at most (and by default) a tenth of total_steps"


def checkpoint_interval(checkpoint_every: int | None, total_steps: int) -> int:
    """``min(checkpoint_every, ceil(total_steps / 10))``: every run keeps about ten resumable
    checkpoints at least, so a kill never loses more than a tenth of it (a value larger than the run
    would otherwise never checkpoint)."""
    tenth = max(1, math.ceil(total_steps / 10))
    return tenth if checkpoint_every is None else min(checkpoint_every, tenth)


class TrainConfig(RlgenConfig):
    """``rlgen train`` config for online agents (``algo: ppo``)."""

    algo: str = "ppo"
    total_steps: int = Field(default=25_000_000, ge=1, description="environment steps")
    ppo: PPOSettings = Field(default_factory=PPOSettings)
    ladder: LadderSettings = Field(default_factory=LadderSettings)
    checkpoint_every: int | None = Field(default=None, ge=1, description=CHECKPOINT_EVERY_HELP)
    eval_num_envs: int = Field(default=16, ge=1, description="episodes run at once in evaluations")
    progress: bool = True

    def checkpoint_interval(self) -> int:
        """Env steps between resumable checkpoints (see :func:`checkpoint_interval`)."""
        return checkpoint_interval(self.checkpoint_every, self.total_steps)

    @field_validator("algo")
    @classmethod
    def _algo(cls, v: str) -> str:
        if v != "ppo":
            raise ValueError(f"algo {v!r} is not one of: ppo (this schema is the SB3 PPO's; offline algorithms use OfflineConfig)")
        return v

    @model_validator(mode="after")
    def _rollout_fits(self) -> "TrainConfig":
        batch = self.num_envs * self.ppo.n_steps
        if batch % self.ppo.num_minibatches:
            raise ValueError(
                f"num_envs * ppo.n_steps = {self.num_envs} * {self.ppo.n_steps} = {batch} must be divisible by "
                f"ppo.num_minibatches = {self.ppo.num_minibatches}"
            )
        return self


class JaxPPOSettings(StrictModel):
    """JAX PPO hyperparameters. Defaults: XLand-MiniGrid's single-task PPO baseline (lr 1e-3, 16 steps
    per env per rollout, 1 epoch of 16 minibatches, gamma 0.99), with a 2-epoch update."""

    n_steps: int = Field(default=16, ge=1, description="steps per env per rollout")
    num_minibatches: int = Field(default=16, ge=1)
    n_epochs: int = Field(default=2, ge=1)
    learning_rate: float = Field(default=1e-3, gt=0)
    anneal_lr: bool = Field(default=True, description="decay the learning rate linearly to 0 over total_steps")
    gamma: float = Field(default=0.99, gt=0, le=1)
    gae_lambda: float = Field(default=0.95, ge=0, le=1)
    clip_range: float = Field(default=0.2, gt=0)
    ent_coef: float = Field(default=0.01, ge=0)
    vf_coef: float = Field(default=0.5, ge=0)
    max_grad_norm: float = Field(default=0.5, gt=0)
    hidden_dim: int = Field(default=256, ge=1, description="width of the torso and of the actor and critic heads")
    embed_dim: int = Field(default=16, ge=1, description="embedding size of tile, colour and goal codes")


class JaxPPOConfig(RlgenConfig):
    """``rlgen train`` config for the JAX PPO (``algo: ppo_jax``) on ``xland/...`` envs: env stepping and
    learning in one jitted ``lax.scan``, vmapped over ``num_envs`` envs, on GPU when JAX has one."""

    algo: str = "ppo_jax"
    env: str = Field(default="xland/XLand-MiniGrid-R1-9x9", description="an xland/... env")
    num_envs: int = Field(default=1024, ge=1)
    total_steps: int = Field(default=10_000_000, ge=1, description="environment steps")
    ppo_jax: JaxPPOSettings = Field(default_factory=JaxPPOSettings)
    log_every_steps: int = Field(default=1_000_000, ge=1, description="env steps between host syncs (TensorBoard, progress); ladder and checkpoints happen at these syncs")
    ladder: LadderSettings = Field(default_factory=LadderSettings)
    checkpoint_every: int | None = Field(default=None, ge=1, description=CHECKPOINT_EVERY_HELP + " (taken at the next host sync)")
    eval_num_envs: int = Field(default=1024, ge=1, description="episodes run at once in evaluations")
    progress: bool = True

    def checkpoint_interval(self) -> int:
        """Env steps between resumable checkpoints (see :func:`checkpoint_interval`)."""
        return checkpoint_interval(self.checkpoint_every, self.total_steps)

    @field_validator("algo")
    @classmethod
    def _algo(cls, v: str) -> str:
        if v != "ppo_jax":
            raise ValueError(f"algo {v!r} is not ppo_jax (this schema is the JAX PPO's)")
        return v

    @model_validator(mode="after")
    def _jax_checks(self) -> "JaxPPOConfig":
        suite = self.env.split("/", 1)[0]
        if suite != "xland":
            raise ValueError(f"algo ppo_jax trains on xland/... envs only, got env {self.env!r}; use algo ppo for {suite}")
        batch = self.num_envs * self.ppo_jax.n_steps
        if batch % self.ppo_jax.num_minibatches:
            raise ValueError(
                f"num_envs * ppo_jax.n_steps = {self.num_envs} * {self.ppo_jax.n_steps} = {batch} must be divisible by "
                f"ppo_jax.num_minibatches = {self.ppo_jax.num_minibatches}"
            )
        return self


# --- collection ----------------------------------------------------------------------------------

SKILLS = ("expert", "medium", "mixed", "random")


def human_count(n: int) -> str:
    """1000000 -> '1M', 200000 -> '200k', 1234 -> '1234'."""
    for div, suffix in ((1_000_000, "M"), (1_000, "k")):
        if n >= div and n % div == 0:
            return f"{n // div}{suffix}"
    return str(n)


class CollectConfig(RlgenConfig):
    """``rlgen collect``: roll out a policy on the split's training levels into a dataset.

    ``name`` defaults to ``<env>-<skill>-<size>`` (``coinrun-expert-1M``) and ``out_dir`` to ``data/<name>``.
    """

    name_from_file: ClassVar[bool] = False
    #: lower than training's: beyond these, collection's memory grows without any gain in speed.
    num_envs_limits: ClassVar[dict[str, tuple[int, str]]] = {
        "default": (1024, "rlgen collect: each env holds its running episode in host memory (Procgen: up to 1,000 frames "
                          "of 12 KB), and more envs than CPU threads do not collect faster"),
        "xland": (16384, "rlgen collect: each device call returns 2 x 128 steps of every env's observations (0.7 GB at 16,384 envs)"),
    }

    policy_run: str | None = Field(default=None, description="run directory of `rlgen train` (its ladder.json); not needed for skill=random")
    skill: Literal["expert", "medium", "mixed", "random"] = "expert"
    transitions: int | None = Field(default=1_000_000, ge=1)
    episodes: int | None = Field(default=None, ge=1, description="collect this many episodes instead of `transitions`")
    levels: int | None = Field(default=None, ge=1, description="collect on the first N training levels only (diversity)")
    medium_fraction: float = Field(default=0.5, gt=0, lt=1, description="medium = the ladder rung nearest this fraction of expert return")
    mixed_expert_fraction: float = Field(default=0.5, ge=0, le=1, description="mixed: share of episodes from the expert "
                                         "(with medium_fraction 0.5: 75% of expert return, the reference's mixed data)")
    deterministic: bool = Field(default=False, description="greedy actions (default: sample, as the behaviour policy)")
    shard_transitions: int = Field(default=50_000, ge=1, description="transitions per shard (file)")
    segment_transitions: int = Field(default=500_000, ge=1, description="transitions per independent rollout (the most a resume replays)")
    shard_episodes: int = Field(default=100, ge=1, description="with `episodes`: episodes per shard")
    segment_episodes: int = Field(default=1000, ge=1, description="with `episodes`: episodes per independent rollout")
    progress: bool = True

    @model_validator(mode="before")
    @classmethod
    def _collect_names(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        if data.get("episodes") is not None and "transitions" not in data:
            data["transitions"] = None
        if "name" not in data:
            env = str(data.get("env", "procgen/coinrun")).split("/")[-1].lower().removeprefix("minigrid-")
            size = data.get("transitions") if data.get("transitions") is not None else data.get("episodes")
            unit = "" if data.get("transitions") is not None else "ep"
            skill = data.get("skill", "expert")
            data["name"] = f"{env}-{skill}-{human_count(int(size)) if isinstance(size, int) else size}{unit}"
        if data.get("out_dir") is None:
            data["out_dir"] = str(Path("data") / str(data["name"]))
        return data

    @model_validator(mode="after")
    def _collect_checks(self) -> "CollectConfig":
        if (self.transitions is None) == (self.episodes is None):
            raise ValueError("give exactly one of `transitions` and `episodes`")
        if self.skill != "random" and not self.policy_run:
            raise ValueError(f"skill={self.skill} needs policy_run: the run directory of `rlgen train` (skill=random needs none)")
        return self


# --- offline training ----------------------------------------------------------------------------

OFFLINE_ALGOS = ("bc", "bcq", "cql", "iql", "dt", "bct")


class OfflineEvalSettings(StrictModel):
    """Evaluation during offline training, on training and validation levels."""

    every_steps: int = Field(default=10_000, ge=1)
    episodes: int = Field(default=16, ge=1)
    early_stopping_patience: int | None = Field(default=None, ge=1, description="stop after this many evaluations without a better validation return")
    enabled: bool = True


class OfflineConfig(RlgenConfig):
    """``rlgen train`` config for offline agents (``algo``: bc | bcq | cql | iql | dt | bct).

    Defaults follow the reference study's final settings for 1M expert Procgen data (gen_dgrl,
    ``procgen/configs/offline/final/``); the algorithm configs in ``configs/offline/`` set them per algorithm.
    """

    algo: str = "bc"
    dataset: str = Field(default="", description="dataset directory (rlgen collect's out_dir)")
    steps: int = Field(default=100_000, ge=1, description="gradient steps")
    batch_size: int = Field(default=256, ge=1)
    learning_rate: float = Field(default=5e-4, gt=0)
    gamma: float = Field(default=0.99, gt=0, le=1)
    network: str = Field(default="auto", description="auto | impala | nature | minigrid_cnn")
    # BCQ
    bcq_threshold: float = Field(default=0.5, ge=0, le=1, description="BCQ: keep actions with pi(a|s)/max pi >= threshold")
    bcq_beta: float = Field(default=0.01, ge=0, description="BCQ: imitator loss + bcq_beta * mean(logits^2) (the reference's 1e-2)")
    # BCQ, CQL, IQL (hard target copies)
    target_update_interval: int = Field(default=1000, ge=1, description="updates between target-network copies (default 100 for iql, as the reference)")
    # CQL
    cql_alpha: float = Field(default=4.0, ge=0)
    # IQL
    iql_temperature: float = Field(default=3.0, gt=0)
    iql_expectile: float = Field(default=0.8, gt=0, lt=1)
    iql_target_update: Literal["hard", "polyak"] = Field(default="hard", description="IQL targets: hard copy every target_update_interval updates, or Polyak with iql_tau")
    iql_tau: float = Field(default=0.005, gt=0, le=1, description="IQL: Polyak rate (with iql_target_update=polyak)")
    iql_deterministic: bool = Field(default=True, description="IQL acts with its policy's most likely action (the reference's evaluation); false: samples")
    # DT, BCT
    context_length: int = Field(default=10, ge=1)
    n_layers: int = Field(default=6, ge=1)
    n_heads: int = Field(default=8, ge=1)
    embed_dim: int = Field(default=128, ge=1)
    dt_target_return: float | None = Field(default=None, description="DT: return to condition on (default: dt_target_return_scale x the dataset's best episode return)")
    dt_target_return_scale: float = Field(default=5.0, gt=0)
    eval: OfflineEvalSettings = Field(default_factory=OfflineEvalSettings)
    eval_num_envs: int = Field(default=16, ge=1)
    checkpoint_every: int = Field(default=10_000, ge=1)
    progress: bool = True

    @model_validator(mode="before")
    @classmethod
    def _env_from_dataset(cls, data: Any) -> Any:
        """Without an explicit ``env``, train on the dataset's env (read from its manifest)."""
        if isinstance(data, dict) and "env" not in data and data.get("dataset"):
            manifest = Path(str(data["dataset"])) / "manifest.json"
            if manifest.is_file():
                try:
                    m = json.loads(manifest.read_text())
                    if m.get("kind") == "subset":
                        m = json.loads((manifest.parent / m["parent"] / "manifest.json").read_text())
                    data = {**data, "env": m["env"], "split": data.get("split", {"num_levels": len(LevelSet(m["split"]["train"]))} if "split" in m else {})}
                except (OSError, KeyError, ValueError, AttributeError, TypeError):  # e.g. a manifest of `[]`
                    pass  # load_dataset reports a broken dataset properly later
        return data

    @model_validator(mode="before")
    @classmethod
    def _algo_defaults(cls, data: Any) -> Any:
        """Defaults that differ by algorithm, filled in before validation (so the resolved config shows them)."""
        if isinstance(data, dict) and data.get("algo") == "iql" and "target_update_interval" not in data:
            data = {**data, "target_update_interval": 100}  # the reference's IQL copies its targets every 100 updates
        return data

    @field_validator("algo")
    @classmethod
    def _algo(cls, v: str) -> str:
        if v not in OFFLINE_ALGOS:
            raise ValueError(f"algo {v!r} is not one of: {', '.join(OFFLINE_ALGOS)} (or ppo, ppo_jax for online training)")
        return v

    @field_validator("network")
    @classmethod
    def _network(cls, v: str) -> str:
        from rlgen.agents.networks import check_network_name

        return check_network_name(v)

    @model_validator(mode="after")
    def _offline_checks(self) -> "OfflineConfig":
        if not self.dataset:
            raise ValueError("`dataset` is required: the directory of a dataset made by `rlgen collect`")
        if self.algo in ("dt", "bct") and self.embed_dim % self.n_heads:
            raise ValueError(f"embed_dim={self.embed_dim} must be divisible by n_heads={self.n_heads}")
        return self


def train_schema(path: str | Path | None, overrides: Sequence[str]) -> type[RlgenConfig]:
    """The schema ``rlgen train`` uses: ``TrainConfig`` for algo ppo, ``JaxPPOConfig`` for ppo_jax,
    ``OfflineConfig`` otherwise."""
    data = read_yaml(path) if path is not None else {}
    data = merge(data, parse_overrides(overrides))
    return schema_for_algo(data.get("algo", "ppo"), source=str(path) if path is not None else "config")


def schema_for_algo(algo: Any, source: str = "config") -> type[RlgenConfig]:
    """The schema of ``algo`` (``TrainConfig``, ``JaxPPOConfig`` or ``OfflineConfig``); ``algo``
    that is not a string (``algo=[ppo]``) is a ``ConfigError``."""
    if not isinstance(algo, str):
        allowed = ", ".join([*ONLINE_SCHEMAS, *OFFLINE_ALGOS])
        raise ConfigError(f"{source}: key `algo` = {algo!r}: must be one name, one of: {allowed}")
    return ONLINE_SCHEMAS.get(algo, OfflineConfig)


#: ``algo`` -> schema of the online algorithms (everything else is offline).
ONLINE_SCHEMAS: dict[str, type[RlgenConfig]] = {"ppo": TrainConfig, "ppo_jax": JaxPPOConfig}
