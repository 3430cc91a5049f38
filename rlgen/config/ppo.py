"""``algo: ppo``: stable-baselines3's PPO, with a skill ladder of checkpoints (schema only; no torch)."""

from __future__ import annotations

from pydantic import Field, field_validator, model_validator

from rlgen.config.base import CHECKPOINT_EVERY_HELP, LadderSettings, RlgenConfig, StrictModel, check_network_name, checkpoint_interval


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
        return check_network_name(v)


class PPOConfig(RlgenConfig):
    """``rlgen train`` config of stable-baselines3's PPO (``algo: ppo``)."""

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
            raise ValueError(f"algo {v!r} is not one of: ppo (this schema is the SB3 PPO's)")
        return v

    @model_validator(mode="after")
    def _rollout_fits(self) -> "PPOConfig":
        batch = self.num_envs * self.ppo.n_steps
        if batch % self.ppo.num_minibatches:
            raise ValueError(
                f"num_envs * ppo.n_steps = {self.num_envs} * {self.ppo.n_steps} = {batch} must be divisible by "
                f"ppo.num_minibatches = {self.ppo.num_minibatches}"
            )
        return self
