"""What a run reads, checked before torch, d3rlpy, SB3 or JAX load: its dataset and its run directory.

``rlgen train`` (and :func:`rlgen.agents.train`) runs the registered algorithm's ``check`` before it imports
the trainer, so a missing dataset, another env's dataset, a batch larger than the dataset or an ``out_dir``
holding another experiment is one line within a second, not after seconds of imports. The trainers run
the same checks again: they can be called on their own.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from rlgen.agents.run_dir import RESUME_NEUTRAL_KEYS as ONLINE_RESUME_NEUTRAL_KEYS
from rlgen.agents.run_dir import resume_preamble
from rlgen.config import OfflineConfig, OnlineConfig
from rlgen.data import load_dataset
from rlgen.errors import ConfigError

#: The offline run directory's resumable checkpoint and its state file (``rlgen.agents.offline`` uses these).
CHECKPOINT_DIR = "checkpoints/latest"
STATE_FILE = f"{CHECKPOINT_DIR}/state.json"
#: Config keys a resumed offline run may change: how long, how it shows progress, where it runs.
RESUME_NEUTRAL_KEYS = ("steps", "progress", "device")
#: Online runs' resumable checkpoints (``rlgen.agents.ppo_sb3.LATEST``, ``rlgen.agents.ppo_jax.agent.LATEST``) and state file.
PPO_LATEST = "checkpoints/latest.pt"
PPO_JAX_LATEST = "checkpoints/latest.msgpack"
ONLINE_STATE = "checkpoints/state.json"


def check_batch_size(cfg: OfflineConfig, num_transitions: int) -> None:
    """``batch_size`` must not exceed the dataset (sampling with replacement would allow it, at a cost of GBs for nothing)."""
    if cfg.batch_size > num_transitions:
        raise ConfigError(f"batch_size={cfg.batch_size:,} is larger than the dataset {cfg.dataset!r} ({num_transitions:,} transitions); "
                          f"use batch_size <= {num_transitions:,}")  # fmt: skip


def check_offline_inputs(cfg: OfflineConfig) -> Any:
    """The dataset (readable, of ``cfg.env``, at least ``batch_size`` transitions) and the run directory (empty,
    or a run of the same config); returns the opened dataset.

    Raises:
        RlgenError: one line naming the path or key at fault.
    """
    ds = load_dataset(cfg.dataset, expect_env=cfg.env)
    check_batch_size(cfg, ds.num_transitions)
    resume_preamble(Path(str(cfg.out_dir)), cfg, CHECKPOINT_DIR, STATE_FILE, cfg.steps, steps_key="step", ignore=RESUME_NEUTRAL_KEYS)
    return ds


def _check_online(cfg: OnlineConfig, latest: str, ignore: Iterable[str]) -> None:
    resume_preamble(Path(str(cfg.out_dir)), cfg, latest, ONLINE_STATE, cfg.total_steps, ignore=ignore)


def check_ppo_inputs(cfg: OnlineConfig) -> None:
    """``algo: ppo``: the run directory is empty or a run of the same config (as ``train_ppo`` checks)."""
    _check_online(cfg, PPO_LATEST, ONLINE_RESUME_NEUTRAL_KEYS)


def check_ppo_jax_inputs(cfg: OnlineConfig) -> None:
    """``algo: ppo_jax``: the run directory is empty or a run of the same config (as ``train_ppo_jax`` checks)."""
    _check_online(cfg, PPO_JAX_LATEST, (*ONLINE_RESUME_NEUTRAL_KEYS, "log_every_steps"))
