"""The SB3 PPO policy of rlgen (``rlgen.agents.ppo_sb3``): its architecture, and saving and loading it as weights only.

A run directory may come from someone else, and SB3's own ``model.save`` zip holds cloudpickled
fields (``data``: schedules, spaces, the policy class) that run code when ``PPO.load`` reads them.
So rlgen never unpickles a checkpoint. It writes one ``.pt`` file per checkpoint, a plain dict that
``torch.load(weights_only=True)`` reads (tensors, numbers, strings, lists, dicts, nothing else)::

    {"format": "rlgen.ppo/2",
     "arch": {"encoder", "obs_shape", "obs_dtype", "obs_low", "obs_high", "num_actions"},
     "policy": the policy's state dict,
     "num_timesteps": env steps when saved,
     # resumable checkpoints only:
     "optimizer": the Adam state dict, "n_updates": int,
     "ret_rms": {"mean", "var" (float64 tensors), "count": float} or None}

and rebuilds the policy from ``arch`` (rlgen's own description, not a pickled class). Run directories
of older rlgen versions hold SB3 ``.zip`` files: :func:`read_legacy_zip` reads only their
``policy.pth`` member (a torch state dict, loaded weights-only); the architecture then comes from
the run's ``config.yaml`` (:func:`arch_for`), never from the zip's ``data``.
"""

from __future__ import annotations

import io
import pickle
import zipfile
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from rlgen.agents import networks
from rlgen.atomic_files import write_bytes_atomic
from rlgen.agents.quiet import silence_gym_banner
from rlgen.errors import RlgenError

silence_gym_banner()

from stable_baselines3.common.policies import ActorCriticCnnPolicy  # noqa: E402
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor  # noqa: E402

FORMAT = "rlgen.ppo/2"
_ARCH_KEYS = {"encoder": str, "obs_shape": list, "obs_dtype": str, "obs_low": (int, float), "obs_high": (int, float), "num_actions": int}


class EncoderExtractor(BaseFeaturesExtractor):
    """SB3 features extractor around one of ``rlgen.agents.networks``' encoders."""

    def __init__(self, observation_space: gym.spaces.Box, encoder: str = "impala") -> None:
        net = networks.make_encoder(encoder, observation_space.shape)
        super().__init__(observation_space, features_dim=net.features_dim)
        self.encoder = net

    def forward(self, observations: torch.Tensor) -> torch.Tensor:
        return self.encoder(observations)


def policy_kwargs(encoder: str) -> dict[str, Any]:
    """SB3 ``policy_kwargs`` of rlgen's PPO: the encoder, and the heads straight on its features."""
    return {
        "features_extractor_class": EncoderExtractor,
        "features_extractor_kwargs": {"encoder": encoder},
        "normalize_images": False,  # the encoders scale their inputs
        "net_arch": {"pi": [], "vf": []},  # heads straight on the features, as in CleanRL's ppo_procgen
    }


def arch_for(encoder: str, observation_space: gym.spaces.Box, action_space: gym.spaces.Discrete) -> dict[str, Any]:
    """The plain-data description of a policy (what :func:`build_policy` needs)."""
    return {
        "encoder": str(encoder),
        "obs_shape": [int(x) for x in observation_space.shape],
        "obs_dtype": str(observation_space.dtype),
        "obs_low": float(np.min(observation_space.low)),
        "obs_high": float(np.max(observation_space.high)),
        "num_actions": int(action_space.n),
    }


def build_policy(arch: dict[str, Any], device: torch.device | str = "cpu") -> ActorCriticCnnPolicy:
    """A fresh policy of architecture ``arch`` (its optimizer included, for resuming), in eval mode."""
    obs_space = gym.spaces.Box(arch["obs_low"], arch["obs_high"], shape=tuple(arch["obs_shape"]), dtype=np.dtype(arch["obs_dtype"]))
    policy = ActorCriticCnnPolicy(obs_space, gym.spaces.Discrete(arch["num_actions"]), lambda _: 0.0, **policy_kwargs(arch["encoder"]))
    policy.set_training_mode(False)
    return policy.to(device)


# --- writing ------------------------------------------------------------------------------------


def save_checkpoint_file(path: Path, payload: dict[str, Any]) -> Path:
    """``torch.save`` of ``payload`` (plus ``format``) to ``path``, atomically: a kill mid-save leaves
    the previous file whole."""
    buf = io.BytesIO()
    torch.save({"format": FORMAT, **payload}, buf)
    return write_bytes_atomic(path, buf.getvalue())


# --- reading ------------------------------------------------------------------------------------


def is_legacy_zip(path: Path) -> bool:
    """Whether ``path`` is an SB3 ``model.save`` zip (older rlgen) rather than a ``.pt`` of rlgen's own."""
    try:
        with zipfile.ZipFile(path) as z:
            return "policy.pth" in z.namelist() and "data" in z.namelist()
    except (OSError, zipfile.BadZipFile):
        return False


def _weights_only_load(source: Any, name: Path, device: torch.device | str) -> Any:
    try:
        return torch.load(source, map_location=device, weights_only=True)
    except pickle.UnpicklingError as e:
        # torch's message is a paragraph of advice about weights_only; the user needs only the verdict
        raise RlgenError(f"refusing to load {name}: it holds objects other than tensors and plain data (a pickle could run code); "
                         f"retrain the run, or use a checkpoint from a source you trust ({type(e).__name__})") from None  # fmt: skip
    except Exception as e:  # noqa: BLE001 - torn or foreign files raise anything from EOFError to RuntimeError
        raise RlgenError(f"{name} is not a readable checkpoint ({type(e).__name__}: {str(e)[:160]})") from None


def read_checkpoint_file(path: Path, device: torch.device | str = "cpu") -> dict[str, Any]:
    """The payload of a ``.pt`` checkpoint written by :func:`save_checkpoint_file`, checked for shape.

    Raises:
        RlgenError: missing, torn, not weights-only (a pickled object inside), or not rlgen's format.
    """
    if not path.is_file():
        raise RlgenError(f"no PPO checkpoint at {str(path)!r}")
    payload = _weights_only_load(path, path, device)
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        got = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        raise RlgenError(f"{path} is not an rlgen PPO checkpoint (format {got!r}, expected {FORMAT!r})")
    _check_arch(payload.get("arch"), path)
    if not isinstance(payload.get("policy"), dict):
        raise RlgenError(f"{path}: no policy weights in the checkpoint")
    return payload


def read_legacy_zip(path: Path, device: torch.device | str = "cpu") -> dict[str, Any]:
    """The policy state dict of an SB3 ``.zip`` (older rlgen), from its ``policy.pth`` member alone.

    The zip's ``data`` member (cloudpickled fields) is never read.
    """
    try:
        with zipfile.ZipFile(path) as z:
            raw = z.read("policy.pth")
    except (OSError, KeyError, zipfile.BadZipFile) as e:
        raise RlgenError(f"{path} is not a readable SB3 checkpoint ({type(e).__name__}: {str(e)[:160]})") from None
    state = _weights_only_load(io.BytesIO(raw), path, device)
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise RlgenError(f"{path}: policy.pth is not a state dict of tensors")
    return state


def load_weights(policy: ActorCriticCnnPolicy, state: dict[str, Any], path: Path) -> None:
    """``policy.load_state_dict(state)``, with a mismatch as one line naming the file."""
    try:
        policy.load_state_dict(state)
    except (RuntimeError, KeyError, TypeError) as e:
        first = str(e).strip().splitlines()[0][:200]
        raise RlgenError(f"{path}: the weights do not fit the policy architecture ({first})") from None


def _check_arch(arch: Any, path: Path) -> None:
    ok = isinstance(arch, dict) and all(isinstance(arch.get(k), t) for k, t in _ARCH_KEYS.items())
    ok = ok and all(type(x) is int and x > 0 for x in arch["obs_shape"]) and arch["num_actions"] > 0
    if not ok:
        raise RlgenError(f"{path}: `arch` must give {', '.join(_ARCH_KEYS)}; got {str(arch)[:160]}")
    if arch["encoder"] not in networks.ENCODERS:
        raise RlgenError(f"{path}: encoder {arch['encoder']!r} is not one of: {', '.join(networks.ENCODERS)}")
    try:
        numeric = np.dtype(arch["obs_dtype"]).kind in "uif"
    except TypeError:
        numeric = False
    if not numeric:
        raise RlgenError(f"{path}: obs_dtype {arch['obs_dtype']!r} is not a numeric dtype")
