"""``rlgen train`` of the offline agents (bc, bcq, cql, iql, dt, bct): schema only, no torch or d3rlpy."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from rlgen.config.base import LIMITS, NetworkName, RlgenConfig, StrictModel, checkpoint_interval
from rlgen.config.tracking import TrackingFields
from rlgen.envs.levels import LevelSet


#: The algorithms this schema configures (each registered in ``rlgen.agents.registry``).
OFFLINE_ALGOS = ("bc", "bcq", "cql", "iql", "dt", "bct")

#: schema class -> algorithms registered with it beyond rlgen's own (``rlgen.agents.register_algorithm`` adds them
#: through :func:`accept_registered_algo`: the registry sits above config, so it tells the schema, not the reverse).
_REGISTERED_ALGOS: dict[type, dict[str, None]] = {}


def accept_registered_algo(schema: type, name: str) -> None:
    """Let ``schema`` (``OfflineConfig`` or a subclass) validate ``algo: name``, registered with it as its schema."""
    _REGISTERED_ALGOS.setdefault(schema, {})[name] = None


def registered_algos(schema: type) -> tuple[str, ...]:
    """The names :func:`accept_registered_algo` gave ``schema`` itself (not its bases), in registration order."""
    return tuple(_REGISTERED_ALGOS.get(schema, ()))


class OfflineEvalSettings(StrictModel):
    """Evaluation during offline training, on training and validation levels."""

    every_steps: Annotated[int, LIMITS["gradient_steps"].field] = Field(default=10_000, ge=1)
    episodes: Annotated[int, LIMITS["episodes"].field] = Field(default=16, ge=1)
    early_stopping_patience: int | None = Field(default=None, ge=1, description="stop after this many evaluations without a better validation return")
    enabled: bool = True


class OfflineConfig(RlgenConfig, TrackingFields):
    """``rlgen train`` config for offline agents (``algo``: bc | bcq | cql | iql | dt | bct).

    Defaults follow the reference study's final settings for 1M expert Procgen data (gen_dgrl,
    ``procgen/configs/offline/final/``); the algorithm configs in ``configs/offline/`` set them per algorithm.
    """

    #: the default name is the algorithm, dataset and seed (``_name_from_dataset``), not the config file's name
    name_from_file: ClassVar[bool] = False
    #: The algorithms that learn from trajectory windows (their transformer keys are checked).
    SEQUENCE_ALGOS: ClassVar[tuple[str, ...]] = ("dt", "bct")

    algo: str = "bc"
    dataset: str = Field(default="", description="dataset directory (rlgen collect's out_dir)")
    held_out_curve: bool = Field(default=True, description="at each evaluation also log the held-out-level return to TensorBoard "
                                 "(never used for selection or early stopping)")
    steps: Annotated[int, LIMITS["gradient_steps"].field] = Field(default=100_000, ge=1, description="gradient steps")
    batch_size: Annotated[int, LIMITS["batch_size"].field] = Field(default=256, ge=1, description="at most the dataset's transitions")
    learning_rate: float = Field(default=5e-4, gt=0)
    gamma: float = Field(default=0.99, gt=0, le=1)
    network: NetworkName = Field(default="auto", description="auto | impala | nature | minigrid_cnn")
    # BCQ
    # Strictly inside (0, 1): d3rlpy keeps the actions with log(pi/max pi) > log(threshold), so 0 fails in math.log
    # when the agent first acts (after training) and 1 keeps no action at all (every step takes action 0).
    bcq_threshold: float = Field(default=0.5, gt=0, lt=1, description="BCQ: keep actions with pi(a|s)/max pi > threshold (0 < threshold < 1)")
    bcq_beta: float = Field(default=0.01, ge=0, description="BCQ: imitator loss + bcq_beta * mean(logits^2) (the reference's 1e-2)")
    # BCQ, CQL, IQL (hard target copies)
    target_update_interval: Annotated[int, LIMITS["gradient_steps"].field] = Field(default=1000, ge=1, description="updates between target-network copies (default 100 for iql, as the reference)")
    # CQL
    cql_alpha: float = Field(default=4.0, ge=0)
    # IQL
    iql_temperature: float = Field(default=3.0, gt=0)
    iql_expectile: float = Field(default=0.8, gt=0, lt=1)
    iql_target_update: Literal["hard", "polyak"] = Field(default="hard", description="IQL targets: hard copy every target_update_interval updates, or Polyak with iql_tau")
    iql_tau: float = Field(default=0.005, gt=0, le=1, description="IQL: Polyak rate (with iql_target_update=polyak)")
    iql_deterministic: bool = Field(default=True, description="IQL acts with its policy's most likely action (the reference's evaluation); false: samples")
    # DT, BCT
    context_length: Annotated[int, LIMITS["context_length"].field] = Field(default=10, ge=1, description="DT, BCT: steps of context")
    n_layers: Annotated[int, LIMITS["n_layers"].field] = Field(default=6, ge=1)
    n_heads: Annotated[int, LIMITS["n_heads"].field] = Field(default=8, ge=1)
    embed_dim: Annotated[int, LIMITS["embed_dim"].field] = Field(default=128, ge=1)
    encoder_chunk: Annotated[int | None, LIMITS["sequence_frames"].field] = Field(
        default=512, ge=0, description="DT, BCT: training encodes a batch's batch_size x context_length frames this many at a time, "
        "recomputing each chunk's encoder activations in the backward pass (peak memory bounded by one chunk; same numerics, "
        "more compute); 0 or null: all frames at once (faster where memory is plentiful, e.g. a large GPU)")
    dt_target_return: float | None = Field(default=None, description="DT: return to condition on (default: dt_target_return_scale x the dataset's best episode return)")
    dt_target_return_scale: float = Field(default=5.0, gt=0)
    eval: OfflineEvalSettings = Field(default_factory=OfflineEvalSettings)
    eval_num_envs: int = Field(default=16, ge=1)
    checkpoint_every: Annotated[int | None, LIMITS["gradient_steps"].field] = Field(
        default=None, ge=1, description="gradient steps between resumable checkpoints; at most (and by default) a tenth of steps")
    progress: bool = True

    def checkpoint_interval(self) -> int:
        """Gradient steps between resumable checkpoints: ``min(checkpoint_every, ceil(steps / 10))``, as
        online runs (``rlgen.config.checkpoint_interval``), so a kill never loses more than a tenth of a run."""
        return checkpoint_interval(self.checkpoint_every, self.steps)

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
    def _name_from_dataset(cls, data: Any) -> Any:
        """Without an explicit ``name``, a run is named by what varies between runs of one config file:
        ``<algo>-<dataset directory name>-s<seed>`` (so ``out_dir`` defaults to ``runs/cql-coinrun-expert-1M-s0``
        and a second dataset or seed never lands in the first run's directory)."""
        if isinstance(data, dict) and "name" not in data and data.get("dataset"):
            data = {**data, "name": f"{data.get('algo', 'bc')}-{Path(str(data['dataset'])).name}-s{data.get('seed', 0)}"}
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
        allowed = tuple(dict.fromkeys((*OFFLINE_ALGOS, *registered_algos(cls))))  # built-ins first, registered after
        if v not in allowed:
            raise ValueError(f"algo {v!r} is not one of: {', '.join(allowed)} (or ppo, ppo_jax for online training)")
        return v

    @model_validator(mode="after")
    def _offline_checks(self) -> "OfflineConfig":
        if not self.dataset:
            raise ValueError("`dataset` is required: the directory of a dataset made by `rlgen collect`")
        if self.algo in self.SEQUENCE_ALGOS:
            if self.embed_dim % self.n_heads:
                raise ValueError(f"embed_dim={self.embed_dim} must be divisible by n_heads={self.n_heads}")
            frames, limit = self.batch_size * self.context_length, LIMITS["sequence_frames"]
            if frames > limit.value:
                raise ValueError(f"key `batch_size` = {self.batch_size}: batch_size x context_length = {self.batch_size:,} x "
                                 f"{self.context_length:,} = {frames:,} frames; at most {limit.value:,} ({limit.why})")  # fmt: skip
            params, limit = 12 * self.n_layers * self.embed_dim**2, LIMITS["transformer_params"]
            if params > limit.value:
                raise ValueError(f"key `n_layers` = {self.n_layers}: with embed_dim={self.embed_dim:,} the transformer has about {params:,} "
                                 f"parameters; at most {limit.value:,} ({limit.why})")  # fmt: skip
        return self
