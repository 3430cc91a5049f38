"""``algo: ppo_jax``: PPO for XLand-MiniGrid, environment stepping and learning in one jitted ``lax.scan``.

PureJaxRL style: :func:`make_train_chunk` returns a pure function ``chunk(runner, sampler) ->
(runner, metrics)`` that runs ``n_updates`` PPO updates, each a rollout of ``n_steps`` steps in
``num_envs`` vmapped envs (the env is :class:`rlgen.envs.xland.JaxEnv`, same-step autoreset), GAE by a
reverse ``lax.scan`` and ``n_epochs`` x ``num_minibatches`` gradient steps, all nested scans in one
XLA program. The host sees the device only between chunks (``log_every_steps``): TensorBoard
scalars, progress, ladder rungs and checkpoints happen there.

:func:`fit` drives those chunks for a :class:`~rlgen.agents.ppo_jax.agent.JaxPPOAgent`;
:func:`train_ppo_jax` is the trainer of ``rlgen train`` (the run directory protocol of
``rlgen.agents.run_dir``, as every trainer).

Run directory (``out_dir``), as for SB3 PPO::

    config.yaml                  resolved config, with the resolved LevelSplit and the ruleset file's sha256
    checkpoints/latest.msgpack   params + optimizer state + env steps + PRNG key (resumable)
    checkpoints/state.json       env steps done, whether training finished
    ladder/step_<N>.msgpack      skill-ladder policies
    ladder.json                  each rung: step, checkpoint, mean return on training levels
    tb/ppo_jax/                  TensorBoard: one curve, whatever the number of resumes
    results.jsonl                evaluation rows (``rlgen evaluate``)
    .lock                        held by the process training in the directory

Simplifications, as in PureJaxRL and XLand-MiniGrid's baselines: a time-limit truncation is treated
as a terminal state (no bootstrap from the final observation), and a resumed run starts fresh
episodes (env states are not checkpointed; params, optimizer, step counter and PRNG key are).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

from rlgen.agents.ppo_jax.agent import LATEST, JaxPPOAgent, evaluate
from rlgen.agents.ppo_jax.network import _jax
from rlgen.agents.run_dir import (
    RESUME_NEUTRAL_KEYS,
    interrupted,
    keep_rung,
    locks_run_dir,
    resume_preamble,
    rung_curves,
    stop_on_signals,
    tensorboard_writer,
    write_resolved_config,
    write_state,
)
from rlgen.devices import jax_device
from rlgen.envs.xland import LevelSampler, jax_env_for_split, rulesets_info
from rlgen.errors import RlgenError
from rlgen.progress import ProgressBar

STATE = "checkpoints/state.json"


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


def fit(
    agent: JaxPPOAgent,
    split: Any,
    total_steps: int,
    num_envs: int = 1024,
    log_every_steps: int = 1_000_000,
    on_sync: Callable[[JaxPPOAgent, dict[str, float]], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> JaxPPOAgent:
    """Train ``agent`` on ``split``'s training levels until it has taken ``total_steps`` env steps in
    all (rounded up to whole updates of ``num_envs * n_steps``). Every ``log_every_steps`` the
    host syncs: ``on_sync(agent, metrics)`` gets the chunk's metrics (Python floats), and
    ``should_stop()`` can end training there."""
    jax = _jax()

    s = agent.settings
    jenv = agent.check_env(split)
    batch = num_envs * s.n_steps
    if batch % s.num_minibatches:
        raise RlgenError(f"num_envs * n_steps = {num_envs} * {s.n_steps} = {batch} must be divisible by num_minibatches = {s.num_minibatches}")
    total_updates = math.ceil(total_steps / batch)
    done_updates = agent.env_steps // batch
    if done_updates >= total_updates:
        return agent
    optimizer = make_optimizer(s, total_updates)
    if agent.opt_state is None:
        template = optimizer.init(agent.params)
        if agent._opt_state_dict is not None:
            from flax import serialization  # noqa: PLC0415

            template = serialization.from_state_dict(template, agent._opt_state_dict)
            agent._opt_state_dict = None
        agent.opt_state = template
    sampler = LevelSampler.from_levels(split.train)
    agent.rng, k_env = jax.random.split(agent.rng)
    env_state, obs = jax.vmap(lambda k: jenv.reset_sampled(k, sampler))(jax.random.split(k_env, num_envs))
    runner = Runner(agent.params, agent.opt_state, env_state, obs, agent.rng,
                    jax.numpy.zeros(num_envs, jax.numpy.float32), jax.numpy.zeros(num_envs, jax.numpy.int32))
    per_chunk = max(1, log_every_steps // batch)
    programs: dict[int, Callable[..., Any]] = {}
    while done_updates < total_updates:
        n = min(per_chunk, total_updates - done_updates)
        if n not in programs:
            programs[n] = make_train_chunk(jenv, agent.network, optimizer, s, num_envs, n)
        t0 = time.perf_counter()
        runner, metrics = programs[n](runner, sampler)
        metrics = {k: float(v) for k, v in jax.device_get(metrics).items()}  # the only device -> host sync
        elapsed = time.perf_counter() - t0
        agent.params, agent.opt_state, agent.rng = runner.params, runner.opt_state, runner.rng
        done_updates += n
        agent.env_steps = done_updates * batch
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
            on_sync(agent, metrics)
        if should_stop is not None and should_stop():
            break
    return agent


class _RunLog:
    """Host side of a training run: TensorBoard scalars, progress bar, ladder rungs, checkpoints."""

    def __init__(self, cfg: Any, split: Any, run_dir: Path, start_steps: int) -> None:
        self.cfg, self.split, self.run_dir = cfg, split, run_dir
        self.writer = tensorboard_writer(run_dir / "tb" / "ppo_jax", start_steps if start_steps else None, cfg, run_dir)
        every, ck = cfg.ladder.every_steps, cfg.checkpoint_interval()
        self.next_rung = (start_steps // every + 1) * every
        self.next_checkpoint = (start_steps // ck + 1) * ck
        self.bar = ProgressBar(f"[bold]PPO (JAX)[/] {split.id}", total=cfg.total_steps, completed=start_steps,
                               fields={"sps": "steps/s", "ret": ""}, enabled=cfg.progress)  # fmt: skip

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
        ret = f"{m['episode_return']:.3f}" if not math.isnan(m["episode_return"]) else "-"
        self.bar.update(completed=min(step, self.cfg.total_steps), sps=f"{m['steps_per_second']:,.0f}", ret=f"return {ret}")
        if step >= self.next_rung and step < self.cfg.total_steps:
            self.add_rung(agent)
            self.next_rung = (step // self.cfg.ladder.every_steps + 1) * self.cfg.ladder.every_steps
        if step >= self.next_checkpoint:
            self.save_checkpoint(agent, finished=False)
            self.next_checkpoint = (step // self.cfg.checkpoint_interval() + 1) * self.cfg.checkpoint_interval()
        w.flush()

    def add_rung(self, agent: JaxPPOAgent) -> dict[str, Any]:
        cfg = self.cfg

        def on(which: str) -> Any:
            return evaluate(agent, self.split, which, episodes=cfg.ladder.episodes, seed=cfg.seed,
                            num_envs=cfg.eval_num_envs, deterministic=cfg.ladder.deterministic)  # fmt: skip

        result = on("train")
        curves = rung_curves(on, self.split, cfg.held_out_curve)  # validation, and held-out levels (TensorBoard only)
        step = int(agent.env_steps)
        rel = f"ladder/step_{step:010d}.msgpack"
        agent.save(self.run_dir / rel)
        return keep_rung(self.run_dir, self.split, step, rel, result, cfg.ladder.deterministic, tb=self.writer, curves=curves)

    def save_checkpoint(self, agent: JaxPPOAgent, finished: bool) -> None:
        agent.save(self.run_dir / LATEST, with_optimizer=True)
        write_state(self.run_dir, STATE, agent.env_steps, finished)

    def close(self) -> None:
        self.bar.close()
        self.writer.close()


@locks_run_dir
def train_ppo_jax(cfg: Any) -> Path:
    """Train (or resume) the JAX PPO as ``cfg`` (a ``JaxPPOConfig``) says; returns the run directory.

    Raises:
        TrainingInterrupted: after SIGINT/SIGTERM, once the checkpoint is saved.
    """
    jax = _jax()
    run_dir = Path(cfg.out_dir)
    split = cfg.level_split()
    jax_env_for_split(split)  # checks the level ids before any work
    device = jax_device(cfg.device)
    resume = resume_preamble(run_dir, cfg, LATEST, STATE, cfg.total_steps, ignore=(*RESUME_NEUTRAL_KEYS, "log_every_steps"))
    if resume.finished:
        return run_dir  # nothing left to do
    write_resolved_config(cfg, run_dir, extra={
        "split": split.to_dict(), "rulesets": rulesets_info(split),
        "jax": {"version": jax.__version__, "device": str(device), "platform": device.platform},
    })  # fmt: skip
    flag: dict[str, Any] = {"stop": False}
    with jax.default_device(device):
        agent = JaxPPOAgent.load(run_dir / LATEST, device=cfg.device) if resume.resuming else JaxPPOAgent.for_split(split, cfg.ppo_jax, seed=cfg.seed)
        log = _RunLog(cfg, split, run_dir, agent.env_steps)
        try:
            with stop_on_signals(flag):
                fit(agent, split, cfg.total_steps, num_envs=cfg.num_envs, log_every_steps=cfg.log_every_steps,
                    on_sync=log.on_sync, should_stop=lambda: flag["stop"])
            finished = agent.env_steps >= cfg.total_steps and not flag["stop"]
            if finished:
                log.add_rung(agent)  # the final policy: the "expert" rung
            log.save_checkpoint(agent, finished=finished)
        finally:
            log.close()
    if flag["stop"]:
        raise interrupted(f"{agent.env_steps:,} env steps", run_dir / LATEST)
    return run_dir
