"""``logger:`` and ``wandb:``, the experiment-tracking keys of the training configs (PPO, JAX PPO, offline).

TensorBoard is always written (rlgen's curves and tests read it); ``logger: [tensorboard, wandb]`` sends the
same scalars to Weights & Biases as well, through ``rlgen.agents.trackers``. wandb is optional: nothing here
imports it, a config naming it validates without it (an old run's config loads anywhere), and
``rlgen train`` says in one line how to install it before training starts. It runs ``offline`` unless the
config's ``wandb.mode`` or the ``WANDB_MODE`` environment variable says otherwise, so it never needs an
account, credentials or a network.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator

from rlgen.config.base import StrictModel

#: The loggers ``logger:`` may name.
LOGGERS = ("tensorboard", "wandb")


class WandbSettings(StrictModel):
    """``wandb:``: what ``wandb.init`` is given (used with ``logger: [tensorboard, wandb]`` only)."""

    mode: Literal["offline", "online", "disabled"] | None = Field(
        default=None, description="null: $WANDB_MODE when set, else offline (no account or network needed)")
    project: str = Field(default="rlgen", min_length=1)
    entity: str | None = None
    group: str | None = Field(default=None, description="e.g. one study's runs")
    tags: list[str] = Field(default_factory=list)


class TrackingFields(StrictModel):
    """The keys the training configs share for experiment tracking (mixed into their schemas)."""

    logger: list[str] = Field(default_factory=lambda: ["tensorboard"], description="tensorboard, optionally with wandb")
    wandb: WandbSettings = Field(default_factory=WandbSettings)

    @field_validator("logger", mode="before")
    @classmethod
    def _a_list(cls, v: Any) -> Any:
        if isinstance(v, str):  # `logger=wandb` on the command line: say the form, not pydantic's "valid list"
            raise ValueError(f"logger {v!r}: give a list, e.g. logger=[tensorboard,{v}]" if v != "tensorboard" else
                             "logger 'tensorboard': give a list, e.g. logger=[tensorboard] or logger=[tensorboard,wandb]")
        return v

    @field_validator("logger")
    @classmethod
    def _loggers(cls, v: list[str]) -> list[str]:
        unknown = [name for name in v if name not in LOGGERS]
        if unknown:
            raise ValueError(f"logger {unknown[0]!r} is not one of: {', '.join(LOGGERS)}")
        if "tensorboard" not in v:
            raise ValueError(f"logger {v}: must include tensorboard (always written; add wandb beside it: [tensorboard, wandb])")
        return list(dict.fromkeys(v))
