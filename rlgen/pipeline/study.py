"""The study config: one YAML that describes a whole experiment, and sweeps over it.

A study names the environments and their level split once, then the stages: PPO (or existing PPO
runs to reuse), datasets by skill x size x number of levels, offline algorithms, evaluation and
the report. Every list is a sweep axis: ``envs x seeds`` PPO runs (``x ppo.levels``: PPO on the first N
training levels, each with its own datasets and agents), ``x skills x levels x
transitions`` datasets (``datasets.only`` keeps a part of that grid, and may narrow the algorithms
trained on a cell), ``x algos`` offline agents. Each stage config starts from an optional base
file (``config:``, e.g. ``configs/offline/{algo}.yaml``), takes the keys the study decides (env,
split, seed, device, out_dir, ...) and then the study's ``set:`` overrides, and is validated
against the stage's own schema (its algorithm's, from ``rlgen.agents.registry``, or ``CollectConfig``)
before any work starts. The online stage trains any registered online algorithm (``ppo.algo``: ppo,
ppo_jax...), the offline stages any registered offline one.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from rlgen.agents import available_algorithms
from rlgen.config import LIMITS, MAX_NUM_ENVS, MAX_SEED, SplitConfig, StrictModel, check_out_dir
from rlgen.config.base import DeviceName, Name
from rlgen.config.collect import Skill
from rlgen.envs import parse_env_id

#: Stage kinds that use compute, with their resources in ``resources``.
STAGE_KINDS = ("ppo", "collect", "subset", "offline", "evaluate", "report")
#: Fields a base-config path or a ``reuse`` path may contain.
TEMPLATE_FIELDS = ("suite", "env", "game", "seed", "algo")


class StageSection(StrictModel):
    """Shared by the PPO, dataset and offline sections."""

    config: str | None = Field(default=None, description="base YAML file; may contain {suite}, {env}, {game}, {seed}, {algo}")
    set: dict[str, Any] = Field(default_factory=dict, description="overrides applied on top of the base file, e.g. {total_steps: 100000}")
    seeds: list[int] | None = Field(default=None, description="default: the study's seeds")

    @field_validator("seeds")
    @classmethod
    def _seeds(cls, v: list[int] | None) -> list[int] | None:
        return _unique_nonempty(v, "seeds", minimum=0, maximum=MAX_SEED) if v is not None else v


class PPOSection(StageSection):
    """The online policy on each env's training levels (``rlgen train`` with an online ``algo``): the behaviour
    policy whose skill ladder the datasets come from."""

    algo: str = Field(default="ppo", description="a registered online algorithm: ppo (SB3), ppo_jax (xland envs), ...")
    reuse: str | None = Field(default=None, description="existing run directories to use instead of training, e.g. runs/ppo-{game}-s{seed}")
    levels: list[int | None] = Field(default_factory=lambda: [None], description="a sweep axis: one PPO per seed and N, trained on the first N "
                                     "training levels (null: all), its datasets collected and its agents evaluated on those N; held-out levels stay the split's")  # fmt: skip

    @field_validator("algo")
    @classmethod
    def _algo(cls, v: str) -> str:
        return _registered(v, "online")

    @field_validator("levels")
    @classmethod
    def _levels(cls, v: list[int | None]) -> list[int | None]:
        return _unique_nonempty(v, "ppo.levels", minimum=1)

    @model_validator(mode="after")
    def _reuse_or_train(self) -> "PPOSection":
        if self.reuse and (self.config or self.set):
            raise ValueError("ppo.reuse uses existing runs as they are: remove ppo.config and ppo.set, or ppo.reuse to train")
        if self.reuse and self.levels != [None]:
            raise ValueError(f"ppo.levels = {json.dumps(self.levels)} trains one PPO per number of levels; ppo.reuse uses existing runs: remove one of them")
        return self


class DatasetSection(StageSection):
    """Datasets collected from the PPO policies (``rlgen collect``)."""

    skills: list[Skill] = Field(default_factory=lambda: ["expert"])
    transitions: list[int] = Field(default_factory=lambda: [1_000_000], description="dataset sizes")
    levels: list[int | None] = Field(default_factory=lambda: [None], description="collect on the first N training levels (null: all of them)")
    subset_sizes: bool = Field(default=True, description="smaller sizes are seeded subsets of the largest collection (false: collect each size)")
    only: list[dict[str, Any]] | None = Field(
        default=None, description="keep only the grid cells that match an entry (keys skill, levels, transitions; a key left out matches any "
                                  "value) and, with `algos`, train only those offline algorithms on them; default: every cell, every algorithm")  # fmt: skip

    @field_validator("skills")
    @classmethod
    def _skills(cls, v: list[str]) -> list[str]:
        return _unique_nonempty(v, "skills")

    @field_validator("transitions")
    @classmethod
    def _transitions(cls, v: list[int]) -> list[int]:
        return _unique_nonempty(v, "transitions", minimum=1)

    @field_validator("levels")
    @classmethod
    def _levels(cls, v: list[int | None]) -> list[int | None]:
        return _unique_nonempty(v, "levels", minimum=1)

    @field_validator("only")
    @classmethod
    def _only(cls, v: list[dict[str, Any]] | None, info: ValidationInfo) -> list[dict[str, Any]] | None:
        """Each entry names values of the grid's own axes (validated above it), so each keeps at least one cell."""
        if v is None:
            return v
        if not v:
            raise ValueError("datasets.only must list at least one cell; leave it out for the whole grid")
        axes = {key: (axis, info.data.get(axis)) for key, axis in (("skill", "skills"), ("levels", "levels"), ("transitions", "transitions"))}
        for i, entry in enumerate(v):
            unknown = [k for k in entry if k not in (*axes, "algos")]
            if unknown:
                raise ValueError(f"datasets.only[{i}] has the key {unknown[0]!r}; allowed: skill, levels, transitions, algos")
            for key, value in entry.items():
                if key == "algos":
                    if not isinstance(value, list) or not value:
                        raise ValueError(f"datasets.only[{i}].algos = {value!r}: list at least one algorithm of offline.algos")
                    continue
                axis, values = axes[key]
                if key == "levels" and values == [None]:  # the default: the levels axis may be ppo.levels' (StudyConfig checks it)
                    continue
                if values is not None and value not in values:  # None: that axis failed its own check
                    raise ValueError(f"datasets.only[{i}].{key} = {json.dumps(value)} is not in datasets.{axis} {json.dumps(values)}")
        return v

    def _matches(self, skill: str, levels: int | None, transitions: int) -> list[dict[str, Any]]:
        cell = {"skill": skill, "levels": levels, "transitions": transitions}
        return [e for e in self.only or () if all(cell[k] == v for k, v in e.items() if k != "algos")]

    def keeps(self, skill: str, levels: int | None, transitions: int) -> bool:
        """Whether the grid cell (skill, levels, transitions) is one of the study's datasets."""
        return self.only is None or bool(self._matches(skill, levels, transitions))

    def algos_for(self, skill: str, levels: int | None, transitions: int, algos: list[str]) -> list[str]:
        """The offline algorithms (of ``algos``, in that order) trained on a kept cell: those named by
        the ``algos`` of the entries it matches; all of ``algos`` when one of them names none."""
        entries = self._matches(skill, levels, transitions) if self.only is not None else [{}]
        if any("algos" not in e for e in entries):
            return list(algos)
        named = {str(a).lower() for e in entries for a in e["algos"]}
        return [a for a in algos if a in named]


class OfflineSection(StageSection):
    """Offline agents trained on every dataset (``rlgen train`` with an offline ``algo``)."""

    algos: list[str] = Field(default_factory=lambda: ["bc"])
    per_algo: dict[str, dict[str, Any]] = Field(default_factory=dict, description="overrides for one algorithm, e.g. {dt: {n_layers: 2}}")

    @field_validator("algos")
    @classmethod
    def _algos(cls, v: list[str]) -> list[str]:
        return [_registered(a, "offline") for a in _unique_nonempty([str(a).lower() for a in v], "algos")]

    @field_validator("per_algo")
    @classmethod
    def _per_algo(cls, v: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        for a in v:
            _registered(a, "offline")
        return v


class EvaluationSection(StrictModel):
    """Evaluation of every agent on training and held-out levels (as ``rlgen evaluate``)."""

    episodes: Annotated[int, LIMITS["episodes"].field] = Field(default=100, ge=1, description="episodes per level set")
    which: list[Literal["train", "validation", "held_out"]] = Field(default_factory=lambda: ["train", "held_out"])
    deterministic: bool = False
    seed: int = Field(default=0, ge=0, description="fixes the evaluation level lists (the same for every agent)")
    num_envs: int = Field(default=16, ge=1, description="episodes run at once; at most MAX_NUM_ENVS of each env's suite")
    ppo: bool = Field(default=True, description="evaluate the PPO policies too")
    random_baseline: bool = Field(default=False, description="also evaluate a uniform random policy per env")

    @field_validator("which")
    @classmethod
    def _which(cls, v: list[str]) -> list[str]:
        return _unique_nonempty(v, "which")


class ReportSection(StrictModel):
    enabled: bool = True
    seed: int = Field(default=0, ge=0, description="bootstrap seed")


class Resources(StrictModel):
    """What one stage of a kind needs. The local runner runs stages side by side while their
    ``num_cpus`` fit the machine's cores (and sets each stage's torch threads to it); Ray gets
    both numbers as task resources."""

    num_cpus: float = Field(default=1, gt=0)
    num_gpus: float = Field(default=0, ge=0)


class RaySection(StrictModel):
    address: str | None = Field(default=None, description="Ray cluster address (HOST:PORT, ray://HOST:PORT or auto); null: start a fresh local Ray")
    connect_timeout_s: float = Field(default=10.0, gt=0, le=60, description="seconds to wait for `address` to answer before giving up")


class StudyConfig(StrictModel):
    """``rlgen run`` config. See ``configs/study/`` and ``rlgen/pipeline/quickstart.yaml``."""

    name_from_file: ClassVar[bool] = True

    name: Name = Field(default="study", min_length=1)
    out_dir: str | None = Field(default=None, description="default: runs/<name>")
    envs: list[str] = Field(default_factory=lambda: ["procgen/coinrun"], description="SUITE/ENV ids; a sweep axis")
    split: SplitConfig = Field(default_factory=SplitConfig, description="the level split, the same for every env and stage")
    seeds: list[int] = Field(default_factory=lambda: [0], description="a sweep axis; each stage section may narrow it")
    device: DeviceName = "auto"
    ppo: PPOSection | None = None
    datasets: DatasetSection | None = None
    offline: OfflineSection | None = None
    evaluation: EvaluationSection = Field(default_factory=EvaluationSection)
    report: ReportSection = Field(default_factory=ReportSection)
    runner: Literal["local", "ray"] = "local"
    workers: int | Literal["auto"] = Field(default="auto", description="local runner: stages at once; auto: as many as the cores allow")
    resources: dict[str, Resources] = Field(default_factory=dict, description="per stage kind (ppo, collect, subset, offline, evaluate, report) or `default`")
    ray: RaySection = Field(default_factory=RaySection)

    @field_validator("envs", mode="before")
    @classmethod
    def _envs_list(cls, v: Any) -> Any:
        return [v] if isinstance(v, str) else v

    @field_validator("envs")
    @classmethod
    def _envs(cls, v: list[str]) -> list[str]:
        out = []
        for env in _unique_nonempty(v, "envs"):
            suite, name = parse_env_id(env)  # SplitError (a ValueError) names the unknown suite/env
            out.append(f"{suite}/{name}")
        return _unique_nonempty(out, "envs")

    @field_validator("seeds")
    @classmethod
    def _seeds(cls, v: list[int]) -> list[int]:
        return _unique_nonempty(v, "seeds", minimum=0, maximum=MAX_SEED)

    @field_validator("workers")
    @classmethod
    def _workers(cls, v: int | str) -> int | str:
        if isinstance(v, int) and v < 1:
            raise ValueError(f"workers must be >= 1 or auto, got {v}")
        return v

    @field_validator("resources")
    @classmethod
    def _resources(cls, v: dict[str, Resources]) -> dict[str, Resources]:
        bad = [k for k in v if k not in (*STAGE_KINDS, "default")]
        if bad:
            raise ValueError(f"unknown stage kind {bad[0]!r}; allowed: default, {', '.join(STAGE_KINDS)}")
        return v

    @model_validator(mode="after")
    def _study_checks(self) -> "StudyConfig":
        if self.out_dir is None:
            self.out_dir = str(Path("runs") / self.name)
        check_out_dir(self.out_dir)
        for env in self.envs:
            suite = env.split("/", 1)[0]
            limit, why = MAX_NUM_ENVS.get(suite, MAX_NUM_ENVS["default"])
            if self.evaluation.num_envs > limit:
                raise ValueError(f"key `evaluation.num_envs` = {self.evaluation.num_envs}: at most {limit:,} envs at once for {suite} ({why})")
        if self.datasets is not None:
            needs_policy = [s for s in self.datasets.skills if s != "random"]
            if needs_policy and self.ppo is None:
                raise ValueError(f"datasets.skills has {needs_policy[0]}, which needs a PPO policy: add a `ppo:` section (to train one, or ppo.reuse to use existing runs)")
        if self.ppo is not None and self.ppo.levels != [None] and self.datasets is not None and self.datasets.levels != [None]:
            raise ValueError(f"datasets.levels = {json.dumps(self.datasets.levels)} with ppo.levels: each dataset is collected on the levels of "
                             f"the PPO it comes from (ppo.levels {json.dumps(self.ppo.levels)}); leave datasets.levels out")  # fmt: skip
        if self.datasets is not None and self.datasets.levels == [None]:
            # with ppo.levels the datasets' levels axis is the PPO's (rlgen.pipeline.plan), so `only` names its values
            axis, values = ("ppo.levels", self.ppo.levels) if self.ppo is not None and self.ppo.levels != [None] else ("datasets.levels", [None])
            for i, entry in enumerate(self.datasets.only or []):
                if "levels" in entry and entry["levels"] not in values:
                    raise ValueError(f"datasets.only[{i}].levels = {json.dumps(entry['levels'])} is not in {axis} {json.dumps(values)}")
        if self.offline is not None and self.datasets is None:
            raise ValueError("offline agents need datasets: add a `datasets:` section")
        if self.ppo is None and self.datasets is None:
            raise ValueError("a study needs at least a `ppo:` or a `datasets:` section")
        for i, entry in enumerate(self.datasets.only or [] if self.datasets is not None else []):
            allowed = self.offline.algos if self.offline is not None else []
            bad = [a for a in entry.get("algos", []) if str(a).lower() not in allowed]
            if bad:
                raise ValueError(f"datasets.only[{i}].algos names {bad[0]!r}, which is not in offline.algos {json.dumps(allowed)}")
        return self

    def resources_for(self, kind: str) -> Resources:
        return self.resources.get(kind) or self.resources.get("default") or Resources()

    def stage_seeds(self, section: StageSection | None) -> list[int]:
        return list(section.seeds) if section is not None and section.seeds is not None else list(self.seeds)


def _registered(algo: str, kind: str) -> str:
    allowed = available_algorithms(kind)  # type: ignore[arg-type]
    if algo not in allowed:
        raise ValueError(f"unknown algorithm {algo!r}; allowed: {', '.join(allowed)}")
    return algo


def _unique_nonempty(values: list[Any], key: str, minimum: int | None = None, maximum: int | None = None) -> list[Any]:
    if not values:
        raise ValueError(f"{key} must list at least one value")
    seen: list[Any] = []
    for x in values:
        if minimum is not None and x is not None and x < minimum:
            raise ValueError(f"{key} value {x} must be >= {minimum}")
        if maximum is not None and x is not None and x > maximum:
            raise ValueError(f"{key} value {x} must be <= {maximum}")
        if x in seen:
            raise ValueError(f"{key} lists {x!r} twice")
        seen.append(x)
    return seen


def local_cpus() -> int:
    """CPU cores this process may use (the affinity mask, not the host's count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


__all__ = ["STAGE_KINDS", "StudyConfig", "local_cpus"]
