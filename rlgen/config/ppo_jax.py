"""``algo: ppo_jax``: the JAX PPO for xland envs (schema only; no JAX)."""

from __future__ import annotations

from typing import Annotated, ClassVar

from pydantic import Field, model_validator

from rlgen.config.base import CHECKPOINT_EVERY_HELP, LIMITS, Limit, OnlineConfig, StrictModel
from rlgen.config.tracking import TrackingFields


class JaxPPOSettings(StrictModel):
    """JAX PPO hyperparameters. Defaults: XLand-MiniGrid's single-task PPO baseline (lr 1e-3, 16 steps
    per env per rollout, 1 epoch of 16 minibatches, gamma 0.99), with a 2-epoch update."""

    n_steps: int = Field(default=16, ge=1, description="steps per env per rollout; num_envs x n_steps at most 16,777,216")
    num_minibatches: int = Field(default=16, ge=1)
    n_epochs: Annotated[int, LIMITS["epochs"].field] = Field(default=2, ge=1)
    learning_rate: float = Field(default=1e-3, gt=0)
    anneal_lr: bool = Field(default=True, description="decay the learning rate linearly to 0 over total_steps")
    gamma: float = Field(default=0.99, gt=0, le=1)
    gae_lambda: float = Field(default=0.95, ge=0, le=1)
    clip_range: float = Field(default=0.2, gt=0)
    ent_coef: float = Field(default=0.01, ge=0)
    vf_coef: float = Field(default=0.5, ge=0)
    max_grad_norm: float = Field(default=0.5, gt=0)
    hidden_dim: Annotated[int, LIMITS["width"].field] = Field(default=256, ge=1, description="width of the torso and of the actor and critic heads")
    embed_dim: Annotated[int, LIMITS["width"].field] = Field(default=16, ge=1, description="embedding size of tile, colour and goal codes")


class JaxPPOConfig(OnlineConfig, TrackingFields):
    """``rlgen train`` config for the JAX PPO (``algo: ppo_jax``) on ``xland/...`` envs: env stepping and
    learning in one jitted ``lax.scan``, vmapped over ``num_envs`` envs, on GPU when JAX has one."""

    ALGO: ClassVar[str] = "ppo_jax"
    WHAT: ClassVar[str] = "the JAX PPO"
    ROLLOUT_LIMIT: ClassVar[Limit] = LIMITS["jax_rollout"]

    algo: str = "ppo_jax"
    env: str = Field(default="xland/XLand-MiniGrid-R1-9x9", description="an xland/... env")
    num_envs: int = Field(default=1024, ge=1)
    total_steps: Annotated[int, LIMITS["env_steps"].field] = Field(default=10_000_000, ge=1, description="environment steps")
    ppo_jax: JaxPPOSettings = Field(default_factory=JaxPPOSettings)
    log_every_steps: Annotated[int, LIMITS["env_steps"].field] = Field(default=1_000_000, ge=1, description="env steps between host syncs (TensorBoard, progress); ladder and checkpoints happen at these syncs")
    checkpoint_every: Annotated[int | None, LIMITS["env_steps"].field] = Field(default=None, ge=1, description=CHECKPOINT_EVERY_HELP + " (taken at the next host sync)")
    eval_num_envs: int = Field(default=1024, ge=1, description="episodes run at once in evaluations")

    @model_validator(mode="after")
    def _jax_checks(self) -> "JaxPPOConfig":
        suite = self.env.split("/", 1)[0]
        if suite != "xland":
            raise ValueError(f"algo ppo_jax trains on xland/... envs only, got env {self.env!r}; use algo ppo for {suite}")
        self.check_rollout("ppo_jax", self.ppo_jax.n_steps, self.ppo_jax.num_minibatches)
        return self
