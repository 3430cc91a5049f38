"""``iql_jax``: discrete implicit Q-learning, as the torch ``iql`` (``rlgen.agents.iql.DiscreteIQL``).

Networks, each with its own grid encoder and a 256-unit ReLU layer: ``Q_1``, ``Q_2`` (one output per action)
with target copies, ``V`` (one output) and the policy (logits). Losses on a batch of transitions, summed and
stepped by one Adam:

* V: expectile ``iql_expectile`` regression to ``min(Q_target_1, Q_target_2)(s, a)`` at the dataset's actions;
* Q: ``mse(Q_i(s, a), r + gamma (1 - terminated) V(s'))`` for both heads, summed;
* policy: advantage-weighted regression, ``-mean(min(exp(iql_temperature (Q_target - V)), 100) log pi(a|s))``.

Targets: a hard copy after updates 1, 1 + interval, ... (``iql_target_update: hard``) or a Polyak step of
rate ``iql_tau`` after every update. Acts by the policy's mode with ``iql_deterministic`` (the default).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax

from rlgen.agents.offline_jax.bc import log_likelihood
from rlgen.agents.offline_jax.core import OfflineAlgo, Spec
from rlgen.agents.offline_jax.cql import hard_copy, pick
from rlgen.agents.offline_jax.networks import HEAD_HIDDEN, head

#: The AWR weight clip (rlgen.agents.iql.MAX_AWR_WEIGHT).
MAX_AWR_WEIGHT = 100.0
Q_NETS = ("q1", "q2")


def polyak(tau: float) -> Any:
    """``update_target``: ``target <- target + tau (online - target)`` after every update (torch's ``lerp_``)."""

    def update_target(target: Any, params: Any, step: Any) -> Any:
        return jax.tree_util.tree_map(lambda t, p: t + tau * (p - t), target, {k: params[k] for k in target})

    return update_target


def build(spec: Spec) -> OfflineAlgo:
    q_net, v_net = head(spec.num_actions, HEAD_HIDDEN), head(1, HEAD_HIDDEN)

    def init_params(key: Any, spec: Spec) -> Any:
        obs = jnp.zeros((1, *spec.observation_shape), jnp.uint8)
        k1, k2, kv, kp = jax.random.split(key, 4)
        return {"q1": q_net.init(k1, obs), "q2": q_net.init(k2, obs), "value": v_net.init(kv, obs), "policy": q_net.init(kp, obs)}

    def loss(params: Any, target: Any, batch: dict[str, Any], key: Any) -> tuple[Any, dict[str, Any]]:
        obs, actions = batch["obs"], batch["actions"]
        q_target = jax.lax.stop_gradient(pick(jnp.minimum(q_net.apply(target["q1"], obs), q_net.apply(target["q2"], obs)), actions))  # (B,)
        not_done = 1.0 - batch["terminated"].astype(jnp.float32)
        td_target = jax.lax.stop_gradient(batch["rewards"] + spec.gamma * not_done * v_net.apply(params["value"], batch["next_obs"])[:, 0])
        v = v_net.apply(params["value"], obs)[:, 0]
        diff = q_target - v
        v_loss = (jnp.abs(spec.iql_expectile - (diff < 0).astype(jnp.float32)) * diff**2).mean()
        q_loss = sum(((pick(q_net.apply(params[k], obs), actions) - td_target) ** 2).mean() for k in Q_NETS)
        advantage = q_target - jax.lax.stop_gradient(v)
        weight = jnp.minimum(jnp.exp(spec.iql_temperature * advantage), MAX_AWR_WEIGHT)
        policy_loss = -(weight * log_likelihood(q_net.apply(params["policy"], obs), actions)).mean()
        metrics = {"loss/q": q_loss, "loss/v": v_loss, "loss/policy": policy_loss, "q/mean": q_target.mean(), "v/mean": v.mean(),
                   "advantage/mean": advantage.mean(), "awr_weight/mean": weight.mean()}  # fmt: skip
        return q_loss + v_loss + policy_loss, metrics

    update = polyak(spec.iql_tau) if spec.iql_target_update == "polyak" else hard_copy(spec.target_update_interval)
    return OfflineAlgo(init_params=init_params, loss=loss, optimizer=optax.adam(spec.learning_rate), init_target=lambda p: {k: p[k] for k in Q_NETS},
                       update_target=update, logits=lambda params, obs: q_net.apply(params["policy"], obs), greedy=spec.iql_deterministic)  # fmt: skip
