"""Evaluate any policy on a split's training, validation or held-out levels; the generalization gap.

``evaluate_on_levels`` runs complete episodes on a fixed list of levels drawn (seeded) from the
chosen level set, several envs at once, and records return, length and level of every episode.
The policy is any object with ``act(obs, deterministic=...) -> actions`` taking a batch of
observations ``(B, *obs_shape)`` and returning ``(B,)`` integer actions. Policies with
``episodic = True`` (DT, BCT) also get ``reset(keys)`` when episodes start, ``keys=`` in ``act``
naming each row's episode, and ``observe(keys, rewards)`` after each step.

An evaluation is a function of (policy, level set, seed) alone, whatever was evaluated before it:
the generators sampled actions come from are seeded from (seed, level set) for the evaluation and
restored afterwards (see :func:`seeded_policy_rngs`; a policy with its own generator gets
``reseed(seed)``).
"""

from __future__ import annotations

import dataclasses
import math
import random
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Protocol

import numpy as np

from rlgen.envs import WHICH, LevelSplit, get_suite, make_env
from rlgen.errors import RlgenError
from rlgen.run_statistics import bootstrap_mean_ci, episode_gap_ci

__all__ = ["EvalResult", "Gap", "Policy", "RandomPolicy", "bootstrap_mean_ci", "evaluate_on_levels", "evaluation_levels",
           "generalization_gap", "policy_seed", "seeded_policy_rngs"]  # fmt: skip


class Policy(Protocol):
    def act(self, obs: np.ndarray, deterministic: bool = False) -> np.ndarray: ...


class RandomPolicy:
    """Uniform random actions: the floor every agent must beat."""

    def __init__(self, num_actions: int, seed: int = 0) -> None:
        self.num_actions = num_actions
        self._rng = np.random.default_rng(seed)

    def act(self, obs: np.ndarray, deterministic: bool = False) -> np.ndarray:
        return self._rng.integers(0, self.num_actions, size=len(obs))

    def reseed(self, seed: int | list[int]) -> None:
        self._rng = np.random.default_rng(seed)


@dataclasses.dataclass(frozen=True)
class EvalResult:
    """Per-episode results of one evaluation. Arrays have shape ``(episodes,)``.

    ``normalized`` is None where the suite has no published return range.
    """

    env: str
    which: str
    seed: int
    deterministic: bool
    levels: np.ndarray
    returns: np.ndarray
    lengths: np.ndarray
    normalized: np.ndarray | None

    @property
    def mean_return(self) -> float:
        return float(np.mean(self.returns))

    @property
    def mean_normalized(self) -> float | None:
        return None if self.normalized is None else float(np.mean(self.normalized))

    @property
    def scores(self) -> np.ndarray:
        """Normalized returns where available, raw returns otherwise."""
        return self.normalized if self.normalized is not None else self.returns

    def to_row(self, **extra: Any) -> dict[str, Any]:
        """One ``results.jsonl`` row; ``extra`` adds agent, algo, step, run..."""
        return {
            **extra,
            "env": self.env,
            "which": self.which,
            "seed": self.seed,
            "deterministic": self.deterministic,
            "episodes": int(len(self.returns)),
            "mean_return": self.mean_return,
            "mean_normalized": self.mean_normalized,
            "levels": self.levels.tolist(),
            "returns": self.returns.tolist(),
            "lengths": self.lengths.tolist(),
            "normalized": None if self.normalized is None else self.normalized.tolist(),
            "time": time.time(),
        }


def evaluation_levels(split: LevelSplit, which: str, episodes: int, seed: int = 0) -> np.ndarray:
    """The fixed list of ``episodes`` levels to evaluate on, a function of the split, set and seed.

    Distinct levels while the set has enough (a seeded uniform sample); a set smaller than
    ``episodes`` is cycled through in seeded random order, each level ``episodes / len`` times.
    """
    if episodes < 1:
        raise RlgenError(f"episodes must be >= 1, got {episodes}")
    levels = split.levels(which)
    rng = np.random.default_rng([seed, WHICH.index(which)])
    if len(levels) <= 10_000_000:
        pool = levels.to_array()
        if episodes <= len(pool):
            return np.sort(rng.choice(pool, size=episodes, replace=False))
        reps = math.ceil(episodes / len(pool))
        return np.concatenate([rng.permutation(pool) for _ in range(reps)])[:episodes]
    chosen: set[int] = set()
    while len(chosen) < episodes:
        chosen.update(int(x) for x in levels.sample(rng, size=episodes - len(chosen)))
    return np.array(sorted(chosen), dtype=np.int64)


def policy_seed(seed: int, which: str) -> int:
    """The seed of the action-sampling generators for evaluating level set ``which`` with ``seed``."""
    return int(np.random.SeedSequence([seed, WHICH.index(which), 0x5EED]).generate_state(1)[0])


@contextmanager
def seeded_policy_rngs(agent: Any, seed: int) -> Iterator[None]:
    """Seed every generator a policy may sample actions from, and restore the global ones afterwards.

    Seeded: Python's ``random``, numpy's global generator (d3rlpy's DT sampler draws from it), torch's
    CPU and CUDA generators (SB3's ``predict``), and the policy's own generator through its
    ``reseed(seed)`` method when it has one (BC, IQL, BCT, the random policy). The globals are put
    back as they were, so an evaluation inside a training loop leaves training's randomness alone.
    """
    import torch  # seeded even when the policy imports it only on its first action

    py_state, np_state = random.getstate(), np.random.get_state()
    # fork_rng restores the CPU generator and those of the CUDA devices already in use
    cuda = list(range(torch.cuda.device_count())) if torch.cuda.is_initialized() else []
    with torch.random.fork_rng(devices=cuda):
        try:
            random.seed(seed)
            np.random.seed(seed)
            torch.manual_seed(seed)
            reseed = getattr(agent, "reseed", None)
            if callable(reseed):
                reseed(seed)
            yield
        finally:
            random.setstate(py_state)
            np.random.set_state(np_state)


def evaluate_on_levels(
    agent: Policy,
    split: LevelSplit,
    which: str = "held_out",
    episodes: int = 100,
    seed: int = 0,
    num_envs: int = 16,
    deterministic: bool = False,
    levels: Sequence[int] | None = None,
) -> EvalResult:
    """Run ``episodes`` complete episodes, one per entry of the level list, ``num_envs`` at a time.

    Args:
        agent: anything with ``act(obs, deterministic=...)``.
        split: the level split; ``which`` picks ``"train"``, ``"validation"`` or ``"held_out"``.
        episodes: number of episodes (and entries in the level list).
        seed: fixes the level list, the envs' randomness and (with ``which``) the policy's sampled actions.
        num_envs: episodes run in parallel (the agent sees batches of up to this many).
        deterministic: greedy actions instead of sampled ones.
        levels: an explicit level list instead of ``evaluation_levels(...)``; each must be a
            ``which`` level.

    Returns:
        ``EvalResult`` with arrays in the order of the level list.
    """
    level_list = np.asarray(levels if levels is not None else evaluation_levels(split, which, episodes, seed), dtype=np.int64)
    allowed = split.levels(which)
    outside = ~allowed.contains(level_list)
    if outside.any():
        raise RlgenError(f"levels {level_list[outside][:5].tolist()} are not {which} levels of {split.id}")
    with seeded_policy_rngs(agent, policy_seed(seed, which)):
        returns, lengths = _run_episodes(agent, split, which, level_list, seed, num_envs, deterministic)
    suite = get_suite(split.suite)
    normalized = suite.normalize_returns(split.env, returns, split.options)
    return EvalResult(split.id, which, seed, deterministic, level_list, returns, lengths, normalized)


def _run_episodes(agent: Policy, split: LevelSplit, which: str, level_list: np.ndarray, seed: int, num_envs: int,
                  deterministic: bool) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Returns and lengths, shape ``(len(level_list),)``, of one episode per entry of the level list."""
    n = len(level_list)
    returns = np.zeros(n, dtype=np.float64)
    lengths = np.zeros(n, dtype=np.int64)

    # Each slot is a one-env vector env pinned to one level; when its episode ends, the slot
    # moves to the next level of the list. Exact level control costs a Python loop over slots.
    slots: list[dict[str, Any]] = []
    next_episode = 0
    # Sequence models (DT, BCT) condition on the episode so far: tell them where episodes start
    # (reset), which episode each row is (keys) and the rewards that came back (observe).
    episodic = bool(getattr(agent, "episodic", False))

    def start(slot: dict[str, Any] | None) -> dict[str, Any] | None:
        nonlocal next_episode
        if slot is not None:
            slot["env"].close()
        if next_episode >= n:
            return None
        k = next_episode
        next_episode += 1
        env = make_env(split, which, num_envs=1, seed=seed * 100_003 + k, levels=[int(level_list[k])])
        obs, info = env.reset()
        if episodic:
            agent.reset([k])  # type: ignore[attr-defined]
        if int(info["level"][0]) != level_list[k]:  # pragma: no cover - guards the suites' level control
            raise RuntimeError(f"env started level {int(info['level'][0])}, expected {level_list[k]}")
        return {"env": env, "episode": k, "obs": obs[0], "return": 0.0, "length": 0}

    for _ in range(min(num_envs, n)):
        slots.append(start(None))  # type: ignore[arg-type]
    active = [s for s in slots if s is not None]
    while active:
        batch = np.stack([s["obs"] for s in active])
        if episodic:
            keys = [s["episode"] for s in active]
            actions = np.asarray(agent.act(batch, deterministic=deterministic, keys=keys))  # type: ignore[call-arg]
        else:
            actions = np.asarray(agent.act(batch, deterministic=deterministic))
        still: list[dict[str, Any]] = []
        step_rewards = []
        for s, a in zip(active, actions):
            obs, reward, terminated, truncated, _ = s["env"].step(np.asarray([a]))
            step_rewards.append(float(reward[0]))
            s["return"] += float(reward[0])
            s["length"] += 1
            if terminated[0] or truncated[0]:
                returns[s["episode"]] = s["return"]
                lengths[s["episode"]] = s["length"]
                nxt = start(s)
                if nxt is not None:
                    still.append(nxt)
            else:
                s["obs"] = obs[0]
                still.append(s)
        if episodic:
            agent.observe(keys, np.asarray(step_rewards))  # type: ignore[attr-defined]
        active = still
    return returns, lengths


@dataclasses.dataclass(frozen=True)
class Gap:
    """Generalization gap = mean train score - mean held-out score, with a bootstrap CI."""

    train_mean: float
    held_out_mean: float
    gap: float
    ci_low: float
    ci_high: float
    confidence: float
    normalized: bool

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def generalization_gap(
    train: EvalResult | np.ndarray,
    held_out: EvalResult | np.ndarray,
    n_boot: int = 10_000,
    confidence: float = 0.95,
    seed: int = 0,
) -> Gap:
    """Gap of normalized returns (raw returns where no normalization exists), with a percentile
    bootstrap CI that resamples the train and held-out episodes independently.

    This is the gap of one run, and its CI measures evaluation noise only; across training seeds
    use ``rlgen.run_statistics.game_estimate`` (what ``rlgen report`` does)."""
    normalized = not (isinstance(train, EvalResult) and train.normalized is None)
    a = np.asarray(train.scores if isinstance(train, EvalResult) else train, dtype=np.float64)
    b = np.asarray(held_out.scores if isinstance(held_out, EvalResult) else held_out, dtype=np.float64)
    if len(a) == 0 or len(b) == 0:
        raise RlgenError("generalization_gap needs at least one train and one held-out episode")
    low, high = episode_gap_ci(a, b, n_boot, confidence, seed)
    return Gap(
        train_mean=float(a.mean()),
        held_out_mean=float(b.mean()),
        gap=float(a.mean() - b.mean()),
        ci_low=low,
        ci_high=high,
        confidence=confidence,
        normalized=normalized,
    )
