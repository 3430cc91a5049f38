"""One device resolver for every framework: ``"auto" | "cpu" | "cuda" | "cuda:N"``.

``auto`` means CUDA when the framework sees a GPU, else the CPU: for torch (and SB3, which takes
torch's device strings) CUDA when ``torch.cuda.is_available()``; for JAX its first GPU when its
jaxlib has one. ``cuda`` is ``cuda:0``. Asking for a GPU that is not there is one ``RlgenError``
with the same wording whichever framework asked.

torch and JAX are imported only inside the functions that need them.
"""

from __future__ import annotations

import re
from typing import Any

from rlgen.errors import DependencyError, RlgenError

#: The device names configs accept.
DEVICE_PATTERN = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")


def check_device_name(name: str) -> str:
    """Config validation: ``name`` must be ``auto``, ``cpu``, ``cuda`` or ``cuda:N`` (a ValueError otherwise)."""
    if not isinstance(name, str) or not DEVICE_PATTERN.match(name):
        raise ValueError(f"device {name!r} is not one of: auto, cpu, cuda, cuda:N")
    return name


def _cuda_index(device: str) -> int:
    check_device_name(device)
    return int(device.partition(":")[2] or 0)


def no_cuda_error(device: str, seen: str, hint: str = "") -> RlgenError:
    """The one error for a GPU that is not there; ``seen`` says what the framework found."""
    return RlgenError(f"device={device!r} but CUDA is not available here ({seen}); {hint}use device=auto or device=cpu")


def torch_device(device: str) -> str:
    """The torch device string (``"cpu"`` or ``"cuda:N"``) for a config's ``device``; SB3 takes it too."""
    import torch

    if device == "auto":
        return "cuda:0" if torch.cuda.is_available() else "cpu"
    if device == "cpu":
        return "cpu"
    index = _cuda_index(device)
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if index >= count:
        raise no_cuda_error(device, f"torch sees {count} CUDA device(s)")
    return f"cuda:{index}"


def jax_device(device: str) -> Any:
    """The ``jax.Device`` for a config's ``device``: ``auto`` is JAX's first GPU when it has one, else its CPU."""
    try:
        import jax
    except ImportError as e:  # pragma: no cover - depends on the installation
        raise DependencyError(f"JAX is not installed ({e}); install it with: pip install 'rlgen[jax]'") from None
    try:
        gpus = jax.devices("gpu")
    except RuntimeError:  # no GPU backend in this jaxlib
        gpus = []
    if device == "auto":
        return gpus[0] if gpus else jax.devices("cpu")[0]
    if device == "cpu":
        return jax.devices("cpu")[0]
    index = _cuda_index(device)
    if index >= len(gpus):
        raise no_cuda_error(device, f"JAX sees {len(gpus)} GPU(s), backend {jax.default_backend()}",
                            hint="install a CUDA build of JAX (pip install 'jax[cuda12]') or ")  # fmt: skip
    return gpus[index]
