"""The JAX offline agents' networks (flax), layer for layer the torch agents' on small symbolic grids.

* :class:`GridEncoder` is ``rlgen.agents.networks.MiniGridEncoder`` (``network: minigrid_cnn``): inputs / 10,
  three 2x2 VALID convolutions (16, 32, 64 channels) with ReLU, flattened, a 128-unit ReLU layer. The
  convolutions are written as window slices and a ``Dense``, as in the JAX PPO (``rlgen.agents.ppo_jax.network``):
  XLA's CPU convolution inside a ``lax.scan`` body measured ~60x slower than outside it.
* :class:`Head` puts a linear layer (BC, CQL) or a 256-unit ReLU layer and a linear layer (IQL's
  ``EncoderHead``) on an encoder.
* :class:`CausalTransformer` is ``rlgen.agents.transformer.CausalTransformer``: (R, o, a) or (o, a) tokens,
  a learned embedding of each step's 0-based timestep, pre-norm GELU blocks, a last LayerNorm.

Initialization follows PyTorch's defaults (``Linear``/``Conv2d``: uniform in +-1/sqrt(fan_in) for weights and
biases; ``Embedding``: N(0, 1); attention's input projection: Xavier uniform, zero biases), so a JAX agent
starts from the same distribution as its torch counterpart. Layouts differ from torch's: a convolution's
kernel is ``(4 * C_in, C_out)`` with rows ordered (dy, dx, channel), features are flattened channel-last
(H, W, C); ``tests/agents/test_offline_jax_losses.py`` maps torch weights onto these layouts.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import lru_cache
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

#: MiniGridEncoder's scale: symbolic codes are small ints.
INPUT_SCALE = 10.0
CONV_CHANNELS = (16, 32, 64)
ENCODER_FEATURES = 128
#: IQL's hidden layer after each encoder (rlgen.agents.iql.HIDDEN_DIM).
HEAD_HIDDEN = 256
#: PyTorch's LayerNorm epsilon (flax's default is 1e-6).
LAYER_NORM_EPS = 1e-5


def torch_uniform(fan_in: int) -> Callable[..., Any]:
    """PyTorch's default ``Linear``/``Conv2d`` initializer: U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
    bound = 1.0 / math.sqrt(fan_in)

    def init(key: Any, shape: tuple[int, ...], dtype: Any = jnp.float32) -> Any:
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


class TorchDense(nn.Module):
    """``nn.Linear`` in flax: ``kernel (in, out)``, ``bias (out,)``, initialized as PyTorch does."""

    features: int
    zero_bias: bool = False

    @nn.compact
    def __call__(self, x: Any) -> Any:
        fan_in = x.shape[-1]
        kernel = self.param("kernel", torch_uniform(fan_in), (fan_in, self.features))
        bias = self.param("bias", nn.initializers.zeros if self.zero_bias else torch_uniform(fan_in), (self.features,))
        return x @ kernel + bias


def patches_2x2(x: Any) -> Any:
    """``(N, H, W, C)`` -> ``(N, H-1, W-1, 4C)``: every 2x2 window (rows dy, dx, channel), so a ``Dense`` on it
    is a 2x2 VALID convolution (matmuls run at the same speed in and out of ``lax.scan``; XLA's CPU
    convolution does not)."""
    h, w = x.shape[1] - 1, x.shape[2] - 1
    return jnp.concatenate([x[:, i : i + h, j : j + w, :] for i in (0, 1) for j in (0, 1)], axis=-1)


class GridEncoder(nn.Module):
    """MiniGridEncoder: ``(N, C, H, W)`` symbolic codes (uint8) -> ``(N, 128)`` features."""

    @nn.compact
    def __call__(self, obs: Any) -> Any:
        x = jnp.transpose(obs.astype(jnp.float32) / INPUT_SCALE, (0, 2, 3, 1))  # (N, H, W, C)
        for i, ch in enumerate(CONV_CHANNELS):
            x = nn.relu(TorchDense(ch, name=f"conv{i}")(patches_2x2(x)))
        return nn.relu(TorchDense(ENCODER_FEATURES, name="fc")(x.reshape(x.shape[0], -1)))


class Head(nn.Module):
    """An encoder and its output layer: ``(N, C, H, W)`` -> ``(N, out)``; ``hidden`` > 0 adds a ReLU layer first."""

    out: int
    hidden: int = 0

    @nn.compact
    def __call__(self, obs: Any) -> Any:
        z = GridEncoder(name="encoder")(obs)
        if self.hidden:
            z = nn.relu(TorchDense(self.hidden, name="hidden")(z))
        return TorchDense(self.out, name="out")(z)


def check_grid(observation_shape: tuple[int, ...]) -> None:
    """The encoder's three 2x2 convolutions need a ``(C, H, W)`` grid of at least 4x4 (as minigrid_cnn)."""
    from rlgen.errors import ConfigError  # noqa: PLC0415

    if len(observation_shape) != 3 or min(observation_shape[1:]) < 4:
        raise ConfigError(f"the JAX agents' grid CNN needs (C, H, W) observations of at least 4x4, got {tuple(observation_shape)}")


# --- the causal transformer of DT and BCT ----------------------------------------------------------------


class SelfAttention(nn.Module):
    """``nn.MultiheadAttention`` (fused input projection, Xavier uniform, zero biases) over ``(B, T, D)``,
    ``allowed`` ``(B, T, T)`` True where a query may attend to a key."""

    heads: int
    dropout: float

    @nn.compact
    def __call__(self, x: Any, allowed: Any, deterministic: bool) -> Any:
        b, t, d = x.shape
        qkv = nn.Dense(3 * d, kernel_init=nn.initializers.xavier_uniform(), name="in_proj")(x)  # (B, T, 3D)
        q, k, v = (a.reshape(b, t, self.heads, d // self.heads) for a in jnp.split(qkv, 3, axis=-1))
        scores = jnp.einsum("bqhd,bkhd->bhqk", q, k) / math.sqrt(d // self.heads)
        scores = jnp.where(allowed[:, None], scores, -jnp.inf)
        probs = nn.Dropout(self.dropout)(jax.nn.softmax(scores, axis=-1), deterministic=deterministic)
        out = jnp.einsum("bhqk,bkhd->bqhd", probs, v).reshape(b, t, d)
        return TorchDense(d, zero_bias=True, name="out_proj")(out)


class Block(nn.Module):
    """``nn.TransformerEncoderLayer(norm_first=True, activation="gelu")``: x + SA(LN(x)), then x + FF(LN(x))."""

    heads: int
    dropout: float

    @nn.compact
    def __call__(self, x: Any, allowed: Any, deterministic: bool) -> Any:
        d = x.shape[-1]
        h = nn.LayerNorm(epsilon=LAYER_NORM_EPS, name="norm1")(x)
        x = x + nn.Dropout(self.dropout)(SelfAttention(self.heads, self.dropout, name="self_attn")(h, allowed, deterministic), deterministic=deterministic)
        h = nn.LayerNorm(epsilon=LAYER_NORM_EPS, name="norm2")(x)
        h = nn.gelu(TorchDense(4 * d, name="linear1")(h), approximate=False)  # torch's "gelu" is the exact erf form
        h = TorchDense(d, name="linear2")(nn.Dropout(self.dropout)(h, deterministic=deterministic))
        return x + nn.Dropout(self.dropout)(h, deterministic=deterministic)


class CausalTransformer(nn.Module):
    """``(obs, actions, timesteps, mask[, returns_to_go])`` windows -> action logits ``(B, L, A)``.

    obs ``(B, L, C, H, W)`` uint8, actions ``(B, L)`` int (``actions[:, t]`` reaches only later steps'
    predictions), timesteps ``(B, L)`` 0-based, clamped to ``max_timestep - 1``, mask ``(B, L)`` bool
    (False: left padding, hidden from every real token), returns_to_go ``(B, L)`` float (DT only).
    """

    num_actions: int
    n_layers: int
    n_heads: int
    embed_dim: int
    dropout: float
    max_timestep: int
    return_conditioned: bool

    @nn.compact
    def __call__(self, obs: Any, actions: Any, timesteps: Any, mask: Any, returns_to_go: Any = None, deterministic: bool = True) -> Any:
        b, length = actions.shape
        k = 3 if self.return_conditioned else 2
        normal = nn.initializers.normal(1.0)  # nn.Embedding's N(0, 1)
        features = GridEncoder(name="encoder")(obs.reshape(b * length, *obs.shape[2:])).reshape(b, length, -1)
        time = nn.Embed(self.max_timestep, self.embed_dim, embedding_init=normal, name="timestep_embed")(jnp.clip(timesteps, 0, self.max_timestep - 1))
        per_step = [TorchDense(self.embed_dim, name="obs_embed")(features) + time,
                    nn.Embed(self.num_actions, self.embed_dim, embedding_init=normal, name="action_embed")(actions) + time]  # fmt: skip
        if self.return_conditioned:
            rtg = returns_to_go.astype(jnp.float32).reshape(b, length, 1)
            per_step.insert(0, TorchDense(self.embed_dim, name="return_embed")(rtg) + time)
        tokens = jnp.stack(per_step, axis=2).reshape(b, k * length, self.embed_dim)  # [R_0,] o_0, a_0, [R_1,] o_1, ...
        tokens = nn.LayerNorm(epsilon=LAYER_NORM_EPS, name="embed_norm")(tokens)
        x = nn.Dropout(self.dropout)(tokens, deterministic=deterministic)
        # A token attends to earlier-or-same real tokens; a padding token to itself only (no all-blocked row).
        real = jnp.repeat(mask, k, axis=1)  # (B, kL)
        causal = jnp.tril(jnp.ones((k * length, k * length), bool))
        allowed = causal[None] & (real[:, None, :] | jnp.eye(k * length, dtype=bool)[None])
        for i in range(self.n_layers):
            x = Block(self.n_heads, self.dropout, name=f"layer{i}")(x, allowed, deterministic)
        x = nn.LayerNorm(epsilon=LAYER_NORM_EPS, name="final_norm")(x)
        return TorchDense(self.num_actions, name="action_head")(x[:, k - 2 :: k])  # at the observation tokens


@lru_cache(maxsize=64)
def transformer(num_actions: int, n_layers: int, n_heads: int, embed_dim: int, dropout: float, max_timestep: int,
                return_conditioned: bool) -> CausalTransformer:  # fmt: skip
    """One module object per architecture, so jitted functions closing over it are shared."""
    return CausalTransformer(num_actions, n_layers, n_heads, embed_dim, dropout, max_timestep, return_conditioned)


@lru_cache(maxsize=64)
def head(out: int, hidden: int = 0) -> Head:
    """One module object per architecture (see :func:`transformer`)."""
    return Head(out, hidden)


class SharedEncoderHeads(nn.Module):
    """One grid encoder under two linear heads, ``(N, C, H, W)`` -> ``((N, A) q, (N, A) imitator logits)``:
    d3rlpy ``DiscreteBCQ``'s Q-function and imitator with ``share_encoder=True`` (its default)."""

    num_actions: int

    @nn.compact
    def __call__(self, obs: Any) -> tuple[Any, Any]:
        z = GridEncoder(name="encoder")(obs)
        return TorchDense(self.num_actions, name="q")(z), TorchDense(self.num_actions, name="imitator")(z)


@lru_cache(maxsize=64)
def shared_encoder_heads(num_actions: int) -> SharedEncoderHeads:
    """One module object per architecture (see :func:`transformer`)."""
    return SharedEncoderHeads(num_actions)
