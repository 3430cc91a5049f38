"""``cql_jax``: discrete conservative Q-learning, as the torch ``cql`` (d3rlpy ``DiscreteCQL``).

Network: the grid encoder and a linear layer to one Q-value per action (d3rlpy's ``DiscreteMeanQFunction``,
one critic), with a target copy. Loss, per batch of transitions:

* TD: Huber (delta 1) between ``Q(s, a)`` and the double-DQN target ``r + gamma (1 - terminated)
  Q_target(s', argmax_a' Q(s', a'))`` (the argmax by the online network, as d3rlpy's ``DoubleDQNImpl``);
* conservative: ``cql_alpha * mean(logsumexp_a Q(s, .) - Q(s, a))``.

Adam at ``learning_rate``; the target is a hard copy after updates 1, 1 + interval, ... (d3rlpy's
``grad_step % target_update_interval == 0`` before the step). Acts greedily on Q either way.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax

from rlgen.agents.offline_jax.core import OfflineAlgo, Spec
from rlgen.agents.offline_jax.networks import head


def pick(values: Any, actions: Any) -> Any:
    """``values[i, actions[i]]``: ``(B, A)``, ``(B,)`` -> ``(B,)``."""
    return jnp.take_along_axis(values, actions[:, None].astype(jnp.int32), axis=1)[:, 0]


def huber(diff: Any, delta: float = 1.0) -> Any:
    """d3rlpy's ``compute_huber_loss``: ``0.5 d^2`` where ``|d| < delta``, else ``delta (|d| - delta / 2)``."""
    return jnp.where(jnp.abs(diff) < delta, 0.5 * diff**2, delta * (jnp.abs(diff) - 0.5 * delta))


def hard_copy(interval: int) -> Any:
    """``update_target`` that copies the online networks every ``interval`` updates (the first after update 1)."""

    def update_target(target: Any, params: Any, step: Any) -> Any:
        copy = step % interval == 0
        return jax.tree_util.tree_map(lambda t, p: jnp.where(copy, p, t), target, {k: params[k] for k in target})

    return update_target


def build(spec: Spec) -> OfflineAlgo:
    net = head(spec.num_actions)

    def init_params(key: Any, spec: Spec) -> Any:
        return {"q": net.init(key, jnp.zeros((1, *spec.observation_shape), jnp.uint8))}

    def loss(params: Any, target: Any, batch: dict[str, Any], key: Any) -> tuple[Any, dict[str, Any]]:
        q = net.apply(params["q"], batch["obs"])  # (B, A)
        best_next = jnp.argmax(net.apply(params["q"], batch["next_obs"]), axis=-1)  # double DQN: the online network picks
        q_next = pick(net.apply(target["q"], batch["next_obs"]), best_next)  # ... and the target network values it
        y = jax.lax.stop_gradient(batch["rewards"] + spec.gamma * q_next * (1.0 - batch["terminated"].astype(jnp.float32)))
        q_data = pick(q, batch["actions"])
        td = huber(q_data - y).mean()
        conservative = (jax.scipy.special.logsumexp(q, axis=-1) - q_data).mean()
        return td + spec.cql_alpha * conservative, {"loss/td": td, "loss/conservative": conservative, "q/mean": q_data.mean()}

    return OfflineAlgo(init_params=init_params, loss=loss, optimizer=optax.adam(spec.learning_rate), init_target=lambda p: {"q": p["q"]},
                       update_target=hard_copy(spec.target_update_interval), logits=lambda params, obs: net.apply(params["q"], obs),
                       greedy=True)  # fmt: skip
