"""``bc_jax``: behaviour cloning, as the torch ``bc`` (d3rlpy ``DiscreteBC`` with ``beta=0``).

Network: the grid encoder and a linear layer to the action logits (d3rlpy's ``CategoricalPolicy``). Loss: the
negative log-likelihood of the dataset's actions, averaged over the batch (no logit penalty, as the reference
study). Adam (betas 0.9, 0.999, eps 1e-8) at ``learning_rate``. Acts by sampling its softmax policy, greedily
with ``deterministic``.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax

from rlgen.agents.offline_jax.core import OfflineAlgo, Spec
from rlgen.agents.offline_jax.networks import head


def log_likelihood(logits: Any, actions: Any) -> Any:
    """``log softmax(logits)[a]`` per row: logits ``(B, A)``, actions ``(B,)`` -> ``(B,)``."""
    return jnp.take_along_axis(jax.nn.log_softmax(logits, axis=-1), actions[:, None].astype(jnp.int32), axis=1)[:, 0]


def build(spec: Spec) -> OfflineAlgo:
    net = head(spec.num_actions)

    def init_params(key: Any, spec: Spec) -> Any:
        return {"policy": net.init(key, jnp.zeros((1, *spec.observation_shape), jnp.uint8))}

    def loss(params: Any, target: Any, batch: dict[str, Any], key: Any) -> tuple[Any, dict[str, Any]]:
        nll = -log_likelihood(net.apply(params["policy"], batch["obs"]), batch["actions"]).mean()
        return nll, {"loss/imitation": nll}

    return OfflineAlgo(init_params=init_params, loss=loss, optimizer=optax.adam(spec.learning_rate),
                       logits=lambda params, obs: net.apply(params["policy"], obs))  # fmt: skip
