"""The causal transformer shared by BCT and Decision Transformer, and its training and acting.

One network, two token layouts. Each timestep of a window contributes, in this order::

    BCT:  o_t, a_t            (behaviour cloning on the observation-action history)
    DT:   R_t, o_t, a_t       (R_t: return-to-go, the rewards from step t to the episode's end)

an observation token (encoder -> linear to ``embed_dim``), an action token (an embedding) and, for
DT, a return token (a linear map of the scalar R_t). Every token of step ``t`` gets the same
learned embedding of ``t``, the step's index in its episode (0 at the first observation, in
training windows and when acting alike). ``a_t`` is predicted from the hidden state of the
``o_t`` token, which under the causal mask sees ``R_<=t``, ``o_<=t`` and ``a_<t``. Left padding
(``mask`` False) is hidden from every real token.

The training recipe is the reference study's (gen_dgrl ``offline/agents/dt.py`` and
``utils/gpt_arch.py``, from minGPT): AdamW with betas (0.9, 0.95) and weight decay 0.1 on the
weights of linear and convolution layers only (no decay on biases, LayerNorm and embedding
weights), gradient norm clipped at 1.0, cross-entropy over the real (unpadded) steps only.

Acting is episodic and batched: the agent keeps each episode's last ``context_length`` steps,
keyed by the ids the caller passes (``reset``/``act``/``observe``), and decides for every row of
a batch in one forward pass, each row with its own history. A step's tokens depend on that step
alone, so they are computed once, when its observation arrives (the encoder sees each observation
once), and the top layer runs for the last observation token only (``decode_last``).

Training memory: a batch of ``B`` windows of ``K`` steps sends ``B * K`` frames through the encoder
(5,120 at the reference batch 512 x 10), and autograd would keep every convolution's float32
activations for all of them: DT's peak RSS was 9.2 GiB on CPU (``bench/memory.py``). With
``encoder_chunk`` frames per chunk, each chunk runs under activation checkpointing: only its
``(chunk, features)`` output is kept, and its activations are recomputed, one chunk at a time, in
the backward pass (3.4 GiB with chunks of 512, the config's default). The loss and gradients are the same up to float rounding (convolutions may pick
other kernels for another batch size); the cost is one more encoder forward pass per update
(README, "Performance", has the measured memory and time).
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
from torch.utils.checkpoint import checkpoint

from rlgen.agents.networks import as_tensor, make_encoder, prefers_channels_last
from rlgen.evaluation.episodes import sample_from_uniforms

WEIGHT_DECAY = 0.1  # on linear/conv weights only (minGPT's parameter groups, as the reference)
ADAM_BETAS = (0.9, 0.95)
GRAD_CLIP_NORM = 1.0


class CausalTransformer(nn.Module):
    """``(obs, actions, timesteps, mask[, returns_to_go])`` windows -> action logits at every step.

    Parameter names (``encoder``, ``obs_embed``, ``action_embed``, ``timestep_embed``,
    ``embed_norm``, ``transformer``, ``action_head``, and ``return_embed`` with returns) are part of
    the checkpoint format.

    ``encoder_chunk`` (frames, ``None`` or 0: off) bounds the encoder's training memory (``encode``);
    it is a setting, not a parameter, and may be changed at any time.
    """

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
        return_conditioned: bool = False,
        channels_last: bool = False,
        encoder_chunk: int | None = None,
    ) -> None:
        super().__init__()
        self.encoder_chunk = encoder_chunk
        self.n_heads = n_heads
        self.max_timestep = max_timestep
        self.return_conditioned = return_conditioned
        self.tokens_per_step = 3 if return_conditioned else 2
        self.encoder = make_encoder(encoder, observation_shape, channels_last=channels_last)  # memory format only
        self.obs_embed = nn.Linear(self.encoder.features_dim, embed_dim)
        self.action_embed = nn.Embedding(num_actions, embed_dim)
        if return_conditioned:
            self.return_embed = nn.Linear(1, embed_dim)
        self.timestep_embed = nn.Embedding(max_timestep, embed_dim)
        self.embed_norm = nn.LayerNorm(embed_dim)
        self.embed_dropout = nn.Dropout(dropout)
        layer = nn.TransformerEncoderLayer(
            embed_dim, n_heads, dim_feedforward=4 * embed_dim, dropout=dropout, activation="gelu", batch_first=True, norm_first=True
        )
        # Pre-norm layers leave the residual stream unnormalized: one last LayerNorm, as in GPT-2.
        self.transformer = nn.TransformerEncoder(layer, n_layers, norm=nn.LayerNorm(embed_dim), enable_nested_tensor=False)
        self.action_head = nn.Linear(embed_dim, num_actions)
        n = self.tokens_per_step * context_length
        self.register_buffer("causal", torch.ones(n, n, dtype=torch.bool).tril(), persistent=False)  # True = may attend

    def forward(
        self, obs: torch.Tensor, actions: torch.Tensor, timesteps: torch.Tensor, mask: torch.Tensor, returns_to_go: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Action logits ``(B, L, A)``; entry ``t`` predicts ``a_t`` from ``o_<=t``, ``a_<t`` (and ``R_<=t``).

        Args:
            obs: ``(B, L, C, H, W)`` uint8 (or raw-valued float) observations.
            actions: ``(B, L)`` int64; ``actions[:, t]`` only reaches the predictions of later steps,
                so the last one may be anything (0 at acting time).
            timesteps: ``(B, L)`` int64 steps within the episode (0-based), clamped to ``max_timestep - 1``.
            mask: ``(B, L)`` bool, True for real steps, False for (left) padding. ``L`` is at most
                ``context_length``.
            returns_to_go: ``(B, L)`` float, needed by a return-conditioned network and ignored otherwise.
        """
        tokens = self.step_tokens(obs, actions, timesteps, returns_to_go)  # (B, L, k, D)
        return self.decode(self.embed_dropout(tokens.flatten(1, 2)), mask)

    def step_tokens(
        self, obs: torch.Tensor, actions: torch.Tensor, timesteps: torch.Tensor, returns_to_go: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Each step's normalized input tokens ``(B, L, k, D)``: ``[R_t,] o_t, a_t`` (arguments as ``forward``'s).

        A token depends on its own step only, so acting computes each step's tokens once, when the
        step arrives, and keeps them (the observation goes through the encoder once)."""
        b, length = actions.shape
        features = self.encode(obs.reshape(b * length, *obs.shape[2:])).reshape(b, length, -1)  # (B, L, F)
        time = self.timestep_embed(timesteps.clamp(0, self.max_timestep - 1))  # (B, L, D)
        per_step = [self.obs_embed(features) + time, self.action_embed(actions) + time]  # 2 x (B, L, D)
        if self.return_conditioned:
            if returns_to_go is None:
                raise ValueError("a return-conditioned transformer needs returns_to_go")
            per_step.insert(0, self.return_embed(returns_to_go.float().reshape(b, length, 1)) + time)
        return self.embed_norm(torch.stack(per_step, dim=2))  # (B, L, k, D): [R_t,] o_t, a_t

    def encode(self, frames: torch.Tensor) -> torch.Tensor:
        """Encoder features ``(N, F)`` of ``frames`` ``(N, C, H, W)``. While gradients are recorded and ``N``
        exceeds ``encoder_chunk``, chunk by chunk under activation checkpointing: autograd keeps each chunk's
        (uint8) input and ``(chunk, F)`` output instead of its activations, and recomputes those in backward."""
        chunk = self.encoder_chunk
        if not chunk or len(frames) <= chunk or not torch.is_grad_enabled():
            return self.encoder(frames)
        # use_reentrant=False: the non-reentrant variant torch recommends; it works when the input needs no
        # gradient (uint8 frames) and restores the RNG state for the recomputation (the encoders have no dropout).
        return torch.cat([checkpoint(self.encoder, part, use_reentrant=False) for part in frames.split(chunk)])

    def action_tokens(self, actions: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        """The normalized ``a_t`` tokens ``(B, D)`` of ``actions`` ``(B,)`` taken at ``timesteps`` ``(B,)``
        (``step_tokens(...)[:, :, -1]`` for one step, without the encoder)."""
        time = self.timestep_embed(timesteps.clamp(0, self.max_timestep - 1))
        return self.embed_norm(self.action_embed(actions) + time)

    def decode(self, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Action logits ``(B, L, A)`` at the observation tokens of ``tokens`` ``(B, kL, D)`` (after dropout);
        ``mask`` ``(B, L)`` as ``forward``'s."""
        k = self.tokens_per_step
        hidden = self.transformer(tokens, mask=self.attention_mask(mask, tokens.shape[1]))  # (B, kL, D)
        return self.action_head(hidden[:, k - 2 :: k])  # (B, L, A): at the observation tokens

    def decode_last(self, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Acting's ``decode``: logits ``(B, 1, A)`` at the last observation token only, for ``tokens``
        ``(B, kL - 1, D)`` that end with it (the unknown last action's token, which no earlier token sees,
        left out). Every layer but the last runs on all tokens; the last one only on the final token's
        query (its keys and values still come from all), so the feed-forward runs for one token per row."""
        blocked = self.attention_mask(mask, tokens.shape[1])  # (T, T) or (B * heads, T, T)
        *body, top = self.transformer.layers
        x = tokens
        for layer in body:
            x = layer(x, src_mask=blocked)
        h = top.norm1(x)  # the layers are pre-norm (norm_first)
        attended = top.self_attn(h[:, -1:], h, h, attn_mask=blocked[..., -1:, :], need_weights=False)[0]  # (B, 1, D)
        y = x[:, -1:] + top.dropout1(attended)
        y = y + top.dropout2(top.linear2(top.dropout(top.activation(top.linear1(top.norm2(y))))))
        return self.action_head(self.transformer.norm(y))  # (B, 1, A)

    def attention_mask(self, mask: torch.Tensor, num_tokens: int) -> torch.Tensor:
        """True where a token may not attend, for the first ``num_tokens`` tokens of windows whose steps
        ``mask`` ``(B, L)`` marks real: ``(T, T)`` when no row is padded, else ``(B * heads, T, T)``."""
        k, n = self.tokens_per_step, num_tokens
        # A token may attend to earlier-or-same real tokens. A padding token attends to itself
        # only: a row with every key masked would give NaNs that reach the gradients.
        causal = self.causal[:n, :n]  # (T, T)
        if bool(mask.all()):  # no padding (every window once episodes are longer than the context): one shared mask
            return ~causal  # the same as the per-row masks below, and faster
        real = mask.repeat_interleave(k, dim=1)[:, :n]  # (B, T)
        diagonal = torch.eye(n, dtype=torch.bool, device=mask.device)
        allowed = causal & (real[:, None, :] | diagonal)  # (B, T, T)
        return (~allowed).repeat_interleave(self.n_heads, dim=0)  # (B * heads, T, T)


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """minGPT's AdamW groups: decay the weights of linear and convolution layers (and attention's
    fused input projection, a linear layer's weight stored on ``MultiheadAttention``); no decay on
    biases, LayerNorm and embedding weights. Every parameter lands in exactly one group."""
    decay, no_decay = [], []
    for module in model.modules():
        for name, p in module.named_parameters(recurse=False):
            matmul_weight = name == "in_proj_weight" or (name == "weight" and isinstance(module, (nn.Linear, nn.Conv2d)))
            (decay if matmul_weight else no_decay).append(p)
    if len(decay) + len(no_decay) != len(list(model.parameters())):  # a parameter shared by two modules
        raise ValueError("parameter_groups: a parameter appears under two modules")
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


class CausalTransformerAgent:
    """Trains a ``CausalTransformer`` on dataset windows and acts with it episode by episode.

    Args:
        observation_shape: ``(C, H, W)``.
        num_actions: size of the discrete action space.
        encoder: one of ``networks.ENCODERS`` (``"impala"`` for Procgen, ``"minigrid_cnn"`` for MiniGrid).
        context_length: steps per window (training windows may not be longer).
        n_layers, n_heads, embed_dim, dropout: transformer size (feed-forward width ``4 * embed_dim``).
        learning_rate: AdamW step size (constant).
        max_timestep: size of the timestep embedding; later steps share its last entry.
        device: torch device.
        seed: initial weights and the sampling of ``act(deterministic=False)``. Dropout draws from
            the global torch RNG, which this class does not touch (the training loop saves it).
        return_conditioned: DT (True) or BCT (False).
        target_return: DT: the return each new episode is conditioned on (``R_0``).
        encoder_chunk: frames per encoder chunk in training (``CausalTransformer.encode``); ``None`` or 0:
            all of a batch's frames at once. A runtime setting: not in ``config`` or checkpoints.
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
        return_conditioned: bool = False,
        target_return: float = 0.0,
        encoder_chunk: int | None = None,
    ) -> None:
        self.config = {
            "observation_shape": tuple(observation_shape), "num_actions": int(num_actions), "encoder": encoder,
            "context_length": context_length, "n_layers": n_layers, "n_heads": n_heads, "embed_dim": embed_dim,
            "learning_rate": learning_rate, "dropout": dropout, "max_timestep": max_timestep, "seed": seed,
            "return_conditioned": return_conditioned,
        }  # fmt: skip
        self.observation_shape = tuple(observation_shape)
        self.context_length = context_length
        self.return_conditioned = return_conditioned
        self.target_return = float(target_return)
        self.device = torch.device(device)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.model = CausalTransformer(
                observation_shape, num_actions, encoder, context_length, n_layers, n_heads, embed_dim, dropout, max_timestep, return_conditioned,
                channels_last=prefers_channels_last(encoder, self.device), encoder_chunk=encoder_chunk,
            ).to(self.device)
        self.optimizer = torch.optim.AdamW(parameter_groups(self.model, WEIGHT_DECAY), lr=learning_rate, betas=ADAM_BETAS)
        # Sampling happens on the CPU so the generator state is the same whatever the device.
        self.generator = torch.Generator().manual_seed(seed)
        self.num_updates = 0
        # Per episode key: the tokens of the last `context_length` steps, the actions taken at
        # them, the timestep of the next observation and the return still to collect.
        self._history: dict[int, dict[str, Any]] = {}

    # --- training ------------------------------------------------------------------------------------
    def loss(self, windows: dict[str, Any]) -> torch.Tensor:
        """Cross-entropy of the logged actions, averaged over the real (unpadded) steps of the windows.

        Args:
            windows: as ``Dataset.sample_windows(batch, context_length)`` returns them: ``obs``
                ``(B, L, C, H, W)`` uint8, ``actions`` ``(B, L)`` int64, ``timesteps`` ``(B, L)``
                int64 (0-based), ``mask`` ``(B, L)`` bool, and for DT ``returns_to_go`` ``(B, L)``.
        """
        obs = as_tensor(windows["obs"], self.device)  # (B, L, C, H, W)
        actions = as_tensor(windows["actions"], self.device).long()  # (B, L)
        timesteps = as_tensor(windows["timesteps"], self.device).long()  # (B, L)
        mask = as_tensor(windows["mask"], self.device).bool()  # (B, L)
        rtg = as_tensor(windows["returns_to_go"], self.device).float() if self.return_conditioned else None  # (B, L)
        logits = self.model(obs, actions, timesteps, mask, rtg)  # (B, L, A)
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
        key = "loss/dt" if self.return_conditioned else "loss/bc"
        return {key: float(loss.detach()), "grad_norm": float(grad_norm)}

    # --- acting ----------------------------------------------------------------------------------------
    def reset(self, keys: Sequence[int]) -> None:
        """New episodes start for ``keys``: forget their histories."""
        for key in keys:
            self._history.pop(int(key), None)

    def observe(self, keys: Sequence[int], rewards: np.ndarray) -> None:
        """Rewards that followed the last ``act`` of each key: DT's return still to collect shrinks by them."""
        for key, r in zip(keys, np.asarray(rewards, dtype=np.float64).reshape(-1)):
            h = self._history.get(int(key))
            if h is not None:
                h["return_left"] -= float(r)

    @torch.no_grad()
    def act(self, obs: np.ndarray, deterministic: bool = False, keys: Sequence[int] | None = None,
            uniforms: np.ndarray | None = None) -> np.ndarray:  # fmt: skip
        """Actions for a batch of observations ``(B, C, H, W)`` -> ``(B,)`` int64, in one forward pass.

        ``keys[i]`` names the episode row ``i`` belongs to: its observation is appended to that
        episode's history (a key never seen, or ``reset``, starts a new one, at timestep 0 with
        return-to-go ``target_return``) and the action is predicted from the last
        ``context_length`` steps. Without ``keys`` every row is the first step of its own episode
        and nothing is remembered. Sampled actions are drawn with ``uniforms`` (one per row in [0, 1), by
        inverse CDF) when given, else with the agent's generator.
        """
        obs = np.asarray(obs.cpu() if isinstance(obs, torch.Tensor) else obs)
        if keys is None:
            histories = [self._new_history() for _ in range(len(obs))]
        else:
            keys = [int(k) for k in keys]
            if len(keys) != len(obs) or len(set(keys)) != len(keys):
                raise ValueError(f"act needs one distinct key per observation; got {len(keys)} keys for {len(obs)} rows")
            histories = [self._history.setdefault(k, self._new_history()) for k in keys]
        # Each new observation is encoded once, here: a history keeps its steps' tokens, not images.
        model, device = self.model, self.device
        model.eval()
        next_t = torch.as_tensor([h["next_t"] for h in histories], dtype=torch.int64)  # (B,)
        rtg = torch.as_tensor([[h["return_left"]] for h in histories], dtype=torch.float32)  # (B, 1)
        placeholder = torch.zeros(len(histories), 1, dtype=torch.int64)  # a_t is unknown yet: 0, seen by no earlier token
        new = model.step_tokens(as_tensor(obs[:, None], device), placeholder.to(device), next_t[:, None].to(device), rtg.to(device))
        for h, step in zip(histories, new[:, 0]):  # (k, D) each
            h["tokens"].append(step)
            h["rtg"].append(h["return_left"])  # the returns-to-go the tokens were made from (a record)

        # Left-padded batch as long as the longest history; with padding masked out the result
        # does not depend on how much padding a row gets (nor on the padding tokens' values).
        b, length, k = len(histories), max(len(h["tokens"]) for h in histories), model.tokens_per_step
        window = torch.zeros(b, length, k, new.shape[-1], dtype=new.dtype, device=device)  # (B, L, k, D)
        mask = torch.zeros(b, length, dtype=torch.bool)
        for i, h in enumerate(histories):
            n = len(h["tokens"])
            window[i, length - n :] = torch.stack(list(h["tokens"]))
            mask[i, length - n :] = True
        logits = model.decode_last(window.flatten(1, 2)[:, :-1], mask.to(device))[:, -1].float().cpu()  # (B, A)
        if deterministic:
            actions_np = logits.argmax(dim=-1).numpy().astype(np.int64)
        elif uniforms is not None:
            actions_np = sample_from_uniforms(torch.softmax(logits.double(), dim=-1).numpy(), uniforms)
        else:
            actions_np = torch.multinomial(torch.softmax(logits, dim=-1), 1, generator=self.generator).squeeze(1).numpy().astype(np.int64)
        # The taken actions replace the placeholders in the latest steps' tokens.
        taken = model.action_tokens(torch.as_tensor(actions_np, device=device), next_t.to(device))  # (B, D)
        for h, a, token in zip(histories, actions_np, taken):
            h["tokens"][-1] = torch.cat([h["tokens"][-1][:-1], token[None]])
            h["actions"].append(int(a))
            h["next_t"] += 1
        return actions_np

    def _new_history(self) -> dict[str, Any]:
        c = self.context_length
        # tokens: (k, D) per step, the normalized [R_t,] o_t, a_t of CausalTransformer.step_tokens.
        return {"tokens": deque(maxlen=c), "rtg": deque(maxlen=c), "actions": deque(maxlen=c), "next_t": 0, "return_left": self.target_return}

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

    def load_state_dict(self, state: dict[str, Any], with_optimizer: bool = True) -> None:
        """Restore ``state_dict()``'s output (``with_optimizer=False``: the network and sampler only,
        enough to act); episode histories are cleared."""
        self.model.load_state_dict(state["model"])
        if with_optimizer:
            # A copy: the optimizer would otherwise keep updating the moment tensors of `state` in place
            # (and those of the agent it came from, for an in-memory state_dict()).
            self.optimizer.load_state_dict(copy.deepcopy(state["optimizer"]))
        self.generator.set_state(state["generator"].cpu())
        self.num_updates = int(state["num_updates"])
        self._history.clear()
