"""``bcq_jax``: discrete batch-constrained Q-learning, as the torch ``bcq`` (d3rlpy ``DiscreteBCQ`` as rlgen
configures it).

Network: one grid encoder shared by a linear Q head (one value per action) and a linear imitator head (action
logits), as d3rlpy's ``share_encoder=True``; the target is a copy of the whole network (its Q head is used).
Loss, per batch of transitions, stepped by one Adam over both heads and the encoder:

* TD: Huber (delta 1) between ``Q(s, a)`` and ``r + gamma (1 - terminated) Q_target(s', a')``, where ``a'`` is
  BCQ's own (constrained, see acting) action at ``s'`` by the online network: d3rlpy's ``DoubleDQNImpl`` target
  with ``DiscreteBCQImpl.inner_predict_best_action``;
* imitation: ``-mean(log pi(a|s)) + bcq_beta * mean(log pi(.|s)^2)`` (d3rlpy's ``compute_discrete_imitation_loss``;
  rlgen's ``bcq_beta`` 0.01 is the reference study's, d3rlpy's default is 0.5). The penalty is on the
  *normalized* logits, the log-probabilities: d3rlpy squares ``Categorical(logits=...).logits``, which torch
  stores normalized; the reference study's ``1e-2 * logits**2`` squares the raw ones.

Targets: a hard copy after updates 1, 1 + interval, ... Acting (greedy either way): among the actions whose
imitator probability is at least ``bcq_threshold`` times the most likely one's, the one of highest Q (d3rlpy's
``inner_predict_best_action``: Q shifted to be positive, plus 1e-5, times the mask, argmax).
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import optax

from rlgen.agents.offline_jax.bc import log_likelihood
from rlgen.agents.offline_jax.core import OfflineAlgo, Spec
from rlgen.agents.offline_jax.cql import hard_copy, huber, pick
from rlgen.agents.offline_jax.networks import shared_encoder_heads


def build(spec: Spec) -> OfflineAlgo:
    net = shared_encoder_heads(spec.num_actions)
    log_threshold = math.log(spec.bcq_threshold) if spec.bcq_threshold > 0 else -math.inf

    def init_params(key: Any, spec: Spec) -> Any:
        return {"net": net.init(key, jnp.zeros((1, *spec.observation_shape), jnp.uint8))}

    def scores(params: Any, obs: Any) -> Any:
        """``(B, A)`` scores whose argmax is BCQ's action: Q, shifted positive, on the imitator's allowed actions."""
        q, logits = net.apply(params["net"], obs)
        log_probs = jax.nn.log_softmax(logits, axis=-1)
        allowed = (log_probs - log_probs.max(axis=-1, keepdims=True)) > log_threshold
        return (q - q.min(axis=-1, keepdims=True) + 1e-5) * allowed.astype(q.dtype)

    def loss(params: Any, target: Any, batch: dict[str, Any], key: Any) -> tuple[Any, dict[str, Any]]:
        q, logits = net.apply(params["net"], batch["obs"])  # (B, A) each
        best_next = jnp.argmax(scores(params, batch["next_obs"]), axis=-1)  # the online network's constrained action ...
        q_next = pick(net.apply(target["net"], batch["next_obs"])[0], best_next)  # ... valued by the target network
        y = jax.lax.stop_gradient(batch["rewards"] + spec.gamma * q_next * (1.0 - batch["terminated"].astype(jnp.float32)))
        q_data = pick(q, batch["actions"])
        td = huber(q_data - y).mean()
        log_probs = jax.nn.log_softmax(logits, axis=-1)  # what d3rlpy's penalty squares (see the module docstring)
        imitation = -log_likelihood(logits, batch["actions"]).mean() + spec.bcq_beta * (log_probs**2).mean()
        return td + imitation, {"loss/td": td, "loss/imitator": imitation, "q/mean": q_data.mean()}

    return OfflineAlgo(init_params=init_params, loss=loss, optimizer=optax.adam(spec.learning_rate), init_target=lambda p: {"net": p["net"]},
                       update_target=hard_copy(spec.target_update_interval), logits=scores, greedy=True)  # fmt: skip
