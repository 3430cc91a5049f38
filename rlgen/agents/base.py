"""The interface every rlgen agent has, and what a trainer is.

An agent acts on batches (``act``), says how many actions it has and whether it conditions on the
episode so far (``episodic``; then evaluation calls ``reset`` and ``observe``), and saves itself to one
path that ``load`` (a classmethod) reads back into an equal agent. What each ``save`` writes is the
agent's own format (a weights-only ``.pt``, a msgpack file, a model directory), self-contained: loading
needs neither the dataset nor the run directory. Evaluation accepts agents through
``rlgen.evaluation.episodes.Policy``/``EpisodicPolicy``, which this protocol extends.

Training is not a method: a *trainer* is ``train(cfg) -> run directory`` (registered per algorithm in
``rlgen.agents.registry``), and each trainer drives its agent its own way: SB3's ``learn``, a jitted
JAX loop, or offline updates (:class:`OfflineLearner`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from rlgen.config import RlgenConfig


@runtime_checkable
class Agent(Protocol):
    """What ``rlgen.agents.load_agent`` returns and evaluation and collection use."""

    num_actions: int
    episodic: bool

    def act(self, obs: np.ndarray, deterministic: bool = False) -> np.ndarray:
        """Actions ``(B,)`` int64 for observations ``(B, *obs_shape)`` as the env gives them."""
        ...

    def save(self, path: str | Path) -> Path:
        """Write the agent to ``path`` (its own format, atomically); returns what ``load`` takes."""
        ...

    @classmethod
    def load(cls, path: str | Path, device: str = "auto") -> "Agent":
        """The agent ``save(path)`` wrote, on ``device``; reads weights and plain data only."""
        ...


@runtime_checkable
class EpisodicAgent(Agent, Protocol):
    """An agent that conditions on the episode so far (DT, BCT): ``episodic = True``, and evaluation tells
    it where episodes start (``reset(keys)``), which episode each row is (``act(..., keys=)``) and what
    rewards came back (``observe(keys, rewards)``)."""

    def act(self, obs: np.ndarray, deterministic: bool = False, keys: Sequence[int] | None = None) -> np.ndarray: ...
    def reset(self, keys: Sequence[int]) -> None: ...
    def observe(self, keys: Sequence[int], rewards: np.ndarray) -> None: ...


@runtime_checkable
class OfflineLearner(Agent, Protocol):
    """An agent the offline training loop updates: one gradient step per batch, and the counters beside its
    weights that a resumed run needs (JSON), so resuming is bit-identical to an uninterrupted run."""

    def update(self, batch: dict[str, Any]) -> dict[str, float]:
        """One update on ``batch`` (``rlgen.data`` sampler keys); returns losses by name (``loss/...``)."""
        ...

    def training_state(self) -> dict[str, Any]: ...
    def restore_training_state(self, state: dict[str, Any]) -> None: ...


#: ``train(cfg) -> run directory``: trains (or resumes, or finds finished) the run ``cfg`` describes.
Trainer = Callable[[RlgenConfig], Path]
