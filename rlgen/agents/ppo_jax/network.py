"""The JAX PPO's actor-critic over xminigrid's symbolic view, and its policy as a pure function."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

# xminigrid's symbolic codes: 13 tiles, 12 colours; goal encodings hold small ints (< 256).
NUM_TILES, NUM_COLORS, CODE_VOCAB = 13, 12, 256


def _jax() -> Any:
    try:
        import jax  # noqa: PLC0415
    except ImportError as e:  # pragma: no cover - depends on the installation
        from rlgen.errors import DependencyError  # noqa: PLC0415

        raise DependencyError(f"the JAX PPO needs JAX, flax and optax ({e}); install them with: pip install 'rlgen[jax]'") from None
    return jax


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


@lru_cache(maxsize=32)
def network_policy(network: Any) -> Any:
    """The pure policy function of ``network`` (``rlgen.evaluation.jax.JaxPolicy.act``):
    ``act(params, obs, keys, deterministic) -> actions``, the argmax of the logits or one categorical
    draw per row from its key. One function object per network, so its compiled programs are shared."""
    jax = _jax()

    def act(params: Any, obs: Any, keys: Any, deterministic: bool) -> Any:
        logits, _ = network.apply(params, obs)
        if deterministic:
            return jax.numpy.argmax(logits, axis=-1)
        return jax.vmap(jax.random.categorical)(keys, logits)

    return act
