"""``algo: ppo``: stable-baselines3's PPO, with a skill ladder of checkpoints (schema only; no torch)."""

from __future__ import annotations

from typing import Annotated, ClassVar

from pydantic import Field, model_validator

from rlgen.config.base import LIMITS, NetworkName, OnlineConfig, StrictModel
from rlgen.config.tracking import TrackingFields


class PPOSettings(StrictModel):
    """PPO hyperparameters. Defaults: the Procgen paper / CleanRL ``ppo_procgen``."""

    n_steps: int = Field(default=256, ge=1, description="steps per env per rollout; num_envs x n_steps at most 1,048,576")
    num_minibatches: int = Field(default=8, ge=1)
    n_epochs: Annotated[int, LIMITS["epochs"].field] = Field(default=3, ge=1)
    learning_rate: float = Field(default=5e-4, gt=0)
    gamma: float = Field(default=0.999, gt=0, le=1)
    gae_lambda: float = Field(default=0.95, ge=0, le=1)
    clip_range: float = Field(default=0.2, gt=0)
    clip_range_vf: float | None = Field(default=None, gt=0, description="SB3's value clipping around the rollout's values (null: none); the Procgen configs set 0.2, as the reference")
    ent_coef: float = Field(default=0.01, ge=0)
    vf_coef: float = Field(default=0.5, ge=0)
    max_grad_norm: float = Field(default=0.5, gt=0)
    normalize_reward: bool = True
    network: NetworkName = Field(default="auto", description="auto | impala | nature | minigrid_cnn")


class PPOConfig(OnlineConfig, TrackingFields):
    """``rlgen train`` config of stable-baselines3's PPO (``algo: ppo``)."""

    ALGO: ClassVar[str] = "ppo"
    WHAT: ClassVar[str] = "the SB3 PPO"

    algo: str = "ppo"
    ppo: PPOSettings = Field(default_factory=PPOSettings)

    @model_validator(mode="after")
    def _rollout_fits(self) -> "PPOConfig":
        self.check_rollout("ppo", self.ppo.n_steps, self.ppo.num_minibatches)
        return self
