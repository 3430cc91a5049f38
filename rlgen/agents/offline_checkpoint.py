"""Offline runs' checkpoints read back without running code: model files, ``state.json``, RNG states as text.

The model directories (``checkpoints/latest/``: the agent's model file, ``agent.json`` and ``state.json``;
``model/``: the final model) are written as units by ``rlgen.agents.run_dir.write_unit``: whole under
``<name>.new/`` and swapped in by two renames, so a kill at any moment leaves either the previous unit or
the new one, never a model file from one save beside a ``state.json`` from another.

Model files are read with ``torch.load(weights_only=True)``: tensors and plain containers only, so a
file planted in a run directory cannot execute code when the run is evaluated or resumed.
"""

from __future__ import annotations

import base64
import json
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from rlgen.errors import RlgenError

STATE = "state.json"


def read_state(directory: Path) -> dict[str, Any]:
    """``directory/state.json`` as a dict; one-line ``RlgenError`` naming the file when it is torn."""
    path = directory / STATE
    try:
        state = json.loads(path.read_text())
        if not isinstance(state, dict) or not isinstance(state.get("step"), int):
            raise ValueError("no integer 'step'")
    except (OSError, ValueError, UnicodeDecodeError) as e:
        raise RlgenError(f"{path} is damaged ({_first_line(e)}); delete {directory} to restart from step 0, or restore the file") from None
    return state


def load_weights(path: Path, device: str = "cpu") -> Any:
    """``torch.load(path, weights_only=True)``: tensors, numbers, strings and containers only.

    Raises:
        RlgenError: one line naming ``path`` when it is missing, truncated, not a torch file, or
            holds anything but weights (a pickled object that would run code is refused, never run).
    """
    if not path.is_file():
        raise RlgenError(f"{path} is missing; the run directory is incomplete")
    try:
        return torch.load(path, map_location=device, weights_only=True)
    except pickle.UnpicklingError as e:
        if "weights only" in str(e).lower():
            raise RlgenError(f"{path} holds pickled objects other than weights; refused, since loading them could run code: "
                             "retrain the run, or use a model file from a source you trust") from None  # fmt: skip
        raise RlgenError(f"{path} cannot be loaded as weights ({_first_line(e)}); it is damaged: retrain the run") from None
    except Exception as e:  # noqa: BLE001 - torch raises RuntimeError, EOFError, OSError, ... for damaged files
        raise RlgenError(f"{path} cannot be loaded as weights ({_first_line(e)}); it is damaged or not an rlgen model: retrain the run") from None


def load_into(path: Path, what: str, restore: Callable[[], None]) -> None:
    """Run ``restore()`` (loading a state dict from ``path``), turning a mismatch into one line naming the file."""
    try:
        restore()
    except (KeyError, RuntimeError, ValueError, TypeError, AttributeError) as e:
        raise RlgenError(f"{path} does not hold a {what} of this run's config ({_first_line(e)}); retrain the run") from None


def encode_bytes(t: torch.Tensor) -> str:
    """A uint8 tensor (an RNG state) as base64 text for ``state.json``."""
    return base64.b64encode(t.cpu().numpy().tobytes()).decode("ascii")


def decode_bytes(text: str) -> torch.Tensor:
    return torch.frombuffer(bytearray(base64.b64decode(text)), dtype=torch.uint8)


def _first_line(e: BaseException) -> str:
    lines = str(e).strip().splitlines()
    text = lines[0] if lines else type(e).__name__
    return text[:200]
