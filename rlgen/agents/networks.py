"""Image encoders shared by every agent, so online and offline comparisons use the same network.

Each encoder maps uint8 images ``(B, C, H, W)`` (given as a float tensor of raw 0-255 values or
small symbolic ints) to features ``(B, features_dim)``. Scaling happens inside the encoder, so
callers pass observations as stored.

Memory format: on CPU the IMPALA and Nature CNNs run in ``channels_last`` (NHWC), which oneDNN's
convolutions take without reordering: an IMPALA BC update at batch 256 ran 1.57x faster on one
thread (Nature 1.15x; the small MiniGrid CNN 0.98x, so it stays NCHW). Only the layout of the
weights and activations changes, not the network or its parameter names; results agree to float
rounding (``tests/agents/test_networks.py``). See the README, "Performance".
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

import torch
from torch import nn

from rlgen.config import ENCODER_NAMES
from rlgen.errors import ConfigError


def as_tensor(x: Any, device: torch.device) -> torch.Tensor:
    """numpy array (memory-mapped rows included) or tensor -> tensor on ``device``, dtype kept."""
    if isinstance(x, torch.Tensor):
        return x.to(device)
    return torch.as_tensor(np.asarray(x), device=device)


class ResidualBlock(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv0 = nn.Conv2d(channels, channels, kernel_size=3, padding=1)
        self.conv1 = nn.Conv2d(channels, channels, kernel_size=3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv1(torch.relu(self.conv0(torch.relu(x))))


class ImpalaStack(nn.Module):
    """conv 3x3 -> max-pool 3x3 stride 2 -> two residual blocks (Espeholt et al., 2018)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1)
        self.pool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.res0 = ResidualBlock(out_channels)
        self.res1 = ResidualBlock(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.res1(self.res0(self.pool(self.conv(x))))


class ImpalaEncoder(nn.Module):
    """The Procgen standard IMPALA CNN: stacks of 16-32-32 channels, then a 256-unit layer.

    Input: ``(B, C, H, W)`` with values 0-255; output ``(B, features_dim)``.
    """

    def __init__(self, observation_shape: Sequence[int], channels: Sequence[int] = (16, 32, 32), features_dim: int = 256) -> None:
        super().__init__()
        c, h, w = observation_shape
        stacks = []
        for out in channels:
            stacks.append(ImpalaStack(c, out))
            c = out
        self.stacks = nn.Sequential(*stacks)
        with torch.no_grad():
            n_flat = self.stacks(torch.zeros(1, *observation_shape)).numel()
        self.fc = nn.Linear(n_flat, features_dim)
        self.features_dim = features_dim
        self.channels_last = False  # make_encoder(..., channels_last=True) sets it

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        if self.channels_last:  # reordered while still uint8: a quarter of the bytes of the float copy
            obs = obs.contiguous(memory_format=torch.channels_last)
        x = self.stacks(obs.float() / 255.0)
        return torch.relu(self.fc(torch.flatten(torch.relu(x), start_dim=1)))


class ConvDenseEncoder(nn.Module):
    """A conv stack (ending in a ReLU), flattened, then one dense ReLU layer; inputs divided by ``scale``.
    Parameter names (``convs.*``, ``fc.*``) are part of the checkpoint format."""

    def __init__(self, observation_shape: Sequence[int], convs: nn.Sequential, scale: float, features_dim: int) -> None:
        super().__init__()
        self.convs = convs
        self.scale = scale
        with torch.no_grad():
            n_flat = self.convs(torch.zeros(1, *observation_shape)).numel()
        self.fc = nn.Linear(n_flat, features_dim)
        self.features_dim = features_dim
        self.channels_last = False  # make_encoder(..., channels_last=True) sets it

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        if self.channels_last:
            obs = obs.contiguous(memory_format=torch.channels_last)
        x = self.convs(obs.float() / self.scale)
        return torch.relu(self.fc(torch.flatten(x, start_dim=1)))


class NatureEncoder(ConvDenseEncoder):
    """The DQN CNN of Mnih et al. (2015): conv 8x8/4 (32), 4x4/2 (64), 3x3/1 (64), then a dense layer.

    SB3's and d3rlpy's default pixel encoder. On 64x64 Procgen frames it costs about 4M multiply-adds
    per image against IMPALA's 30M, so it is the CPU-budget choice; the Procgen paper reports IMPALA
    generalizes better at 25M steps. Input ``(B, C, H, W)`` with values 0-255; output ``(B, features_dim)``.
    """

    def __init__(self, observation_shape: Sequence[int], features_dim: int = 512) -> None:
        if min(observation_shape[1:]) < 36:
            raise ConfigError(f"network nature needs images of at least 36x36, got {tuple(observation_shape)}")
        convs = nn.Sequential(
            nn.Conv2d(observation_shape[0], 32, kernel_size=8, stride=4), nn.ReLU(),
            nn.Conv2d(32, 64, kernel_size=4, stride=2), nn.ReLU(),
            nn.Conv2d(64, 64, kernel_size=3, stride=1), nn.ReLU(),
        )  # fmt: skip
        super().__init__(observation_shape, convs, scale=255.0, features_dim=features_dim)


class MiniGridEncoder(ConvDenseEncoder):
    """Small CNN for MiniGrid's symbolic 7x7 view (as in the rl-starter-files baselines).

    Input: ``(B, 3, 7, 7)`` with small integer codes (object, colour, state); scaled by 1/10.
    Output: ``(B, features_dim)``.
    """

    def __init__(self, observation_shape: Sequence[int], features_dim: int = 128) -> None:
        convs = nn.Sequential(
            nn.Conv2d(observation_shape[0], 16, kernel_size=2), nn.ReLU(),
            nn.Conv2d(16, 32, kernel_size=2), nn.ReLU(),
            nn.Conv2d(32, 64, kernel_size=2), nn.ReLU(),
        )  # fmt: skip
        super().__init__(observation_shape, convs, scale=10.0, features_dim=features_dim)


def encoder_for(network: str, env: str, options: Any) -> str:
    """The encoder a config's ``network`` names: itself, or for ``auto`` the suite's default for ``env``
    (``SUITE/ENV``; ``Suite.default_encoder``: IMPALA for Procgen and rendered views, the small CNN for
    MiniGrid's symbolic view and XLand's grids)."""
    if network != "auto":
        return network
    from rlgen.envs import get_suite

    suite, name = env.split("/", 1)
    return get_suite(suite).default_encoder(name, dict(options))


def _minigrid_cnn(observation_shape: Sequence[int], features_dim: int | None) -> nn.Module:
    if min(observation_shape[1:]) < 4:
        raise ConfigError(f"network minigrid_cnn needs images of at least 4x4, got {tuple(observation_shape)}")
    return MiniGridEncoder(observation_shape, features_dim=features_dim or 128)


#: Encoder name -> builder ``(observation_shape, features_dim or None) -> module``.
_BUILDERS: dict[str, Any] = {
    "impala": lambda shape, dim: ImpalaEncoder(shape, features_dim=dim or 256),
    "nature": lambda shape, dim: NatureEncoder(shape, features_dim=dim or 512),
    "minigrid_cnn": _minigrid_cnn,
}
#: The encoders by name (the same as ``rlgen.config.ENCODER_NAMES``, which configs check against without torch).
ENCODERS: tuple[str, ...] = tuple(_BUILDERS)


#: Encoders that run faster in ``channels_last`` on CPU (measured: module docstring).
CHANNELS_LAST_ON_CPU: tuple[str, ...] = ("impala", "nature")


def prefers_channels_last(name: str, device: Any) -> bool:
    """Whether encoder ``name`` should run in ``channels_last`` on ``device`` (CPU only: not measured on GPUs)."""
    return name in CHANNELS_LAST_ON_CPU and torch.device(device).type == "cpu"


def make_encoder(name: str, observation_shape: Sequence[int], features_dim: int | None = None, channels_last: bool = False) -> nn.Module:
    """Build encoder ``name`` for observations of ``observation_shape`` (C, H, W); with ``channels_last``
    its convolution weights are stored NHWC and it reorders its input to match (see
    :func:`prefers_channels_last`). Parameter names are the same either way, so checkpoints load into both."""
    if name not in _BUILDERS:
        raise ConfigError(f"unknown network {name!r}; allowed: auto, {', '.join(ENCODER_NAMES)}")
    encoder = _BUILDERS[name](observation_shape, features_dim)
    if channels_last:
        encoder.to(memory_format=torch.channels_last)
        encoder.channels_last = True
    return encoder
