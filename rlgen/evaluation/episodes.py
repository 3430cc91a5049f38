"""Evaluate any policy on a split's training, validation or held-out levels, one episode per level of a fixed list.

``evaluate_on_levels`` runs complete episodes on a fixed list of levels drawn (seeded) from the
chosen level set, several envs at once, and records return, length and level of every episode.
The policy may be any of (:func:`as_policy` turns each into a :class:`DrivenPolicy`):

* an object with ``act(obs, deterministic=False) -> actions`` (a :class:`Policy`): a batch of
  observations ``(B, *obs_shape)`` in, ``(B,)`` integer actions out. One that is also an
  :class:`EpisodicPolicy` with ``episodic = True`` (DT, BCT) gets ``reset(keys)`` when episodes
  start, ``keys=`` in ``act`` naming each row's episode, and ``observe(keys, rewards)`` after each step;
* a plain function ``obs -> actions`` (greedy or not is the function's business);
* a stable-baselines3 model or policy (``predict(obs, deterministic=...) -> (actions, state)``).

An evaluation is a function of (policy, level set, seed) alone, whatever was evaluated before it and
however many episodes run at once (``num_envs``), for every policy that samples by inverse CDF from the
uniforms evaluation gives it (:class:`UniformSampler`: rlgen's random policy, PPO, BC, IQL, DT, BCT and the JAX
offline agents):
each episode's uniforms come from a generator of its own, seeded by (seed, level set, episode index), so
batching episodes differently changes no action (up to float rounding of batched forward passes). Other
policies draw from generators seeded from (seed, level set) for the evaluation and restored afterwards
(see :func:`seeded_policy_rngs`; a policy with its own generator gets ``reseed(seed)``): their sampled
actions are a function of (seed, level set, num_envs), and rows record ``num_envs``.
"""

from __future__ import annotations

import dataclasses
import math
import random
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Protocol, runtime_checkable

import numpy as np

from rlgen.envs import WHICH, LevelSplit, make_env, normalize_returns
from rlgen.errors import RlgenError


@runtime_checkable
class Policy(Protocol):
    """Acts on a batch: observations ``(B, *obs_shape)`` as the env gives them -> ``(B,)`` integer actions."""

    def act(self, obs: np.ndarray, deterministic: bool = False) -> np.ndarray: ...


@runtime_checkable
class EpisodicPolicy(Protocol):
    """A policy that conditions on the episode so far (DT, BCT): evaluation tells it where episodes start
    (``reset``), which episode each row is (``keys``) and what rewards arrived (``observe``).
    ``episodic`` says whether it uses them (the offline agents all have the methods)."""

    episodic: bool

    def act(self, obs: np.ndarray, deterministic: bool = False, keys: Sequence[int] | None = None) -> np.ndarray: ...
    def reset(self, keys: Sequence[int]) -> None: ...
    def observe(self, keys: Sequence[int], rewards: np.ndarray) -> None: ...


@runtime_checkable
class Reseedable(Protocol):
    """A policy that samples from a generator of its own: evaluation seeds it (``reseed(seed)``)."""

    def reseed(self, seed: Any) -> None: ...


class UniformSampler(Protocol):
    """A policy that samples by inverse CDF from uniforms it is given: ``act(obs, deterministic=False,
    uniforms=u)`` with ``u`` of shape ``(B,)`` in [0, 1), one per row (:func:`sample_from_uniforms`);
    ``samples_from_uniforms = True`` says so. ``always_greedy = True`` says it acts greedily whatever is
    asked (BCQ, CQL): evaluation records the acting mode actually used."""

    samples_from_uniforms: bool

    def act(self, obs: np.ndarray, deterministic: bool = False, uniforms: np.ndarray | None = None) -> np.ndarray: ...


def sample_from_uniforms(probs: Any, uniforms: np.ndarray) -> np.ndarray:
    """Actions ``(B,)`` drawn from action probabilities ``probs`` ``(B, A)`` (any non-negative weights) by
    inverse CDF with one uniform in [0, 1) per row: action ``j`` when ``cdf[j-1] <= u * total < cdf[j]``.
    The same uniform and probabilities give the same action whatever the rest of the batch."""
    p = np.asarray(probs, dtype=np.float64)
    cdf = np.cumsum(p, axis=1)
    u = np.asarray(uniforms, dtype=np.float64).reshape(-1, 1) * cdf[:, -1:]
    return np.minimum((cdf <= u).sum(axis=1), p.shape[1] - 1).astype(np.int64)


def sb3_actions(policy: Any, obs: np.ndarray, deterministic: bool, uniforms: np.ndarray | None = None) -> np.ndarray:
    """Actions of a stable-baselines3 model or policy: with ``uniforms`` and a categorical action
    distribution, drawn from its probabilities by :func:`sample_from_uniforms`; else ``predict``."""
    sb3_policy = getattr(policy, "policy", policy)
    if deterministic or uniforms is None or not hasattr(sb3_policy, "get_distribution"):
        return np.asarray(policy.predict(obs, deterministic=deterministic)[0])
    import torch

    sb3_policy.set_training_mode(False)
    with torch.no_grad():
        obs_tensor, _ = sb3_policy.obs_to_tensor(obs)
        dist = getattr(sb3_policy.get_distribution(obs_tensor), "distribution", None)
    if not isinstance(dist, torch.distributions.Categorical):  # not a discrete action space: SB3 samples itself
        return np.asarray(policy.predict(obs, deterministic=False)[0])
    return sample_from_uniforms(dist.probs.cpu().numpy(), uniforms)


@runtime_checkable
class Predictor(Protocol):
    """stable-baselines3's ``BaseAlgorithm`` and ``BasePolicy``: ``predict(obs, deterministic=) -> (actions, state)``."""

    def predict(self, observation: Any, state: Any = None, episode_start: Any = None, deterministic: bool = False) -> tuple[Any, Any]: ...


class DrivenPolicy:
    """Any accepted policy behind one interface: ``act(obs, deterministic, keys, uniforms)``, ``reset``,
    ``observe``, ``reseed`` (no-ops where the policy has none), ``episodic``, ``samples_from_uniforms``
    (it uses ``uniforms``: see :class:`UniformSampler`) and ``always_greedy``."""

    def __init__(self, act: Callable[..., np.ndarray], source: Any, episodic: bool = False, samples_from_uniforms: bool = False) -> None:
        self._act = act
        self.source = source
        self.episodic = episodic
        self.samples_from_uniforms = samples_from_uniforms
        self.always_greedy = bool(getattr(source, "always_greedy", False))

    def act(self, obs: np.ndarray, deterministic: bool = False, keys: Sequence[int] | None = None,
            uniforms: np.ndarray | None = None) -> np.ndarray:  # fmt: skip
        return np.asarray(self._act(obs, deterministic, keys, uniforms))

    def reset(self, keys: Sequence[int]) -> None:
        if self.episodic:
            self.source.reset(keys)

    def observe(self, keys: Sequence[int], rewards: np.ndarray) -> None:
        if self.episodic:
            self.source.observe(keys, rewards)

    def reseed(self, seed: Any) -> None:
        if isinstance(self.source, Reseedable):
            self.source.reseed(seed)


def as_policy(policy: Any) -> DrivenPolicy:
    """``policy`` (an object with ``act``, an SB3 model or policy with ``predict``, or a function ``obs ->
    actions``) as a :class:`DrivenPolicy`.

    Raises:
        RlgenError: ``policy`` is none of these.
    """
    if isinstance(policy, DrivenPolicy):
        return policy
    uniforms = bool(getattr(policy, "samples_from_uniforms", False))
    extra = (lambda u: {"uniforms": u}) if uniforms else (lambda u: {})  # noqa: E731
    if isinstance(policy, EpisodicPolicy) and policy.episodic:
        return DrivenPolicy(lambda obs, det, keys, u: policy.act(obs, deterministic=det, keys=keys, **extra(u)), policy, episodic=True,
                            samples_from_uniforms=uniforms)  # fmt: skip
    if isinstance(policy, Policy):
        return DrivenPolicy(lambda obs, det, keys, u: policy.act(obs, deterministic=det, **extra(u)), policy, samples_from_uniforms=uniforms)
    if isinstance(policy, Predictor):
        return DrivenPolicy(lambda obs, det, keys, u: sb3_actions(policy, obs, det, u), policy, samples_from_uniforms=True)
    if callable(policy):
        return DrivenPolicy(lambda obs, det, keys, u: policy(obs), policy)
    raise RlgenError(f"cannot evaluate a {type(policy).__name__}: give an object with act(obs, deterministic=...), "
                     "a stable-baselines3 model (predict), or a function obs -> actions")  # fmt: skip


class RandomPolicy:
    """Uniform random actions: the floor every agent must beat. ``rlgen.evaluation.jax`` runs it on device."""

    episodic = False
    samples_from_uniforms = True

    def __init__(self, num_actions: int, seed: int = 0) -> None:
        self.num_actions = num_actions
        self._rng = np.random.default_rng(seed)

    def act(self, obs: np.ndarray, deterministic: bool = False, uniforms: np.ndarray | None = None) -> np.ndarray:
        """``(B,)`` uniform actions: from ``uniforms`` (one per row, evaluation's per-episode draws) when
        given, else from the policy's own generator."""
        if uniforms is not None:
            return np.minimum((np.asarray(uniforms) * self.num_actions).astype(np.int64), self.num_actions - 1)
        return self._rng.integers(0, self.num_actions, size=len(obs))

    def reseed(self, seed: int | list[int]) -> None:
        self._rng = np.random.default_rng(seed)


@dataclasses.dataclass(frozen=True)
class EvalResult:
    """Per-episode results of one evaluation. Arrays have shape ``(episodes,)``.

    ``normalized`` is None where the suite has no published return range. ``deterministic`` is how the
    policy acted (greedy: True; BCQ and CQL always), ``deterministic_requested`` what was asked for, and
    ``num_envs`` how many episodes ran at once.
    """

    env: str
    which: str
    seed: int
    deterministic: bool
    levels: np.ndarray
    returns: np.ndarray
    lengths: np.ndarray
    normalized: np.ndarray | None
    num_envs: int | None = None
    deterministic_requested: bool | None = None

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
            "deterministic_requested": self.deterministic if self.deterministic_requested is None else self.deterministic_requested,
            "num_envs": self.num_envs,
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
def seeded_policy_rngs(policy: Any, seed: int) -> Iterator[None]:
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
            if isinstance(policy, Reseedable):
                policy.reseed(seed)
            yield
        finally:
            random.setstate(py_state)
            np.random.set_state(np_state)


def evaluate_on_levels(
    policy: Any,
    split: LevelSplit,
    which: str = "held_out",
    episodes: int = 100,
    seed: int = 0,
    num_envs: int = 16,
    deterministic: bool = False,
    levels: Sequence[int] | None = None,
    on_episode: Callable[[], None] | None = None,
) -> EvalResult:
    """Run ``episodes`` complete episodes, one per entry of the level list, ``num_envs`` at a time.

    Args:
        policy: an object with ``act(obs, deterministic=...)``, a stable-baselines3 model, or a function
            ``obs -> actions`` (see :func:`as_policy`).
        split: the level split; ``which`` picks ``"train"``, ``"validation"`` or ``"held_out"``.
        episodes: number of episodes (and entries in the level list).
        seed: fixes the level list, the envs' randomness and (with ``which``) the policy's sampled actions.
        num_envs: episodes run in parallel (the agent sees batches of up to this many); a
            :class:`UniformSampler` acts the same whatever it is.
        deterministic: greedy actions instead of sampled ones (the result records whether the policy
            acted greedily: an ``always_greedy`` one does either way).
        levels: an explicit level list instead of ``evaluation_levels(...)``; each must be a
            ``which`` level.
        on_episode: called once per finished episode (a progress bar's ``advance``).

    Returns:
        ``EvalResult`` with arrays in the order of the level list.
    """
    driven = as_policy(policy)
    level_list = level_list_of(split, which, episodes, seed, levels)
    with seeded_policy_rngs(driven, policy_seed(seed, which)):
        returns, lengths = _run_episodes(driven, split, which, level_list, seed, num_envs, deterministic, on_episode)
    acted_greedily = bool(deterministic) or driven.always_greedy
    return EvalResult(split.id, which, seed, acted_greedily, level_list, returns, lengths, normalize_returns(split, returns),
                      num_envs=int(num_envs), deterministic_requested=bool(deterministic))  # fmt: skip


def level_list_of(split: LevelSplit, which: str, episodes: int, seed: int, levels: Sequence[int] | None = None) -> np.ndarray:
    """The evaluation's level list: ``levels`` when given (each must be a ``which`` level), else
    :func:`evaluation_levels`."""
    level_list = np.asarray(levels if levels is not None else evaluation_levels(split, which, episodes, seed), dtype=np.int64)
    outside = ~split.levels(which).contains(level_list)
    if outside.any():
        raise RlgenError(f"levels {level_list[outside][:5].tolist()} are not {which} levels of {split.id}")
    return level_list


def _run_episodes(agent: DrivenPolicy, split: LevelSplit, which: str, level_list: np.ndarray, seed: int, num_envs: int,
                  deterministic: bool, on_episode: Callable[[], None] | None = None) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Returns and lengths, shape ``(len(level_list),)``, of one episode per entry of the level list."""
    n = len(level_list)
    uniforms = agent.samples_from_uniforms
    sampling_seed = policy_seed(seed, which)
    returns = np.zeros(n, dtype=np.float64)
    lengths = np.zeros(n, dtype=np.int64)

    # Each slot is a one-env vector env pinned to one level; when its episode ends, the slot
    # moves to the next level of the list. Exact level control costs a Python loop over slots.
    slots: list[dict[str, Any]] = []
    next_episode = 0
    # Sequence models (DT, BCT) condition on the episode so far: tell them where episodes start
    # (reset), which episode each row is (keys) and the rewards that came back (observe).
    episodic = agent.episodic

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
        agent.reset([k])
        if int(info["level"][0]) != level_list[k]:  # pragma: no cover - guards the suites' level control
            raise RuntimeError(f"env started level {int(info['level'][0])}, expected {level_list[k]}")
        fresh: dict[str, Any] = {"env": env, "episode": k, "obs": obs[0], "return": 0.0, "length": 0}
        if uniforms:  # this episode's own draws: the same whichever slots run beside it
            fresh["rng"] = np.random.default_rng([sampling_seed, k])
        return fresh

    for _ in range(min(num_envs, n)):
        slots.append(start(None))  # type: ignore[arg-type]
    active = [s for s in slots if s is not None]
    while active:
        batch = np.stack([s["obs"] for s in active])
        keys = [s["episode"] for s in active]
        draws = np.array([s["rng"].random() for s in active]) if uniforms else None
        actions = agent.act(batch, deterministic=deterministic, keys=keys if episodic else None, uniforms=draws)
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
                if on_episode is not None:
                    on_episode()
                nxt = start(s)
                if nxt is not None:
                    still.append(nxt)
            else:
                s["obs"] = obs[0]
                still.append(s)
        agent.observe(keys, np.asarray(step_rewards))
        active = still
    return returns, lengths
