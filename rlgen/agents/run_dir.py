"""What every training run directory shares, whichever learner wrote it: the skill ladder file,
atomic JSON writes, the same-config check on resume, one trainer at a time (a lock), and stopping
cleanly on SIGINT/SIGTERM.

A run directory may come from someone else, so everything read from it is data, never code: JSON
files are checked for shape (a torn file is one line naming it), and every path they name must
resolve inside the run directory (no ``../..``, no absolute path, no symlink out).

Kept free of torch, SB3 and JAX so every learner (and collection) can use it without importing the others.
"""

from __future__ import annotations

import fcntl
import functools
import json
import os
import shlex
import signal
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from rlgen.errors import RlgenError

LADDER = "ladder.json"
#: The lock file of a run directory; its content says who holds it (JSON: pid, command, since).
LOCK = ".lock"


class TrainingInterrupted(RlgenError):
    """Training stopped by SIGINT/SIGTERM after saving a checkpoint (the CLI exits 130)."""


def write_json_atomic(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2))
    os.replace(tmp, path)


def read_json(path: Path) -> Any:
    """The JSON in ``path``; a torn or unreadable file is one ``RlgenError`` naming it."""
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise RlgenError(f"{path} is not readable JSON ({type(e).__name__}: {str(e)[:120]}); "
                         "it may be torn by a crash: restore it or start over in a new out_dir") from None


def inside_run_dir(run_dir: str | Path, relative: Any, source: str | Path) -> Path:
    """``run_dir / relative``, resolved, refusing anything that lands outside ``run_dir``.

    Args:
        relative: a path read from ``source`` (a ladder, a state file or the command line).
    Raises:
        RlgenError: ``relative`` is not a string, or resolves (through ``..``, an absolute path or a
            symlink) outside the run directory.
    """
    root = Path(run_dir).resolve()
    if not isinstance(relative, str) or not relative or "\0" in relative:
        raise RlgenError(f"{source}: checkpoint path {relative!r} is not a relative file path inside {root}")
    target = (root / relative).resolve()
    if target != root and root not in target.parents:
        raise RlgenError(f"{source}: checkpoint path {relative!r} leaves the run directory {root}; refusing to read {target}")
    return target


def read_ladder(run_dir: str | Path) -> dict[str, Any]:
    """The run's ``ladder.json``: ``{"rungs": [{"step", "checkpoint", "mean_return", ...}], ...}``.

    Every rung has an int ``step``, a numeric ``mean_return`` and a ``checkpoint`` path that stays
    inside the run directory; anything else is one ``RlgenError`` naming the file.
    """
    p = Path(run_dir) / LADDER
    if not p.is_file():
        raise RlgenError(f"{str(run_dir)!r} has no {LADDER}; train it with `rlgen train` first")
    ladder = read_json(p)
    rungs = ladder.get("rungs") if isinstance(ladder, dict) else None
    if not isinstance(rungs, list):
        raise RlgenError(f"{p}: expected an object with a `rungs` list, got {type(ladder).__name__}")
    for i, rung in enumerate(rungs):
        ok = isinstance(rung, dict) and type(rung.get("step")) is int and isinstance(rung.get("mean_return"), (int, float))
        if not ok:
            raise RlgenError(f"{p}: rung {i} needs an int `step`, a number `mean_return` and a `checkpoint` path, got {str(rung)[:120]}")
        inside_run_dir(run_dir, rung.get("checkpoint"), p)
    return ladder


def read_state(run_dir: str | Path, relative: str) -> dict[str, Any]:
    """A trainer's ``state.json`` (``{}`` when there is none yet); a torn one is one ``RlgenError``."""
    p = Path(run_dir) / relative
    if not p.is_file():
        return {}
    state = read_json(p)
    if not isinstance(state, dict):
        raise RlgenError(f"{p}: expected a JSON object, got {type(state).__name__}")
    return state


# --- one trainer per run directory ----------------------------------------------------------------

#: Run directories this process holds the lock of (resolved path -> open lock file descriptor).
_HELD: dict[Path, int] = {}


@contextmanager
def run_dir_lock(run_dir: str | Path) -> Iterator[None]:
    """Hold ``run_dir``'s lock while the block runs: a second trainer on the same directory gets one
    ``RlgenError`` naming the process that holds it, instead of both writing the same files.

    ``fcntl.flock`` on ``<run_dir>/.lock``, non-blocking: the kernel releases it when the holder
    exits, however it dies (SIGKILL included), so a stale lock file never blocks a retry. Re-entrant
    within one process (a pipeline stage that trains in-process, then resumes).
    """
    root = Path(run_dir)
    created = not root.exists()
    root.mkdir(parents=True, exist_ok=True)
    key = root.resolve()
    if key in _HELD:
        yield
        return
    fd = os.open(root / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _lock_holder(fd)
        os.close(fd)
        raise RlgenError(f"{root} is in use by {holder}; wait for it to finish or stop it, or use another out_dir") from None
    except BaseException:
        os.close(fd)
        raise
    try:
        info = {"pid": os.getpid(), "command": shlex.join(getattr(sys, "orig_argv", sys.argv)), "since": time.strftime("%Y-%m-%d %H:%M:%S")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode(), 0)
        _HELD[key] = fd
        try:
            yield
        except BaseException:
            # A command that failed before writing anything (bad batch_size, missing dataset...) leaves no
            # directory behind: nothing to confuse its corrected retry. Nobody waits on a non-blocking lock,
            # and we still hold it, so removing the lock file races with no one.
            if created and [p.name for p in root.iterdir()] == [LOCK]:
                (root / LOCK).unlink()
                root.rmdir()
            raise
    finally:
        _HELD.pop(key, None)
        os.close(fd)  # releases the lock; the file stays (deleting it would race with a waiting locker)


def _lock_holder(fd: int) -> str:
    try:
        info = json.loads(os.pread(fd, 4096, 0) or b"{}")
        command = " ".join(str(info["command"]).split())[:300]  # one line, whatever the holder's argv held
        return f"process {int(info['pid'])} (`{command}`, since {info['since']})"
    except (OSError, ValueError, KeyError, TypeError):
        return "another process"


F = TypeVar("F", bound=Callable[..., Any])


def locks_run_dir(train: F) -> F:
    """Decorator for ``train_*(cfg, ...)``: hold the lock of ``cfg.out_dir`` while it runs."""

    @functools.wraps(train)
    def wrapper(cfg: Any, *args: Any, **kwargs: Any) -> Any:
        with run_dir_lock(cfg.out_dir):
            return train(cfg, *args, **kwargs)

    return wrapper  # type: ignore[return-value]


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


#: Config keys a resumed run may change: how long, how it shows progress, where and how often it saves.
RESUME_NEUTRAL_KEYS = ("total_steps", "progress", "device", "checkpoint_every")


def check_same_config(run_dir: Path, cfg: Any, ignore: Iterable[str] = RESUME_NEUTRAL_KEYS) -> None:
    """Refuse to resume ``run_dir`` with a config that differs (outside ``ignore``) from its ``config.yaml``:
    that would mix two experiments in one run directory."""
    import yaml

    from rlgen.config import config_to_dict

    saved_path = run_dir / "config.yaml"
    if not saved_path.is_file():
        return
    try:
        saved = yaml.safe_load(saved_path.read_text()) or {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        raise RlgenError(f"{saved_path} is not readable YAML ({type(e).__name__}); restore it or start over in a new out_dir") from None
    if not isinstance(saved, dict):
        raise RlgenError(f"{saved_path}: expected a mapping of config keys, got {type(saved).__name__}")
    saved.pop("resolved", None)
    now = config_to_dict(cfg)
    skip = set(ignore)
    diff = sorted(k for k in set(saved) | set(now) if k not in skip and saved.get(k) != now.get(k))
    if diff:
        raise RlgenError(
            f"{run_dir} holds a run with a different config (keys differ: {', '.join(diff)}); "
            "use another out_dir, or delete the directory to start over"
        )
