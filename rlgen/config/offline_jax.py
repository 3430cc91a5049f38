"""``rlgen train`` of the JAX offline agents (bc_jax, iql_jax, cql_jax, dt_jax, bct_jax, bcq_jax): schema only, no JAX.

The schema is the torch agents' (``OfflineConfig``) with the same keys and defaults, so a JAX agent and its
torch counterpart trained from the same values are the same experiment, plus ``seeds`` (several training
runs in one process, vmapped) and ``sync_every`` (updates per jitted chunk between host syncs).
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import Field, field_validator, model_validator

from rlgen.config.base import MAX_SEED
from rlgen.config.offline import OfflineConfig, registered_algos

#: JAX algorithm -> the torch algorithm whose losses and defaults it follows (registered, loss-tested against it).
JAX_OFFLINE_ALGOS: dict[str, str] = {"bc_jax": "bc", "iql_jax": "iql", "cql_jax": "cql", "dt_jax": "dt", "bct_jax": "bct", "bcq_jax": "bcq"}
#: The sequence agents: they learn from trajectory windows and act on the episode so far.
JAX_WINDOW_ALGOS = ("dt_jax", "bct_jax")


class JaxOfflineConfig(OfflineConfig):
    """``rlgen train`` config for the JAX offline agents on small symbolic grids (XLand-MiniGrid, its MiniGrid
    ports, MiniGrid's symbolic view). Every seed of ``seeds`` is its own run (``<out_dir>/seed_<s>/``), trained
    side by side in one jitted ``lax.scan`` vmapped over seeds."""

    SEQUENCE_ALGOS: ClassVar[tuple[str, ...]] = JAX_WINDOW_ALGOS
    algo: str = "bc_jax"
    seeds: list[int] | None = Field(default=None, description="train these seeds in one process, vmapped; each is its own run in <out_dir>/seed_<s>/ (null: [seed])")
    sync_every: int = Field(default=1000, ge=1, description="updates per jitted chunk; the host syncs between chunks (TensorBoard, progress, stop signals)")

    @field_validator("algo")
    @classmethod
    def _algo(cls, v: str) -> str:  # replaces OfflineConfig's check of the torch names
        if v not in JAX_OFFLINE_ALGOS and v not in registered_algos(cls):  # a user's algorithm registered with a subclass
            raise ValueError(f"algo {v!r} is not one of: {', '.join(dict.fromkeys((*JAX_OFFLINE_ALGOS, *registered_algos(cls))))} "
                             "(this schema is the JAX offline agents')")
        return v

    @field_validator("seeds")
    @classmethod
    def _seeds(cls, v: list[int] | None) -> list[int] | None:
        if v is None:
            return v
        if not v:
            raise ValueError("seeds must list at least one seed (or be null: train `seed` alone)")
        bad = [s for s in v if not 0 <= s <= MAX_SEED]
        if bad:
            raise ValueError(f"seed {bad[0]} must be in 0..{MAX_SEED}")
        if len(set(v)) != len(v):
            raise ValueError(f"seeds lists {next(s for s in v if v.count(s) > 1)} twice")
        return v

    @model_validator(mode="before")
    @classmethod
    def _jax_algo_defaults(cls, data: Any) -> Any:
        """The torch agents' per-algorithm defaults, for the JAX names (IQL's targets copy every 100 updates)."""
        if isinstance(data, dict) and data.get("algo") == "iql_jax" and "target_update_interval" not in data:
            data = {**data, "target_update_interval": 100}
        return data

    @model_validator(mode="after")
    def _jax_checks(self) -> "JaxOfflineConfig":
        if self.network not in ("auto", "minigrid_cnn"):
            raise ValueError(f"network {self.network!r}: the JAX offline agents have the small grid CNN only (auto | minigrid_cnn); "
                             "image observations stay on the torch agents (algo: bc, bcq, cql, iql, dt, bct)")  # fmt: skip
        if self.eval.early_stopping_patience is not None:
            raise ValueError("eval.early_stopping_patience: the JAX agents train their seeds in lockstep and do not stop early; "
                             "leave it null, or use the torch agents")  # fmt: skip
        return self

    def seed_list(self) -> list[int]:
        """The seeds this config trains: ``seeds``, or ``[seed]``."""
        return list(self.seeds) if self.seeds is not None else [int(self.seed)]

    @property
    def torch_algo(self) -> str:
        """The torch agent whose losses and defaults this one follows (``bc`` for ``bc_jax``...)."""
        return JAX_OFFLINE_ALGOS[self.algo]
