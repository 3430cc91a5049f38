"""Discrete-action Implicit Q-Learning (Kostrikov, Nair & Levine, 2021) on image observations.

d3rlpy only ships IQL for continuous actions. This is the discrete version, in plain PyTorch:

* two Q networks ``Q_1, Q_2(s, .)`` (one output per action) and their target copies, hard-copied
  every ``target_update_interval`` updates as in the reference study (gen_dgrl
  ``offline/agents/iql.py``), or Polyak-averaged with rate ``tau`` each update (``target_update="polyak"``);
* a value network ``V(s)``, fitted by expectile regression to ``min_i Q_target_i(s, a)`` over the
  *dataset's* actions, so it approaches the best in-distribution action value without ever
  querying Q on actions the data does not contain;
* Q fitted to ``r + gamma * (1 - terminated) * V(s')``;
* a categorical policy extracted by advantage-weighted regression (AWR).

Every network owns its own encoder (``rlgen.agents.networks``): no loss pulls on another's
features, so the three losses can be summed and stepped by one optimizer without interfering, and
the two Q networks stay independent estimates (which the min of clipped double Q relies on).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from rlgen.agents.networks import as_tensor, make_encoder, prefers_channels_last
from rlgen.evaluation.episodes import sample_from_uniforms

HIDDEN_DIM = 256  # width of the MLP head after each encoder, as in the IQL paper
MAX_AWR_WEIGHT = 100.0  # the paper's clip of exp(beta * advantage): keeps a few large advantages from dominating


class EncoderHead(nn.Module):
    """Encoder -> ReLU MLP. ``(B, C, H, W)`` uint8 observations -> ``(B, out_dim)``."""

    def __init__(self, encoder: str, observation_shape: Sequence[int], out_dim: int, channels_last: bool = False) -> None:
        super().__init__()
        self.encoder = make_encoder(encoder, observation_shape, channels_last=channels_last)
        self.head = nn.Sequential(nn.Linear(self.encoder.features_dim, HIDDEN_DIM), nn.ReLU(), nn.Linear(HIDDEN_DIM, out_dim))

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(obs))


class DiscreteIQL:
    """Implicit Q-Learning for discrete actions and image observations.

    Args:
        observation_shape: ``(C, H, W)``.
        num_actions: size of the discrete action space.
        encoder: one of ``networks.ENCODERS`` (``"impala"`` for Procgen, ``"minigrid_cnn"`` for MiniGrid); every network gets its own copy.
        learning_rate: Adam step size, shared by the Q, V and policy networks.
        gamma: discount.
        expectile: tau of the expectile regression of V (0.5 = mean, -> 1 = max over dataset actions).
        temperature: beta of the AWR weights ``exp(beta * (Q - V))``.
        target_update: ``"hard"`` (copy the Q networks into the targets every ``target_update_interval``
            updates, counting from the first: after updates 1, 1 + interval, ...) or ``"polyak"``
            (``target <- (1 - tau) * target + tau * Q`` after every update).
        target_update_interval: updates between hard copies.
        tau: Polyak rate of the target Q networks.
        device: torch device of the networks.
        seed: initial weights and the sampling of ``act(deterministic=False)``. The global torch
            RNG is left as it was.
    """

    def __init__(
        self,
        observation_shape: tuple[int, ...],
        num_actions: int,
        encoder: str = "impala",
        learning_rate: float = 5e-4,
        gamma: float = 0.99,
        expectile: float = 0.8,
        temperature: float = 3.0,
        tau: float = 0.005,
        target_update: str = "hard",
        target_update_interval: int = 100,
        device: str = "cpu",
        seed: int = 0,
    ) -> None:
        self.config = {
            "observation_shape": tuple(observation_shape), "num_actions": int(num_actions), "encoder": encoder,
            "learning_rate": learning_rate, "gamma": gamma, "expectile": expectile, "temperature": temperature,
            "tau": tau, "target_update": target_update, "target_update_interval": target_update_interval, "seed": seed,
        }  # fmt: skip
        if target_update not in ("hard", "polyak"):
            raise ValueError(f"target_update {target_update!r} is not one of: hard, polyak")
        self.num_actions = int(num_actions)
        self.gamma = gamma
        self.expectile = expectile
        self.temperature = temperature
        self.tau = tau
        self.target_update = target_update
        self.target_update_interval = int(target_update_interval)
        self.device = torch.device(device)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            nhwc = prefers_channels_last(encoder, self.device)
            self.q_nets = nn.ModuleList([EncoderHead(encoder, observation_shape, num_actions, nhwc) for _ in range(2)]).to(self.device)
            self.value = EncoderHead(encoder, observation_shape, 1, nhwc).to(self.device)
            self.policy = EncoderHead(encoder, observation_shape, num_actions, nhwc).to(self.device)
        self.q_targets = copy.deepcopy(self.q_nets).requires_grad_(False)
        params = [*self.q_nets.parameters(), *self.value.parameters(), *self.policy.parameters()]
        self.optimizer = torch.optim.Adam(params, lr=learning_rate)
        # Sampling happens on the CPU so the generator state is the same whatever the device.
        self.generator = torch.Generator().manual_seed(seed)
        self.num_updates = 0

    def loss(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """IQL's three losses on one batch of transitions (no step taken).

        Args:
            batch: as ``Dataset.sample_transitions`` returns it: ``obs`` and ``next_obs``
                ``(B, C, H, W)`` uint8, ``action`` ``(B,)`` int64, ``reward`` ``(B,)`` float32,
                ``done`` ``(B,)`` bool (terminated: no bootstrap; truncated steps do bootstrap).

        Returns:
            ``loss/q``, ``loss/v``, ``loss/policy`` (scalars with gradients) and detached scalar
            diagnostics ``q/mean``, ``v/mean``, ``advantage/mean``, ``awr_weight/mean``.
        """
        obs = as_tensor(batch["obs"], self.device)  # (B, C, H, W) uint8
        next_obs = as_tensor(batch["next_obs"], self.device)  # (B, C, H, W) uint8
        action = as_tensor(batch["actions"], self.device).long()[:, None]  # (B, 1)
        reward = as_tensor(batch["rewards"], self.device).float()  # (B,)
        not_done = 1.0 - as_tensor(batch["terminated"], self.device).float()  # (B,)

        with torch.no_grad():
            # Clipped double Q: the min of the two targets counters Q's overestimation.
            q_target = torch.min(self.q_targets[0](obs), self.q_targets[1](obs)).gather(1, action).squeeze(1)  # (B,)
            td_target = reward + self.gamma * not_done * self.value(next_obs).squeeze(1)  # (B,)

        # V: asymmetric (expectile) squared loss; errors where Q > V weigh `expectile`, the others
        # 1 - expectile, so V tracks an upper expectile of Q over the dataset's actions.
        v = self.value(obs).squeeze(1)  # (B,)
        diff = q_target - v
        v_loss = (torch.abs(self.expectile - (diff < 0).float()) * diff.pow(2)).mean()

        # Q: regress both heads on the dataset action toward the one-step target through V(s'),
        # which never evaluates Q at out-of-distribution actions.
        q_loss = sum(F.mse_loss(q(obs).gather(1, action).squeeze(1), td_target) for q in self.q_nets)

        # Policy: advantage-weighted regression. V is detached so the policy loss trains only the
        # policy; the clip bounds the weights of a few large advantages.
        advantage = q_target - v.detach()  # (B,)
        awr_weight = torch.exp(self.temperature * advantage).clamp(max=MAX_AWR_WEIGHT)  # (B,)
        log_prob = F.log_softmax(self.policy(obs), dim=-1).gather(1, action).squeeze(1)  # (B,)
        policy_loss = -(awr_weight * log_prob).mean()

        return {
            "loss/q": q_loss,
            "loss/v": v_loss,
            "loss/policy": policy_loss,
            "q/mean": q_target.mean(),
            "v/mean": v.detach().mean(),
            "advantage/mean": advantage.mean(),
            "awr_weight/mean": awr_weight.mean(),
        }

    def update(self, batch: dict[str, Any]) -> dict[str, float]:
        """One Adam step on the sum of the three losses, then the target update (a hard copy when
        ``num_updates`` before this one is a multiple of ``target_update_interval``, as the reference
        counts; or a Polyak step).

        The networks share no parameters and no loss backpropagates into another network (targets
        and advantages are computed without gradients), so summing the losses is the same as
        stepping each network on its own loss.
        """
        self.train(True)
        losses = self.loss(batch)
        total = losses["loss/q"] + losses["loss/v"] + losses["loss/policy"]
        self.optimizer.zero_grad(set_to_none=True)
        total.backward()
        self.optimizer.step()
        with torch.no_grad():
            if self.target_update == "polyak":
                for target, online in zip(self.q_targets.parameters(), self.q_nets.parameters()):
                    target.lerp_(online, self.tau)
            elif self.num_updates % self.target_update_interval == 0:
                self.q_targets.load_state_dict(self.q_nets.state_dict())
        self.num_updates += 1
        return {k: float(v.detach()) for k, v in losses.items()}

    def train(self, mode: bool = True) -> None:
        """Set the training mode of every network (none has dropout or batch norm today)."""
        for net in (self.q_nets, self.q_targets, self.value, self.policy):
            net.train(mode)

    @torch.no_grad()
    def act(self, obs: np.ndarray, deterministic: bool = False, uniforms: np.ndarray | None = None) -> np.ndarray:
        """Actions for a batch of observations ``(B, C, H, W)`` uint8 -> ``(B,)`` int64.

        ``deterministic``: the policy's most likely action; otherwise a sample from it, drawn with
        ``uniforms`` (one per row in [0, 1), by inverse CDF) when given, else with the agent's generator.
        """
        self.train(False)
        logits = self.policy(as_tensor(obs, self.device)).float().cpu()  # (B, A)
        if deterministic:
            actions = logits.argmax(dim=-1)
        elif uniforms is not None:
            return sample_from_uniforms(torch.softmax(logits.double(), dim=-1).numpy(), uniforms)
        else:
            actions = torch.multinomial(torch.softmax(logits, dim=-1), 1, generator=self.generator).squeeze(1)
        return actions.numpy().astype(np.int64)

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume training: networks, targets, optimizer, sampler state."""
        return {
            "config": dict(self.config),
            "q_nets": self.q_nets.state_dict(),
            "q_targets": self.q_targets.state_dict(),
            "value": self.value.state_dict(),
            "policy": self.policy.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "generator": self.generator.get_state(),
            "num_updates": self.num_updates,
        }

    def load_state_dict(self, state: dict[str, Any], with_optimizer: bool = True) -> None:
        """Restore ``state_dict()``'s output (tensors may come from another device); ``with_optimizer=False``
        skips the optimizer state (enough to act)."""
        self.q_nets.load_state_dict(state["q_nets"])
        self.q_targets.load_state_dict(state["q_targets"])
        self.value.load_state_dict(state["value"])
        self.policy.load_state_dict(state["policy"])
        # A copy: the optimizer would otherwise keep updating the moment tensors of `state` in place
        # (and those of the agent it came from, for an in-memory state_dict()).
        if with_optimizer:
            self.optimizer.load_state_dict(copy.deepcopy(state["optimizer"]))
        self.generator.set_state(state["generator"].cpu())
        self.num_updates = int(state["num_updates"])
