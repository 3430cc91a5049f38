"""``rlgen collect``: roll out a policy at a skill level on training levels into a dataset (schema only)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Literal, get_args

from pydantic import Field, model_validator

from rlgen.config.base import RlgenConfig, human_count

#: Upper bounds of the size keys (why: at the fields).
MAX_TRANSITIONS = 10**9
MAX_EPISODES = 10**7
MAX_SHARD_TRANSITIONS = 10**6
MAX_SHARD_EPISODES = 10**4

#: What a dataset's ``skill`` may be (see ``rlgen.collect.skills``).
Skill = Literal["expert", "medium", "mixed", "random"]
SKILLS: tuple[str, ...] = get_args(Skill)



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

    #: Keys that say the same thing two ways: one given on the command line replaces the other from the file
    #: (``episodes=7`` on a config file with ``transitions: 20000`` collects 7 episodes).
    alternative_keys: ClassVar[tuple[tuple[str, ...], ...]] = (("transitions", "episodes"),)

    policy_run: str | None = Field(default=None, description="run directory of `rlgen train` (its ladder.json); not needed for skill=random")
    skill: Skill = "expert"
    # Upper bounds: a collection holds its episode index in memory until the manifest is written (336 bytes per
    # episode row, measured), so 10**7 episodes take 3.4 GB; 10**9 transitions (1,000 times the reference's 1M
    # datasets) are 1.2 TB of Procgen shards; a typo such as 10**15 must fail now, not run for years.
    transitions: int | None = Field(default=1_000_000, ge=1, le=MAX_TRANSITIONS)
    episodes: int | None = Field(default=None, ge=1, le=MAX_EPISODES, description="collect this many episodes instead of `transitions`")
    levels: int | None = Field(default=None, ge=1, description="collect on the first N training levels only (diversity)")
    medium_fraction: float = Field(default=0.5, gt=0, lt=1, description="medium = the ladder rung nearest this fraction of expert return")
    mixed_expert_fraction: float = Field(default=0.5, ge=0, le=1, description="mixed: share of episodes from the expert "
                                         "(with medium_fraction 0.5: 75% of expert return, the reference's mixed data)")
    deterministic: bool = Field(default=False, description="greedy actions (default: sample, as the behaviour policy)")
    # A shard's episodes wait in memory, uncompressed, until the shard is written (Procgen: 12 KB per
    # transition, so 10**6 transitions or 10**4 episodes of up to 1,000 steps are 12 GB): hence these bounds.
    shard_transitions: int = Field(default=50_000, ge=1, le=MAX_SHARD_TRANSITIONS, description="transitions per shard (file)")
    segment_transitions: int = Field(default=500_000, ge=1, le=MAX_TRANSITIONS,
                                     description="transitions per independent rollout (the most a resume replays)")
    shard_episodes: int = Field(default=100, ge=1, le=MAX_SHARD_EPISODES, description="with `episodes`: episodes per shard")
    segment_episodes: int = Field(default=1000, ge=1, le=MAX_EPISODES, description="with `episodes`: episodes per independent rollout")
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
