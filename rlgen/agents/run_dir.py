"""What every training run directory shares, whichever learner wrote it: the skill ladder file,
atomic JSON writes, the same-config check on resume, and stopping cleanly on SIGINT/SIGTERM.

Kept free of torch, SB3 and JAX so every learner (and collection) can use it without importing the others.
"""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rlgen.errors import RlgenError

LADDER = "ladder.json"


class TrainingInterrupted(RlgenError):
    """Training stopped by SIGINT/SIGTERM after saving a checkpoint (the CLI exits 130)."""


def write_json_atomic(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2))
    os.replace(tmp, path)


def read_ladder(run_dir: str | Path) -> dict[str, Any]:
    """The run's ``ladder.json``: ``{"rungs": [{"step", "checkpoint", "mean_return", ...}], ...}``."""
    p = Path(run_dir) / LADDER
    if not p.is_file():
        raise RlgenError(f"{str(run_dir)!r} has no {LADDER}; train it with `rlgen train` first")
    return json.loads(p.read_text())


@contextmanager
def stop_on_signals(flag: dict[str, Any]) -> Iterator[None]:
    """SIGINT/SIGTERM set ``flag["stop"]`` (and ``flag["signal"]``); the training loop checks it."""

    def handler(signum: int, frame: Any) -> None:
        flag["stop"] = True
        flag["signal"] = signum

    old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def check_same_config(run_dir: Path, cfg: Any, ignore: Iterable[str] = ("total_steps", "progress", "device")) -> None:
    """Refuse to resume ``run_dir`` with a config that differs (outside ``ignore``) from its ``config.yaml``:
    that would mix two experiments in one run directory."""
    import yaml

    from rlgen.config import config_to_dict

    saved_path = run_dir / "config.yaml"
    if not saved_path.is_file():
        return
    saved = yaml.safe_load(saved_path.read_text()) or {}
    saved.pop("resolved", None)
    now = config_to_dict(cfg)
    skip = set(ignore)
    diff = sorted(k for k in set(saved) | set(now) if k not in skip and saved.get(k) != now.get(k))
    if diff:
        raise RlgenError(
            f"{run_dir} holds a run with a different config (keys differ: {', '.join(diff)}); "
            "use another out_dir, or delete the directory to start over"
        )
