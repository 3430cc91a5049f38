"""``dt_jax`` and ``bct_jax``: the causal transformer of the torch ``dt`` and ``bct`` (``rlgen.agents.transformer``),
with its loss, optimizer and acting (``tests/agents/test_offline_jax_dt.py`` maps torch weights onto these and
checks the loss, one AdamW update and the acting windows against the torch agent).

DT's tokens per step are (R_t, o_t, a_t), BCT's (o_t, a_t); every token of step ``t`` gets the embedding of
``t``, the step's 0-based index in its episode, in training windows and when acting alike; ``a_t`` is
predicted at the ``o_t`` token. Loss: cross-entropy of the logged actions averaged over the real (unpadded)
steps of the windows (``key`` None: without dropout, as the torch model in eval mode). AdamW (betas 0.9, 0.95) with weight decay 0.1 on the kernels of dense layers (the
grid convolutions, written as dense layers, included) and none on biases, LayerNorm and embeddings; the
gradient's global norm clipped at 1.0; dropout 0.1 (from each update's own key).

Acting is episodic: :func:`episodic_policy` gives pure functions over a carry holding each episode's last
``context_length`` steps (left-padded), for batched evaluation on device; DT starts every episode at return-to-go
``target_return`` and lowers it by each reward (``observe``).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import jax
import jax.numpy as jnp
import optax

from rlgen.agents.offline_jax.bc import log_likelihood
from rlgen.agents.offline_jax.core import OfflineAlgo, Spec
from rlgen.agents.offline_jax.networks import transformer

DROPOUT = 0.1
WEIGHT_DECAY = 0.1
ADAM_BETAS = (0.9, 0.95)
GRAD_CLIP_NORM = 1.0


def model_of(spec: Spec) -> Any:
    return transformer(spec.num_actions, spec.n_layers, spec.n_heads, spec.embed_dim, DROPOUT, spec.max_timestep, spec.algo == "dt_jax")


def decay_mask(params: Any) -> Any:
    """True for the leaves AdamW decays: dense kernels (minGPT's Linear/Conv2d weights), not biases, norms or embeddings."""
    return jax.tree_util.tree_map_with_path(lambda path, _: getattr(path[-1], "key", None) == "kernel", params)


def masked_cross_entropy(logits: Any, actions: Any, mask: Any) -> Any:
    """Mean of ``-log softmax(logits)[a]`` over the real steps: logits ``(B, L, A)``, actions and mask ``(B, L)``."""
    b, length, a = logits.shape
    nll = -log_likelihood(logits.reshape(b * length, a), actions.reshape(-1)).reshape(b, length)
    m = mask.astype(jnp.float32)
    return (nll * m).sum() / m.sum()


def build(spec: Spec) -> OfflineAlgo:
    model = model_of(spec)
    conditioned = spec.algo == "dt_jax"
    key_name = "loss/dt" if conditioned else "loss/bc"

    def init_params(key: Any, spec: Spec) -> Any:
        k = spec.context_length
        obs = jnp.zeros((1, k, *spec.observation_shape), jnp.uint8)
        zeros = jnp.zeros((1, k), jnp.int32)
        return {"model": model.init(key, obs, zeros, zeros, jnp.ones((1, k), bool), jnp.zeros((1, k), jnp.float32))}

    def loss(params: Any, target: Any, w: dict[str, Any], key: Any) -> tuple[Any, dict[str, Any]]:
        rtg = w["returns_to_go"] if conditioned else None
        if key is None:
            logits = model.apply(params["model"], w["obs"], w["actions"], w["timesteps"], w["mask"], rtg, deterministic=True)
        else:
            logits = model.apply(params["model"], w["obs"], w["actions"], w["timesteps"], w["mask"], rtg, deterministic=False, rngs={"dropout": key})
        ce = masked_cross_entropy(logits, w["actions"], w["mask"])
        return ce, {key_name: ce}

    optimizer = optax.chain(
        optax.clip_by_global_norm(GRAD_CLIP_NORM),
        optax.adamw(spec.learning_rate, b1=ADAM_BETAS[0], b2=ADAM_BETAS[1], eps=1e-8, weight_decay=WEIGHT_DECAY, mask=decay_mask),
    )
    return OfflineAlgo(init_params=init_params, loss=loss, optimizer=optimizer)


# --- acting ------------------------------------------------------------------------------------------------


def init_carry(spec: Spec, batch: int, target_return: float) -> dict[str, Any]:
    """No history yet for ``batch`` episodes: every window slot is padding; DT's return left is ``target_return``."""
    k = spec.context_length
    return {"obs": jnp.zeros((batch, k, *spec.observation_shape), jnp.uint8), "actions": jnp.zeros((batch, k), jnp.int32),
            "returns_to_go": jnp.zeros((batch, k), jnp.float32), "timesteps": jnp.zeros((batch, k), jnp.int32),
            "mask": jnp.zeros((batch, k), bool), "return_left": jnp.full((batch,), target_return, jnp.float32),
            "next_t": jnp.zeros((batch,), jnp.int32)}  # fmt: skip


def _push(window: Any, value: Any) -> Any:
    """Drop each row's oldest slot and append ``value`` (one per row) as the newest."""
    return jnp.concatenate([window[:, 1:], value[:, None]], axis=1)


@lru_cache(maxsize=32)
def episodic_steps(spec: Spec) -> tuple[Any, Any]:
    """``(step_logits, commit)``, the two halves of :func:`episodic_policy`'s ``act`` (for acting on the host with
    evaluation's uniforms, where the action is drawn outside JAX).

    ``step_logits(params, carry, obs (B, C, H, W)) -> (logits (B, A), window)`` appends the observation (at
    timestep ``next_t``, return-to-go ``return_left``) to each row's window and predicts at it; ``commit(window,
    actions (B,)) -> carry`` records the actions taken there and advances ``next_t``.
    """
    model = model_of(spec)
    conditioned = spec.algo == "dt_jax"

    def step_logits(params: Any, carry: dict[str, Any], obs: Any) -> tuple[Any, dict[str, Any]]:
        b = obs.shape[0]
        c = {"obs": _push(carry["obs"], obs.astype(jnp.uint8)), "returns_to_go": _push(carry["returns_to_go"], carry["return_left"]),
             "timesteps": _push(carry["timesteps"], carry["next_t"]), "mask": _push(carry["mask"], jnp.ones((b,), bool)),
             "actions": _push(carry["actions"], jnp.zeros((b,), jnp.int32))}  # the newest action is unknown: 0, never seen  # fmt: skip
        logits = model.apply(params["model"], c["obs"], c["actions"], c["timesteps"], c["mask"], c["returns_to_go"] if conditioned else None,
                             deterministic=True)[:, -1]  # fmt: skip
        return logits, {**carry, **c}

    def commit(window: dict[str, Any], actions: Any) -> dict[str, Any]:
        return {**window, "actions": window["actions"].at[:, -1].set(actions.astype(jnp.int32)), "next_t": window["next_t"] + 1}

    return step_logits, commit


@lru_cache(maxsize=32)
def episodic_policy(spec: Spec) -> tuple[Any, Any]:
    """``(act, observe)``, pure functions over a carry from :func:`init_carry`; one pair per spec (shared programs).

    ``act(params, carry, obs (B, C, H, W), keys (B, 2), deterministic) -> (actions (B,), carry)`` appends the
    observation (at timestep ``next_t``, return-to-go ``return_left``) to each row's window and predicts at it;
    ``observe(carry, rewards (B,)) -> carry`` lowers DT's return left by the rewards that followed.
    """
    step_logits, commit = episodic_steps(spec)

    def act(params: Any, carry: dict[str, Any], obs: Any, keys: Any, deterministic: bool) -> tuple[Any, dict[str, Any]]:
        logits, window = step_logits(params, carry, obs)
        actions = jnp.argmax(logits, axis=-1) if deterministic else jax.vmap(jax.random.categorical)(keys, logits)
        actions = actions.astype(jnp.int32)
        return actions, commit(window, actions)

    def observe(carry: dict[str, Any], rewards: Any) -> dict[str, Any]:
        return {**carry, "return_left": carry["return_left"] - rewards.astype(jnp.float32)}

    return act, observe
