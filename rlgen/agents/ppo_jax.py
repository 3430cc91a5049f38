"""JAX PPO for XLand-MiniGrid: environment stepping and learning in one jitted ``lax.scan``.

PureJaxRL style: :func:`make_train_chunk` returns a pure function ``chunk(runner, sampler) ->
(runner, metrics)`` that runs ``n_updates`` PPO updates, each a rollout of ``n_steps`` steps in
``num_envs`` vmapped envs (the env is :class:`rlgen.envs.xland.JaxEnv`, same-step autoreset), GAE by a
reverse ``lax.scan`` and ``n_epochs`` x ``num_minibatches`` gradient steps, all nested scans in one
XLA program. The host sees the device only between chunks (``log_every_steps``): TensorBoard
scalars, progress, ladder rungs and checkpoints happen there.

Outside, the same Agent interface as the other agents: :class:`JaxPPOAgent` with ``fit``, ``act``,
``save``, ``load``, plus a batched JAX evaluator (``evaluate_on_levels``) that returns the same
``EvalResult`` rows as :func:`rlgen.evaluation.evaluate_on_levels`, all episodes of a batch at once.

Run directory (``out_dir``), as for SB3 PPO::

    config.yaml                  resolved config, with the resolved LevelSplit and the ruleset file's sha256
    checkpoints/latest.msgpack   params + optimizer state + env steps + PRNG key (resumable)
    checkpoints/state.json       env steps done, whether training finished
    ladder/step_<N>.msgpack      skill-ladder policies
    ladder.json                  each rung: step, checkpoint, mean return on training levels
    tb/ppo_jax/                  TensorBoard: one curve, whatever the number of resumes
    results.jsonl                evaluation rows (``rlgen evaluate``)
    .lock                        held by the process training in the directory

Checkpoints are msgpack (flax serialization), which holds arrays, numbers, strings, lists and dicts
only: reading one runs no code (arrays of object dtype cannot be decoded, numpy refuses them), and
:meth:`JaxPPOAgent.load` checks the params against the network they claim to be. Ladder paths must
stay inside the run directory.

Simplifications, as in PureJaxRL and XLand-MiniGrid's baselines: a time-limit truncation is treated
as a terminal state (no bootstrap from the final observation), and a resumed run starts fresh
episodes (env states are not checkpointed; params, optimizer, step counter and PRNG key are).
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from rlgen.agents.run_dir import (
    LADDER,
    RESUME_NEUTRAL_KEYS,
    TrainingInterrupted,
    check_same_config,
    inside_run_dir,
    locks_run_dir,
    read_ladder,
    read_state,
    stop_on_signals,
)
from rlgen.agents.run_dir import write_json_atomic as _write_json
from rlgen.errors import RlgenError

LATEST = "checkpoints/latest.msgpack"
STATE = "checkpoints/state.json"
FORMAT = "rlgen.ppo_jax/1"

# xminigrid's symbolic codes: 13 tiles, 12 colours; goal encodings hold small ints (< 256).
NUM_TILES, NUM_COLORS, CODE_VOCAB = 13, 12, 256


def _jax() -> Any:
    try:
        import jax  # noqa: PLC0415
    except ImportError as e:  # pragma: no cover - depends on the installation
        from rlgen.errors import DependencyError  # noqa: PLC0415

        raise DependencyError(f"the JAX PPO needs JAX, flax and optax ({e}); install them with: pip install 'rlgen[jax]'") from None
    return jax


# --- network --------------------------------------------------------------------------------------


def _patches_2x2(x: Any) -> Any:
    """``(B, H, W, C)`` -> ``(B, H-1, W-1, 4C)``: every 2x2 window, so that a ``Dense`` on the result is
    a 2x2 VALID convolution. Written as slices and a matmul because XLA's CPU convolution inside
    ``lax.scan`` bodies measured ~60x slower than outside them (7.3 s vs 0.12 s per 4096-sample
    gradient step here); the matmul form runs at the same speed in and out of loops."""
    import jax.numpy as jnp  # noqa: PLC0415

    h, w = x.shape[1] - 1, x.shape[2] - 1
    return jnp.concatenate([x[:, i : i + h, j : j + w, :] for i in (0, 1) for j in (0, 1)], axis=-1)


@lru_cache(maxsize=32)
def make_network(num_actions: int, hidden_dim: int = 256, embed_dim: int = 16) -> Any:
    """Actor-critic over xminigrid's symbolic view ``(B, C, V, V)`` uint8: channel 0 tile ids,
    channel 1 colour ids (each embedded), three 2x2 convolutions (16, 32, 64 channels); channels 2.. (the goal encoding, constant over
    the view) embedded per position. Returns a flax module whose ``apply(params, obs)`` gives
    ``(logits (B, A), value (B,))``. One module object per architecture (cached), so jitted
    functions that close over it are shared by every agent of that architecture."""
    import flax.linen as nn  # noqa: PLC0415
    import jax.numpy as jnp  # noqa: PLC0415

    class ActorCritic(nn.Module):
        num_actions: int
        hidden_dim: int
        embed_dim: int

        @nn.compact
        def __call__(self, obs: Any) -> tuple[Any, Any]:
            x = obs.astype(jnp.int32)
            img = jnp.concatenate(
                [nn.Embed(NUM_TILES, self.embed_dim, name="tile_embed")(x[:, 0]),
                 nn.Embed(NUM_COLORS, self.embed_dim, name="color_embed")(x[:, 1])], axis=-1)  # (B, V, V, 2E)
            for i, ch in enumerate((16, 32, 64)):
                img = nn.relu(nn.Dense(ch, name=f"conv{i}")(_patches_2x2(img)))
            feats = [img.reshape((img.shape[0], -1))]
            if x.shape[1] > 2:
                codes = x[:, 2:, 0, 0]  # (B, K): the goal encoding
                slots = jnp.arange(codes.shape[1]) * CODE_VOCAB
                goal = nn.Embed(codes.shape[1] * CODE_VOCAB, self.embed_dim, name="goal_embed")(codes + slots)
                feats.append(goal.reshape((goal.shape[0], -1)))
            z = nn.relu(nn.Dense(self.hidden_dim, name="torso")(jnp.concatenate(feats, axis=-1)))
            pi = nn.tanh(nn.Dense(self.hidden_dim, name="actor_hidden")(z))
            logits = nn.Dense(self.num_actions, kernel_init=nn.initializers.orthogonal(0.01), name="actor_out")(pi)
            v = nn.tanh(nn.Dense(self.hidden_dim, name="critic_hidden")(z))
            value = nn.Dense(1, kernel_init=nn.initializers.orthogonal(1.0), name="critic_out")(v)
            return logits, value[:, 0]

    return ActorCritic(num_actions=num_actions, hidden_dim=hidden_dim, embed_dim=embed_dim)


# --- the pure training function -------------------------------------------------------------------


class Transition(NamedTuple):
    obs: Any
    action: Any
    log_prob: Any
    value: Any
    reward: Any
    done: Any


class Runner(NamedTuple):
    """Everything the training scan carries: learner state, env states, PRNG key, episode tallies."""

    params: Any
    opt_state: Any
    env_state: Any
    obs: Any
    rng: Any
    ep_return: Any  # (num_envs,) running return of each env's current episode
    ep_length: Any


def gae(rewards: Any, values: Any, dones: Any, last_value: Any, gamma: float, lam: float) -> tuple[Any, Any]:
    """Generalized advantage estimation by a reverse ``lax.scan`` over time (axis 0).

    ``dones[t]`` marks that the episode ended at step ``t`` (so step ``t+1`` belongs to a new one).
    Returns ``(advantages, returns)``, both shaped like ``rewards``.
    """
    jax = _jax()

    def body(carry: tuple[Any, Any], xs: tuple[Any, Any, Any]) -> tuple[tuple[Any, Any], Any]:
        next_adv, next_value = carry
        reward, value, done = xs
        not_done = 1.0 - done.astype(reward.dtype)
        delta = reward + gamma * next_value * not_done - value
        adv = delta + gamma * lam * not_done * next_adv
        return (adv, value), adv

    init = (jax.numpy.zeros_like(last_value), last_value)
    _, adv = jax.lax.scan(body, init, (rewards, values, dones), reverse=True)
    return adv, adv + values


def make_optimizer(settings: Any, total_updates: int) -> Any:
    import optax  # noqa: PLC0415

    s = settings
    steps_per_update = s.n_epochs * s.num_minibatches
    lr: Any = s.learning_rate
    if s.anneal_lr:
        lr = optax.linear_schedule(s.learning_rate, 0.0, transition_steps=max(1, total_updates * steps_per_update))
    return optax.chain(optax.clip_by_global_norm(s.max_grad_norm), optax.adam(lr, eps=1e-5))


def make_train_chunk(jenv: Any, network: Any, optimizer: Any, settings: Any, num_envs: int, n_updates: int) -> Callable[..., Any]:
    """``chunk(runner, sampler) -> (runner, metrics)``: ``n_updates`` PPO updates in one jitted program.

    ``sampler`` (a :class:`rlgen.envs.xland.LevelSampler`) draws each new episode's level from the
    training levels. ``metrics`` are reduced on device to scalars: mean losses and, over the
    episodes that ended in the chunk, sums and counts of returns, lengths and successes.
    """
    jax = _jax()
    import optax  # noqa: PLC0415

    jnp = jax.numpy
    s = settings
    batch = num_envs * s.n_steps
    minibatch = batch // s.num_minibatches

    def loss_fn(params: Any, mb: Transition, adv: Any, targets: Any) -> tuple[Any, dict[str, Any]]:
        logits, value = network.apply(params, mb.obs)
        log_probs = jax.nn.log_softmax(logits)
        log_prob = jnp.take_along_axis(log_probs, mb.action[:, None], axis=1)[:, 0]
        ratio = jnp.exp(log_prob - mb.log_prob)
        adv = (adv - adv.mean()) / (adv.std() + 1e-8)
        pg_loss = -jnp.minimum(ratio * adv, jnp.clip(ratio, 1 - s.clip_range, 1 + s.clip_range) * adv).mean()
        v_clipped = mb.value + jnp.clip(value - mb.value, -s.clip_range, s.clip_range)
        v_loss = 0.5 * jnp.maximum((value - targets) ** 2, (v_clipped - targets) ** 2).mean()
        entropy = -(jnp.exp(log_probs) * log_probs).sum(-1).mean()
        loss = pg_loss + s.vf_coef * v_loss - s.ent_coef * entropy
        info = {
            "policy_loss": pg_loss, "value_loss": v_loss, "entropy": entropy,
            "approx_kl": ((ratio - 1) - jnp.log(ratio)).mean(), "clip_fraction": (jnp.abs(ratio - 1) > s.clip_range).mean(),
        }  # fmt: skip
        return loss, info

    def chunk(runner: Runner, sampler: Any) -> tuple[Runner, dict[str, Any]]:
        def env_step(carry: tuple[Runner, dict[str, Any]], _: Any) -> tuple[tuple[Runner, dict[str, Any]], Transition]:
            runner, stats = carry
            rng, k_act = jax.random.split(runner.rng)
            logits, value = network.apply(runner.params, runner.obs)
            action = jax.random.categorical(k_act, logits)
            log_prob = jnp.take_along_axis(jax.nn.log_softmax(logits), action[:, None], axis=1)[:, 0]
            out = jax.vmap(lambda st, a: jenv.step_autoreset(st, a, sampler))(runner.env_state, action)
            done = out["terminated"] | out["truncated"]
            ep_return = runner.ep_return + out["reward"]
            ep_length = runner.ep_length + 1
            stats = {
                "return_sum": stats["return_sum"] + jnp.sum(jnp.where(done, ep_return, 0.0)),
                "length_sum": stats["length_sum"] + jnp.sum(jnp.where(done, ep_length, 0)),
                "episodes": stats["episodes"] + jnp.sum(done),
                "successes": stats["successes"] + jnp.sum(out["terminated"]),
            }
            transition = Transition(runner.obs, action, log_prob, value, out["reward"], done)
            runner = runner._replace(
                env_state=out["state"], obs=out["obs"], rng=rng,
                ep_return=jnp.where(done, 0.0, ep_return), ep_length=jnp.where(done, 0, ep_length),
            )  # fmt: skip
            return (runner, stats), transition

        def update(carry: tuple[Runner, dict[str, Any]], _: Any) -> tuple[tuple[Runner, dict[str, Any]], dict[str, Any]]:
            (runner, stats), traj = jax.lax.scan(env_step, carry, None, length=s.n_steps)
            _, last_value = network.apply(runner.params, runner.obs)
            adv, targets = gae(traj.reward, traj.value, traj.done, last_value, s.gamma, s.gae_lambda)

            def epoch(state: tuple[Any, Any, Any], _: Any) -> tuple[tuple[Any, Any, Any], dict[str, Any]]:
                params, opt_state, rng = state
                rng, k = jax.random.split(rng)
                perm = jax.random.permutation(k, batch)
                flat = jax.tree_util.tree_map(lambda a: a.reshape((batch,) + a.shape[2:])[perm], (traj, adv, targets))
                mbs = jax.tree_util.tree_map(lambda a: a.reshape((s.num_minibatches, minibatch) + a.shape[1:]), flat)

                def sgd(state: tuple[Any, Any], mb: tuple[Transition, Any, Any]) -> tuple[tuple[Any, Any], dict[str, Any]]:
                    params, opt_state = state
                    grads, info = jax.grad(loss_fn, has_aux=True)(params, *mb)
                    updates, opt_state = optimizer.update(grads, opt_state, params)
                    return (optax.apply_updates(params, updates), opt_state), info

                (params, opt_state), info = jax.lax.scan(sgd, (params, opt_state), mbs)
                return (params, opt_state, rng), info

            init = (runner.params, runner.opt_state, runner.rng)
            (params, opt_state, rng), info = jax.lax.scan(epoch, init, None, length=s.n_epochs)
            runner = runner._replace(params=params, opt_state=opt_state, rng=rng)
            return (runner, stats), jax.tree_util.tree_map(jnp.mean, info)

        zeros = {"return_sum": jnp.zeros((), jnp.float32), "length_sum": jnp.zeros((), jnp.int32),
                 "episodes": jnp.zeros((), jnp.int32), "successes": jnp.zeros((), jnp.int32)}
        (runner, stats), info = jax.lax.scan(update, (runner, zeros), None, length=n_updates)
        return runner, {**stats, **jax.tree_util.tree_map(jnp.mean, info)}

    return jax.jit(chunk, donate_argnums=(0,))


# --- batched evaluation ---------------------------------------------------------------------------


def _eval_program(jenv: Any, network: Any, batch: int, deterministic: bool) -> Callable[..., Any]:
    """``run(params, levels (batch,), keys (batch, 2)) -> (returns, lengths)``: one episode per row,
    all rows at once, until every episode ended. ``network=None`` acts uniformly at random."""
    jax = _jax()
    jnp = jax.numpy

    def run(params: Any, levels: Any, keys: Any) -> tuple[Any, Any]:
        reset_keys = jax.vmap(lambda k: jax.random.fold_in(k, 0))(keys)
        policy_keys = jax.vmap(lambda k: jax.random.fold_in(k, 1))(keys)
        state, obs = jax.vmap(jenv.reset)(reset_keys, levels)

        def act(obs: Any, t: Any) -> Any:
            step_keys = jax.vmap(lambda k: jax.random.fold_in(k, t))(policy_keys)  # per episode: batching-independent
            if network is None:
                return jax.vmap(lambda k: jax.random.randint(k, (), 0, jenv.num_actions))(step_keys)
            logits, _ = network.apply(params, obs)
            if deterministic:
                return jnp.argmax(logits, axis=-1)
            return jax.vmap(jax.random.categorical)(step_keys, logits)

        def cond(c: tuple[Any, ...]) -> Any:
            t, _, _, done, _, _ = c
            return (t < jenv.max_steps) & ~jnp.all(done)

        def body(c: tuple[Any, ...]) -> tuple[Any, ...]:
            t, state, obs, done, ret, length = c
            state, obs, reward, terminated, truncated = jax.vmap(jenv.step)(state, act(obs, t))
            ret = ret + jnp.where(done, 0.0, reward)
            length = length + jnp.where(done, 0, 1)
            return t + 1, state, obs, done | terminated | truncated, ret, length

        init = (jnp.zeros((), jnp.int32), state, obs, jnp.zeros(batch, bool), jnp.zeros(batch, jnp.float32), jnp.zeros(batch, jnp.int32))
        _, _, _, _, ret, length = jax.lax.while_loop(cond, body, init)
        return ret, length

    return jax.jit(run)


#: (id(jenv), id(network), batch, deterministic) -> (jenv, network, program); holding the objects keeps
#: their ids from being reused by others while the entry lives.
_EVAL_CACHE: dict[tuple[int, int, int, bool], tuple[Any, Any, Callable[..., Any]]] = {}


def evaluate_jax(
    network: Any,
    params: Any,
    split: Any,
    which: str = "held_out",
    episodes: int = 100,
    seed: int = 0,
    num_envs: int = 1024,
    deterministic: bool = False,
    levels: Any = None,
) -> Any:
    """JAX-native :func:`rlgen.evaluation.evaluate_on_levels`: the same level list (a function of
    split, set, episodes and seed) and the same ``EvalResult``, with ``num_envs`` episodes stepped
    together on device. Each episode's randomness depends on ``seed``, the set and its index only."""
    jax = _jax()
    from rlgen.envs import WHICH, get_suite  # noqa: PLC0415
    from rlgen.envs.xland import jax_env_for_split  # noqa: PLC0415
    from rlgen.evaluation import EvalResult, evaluation_levels  # noqa: PLC0415

    level_list = np.asarray(levels if levels is not None else evaluation_levels(split, which, episodes, seed), dtype=np.int64)
    outside = ~split.levels(which).contains(level_list)
    if outside.any():
        raise RlgenError(f"levels {level_list[outside][:5].tolist()} are not {which} levels of {split.id}")
    if num_envs < 1:
        raise RlgenError(f"num_envs must be >= 1, got {num_envs}")
    jenv = jax_env_for_split(split)
    n = len(level_list)
    batch = min(num_envs, n)
    cache_key = (id(jenv), id(network), batch, bool(deterministic))
    if cache_key not in _EVAL_CACHE:
        _EVAL_CACHE[cache_key] = (jenv, network, _eval_program(jenv, network, batch, bool(deterministic)))
    run = _EVAL_CACHE[cache_key][2]
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
    normalized = get_suite(split.suite).normalize_returns(split.env, returns, split.options)
    return EvalResult(split.id, which, seed, bool(deterministic), level_list, returns, lengths, normalized)


class JaxRandomPolicy:
    """Uniform random actions, evaluated on device like the JAX agent (the floor to beat)."""

    def __init__(self, num_actions: int, seed: int = 0) -> None:
        self.num_actions = num_actions
        self._rng = np.random.default_rng(seed)

    def act(self, obs: np.ndarray, deterministic: bool = False) -> np.ndarray:
        return self._rng.integers(0, self.num_actions, size=len(obs))

    def evaluate_on_levels(self, split: Any, which: str = "held_out", episodes: int = 100, seed: int = 0,
                           num_envs: int = 1024, deterministic: bool = False, levels: Any = None) -> Any:
        return evaluate_jax(None, None, split, which, episodes, seed, num_envs, deterministic, levels)


# --- the agent ------------------------------------------------------------------------------------


def _settings(settings: Any) -> Any:
    from rlgen.config import JaxPPOSettings  # noqa: PLC0415

    if isinstance(settings, JaxPPOSettings):
        return settings
    return JaxPPOSettings.model_validate(dict(settings or {}))


def _checked_params(loaded: Any, template: Any, path: Path) -> Any:
    """``loaded`` (a restored msgpack tree) as device arrays, if it has exactly the structure, shapes
    and dtypes of ``template`` (a fresh network's params); otherwise one ``RlgenError`` naming the file."""
    jax = _jax()
    from flax import serialization  # noqa: PLC0415

    want = jax.tree_util.tree_flatten_with_path(serialization.to_state_dict(template))[0]
    try:
        got = {jax.tree_util.keystr(k): v for k, v in jax.tree_util.tree_flatten_with_path(loaded)[0]}
    except Exception:  # noqa: BLE001 - not a tree at all
        got = {}
    for key, ref in want:
        v = got.get(jax.tree_util.keystr(key))
        if not isinstance(v, np.ndarray) or v.shape != ref.shape or v.dtype != ref.dtype:
            found = f"{type(v).__name__} {getattr(v, 'shape', '')} {getattr(v, 'dtype', '')}".strip() if v is not None else "nothing"
            raise RlgenError(f"{path}: params{jax.tree_util.keystr(key)} should be {ref.dtype}{list(ref.shape)}, found {found}")
    if len(got) != len(want):
        raise RlgenError(f"{path}: params hold {len(got)} arrays, the network has {len(want)}")
    return serialization.from_state_dict(template, jax.tree_util.tree_map(jax.numpy.asarray, loaded))


class JaxPPOAgent:
    """PPO in JAX behind rlgen's Agent interface: ``fit``, ``act``, ``save``, ``load``.

    Args:
        obs_shape: ``(C, V, V)`` of the env's observations; ``num_actions``: the env's action count.
        settings: ``JaxPPOSettings`` (or a dict of its fields).
        seed: initializes the params and the training PRNG key.
    """

    def __init__(self, obs_shape: tuple[int, ...], num_actions: int, settings: Any = None, seed: int = 0, params: Any = None) -> None:
        jax = _jax()
        self.obs_shape = tuple(int(x) for x in obs_shape)
        self.num_actions = int(num_actions)
        self.settings = _settings(settings)
        self.network = make_network(self.num_actions, self.settings.hidden_dim, self.settings.embed_dim)
        init_key, self.rng = jax.random.split(jax.random.PRNGKey(seed))
        self.params = params if params is not None else self.network.init(init_key, np.zeros((1, *self.obs_shape), np.uint8))
        self.opt_state: Any = None
        self._opt_state_dict: Any = None  # restored lazily: its structure comes from the optimizer
        self.env_steps = 0
        self._np_rng = np.random.default_rng(seed)
        self._act_fn = jax.jit(self._act_impl, static_argnames="deterministic")

    @classmethod
    def for_split(cls, split: Any, settings: Any = None, seed: int = 0) -> "JaxPPOAgent":
        from rlgen.envs.xland import jax_env_for_split  # noqa: PLC0415

        jenv = jax_env_for_split(split)
        return cls(jenv.obs_shape, jenv.num_actions, settings, seed)

    # --- acting -----------------------------------------------------------------------------------
    def _act_impl(self, params: Any, obs: Any, key: Any, deterministic: bool) -> Any:
        jax = _jax()
        logits, _ = self.network.apply(params, obs)
        return jax.numpy.argmax(logits, -1) if deterministic else jax.random.categorical(key, logits)

    def act(self, obs: np.ndarray, deterministic: bool = False) -> np.ndarray:
        """Actions ``(B,)`` for observations ``(B, C, V, V)`` uint8, as the env gives them."""
        jax = _jax()
        obs = np.asarray(obs, dtype=np.uint8)
        if obs.shape[1:] != self.obs_shape:
            raise RlgenError(f"observations of shape {obs.shape[1:]} given to a policy trained on {self.obs_shape}")
        key = jax.random.PRNGKey(int(self._np_rng.integers(2**31)))
        return np.asarray(self._act_fn(self.params, obs, key, deterministic=bool(deterministic)))

    def evaluate_on_levels(self, split: Any, which: str = "held_out", episodes: int = 100, seed: int = 0,
                           num_envs: int = 1024, deterministic: bool = False, levels: Any = None) -> Any:
        """:func:`evaluate_jax` with this agent's policy."""
        self._check_env(split)
        return evaluate_jax(self.network, self.params, split, which, episodes, seed, num_envs, deterministic, levels)

    def _check_env(self, split: Any) -> Any:
        from rlgen.envs.xland import jax_env_for_split  # noqa: PLC0415

        jenv = jax_env_for_split(split)
        if jenv.obs_shape != self.obs_shape or jenv.num_actions != self.num_actions:
            raise RlgenError(
                f"{split.id} has observations {jenv.obs_shape} and {jenv.num_actions} actions; this policy was trained on "
                f"{self.obs_shape} and {self.num_actions} (check split.options goal_obs and view_size)"
            )
        return jenv

    # --- training ---------------------------------------------------------------------------------
    def fit(
        self,
        split: Any,
        total_steps: int,
        num_envs: int = 1024,
        log_every_steps: int = 1_000_000,
        on_sync: Callable[["JaxPPOAgent", dict[str, float]], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> "JaxPPOAgent":
        """Train on ``split``'s training levels until the agent has taken ``total_steps`` env steps in
        all (rounded up to whole updates of ``num_envs * n_steps``). Every ``log_every_steps`` the
        host syncs: ``on_sync(agent, metrics)`` gets the chunk's metrics (Python floats), and
        ``should_stop()`` can end training there."""
        jax = _jax()
        from rlgen.envs.xland import LevelSampler  # noqa: PLC0415

        s = self.settings
        jenv = self._check_env(split)
        batch = num_envs * s.n_steps
        if batch % s.num_minibatches:
            raise RlgenError(f"num_envs * n_steps = {num_envs} * {s.n_steps} = {batch} must be divisible by num_minibatches = {s.num_minibatches}")
        total_updates = math.ceil(total_steps / batch)
        done_updates = self.env_steps // batch
        if done_updates >= total_updates:
            return self
        optimizer = make_optimizer(s, total_updates)
        if self.opt_state is None:
            template = optimizer.init(self.params)
            if self._opt_state_dict is not None:
                from flax import serialization  # noqa: PLC0415

                template = serialization.from_state_dict(template, self._opt_state_dict)
                self._opt_state_dict = None
            self.opt_state = template
        sampler = LevelSampler.from_levels(split.train)
        self.rng, k_env = jax.random.split(self.rng)
        env_state, obs = jax.vmap(lambda k: jenv.reset_sampled(k, sampler))(jax.random.split(k_env, num_envs))
        runner = Runner(self.params, self.opt_state, env_state, obs, self.rng,
                        jax.numpy.zeros(num_envs, jax.numpy.float32), jax.numpy.zeros(num_envs, jax.numpy.int32))
        per_chunk = max(1, log_every_steps // batch)
        programs: dict[int, Callable[..., Any]] = {}
        while done_updates < total_updates:
            n = min(per_chunk, total_updates - done_updates)
            if n not in programs:
                programs[n] = make_train_chunk(jenv, self.network, optimizer, s, num_envs, n)
            t0 = time.perf_counter()
            runner, metrics = programs[n](runner, sampler)
            metrics = {k: float(v) for k, v in jax.device_get(metrics).items()}  # the only device -> host sync
            elapsed = time.perf_counter() - t0
            self.params, self.opt_state, self.rng = runner.params, runner.opt_state, runner.rng
            done_updates += n
            self.env_steps = done_updates * batch
            episodes = metrics.pop("episodes")
            metrics.update({
                "episodes": episodes,
                "episode_return": metrics.pop("return_sum") / episodes if episodes else float("nan"),
                "episode_length": metrics.pop("length_sum") / episodes if episodes else float("nan"),
                "success_rate": metrics.pop("successes") / episodes if episodes else float("nan"),
                "steps_per_second": n * batch / elapsed,
                "learning_rate": s.learning_rate * (1 - done_updates / total_updates) if s.anneal_lr else s.learning_rate,
                "seconds": elapsed,
            })  # fmt: skip
            if on_sync is not None:
                on_sync(self, metrics)
            if should_stop is not None and should_stop():
                break
        return self

    # --- persistence ------------------------------------------------------------------------------
    def save(self, path: str | Path, with_optimizer: bool = False) -> Path:
        """Write params (and with ``with_optimizer`` the optimizer state, env steps and PRNG key) as
        one msgpack file, atomically."""
        jax = _jax()
        from flax import serialization  # noqa: PLC0415

        meta = {"obs_shape": list(self.obs_shape), "num_actions": self.num_actions,
                "settings": self.settings.model_dump(), "env_steps": int(self.env_steps)}
        payload: dict[str, Any] = {"format": FORMAT, "meta": json.dumps(meta),
                                   "params": jax.device_get(serialization.to_state_dict(self.params))}
        if with_optimizer:
            opt = self.opt_state if self.opt_state is not None else None
            if opt is not None:
                payload["opt_state"] = jax.device_get(serialization.to_state_dict(opt))
            elif self._opt_state_dict is not None:
                payload["opt_state"] = self._opt_state_dict
            payload["rng"] = np.asarray(jax.device_get(self.rng))
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_name(f".{p.name}.{os.getpid()}.tmp")
        tmp.write_bytes(serialization.msgpack_serialize(payload))
        os.replace(tmp, p)
        return p

    @classmethod
    def load(cls, path: str | Path) -> "JaxPPOAgent":
        jax = _jax()
        from flax import serialization  # noqa: PLC0415

        p = Path(path)
        if not p.is_file():
            raise RlgenError(f"no JAX PPO checkpoint at {str(p)!r}")
        try:
            payload = serialization.msgpack_restore(p.read_bytes())
            if payload.get("format") != FORMAT:
                raise ValueError(f"format {payload.get('format')!r}, expected {FORMAT!r}")
            meta = json.loads(payload["meta"])
        except (ValueError, KeyError, TypeError, AttributeError) as e:  # msgpack's errors are ValueErrors
            raise RlgenError(f"{p} is not a JAX PPO checkpoint ({type(e).__name__}: {str(e)[:160]})") from None
        try:
            obs_shape, num_actions = tuple(int(x) for x in meta["obs_shape"]), int(meta["num_actions"])
            if len(obs_shape) != 3 or min(obs_shape) < 1 or num_actions < 1:
                raise ValueError(f"obs_shape {list(obs_shape)} and num_actions {num_actions} are not a (C, V, V) view and an action count")
            agent = cls(obs_shape, num_actions, meta["settings"])
        except (KeyError, TypeError, ValueError) as e:  # pydantic's ValidationError is a ValueError
            raise RlgenError(f"{p}: bad `meta` in the checkpoint ({type(e).__name__}: {str(e).splitlines()[0][:160]})") from None
        agent.params = _checked_params(payload.get("params"), agent.params, p)
        agent.env_steps = int(meta.get("env_steps", 0))
        if "opt_state" in payload:
            agent._opt_state_dict = payload["opt_state"]
        if "rng" in payload:
            agent.rng = jax.numpy.asarray(payload["rng"], dtype=jax.numpy.uint32)
        return agent


# --- runs: rlgen train / evaluate -----------------------------------------------------------------


def jax_device(device: str) -> Any:
    """``auto`` -> JAX's default device; ``cpu``; ``cuda``/``cuda:N`` -> that GPU, or a clear error."""
    jax = _jax()
    if device == "auto":
        return jax.devices()[0]
    if device == "cpu":
        return jax.devices("cpu")[0]
    index = int(device.partition(":")[2] or 0)
    try:
        gpus = jax.devices("gpu")
    except RuntimeError:
        gpus = []
    if index >= len(gpus):
        raise RlgenError(
            f"device={device!r} but JAX sees {len(gpus)} GPU(s) here (backend {jax.default_backend()}); "
            "install a CUDA build of JAX (pip install 'jax[cuda12]') or use device=auto or cpu"
        )
    return gpus[index]


class _RunLog:
    """Host side of a training run: TensorBoard scalars, progress bar, ladder rungs, checkpoints."""

    def __init__(self, cfg: Any, split: Any, run_dir: Path, start_steps: int) -> None:
        from torch.utils.tensorboard import SummaryWriter  # noqa: PLC0415

        self.cfg, self.split, self.run_dir = cfg, split, run_dir
        # purge_step: readers drop what an earlier, killed process logged after the checkpoint we
        # resume from (everything, on a fresh start), so the curve has each step once
        self.writer = SummaryWriter(str(run_dir / "tb" / "ppo_jax"), purge_step=start_steps + 1 if start_steps else 0)
        every, ck = cfg.ladder.every_steps, cfg.checkpoint_interval()
        self.next_rung = (start_steps // every + 1) * every
        self.next_checkpoint = (start_steps // ck + 1) * ck
        self.progress: Any = None
        if cfg.progress:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn  # noqa: PLC0415

            self.progress = Progress(
                TextColumn("[bold]PPO (JAX)[/] {task.description}"), BarColumn(), MofNCompleteColumn(),
                TextColumn("{task.fields[sps]} steps/s  return {task.fields[ret]}"), TimeRemainingColumn(),
            )  # fmt: skip
            self.progress.start()
            self.task = self.progress.add_task(split.id, total=cfg.total_steps, completed=start_steps, sps="-", ret="-")

    def on_sync(self, agent: JaxPPOAgent, m: dict[str, float]) -> None:
        step = agent.env_steps
        w = self.writer
        for key in ("episode_return", "episode_length", "success_rate", "episodes", "learning_rate"):
            if not math.isnan(m[key]):
                w.add_scalar(f"train/{key}", m[key], step)
        for key in ("policy_loss", "value_loss"):
            w.add_scalar(f"train/loss/{key.removesuffix('_loss')}", m[key], step)
        for key in ("entropy", "approx_kl", "clip_fraction"):
            w.add_scalar(f"train/{key}", m[key], step)
        w.add_scalar("time/steps_per_second", m["steps_per_second"], step)
        if self.progress is not None:
            ret = f"{m['episode_return']:.3f}" if not math.isnan(m["episode_return"]) else "-"
            self.progress.update(self.task, completed=min(step, self.cfg.total_steps), sps=f"{m['steps_per_second']:,.0f}", ret=ret)
        if step >= self.next_rung and step < self.cfg.total_steps:
            self.add_rung(agent)
            self.next_rung = (step // self.cfg.ladder.every_steps + 1) * self.cfg.ladder.every_steps
        if step >= self.next_checkpoint:
            self.save_checkpoint(agent, finished=False)
            self.next_checkpoint = (step // self.cfg.checkpoint_interval() + 1) * self.cfg.checkpoint_interval()
        w.flush()

    def add_rung(self, agent: JaxPPOAgent) -> dict[str, Any]:
        cfg = self.cfg
        result = agent.evaluate_on_levels(self.split, "train", episodes=cfg.ladder.episodes, seed=cfg.seed,
                                          num_envs=cfg.eval_num_envs, deterministic=cfg.ladder.deterministic)
        step = int(agent.env_steps)
        rel = f"ladder/step_{step:010d}.msgpack"
        agent.save(self.run_dir / rel)
        rung = {
            "step": step, "checkpoint": rel, "mean_return": result.mean_return, "mean_normalized": result.mean_normalized,
            "episodes": len(result.returns), "levels": "train", "deterministic": cfg.ladder.deterministic, "time": time.time(),
        }  # fmt: skip
        p = self.run_dir / LADDER
        ladder = read_ladder(self.run_dir) if p.is_file() else {"env": self.split.id, "split": self.split.to_dict(), "rungs": []}
        ladder["rungs"] = [r for r in ladder["rungs"] if r["step"] != step] + [rung]
        _write_json(p, ladder)
        self.writer.add_scalar("eval/train_levels/mean_return", result.mean_return, step)
        if result.mean_normalized is not None:
            self.writer.add_scalar("eval/train_levels/mean_normalized", result.mean_normalized, step)
        return rung

    def save_checkpoint(self, agent: JaxPPOAgent, finished: bool) -> None:
        agent.save(self.run_dir / LATEST, with_optimizer=True)
        _write_json(self.run_dir / STATE, {"num_timesteps": int(agent.env_steps), "finished": finished, "time": time.time()})

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()
        self.writer.close()


@locks_run_dir
def train_ppo_jax(cfg: Any) -> Path:
    """Train (or resume) the JAX PPO as ``cfg`` (a ``JaxPPOConfig``) says; returns the run directory.

    Raises:
        TrainingInterrupted: after SIGINT/SIGTERM, once the checkpoint is saved.
    """
    jax = _jax()
    from rlgen.config import write_resolved_config  # noqa: PLC0415
    from rlgen.envs.xland import jax_env_for_split, rulesets_info  # noqa: PLC0415

    run_dir = Path(cfg.out_dir or "runs/ppo_jax")
    split = cfg.level_split()
    jax_env_for_split(split)  # checks the level ids before any work
    device = jax_device(cfg.device)
    resuming = (run_dir / LATEST).is_file()
    if resuming:
        check_same_config(run_dir, cfg, ignore=(*RESUME_NEUTRAL_KEYS, "log_every_steps"))
        state = read_state(run_dir, STATE)
        if state.get("finished") and isinstance(state.get("num_timesteps"), int) and state["num_timesteps"] >= cfg.total_steps:
            return run_dir  # nothing left to do
    write_resolved_config(cfg, run_dir, extra={
        "split": split.to_dict(), "rulesets": rulesets_info(split),
        "jax": {"version": jax.__version__, "device": str(device), "platform": device.platform},
    })  # fmt: skip
    flag: dict[str, Any] = {"stop": False}
    with jax.default_device(device):
        agent = JaxPPOAgent.load(run_dir / LATEST) if resuming else JaxPPOAgent.for_split(split, cfg.ppo_jax, seed=cfg.seed)
        log = _RunLog(cfg, split, run_dir, agent.env_steps)
        try:
            with stop_on_signals(flag):
                agent.fit(split, cfg.total_steps, num_envs=cfg.num_envs, log_every_steps=cfg.log_every_steps,
                          on_sync=log.on_sync, should_stop=lambda: flag["stop"])
            finished = agent.env_steps >= cfg.total_steps and not flag["stop"]
            if finished:
                log.add_rung(agent)  # the final policy: the "expert" rung
            log.save_checkpoint(agent, finished=finished)
        finally:
            log.close()
    if flag["stop"]:
        raise TrainingInterrupted(
            f"stopped by signal at {agent.env_steps:,} env steps; checkpoint saved in {run_dir / LATEST}; "
            "run the same command again to resume"
        )
    return run_dir


def load_run_agent(run_dir: str | Path, checkpoint: str | None = None) -> JaxPPOAgent:
    """The agent of a run directory: the last ladder rung (the final policy) unless ``checkpoint`` names one."""
    run = Path(run_dir)
    if checkpoint is not None:
        return JaxPPOAgent.load(inside_run_dir(run, checkpoint, "checkpoint"))
    if not (run / LADDER).is_file() or not read_ladder(run)["rungs"]:
        return JaxPPOAgent.load(run / LATEST)  # stopped before its first rung
    last = max(read_ladder(run)["rungs"], key=lambda r: r["step"])
    return JaxPPOAgent.load(inside_run_dir(run, last["checkpoint"], run / LADDER))


def ladder_policy(run_dir: str | Path, rung: Mapping[str, Any]) -> JaxPPOAgent:
    return JaxPPOAgent.load(inside_run_dir(run_dir, rung.get("checkpoint"), Path(run_dir) / LADDER))
