"""Behaviour-cloning transformer (BCT): a GPT-style causal transformer over (observation, action)
histories, trained to predict the logged action, with no return conditioning.

It is a Decision Transformer without the return-to-go tokens (the "BCT" baseline of offline
generalization studies). Each timestep contributes two tokens, in this order::

    o_0, a_0, o_1, a_1, ..., o_t, a_t

an observation token (encoder -> linear to ``embed_dim``) and an action token (an embedding). Both
get the same learned embedding of the step's timestep within its episode. ``a_t`` is predicted
from the hidden state of the ``o_t`` token, which under the causal mask sees ``o_<=t`` and
``a_<t``. Left padding (``mask`` False) is hidden from every real token.

Acting is episodic: the agent keeps each episode's last ``context_length`` observations and its
own actions, keyed by the ids the caller passes (``reset``/``act``/``observe``).
"""

from __future__ import annotations

import copy
from collections import deque
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from rlgen.agents.networks import as_tensor, make_encoder

WEIGHT_DECAY = 1e-4  # AdamW, as in the Decision Transformer's training recipe
GRAD_CLIP_NORM = 1.0  # transformers occasionally take huge gradient steps early; clip the global norm


class CausalTransformerPolicy(nn.Module):
    """The network: ``(obs, actions, timesteps, mask)`` windows -> action logits at every step."""

    def __init__(
        self,
        observation_shape: Sequence[int],
        num_actions: int,
        encoder: str,
        context_length: int,
        n_layers: int,
        n_heads: int,
        embed_dim: int,
        dropout: float,
        max_timestep: int,
    ) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.max_timestep = max_timestep
        self.encoder = make_encoder(encoder, observation_shape)
        self.obs_embed = nn.Linear(self.encoder.features_dim, embed_dim)
        self.action_embed = nn.Embedding(num_actions, embed_dim)
        self.timestep_embed = nn.Embedding(max_timestep, embed_dim)
        self.embed_norm = nn.LayerNorm(embed_dim)
        self.embed_dropout = nn.Dropout(dropout)
        layer = nn.TransformerEncoderLayer(
            embed_dim, n_heads, dim_feedforward=4 * embed_dim, dropout=dropout, activation="gelu", batch_first=True, norm_first=True
        )
        # Pre-norm layers leave the residual stream unnormalized: one last LayerNorm, as in GPT-2.
        self.transformer = nn.TransformerEncoder(layer, n_layers, norm=nn.LayerNorm(embed_dim), enable_nested_tensor=False)
        self.action_head = nn.Linear(embed_dim, num_actions)
        causal = torch.ones(2 * context_length, 2 * context_length, dtype=torch.bool).tril()
        self.register_buffer("causal", causal, persistent=False)  # (2L_max, 2L_max), True = may attend

    def forward(self, obs: torch.Tensor, actions: torch.Tensor, timesteps: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Action logits ``(B, L, A)``; entry ``t`` predicts ``a_t`` from ``o_<=t`` and ``a_<t``.

        Args:
            obs: ``(B, L, C, H, W)`` uint8 (or raw-valued float) observations.
            actions: ``(B, L)`` int64; ``actions[:, t]`` only reaches the predictions of later steps,
                so the last one may be anything (0 at acting time).
            timesteps: ``(B, L)`` int64 steps within the episode, clamped to ``max_timestep - 1``.
            mask: ``(B, L)`` bool, True for real steps, False for (left) padding. ``L`` is at most
                ``context_length``.
        """
        b, length = actions.shape
        features = self.encoder(obs.reshape(b * length, *obs.shape[2:])).reshape(b, length, -1)  # (B, L, F)
        time = self.timestep_embed(timesteps.clamp(0, self.max_timestep - 1))  # (B, L, D)
        obs_tokens = self.obs_embed(features) + time  # (B, L, D)
        action_tokens = self.action_embed(actions) + time  # (B, L, D)
        tokens = torch.stack([obs_tokens, action_tokens], dim=2).reshape(b, 2 * length, -1)  # (B, 2L, D): o_0, a_0, o_1, ...
        tokens = self.embed_dropout(self.embed_norm(tokens))

        # A token may attend to earlier-or-same real tokens. A padding token attends to itself
        # only: a row with every key masked would give NaNs that reach the gradients.
        real = mask.repeat_interleave(2, dim=1)  # (B, 2L)
        causal = self.causal[: 2 * length, : 2 * length]  # (2L, 2L)
        diagonal = torch.eye(2 * length, dtype=torch.bool, device=tokens.device)
        allowed = causal & (real[:, None, :] | diagonal)  # (B, 2L, 2L)
        blocked = (~allowed).repeat_interleave(self.n_heads, dim=0)  # (B * heads, 2L, 2L), True = may not attend

        hidden = self.transformer(tokens, mask=blocked)  # (B, 2L, D)
        return self.action_head(hidden[:, 0::2])  # (B, L, A): at the observation tokens


class BCTransformer:
    """Behaviour cloning with a causal transformer over the last ``context_length`` steps.

    Args:
        observation_shape: ``(C, H, W)``.
        num_actions: size of the discrete action space.
        encoder: one of ``networks.ENCODERS`` (``"impala"`` for Procgen, ``"minigrid_cnn"`` for MiniGrid).
        context_length: steps per window (training windows must have this length).
        n_layers, n_heads, embed_dim, dropout: transformer size (feed-forward width ``4 * embed_dim``).
        learning_rate: AdamW step size.
        max_timestep: size of the timestep embedding; later steps share its last entry.
        device: torch device.
        seed: initial weights and the sampling of ``act(deterministic=False)``. Dropout draws from
            the global torch RNG, which this class does not touch.
    """

    episodic = True  # act() needs keys, reset() and observe() to follow episodes

    def __init__(
        self,
        observation_shape: tuple[int, ...],
        num_actions: int,
        encoder: str = "impala",
        context_length: int = 10,
        n_layers: int = 6,
        n_heads: int = 8,
        embed_dim: int = 128,
        learning_rate: float = 5e-4,
        dropout: float = 0.1,
        max_timestep: int = 1000,
        device: str = "cpu",
        seed: int = 0,
    ) -> None:
        self.config = {
            "observation_shape": tuple(observation_shape), "num_actions": int(num_actions), "encoder": encoder,
            "context_length": context_length, "n_layers": n_layers, "n_heads": n_heads, "embed_dim": embed_dim,
            "learning_rate": learning_rate, "dropout": dropout, "max_timestep": max_timestep, "seed": seed,
        }  # fmt: skip
        self.observation_shape = tuple(observation_shape)
        self.context_length = context_length
        self.device = torch.device(device)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.model = CausalTransformerPolicy(
                observation_shape, num_actions, encoder, context_length, n_layers, n_heads, embed_dim, dropout, max_timestep
            ).to(self.device)
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=learning_rate, weight_decay=WEIGHT_DECAY)
        # Sampling happens on the CPU so the generator state is the same whatever the device.
        self.generator = torch.Generator().manual_seed(seed)
        self.num_updates = 0
        # Per episode key: the last `context_length` observations, the actions taken after them,
        # and the timestep of the next observation.
        self._history: dict[int, dict[str, Any]] = {}

    # --- training ------------------------------------------------------------------------------------
    def loss(self, windows: dict[str, Any]) -> torch.Tensor:
        """Cross-entropy of the logged actions at the real (unpadded) steps of the windows.

        Args:
            windows: as ``Dataset.sample_windows(batch, context_length)`` returns them: ``obs``
                ``(B, L, C, H, W)`` uint8, ``actions`` ``(B, L)`` int64, ``timesteps`` ``(B, L)``
                int64, ``mask`` ``(B, L)`` bool. Rewards and returns are not used.
        """
        obs = as_tensor(windows["obs"], self.device)  # (B, L, C, H, W)
        actions = as_tensor(windows["actions"], self.device).long()  # (B, L)
        timesteps = as_tensor(windows["timesteps"], self.device).long()  # (B, L)
        mask = as_tensor(windows["mask"], self.device).bool()  # (B, L)
        logits = self.model(obs, actions, timesteps, mask)  # (B, L, A)
        return F.cross_entropy(logits[mask], actions[mask])

    def update(self, windows: dict[str, Any]) -> dict[str, float]:
        """One AdamW step on ``loss(windows)``, with the gradient norm clipped."""
        if windows["actions"].shape[1] > self.context_length:
            raise ValueError(f"windows of {windows['actions'].shape[1]} steps; this model's context_length is {self.context_length}")
        self.model.train()
        loss = self.loss(windows)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), GRAD_CLIP_NORM)
        self.optimizer.step()
        self.num_updates += 1
        return {"loss/bc": float(loss.detach()), "grad_norm": float(grad_norm)}

    # --- acting ----------------------------------------------------------------------------------------
    def reset(self, keys: Sequence[int]) -> None:
        """New episodes start for ``keys``: forget their histories."""
        for key in keys:
            self._history.pop(int(key), None)

    def observe(self, keys: Sequence[int], rewards: np.ndarray) -> None:
        """Rewards after the last ``act``; BCT does not condition on rewards, so nothing to do."""

    @torch.no_grad()
    def act(self, obs: np.ndarray, deterministic: bool = False, keys: Sequence[int] | None = None) -> np.ndarray:
        """Actions for a batch of observations ``(B, C, H, W)`` -> ``(B,)`` int64.

        ``keys[i]`` names the episode row ``i`` belongs to: its observation is appended to that
        episode's history (a key never seen, or ``reset``, starts a new one) and the action is
        predicted from the last ``context_length`` steps. Without ``keys`` every row is the first
        step of its own episode and nothing is remembered.
        """
        obs = np.asarray(obs.cpu() if isinstance(obs, torch.Tensor) else obs)
        if keys is None:
            histories = [self._new_history() for _ in range(len(obs))]
        else:
            keys = [int(k) for k in keys]
            if len(keys) != len(obs) or len(set(keys)) != len(keys):
                raise ValueError(f"act needs one distinct key per observation; got {len(keys)} keys for {len(obs)} rows")
            histories = [self._history.setdefault(k, self._new_history()) for k in keys]
        for h, o in zip(histories, obs):
            h["obs"].append(np.array(o))  # copy: callers reuse their observation buffers

        # Left-padded batch as long as the longest history; with padding masked out the result
        # does not depend on how much padding a row gets.
        b, length = len(histories), max(len(h["obs"]) for h in histories)
        window_obs = np.zeros((b, length, *obs.shape[1:]), dtype=obs.dtype)
        window_actions = np.zeros((b, length), dtype=np.int64)  # the last step's action is unknown: 0, never seen
        timesteps = np.zeros((b, length), dtype=np.int64)
        mask = np.zeros((b, length), dtype=bool)
        for i, h in enumerate(histories):
            n = len(h["obs"])
            window_obs[i, length - n :] = np.stack(h["obs"])
            if n > 1:  # the actions taken after this window's earlier observations
                window_actions[i, length - n : length - 1] = list(h["actions"])[-(n - 1) :]
            timesteps[i, length - n :] = np.arange(h["next_t"] - n + 1, h["next_t"] + 1)
            mask[i, length - n :] = True

        self.model.eval()
        logits = self.model(
            as_tensor(window_obs, self.device), as_tensor(window_actions, self.device),
            as_tensor(timesteps, self.device), as_tensor(mask, self.device),
        )[:, -1].float().cpu()  # (B, A): the prediction at each row's latest observation  # fmt: skip
        if deterministic:
            actions = logits.argmax(dim=-1)
        else:
            actions = torch.multinomial(torch.softmax(logits, dim=-1), 1, generator=self.generator).squeeze(1)
        actions_np = actions.numpy().astype(np.int64)
        for h, a in zip(histories, actions_np):
            h["actions"].append(int(a))
            h["next_t"] += 1
        return actions_np

    def _new_history(self) -> dict[str, Any]:
        return {"obs": deque(maxlen=self.context_length), "actions": deque(maxlen=self.context_length), "next_t": 0}

    # --- checkpoints -----------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Network, optimizer and sampler state (resumable training). Episode histories are not saved."""
        return {
            "config": dict(self.config),
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "generator": self.generator.get_state(),
            "num_updates": self.num_updates,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore ``state_dict()``'s output; episode histories are cleared."""
        self.model.load_state_dict(state["model"])
        # A copy: the optimizer would otherwise keep updating the moment tensors of `state` in place
        # (and those of the agent it came from, for an in-memory state_dict()).
        self.optimizer.load_state_dict(copy.deepcopy(state["optimizer"]))
        self.generator.set_state(state["generator"].cpu())
        self.num_updates = int(state["num_updates"])
        self._history.clear()
