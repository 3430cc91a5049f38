"""Offline runs' model directories, each written as a unit, and reading them back without running code.

A unit is a directory (``checkpoints/latest/``: the agent's model file and ``state.json``;
``model/``: the final model). It is written whole under ``<name>.new/`` and swapped in by two
renames, so a kill at any moment leaves either the previous unit or the new one, never a model
file from one save beside a ``state.json`` from another::

    <name>.new/   being written; a kill leaves it incomplete and the next write discards it
    <name>.old/   the previous unit during the swap; when a kill leaves it without <name>/, it is put back

Model files are read with ``torch.load(weights_only=True)``: tensors and plain containers only, so a
file planted in a run directory cannot execute code when the run is evaluated or resumed.
"""

from __future__ import annotations

import base64
import json
import os
import pickle
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from rlgen.errors import RlgenError

STATE = "state.json"


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def recover_unit(directory: Path) -> None:
    """Finish or undo a swap a kill interrupted: drop a leftover ``.old`` beside a complete unit, or
    put ``.old`` back when the unit itself is missing."""
    old = directory.with_name(directory.name + ".old")
    if not old.is_dir():
        return
    if directory.is_dir():
        shutil.rmtree(old)
    else:
        os.rename(old, directory)


def write_unit(directory: Path, fill: Callable[[Path], None]) -> None:
    """Write the unit ``directory`` as ``fill(tmp_dir)`` leaves it, replacing the previous one as a whole."""
    new = directory.with_name(directory.name + ".new")
    old = directory.with_name(directory.name + ".old")
    shutil.rmtree(new, ignore_errors=True)
    new.mkdir(parents=True)
    fill(new)
    for f in new.iterdir():
        _fsync(f)
    _fsync(new)
    recover_unit(directory)
    if directory.is_dir():
        os.rename(directory, old)
    os.rename(new, directory)
    _fsync(directory.parent)
    shutil.rmtree(old, ignore_errors=True)


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
