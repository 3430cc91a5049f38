"""The one run-directory protocol every trainer follows (SB3 PPO, JAX PPO, offline agents, and yours).

What a training run directory holds, whichever learner wrote it::

    config.yaml      the resolved config (every default filled in) + a ``resolved`` block of derived facts
    run.json         the run id, written once when the directory first gets a config
    ladder.json      online runs: the skill ladder, one rung per kept checkpoint
    checkpoints/     the resumable checkpoint and its ``state.json``
    .lock            flock()ed by the process training in the directory

A trainer that trains several seeds in one process (the JAX offline agents) writes a *seed group* instead:
``group.json`` naming its members, each a run directory as above (:func:`member_runs`).

and what every trainer does with it: one trainer at a time (:func:`locks_run_dir`), the resume preamble
(:func:`resume_preamble`: is there a checkpoint, is the run finished, is it the same config), the
resolved config and run id (:func:`write_resolved_config`), ladder rungs (:func:`append_rung`),
directories written as units (:func:`write_unit`), stopping cleanly on SIGINT/SIGTERM (:func:`stop_on_signals`).
The checks before training (writable, holds work, same config) live in ``rlgen.agents.run_checks`` and are
re-exported here.

A run directory may come from someone else, so everything read from it is data, never code: JSON and
YAML files are checked for shape (a torn file is one line naming it), and every path they name must
resolve inside the run directory (no ``../..``, no absolute path, no symlink out).

A *run* is one training run; its id is written once into ``run.json`` (``rlgen.agents.run_record``, whose
names this module re-exports): resuming, moving the directory or naming it by a relative or an absolute path
keeps the id.

Free of torch, SB3 and JAX, so every learner (and collection) can use it without importing the others.
"""

from __future__ import annotations

import dataclasses
import errno
import fcntl
import functools
import json
import os
import shlex
import shutil
import signal
import stat
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from rlgen.agents.run_checks import (
    CONFIG,
    GROUP,
    LOCK,
    RESUME_NEUTRAL_KEYS,
    RUN_FILE,
    SameAs,
    check_same_config,
    check_writable_dir,
    config_dict,
    holds_work,
    read_run_config,
)
from rlgen.agents.run_checks import HELD_OUT_CURVE
from rlgen.agents.run_record import adopt_run_id, ensure_run_id, path_run_id, read_run_id, read_run_record
from rlgen.atomic_files import write_json_atomic, write_text_atomic
from rlgen.errors import RlgenError, TrainingInterrupted

__all__ = ["CONFIG", "LADDER", "LOCK", "RUN_FILE", "Resume", "TrainingInterrupted", "adopt_run_id", "append_rung", "check_same_config",
           "ensure_run_id", "inside_run_dir", "locks_run_dir", "path_run_id", "read_json", "read_ladder", "read_run_config", "read_run_id",
           "read_run_record", "read_state", "rung_curves",
           "recover_unit", "resume_preamble", "run_dir_lock", "stop_on_signals", "write_resolved_config", "write_state", "write_unit",
           "keep_rung", "final_checkpoint", "interrupted", "tensorboard_writer", "config_dict", "ladder_or_new", "RESUME_NEUTRAL_KEYS",
           "holds_work", "check_writable_dir", "SameAs", "GROUP", "member_runs"]  # fmt: skip

LADDER = "ladder.json"


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


# --- the config ------------------------------------------------------------------------------------


def member_runs(run_dir: str | Path) -> list[Path]:
    """The run directories ``run_dir`` stands for: its seed group's members (``group.json``, in seed order),
    or ``[run_dir]`` itself. Member paths must stay inside the group; a torn record is one ``RlgenError``."""
    d = Path(run_dir)
    path = d / GROUP
    if not path.is_file():
        return [d]
    group = read_json(path)
    members = group.get("members") if isinstance(group, dict) else None
    if not isinstance(members, dict) or not members:
        raise RlgenError(f"{path}: expected an object with a non-empty `members` mapping (seed -> directory)")
    return [d / inside_run_dir(d, rel, path).relative_to(d.resolve()) for rel in members.values()]


def write_resolved_config(cfg: Any, directory: str | Path, extra: Mapping[str, Any] | None = None) -> Path:
    """Write ``config.yaml`` (every key, defaults filled in) into ``directory``; returns its path.

    ``extra`` adds derived facts worth keeping (e.g. the resolved ``LevelSplit``) under ``resolved``.
    Gives the directory its run id (``run.json``, written once).
    """
    import yaml

    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    ensure_run_id(d)
    data = config_dict(cfg)
    if extra:
        data["resolved"] = dict(extra)
    return write_text_atomic(d / CONFIG, yaml.safe_dump(data, sort_keys=False))


# --- resuming --------------------------------------------------------------------------------------


def read_state(run_dir: str | Path, relative: str) -> dict[str, Any]:
    """A trainer's ``state.json`` (``{}`` when there is none yet); a torn one is one ``RlgenError``."""
    p = Path(run_dir) / relative
    if not p.is_file():
        return {}
    state = read_json(p)
    if not isinstance(state, dict):
        raise RlgenError(f"{p}: expected a JSON object, got {type(state).__name__}")
    return state


def write_state(run_dir: str | Path, relative: str, steps: int, finished: bool) -> None:
    """An online trainer's ``state.json``: env steps done (``num_timesteps``), whether training finished."""
    write_json_atomic(Path(run_dir) / relative, {"num_timesteps": int(steps), "finished": bool(finished), "time": time.time()})


@dataclasses.dataclass(frozen=True)
class Resume:
    """What a run directory says before training starts.

    Attributes:
        resuming: a resumable checkpoint is there (training continues from it).
        finished: its state says training reached ``total`` steps: nothing left to do.
        state: the state file's content (``{}`` without one).
    """

    resuming: bool
    finished: bool
    state: dict[str, Any]


def resume_preamble(run_dir: Path, cfg: Any, checkpoint: str, state_file: str, total: int, steps_key: str = "num_timesteps",
                    ignore: Iterable[str] = RESUME_NEUTRAL_KEYS, read: Callable[[Path], dict[str, Any]] | None = None,
                    same: Mapping[str, SameAs] | None = None) -> Resume:  # fmt: skip
    """Read ``run_dir`` before training: is there a checkpoint (``checkpoint``, a file or directory), is the
    run finished (``state_file`` says ``finished`` at ``steps_key`` >= ``total``), and when the directory
    holds any work (:func:`holds_work`: rungs, checkpoints, events... not only a checkpoint), is its saved
    config the same as ``cfg`` outside ``ignore`` (else one ``RlgenError``)? Writes nothing. A directory
    holding only the config of a start that failed takes a corrected config.

    ``read`` reads the state file (default :func:`read_state`'s JSON object check); ``same``: see
    :func:`check_same_config`.
    """
    path = run_dir / state_file
    state = (read(path) if path.is_file() else {}) if read is not None else read_state(run_dir, state_file)
    resuming = (run_dir / checkpoint).exists()
    steps = state.get(steps_key)
    finished = bool(state.get("finished")) and isinstance(steps, int) and steps >= total
    if resuming or finished or holds_work(run_dir):
        check_same_config(run_dir, cfg, ignore, same)
    return Resume(resuming, finished, state)


# --- the skill ladder ------------------------------------------------------------------------------


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


def ladder_or_new(run_dir: str | Path, split: Any) -> dict[str, Any]:
    """The run's ladder, or an empty one for ``split`` when there is none yet (a torn one fails here)."""
    if (Path(run_dir) / LADDER).is_file():
        return read_ladder(run_dir)
    return {"env": split.id, "split": split.to_dict(), "rungs": []}


def append_rung(run_dir: str | Path, split: Any, rung: dict[str, Any]) -> dict[str, Any]:
    """Add ``rung`` (``step``, ``checkpoint``, ``mean_return``, ...) to the ladder, replacing a rung of the same step."""
    ladder = ladder_or_new(run_dir, split)
    ladder["rungs"] = [r for r in ladder["rungs"] if r["step"] != rung["step"]] + [rung]
    write_json_atomic(Path(run_dir) / LADDER, ladder)
    return rung


def rung_curves(evaluate: Callable[[str], Any], split: Any, held_out_curve: bool) -> dict[str, Any]:
    """What a rung logs beside its training-level return: ``evaluate(which)`` (an ``EvalResult``) on the
    validation levels (when the split has some) and, with ``held_out_curve``, on the held-out levels."""
    out = {"validation": evaluate("validation")} if split.validation else {}
    if held_out_curve:
        out["held_out"] = evaluate("held_out")
    return out


def keep_rung(run_dir: str | Path, split: Any, step: int, checkpoint: str, result: Any, deterministic: bool, tb: Any = None,
              curves: Mapping[str, Any] | None = None) -> dict[str, Any]:  # fmt: skip
    """Record a ladder rung: the policy saved at ``checkpoint`` (relative to the run) after ``step`` env
    steps, and ``result``, its ``EvalResult`` on the training levels; with ``tb`` (a ``SummaryWriter``) its
    ``eval/train_levels/*`` scalars at that step.

    ``curves`` (``rung_curves``'s): the validation-level result goes into the rung (``validation``) and under
    ``eval/validation_levels/``; the held-out one only into TensorBoard, under ``HELD_OUT_CURVE``: never into
    ``ladder.json``, which rung selection reads."""
    curves = curves or {}
    rung = {
        "step": int(step), "checkpoint": checkpoint, "mean_return": result.mean_return, "mean_normalized": result.mean_normalized,
        "episodes": len(result.returns), "levels": "train", "deterministic": bool(deterministic), "time": time.time(),
    }  # fmt: skip
    if "validation" in curves:
        rung["validation"] = {"mean_return": curves["validation"].mean_return, "mean_normalized": curves["validation"].mean_normalized}
    append_rung(run_dir, split, rung)
    if tb is not None:
        for group, r in (("eval/train_levels", result), ("eval/validation_levels", curves.get("validation")),
                         (HELD_OUT_CURVE, curves.get("held_out"))):  # fmt: skip
            if r is None:
                continue
            tb.add_scalar(f"{group}/mean_return", r.mean_return, step)
            if r.mean_normalized is not None:
                tb.add_scalar(f"{group}/mean_normalized", r.mean_normalized, step)
        tb.flush()
    return rung


def final_checkpoint(run_dir: str | Path, checkpoint: str | None, latest: str) -> Path:
    """The policy file to load: ``checkpoint`` (inside the run), else the last ladder rung (the final
    policy), else ``latest`` (a run stopped before its first rung)."""
    run = Path(run_dir)
    if checkpoint is not None:
        return inside_run_dir(run, checkpoint, "checkpoint")
    if (run / LADDER).is_file():
        rungs = read_ladder(run)["rungs"]
        if rungs:
            return inside_run_dir(run, max(rungs, key=lambda r: r["step"])["checkpoint"], run / LADDER)
    return run / latest


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
    fd = _open_lock_file(root / LOCK)
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


def _open_lock_file(path: Path) -> int:
    """Open (or create) a lock file that is rlgen's to truncate and write: never through a symlink (O_NOFOLLOW),
    and only a plain file with no other name (a hard link planted there would make us overwrite its target)."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, 0o644)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise RlgenError(f"{path} is a symbolic link; refused (rlgen writes its lock file only as a plain file): remove it") from None
        raise
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1:
        os.close(fd)
        raise RlgenError(f"{path} is not a plain file of its own (a hard link or a special file); refused: remove it")
    return fd


def _lock_holder(fd: int) -> str:
    try:
        info = json.loads(os.pread(fd, 4096, 0) or b"{}")
        command = " ".join(str(info["command"]).split())[:300]  # one line, whatever the holder's argv held
        return f"process {int(info['pid'])} (`{command}`, since {info['since']})"
    except (OSError, ValueError, KeyError, TypeError):
        return "another process"


F = TypeVar("F", bound=Callable[..., Any])


def locks_run_dir(train: F) -> F:
    """Decorator for ``train_*(cfg, ...)``: hold the lock of ``cfg.out_dir`` while it runs (after checking,
    with one line naming it, that the directory can be written)."""

    @functools.wraps(train)
    def wrapper(cfg: Any, *args: Any, **kwargs: Any) -> Any:
        check_writable_dir(cfg.out_dir)
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


def interrupted(what: str, checkpoint: Path) -> TrainingInterrupted:
    """The error a trainer raises after a stop signal, once its checkpoint is saved."""
    return TrainingInterrupted(f"stopped by signal at {what}; checkpoint saved in {checkpoint}; run the same command again to resume")


# --- directories written as units -------------------------------------------------------------------


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
    """Write the directory ``directory`` as ``fill(tmp_dir)`` leaves it, replacing the previous one as a whole.

    It is written under ``<name>.new/`` and swapped in by two renames, so a kill at any moment leaves
    either the previous unit or the new one (under ``<name>.old/`` mid-swap: :func:`recover_unit` puts it
    back), never files from two saves side by side.
    """
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


def tensorboard_writer(log_dir: Path, resumed_at: int | None, cfg: Any = None, run_dir: Path | None = None) -> Any:
    """A TensorBoard ``SummaryWriter`` for one curve across any number of resumes: readers drop what an
    earlier, killed attempt logged after the checkpoint resumed from (``resumed_at``), and everything an
    attempt without a checkpoint logged (``resumed_at=None``), so each step appears once. With ``cfg``'s
    ``logger`` naming wandb, its scalars also go to the wandb run of ``run_dir`` (``rlgen.agents.trackers``)."""
    from torch.utils.tensorboard import SummaryWriter

    tb = SummaryWriter(str(log_dir), purge_step=0 if resumed_at is None else resumed_at + 1)
    if cfg is None or run_dir is None or "wandb" not in (getattr(cfg, "logger", None) or ()):
        return tb
    from rlgen.agents.trackers import ScalarFanOut, open_wandb_run

    try:
        return ScalarFanOut(tb, open_wandb_run(cfg, Path(run_dir)))
    except BaseException:
        tb.close()
        raise
