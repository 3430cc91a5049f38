"""Batched evaluation of JAX policies on xland envs: every episode of a batch steps together on device.

The same level list as :func:`rlgen.evaluation.episodes.evaluate_on_levels` (a function of split, set,
episodes and seed) and the same ``EvalResult``; each episode's randomness depends on ``seed``, the set and
its index only, so the result does not depend on the batch size. The policy is a pure function
(:class:`JaxPolicy`), one that conditions on the episode so far (:class:`JaxEpisodicPolicy`: a carry per
episode, as DT's context), or a :class:`~rlgen.evaluation.episodes.RandomPolicy`, whose uniform actions are
then drawn on device.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import numpy as np

from rlgen.envs import WHICH, LevelSplit, normalize_returns
from rlgen.errors import RlgenError
from rlgen.evaluation.episodes import EvalResult, RandomPolicy, level_list_of


class JaxPolicy(NamedTuple):
    """A policy as a pure function: ``act(params, obs, keys, deterministic) -> actions``, with ``obs``
    ``(B, C, V, V)`` uint8, ``keys`` ``(B, 2)`` one PRNG key per episode and step, ``actions`` ``(B,)`` int.

    ``act`` is compiled once per (env, batch size, ``deterministic``): pass the same function object
    for every evaluation of one architecture (``params`` may change freely)."""

    act: Callable[[Any, Any, Any, bool], Any]
    params: Any


class JaxEpisodicPolicy(NamedTuple):
    """A policy that conditions on the episode so far (DT, BCT), as pure functions over a carry with one row
    per episode: ``init(params, batch) -> carry``, ``act(params, carry, obs, keys, deterministic) -> (actions,
    carry)`` (shapes as :class:`JaxPolicy`'s), ``observe(carry, rewards (B,)) -> carry`` after each step.

    Compiled once per (env, batch size, ``deterministic``, ``act``): pass the same function objects for every
    evaluation of one architecture (what differs between agents, e.g. DT's target return, belongs in ``params``)."""

    init: Callable[[Any, int], Any]
    act: Callable[..., tuple[Any, Any]]
    observe: Callable[[Any, Any], Any]
    params: Any


def _eval_program(jenv: Any, act: Callable[..., Any] | None, batch: int, deterministic: bool,
                  episodic: tuple[Callable[..., Any], Callable[..., Any]] | None = None) -> Callable[..., Any]:  # fmt: skip
    """``run(params, levels (batch,), keys (batch, 2)) -> (returns, lengths)``: one episode per row,
    all rows at once, until every episode ended. ``act=None`` acts uniformly at random; with ``episodic``
    (``(init, observe)`` of a :class:`JaxEpisodicPolicy` whose ``act`` is ``act``) a carry follows each row's episode."""
    import jax

    jnp = jax.numpy

    def run(params: Any, levels: Any, keys: Any) -> tuple[Any, Any]:
        reset_keys = jax.vmap(lambda k: jax.random.fold_in(k, 0))(keys)
        policy_keys = jax.vmap(lambda k: jax.random.fold_in(k, 1))(keys)
        state, obs = jax.vmap(jenv.reset)(reset_keys, levels)

        def step_actions(obs: Any, t: Any, carry: Any) -> tuple[Any, Any]:
            step_keys = jax.vmap(lambda k: jax.random.fold_in(k, t))(policy_keys)  # per episode: batching-independent
            if episodic is not None:
                return act(params, carry, obs, step_keys, deterministic)
            if act is None:
                return jax.vmap(lambda k: jax.random.randint(k, (), 0, jenv.num_actions))(step_keys), carry
            return act(params, obs, step_keys, deterministic), carry

        def cond(c: tuple[Any, ...]) -> Any:
            t, _, _, done, _, _, _ = c
            return (t < jenv.max_steps) & ~jnp.all(done)

        def body(c: tuple[Any, ...]) -> tuple[Any, ...]:
            t, state, obs, done, ret, length, carry = c
            actions, carry = step_actions(obs, t, carry)
            state, obs, reward, terminated, truncated = jax.vmap(jenv.step)(state, actions)
            if episodic is not None:
                carry = episodic[1](carry, reward)
            ret = ret + jnp.where(done, 0.0, reward)
            length = length + jnp.where(done, 0, 1)
            return t + 1, state, obs, done | terminated | truncated, ret, length, carry

        carry = episodic[0](params, batch) if episodic is not None else ()
        init = (jnp.zeros((), jnp.int32), state, obs, jnp.zeros(batch, bool), jnp.zeros(batch, jnp.float32), jnp.zeros(batch, jnp.int32), carry)
        _, _, _, _, ret, length, _ = jax.lax.while_loop(cond, body, init)
        return ret, length

    return jax.jit(run)


#: (id(jenv), id(act), batch, deterministic) -> (jenv, act, program, episodic functions); holding the objects
#: keeps their ids from being reused by others while the entry lives.
_PROGRAMS: dict[tuple[int, int, int, bool], tuple[Any, Any, Callable[..., Any], Any]] = {}


def evaluate_jax(
    policy: JaxPolicy | JaxEpisodicPolicy | RandomPolicy,
    split: LevelSplit,
    which: str = "held_out",
    episodes: int = 100,
    seed: int = 0,
    num_envs: int = 1024,
    deterministic: bool = False,
    levels: Sequence[int] | None = None,
) -> EvalResult:
    """Run ``episodes`` episodes of ``policy`` on ``split``'s ``which`` levels, ``num_envs`` at once on device.

    Args: as :func:`rlgen.evaluation.episodes.evaluate_on_levels`; ``split`` must be an xland split.
    """
    import jax

    from rlgen.envs.xland import jax_env_for_split

    if not isinstance(policy, (JaxPolicy, JaxEpisodicPolicy, RandomPolicy)):
        raise RlgenError(f"evaluate_jax takes a JaxPolicy, a JaxEpisodicPolicy or a RandomPolicy, got {type(policy).__name__}")
    if num_envs < 1:
        raise RlgenError(f"num_envs must be >= 1, got {num_envs}")
    level_list = level_list_of(split, which, episodes, seed, levels)
    jenv = jax_env_for_split(split)
    act, params = (policy.act, policy.params) if isinstance(policy, (JaxPolicy, JaxEpisodicPolicy)) else (None, None)
    episodic = (policy.init, policy.observe) if isinstance(policy, JaxEpisodicPolicy) else None
    n = len(level_list)
    batch = min(num_envs, n)
    key = (id(jenv), id(act), batch, bool(deterministic))
    if key not in _PROGRAMS or _PROGRAMS[key][3] != episodic:
        _PROGRAMS[key] = (jenv, act, _eval_program(jenv, act, batch, bool(deterministic), episodic), episodic)
    run = _PROGRAMS[key][2]
    base = jax.random.fold_in(jax.random.PRNGKey(seed), WHICH.index(which))
    returns = np.zeros(n, dtype=np.float64)
    lengths = np.zeros(n, dtype=np.int64)
    for lo in range(0, n, batch):
        idx = np.arange(lo, lo + batch)
        valid = idx < n
        idx = np.where(valid, idx, 0)  # pad the last batch; padded rows are dropped
        keys = jax.vmap(lambda i: jax.random.fold_in(base, i))(jax.numpy.asarray(idx, dtype=jax.numpy.uint32))
        ret, length = jax.device_get(run(params, jax.numpy.asarray(level_list[idx], dtype=jax.numpy.int32), keys))
        returns[idx[valid]] = np.asarray(ret)[valid]
        lengths[idx[valid]] = np.asarray(length)[valid]
    return EvalResult(split.id, which, seed, bool(deterministic), level_list, returns, lengths, normalize_returns(split, returns))
