"""What a run reads, checked before torch, d3rlpy, SB3 or JAX load: its dataset, its run directory, its loggers.

``rlgen train`` (and :func:`rlgen.agents.train`) runs the registered algorithm's ``check`` before it imports
the trainer, so a missing dataset, another env's dataset, a batch larger than the dataset or an ``out_dir``
holding another experiment is one line within a second, not after seconds of imports. The trainers run
the same checks again: they can be called on their own.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from rlgen.agents.run_dir import RESUME_NEUTRAL_KEYS as ONLINE_RESUME_NEUTRAL_KEYS
from rlgen.agents.run_dir import SameAs, resume_preamble
from rlgen.agents.trackers import check_loggers
from rlgen.config import OfflineConfig, OnlineConfig
from rlgen.data import load_dataset
from rlgen.data.format import manifest_digest
from rlgen.errors import ConfigError, DatasetError

#: The offline run directory's resumable checkpoint and its state file (``rlgen.agents.offline`` uses these).
CHECKPOINT_DIR = "checkpoints/latest"
STATE_FILE = f"{CHECKPOINT_DIR}/state.json"
#: Config keys a resumed offline run may change: how long, how it shows progress, where it runs, how often it
#: saves, where the directory is (a moved run resumes), what TensorBoard and the other loggers show, how DT/BCT chunk
#: the encoder (memory, not numerics; runs from before the key resume). ``dataset`` is compared by content (:func:`same_dataset`).
RESUME_NEUTRAL_KEYS = ("steps", "progress", "device", "checkpoint_every", "out_dir", "name", "held_out_curve", "logger", "wandb",
                       "encoder_chunk")
#: Online runs' resumable checkpoints (``rlgen.agents.ppo_sb3.LATEST``, ``rlgen.agents.ppo_jax.agent.LATEST``) and state file.
PPO_LATEST = "checkpoints/latest.pt"
PPO_JAX_LATEST = "checkpoints/latest.msgpack"
ONLINE_STATE = "checkpoints/state.json"


def check_batch_size(cfg: OfflineConfig, num_transitions: int) -> None:
    """``batch_size`` must not exceed the dataset (sampling with replacement would allow it, at a cost of GBs for nothing)."""
    if cfg.batch_size > num_transitions:
        raise ConfigError(f"batch_size={cfg.batch_size:,} is larger than the dataset {cfg.dataset!r} ({num_transitions:,} transitions); "
                          f"use batch_size <= {num_transitions:,}")  # fmt: skip


def dataset_digest(ds: Any) -> str:
    """What a dataset holds, independent of where it lies: the sha256 of its manifest's canonical JSON (which
    lists every shard's sha256 and that of ``episodes.jsonl``), with its parent's for a subset."""
    parts = [manifest_digest(ds.manifest)]
    if ds.base is not ds:
        parts.append(manifest_digest(ds.base.manifest))
    return hashlib.sha256(":".join(parts).encode()).hexdigest()


def same_dataset(path: str, digest: str) -> SameAs:
    """For ``check_same_config``: a run's saved ``dataset`` names today's dataset (``path``, content ``digest``)
    when the digests agree, wherever each lies; runs saved before digests were recorded compare resolved paths."""

    def same(saved_path: Any, resolved: Any) -> bool:
        saved = resolved.get("dataset") if isinstance(resolved, dict) else None
        if isinstance(saved, dict) and isinstance(saved.get("digest"), str):
            return saved["digest"] == digest
        return isinstance(saved_path, str) and Path(saved_path).resolve() == Path(path).resolve()

    return same


def check_offline_inputs(cfg: OfflineConfig) -> Any:
    """The dataset (readable, of ``cfg.env``, at least ``batch_size`` transitions) and the run directory (empty,
    or a run of the same config); returns the opened dataset.

    Raises:
        RlgenError: one line naming the path or key at fault.
    """
    check_loggers(cfg)
    if not Path(str(cfg.dataset)).exists():  # e.g. a shipped config's default, in a new user's empty directory
        raise DatasetError(f"no dataset at {str(cfg.dataset)!r} (no such directory): make one with `rlgen collect` "
                           "(`rlgen configs ls collect` lists the shipped collect configs), then pass dataset=DIR "
                           "(`rlgen datasets ls` lists those under ./data)")  # fmt: skip
    ds = load_dataset(cfg.dataset, expect_env=cfg.env)
    check_batch_size(cfg, ds.num_transitions)
    resume_preamble(Path(str(cfg.out_dir)), cfg, CHECKPOINT_DIR, STATE_FILE, cfg.steps, steps_key="step", ignore=RESUME_NEUTRAL_KEYS,
                    same={"dataset": same_dataset(cfg.dataset, dataset_digest(ds))})
    return ds


def _check_online(cfg: OnlineConfig, latest: str, ignore: Iterable[str]) -> None:
    check_loggers(cfg)
    resume_preamble(Path(str(cfg.out_dir)), cfg, latest, ONLINE_STATE, cfg.total_steps, ignore=ignore)


def check_ppo_inputs(cfg: OnlineConfig) -> None:
    """``algo: ppo``: the run directory is empty or a run of the same config (as ``train_ppo`` checks)."""
    _check_online(cfg, PPO_LATEST, ONLINE_RESUME_NEUTRAL_KEYS)


def check_ppo_jax_inputs(cfg: OnlineConfig) -> None:
    """``algo: ppo_jax``: the run directory is empty or a run of the same config (as ``train_ppo_jax`` checks)."""
    _check_online(cfg, PPO_JAX_LATEST, (*ONLINE_RESUME_NEUTRAL_KEYS, "log_every_steps"))
