"""Checks of a run directory before a trainer starts in it: can it be written, does it hold work, is its
saved config the same as today's (so two experiments never mix in one directory).

Part of the run-directory protocol of ``rlgen.agents.run_dir``, which re-exports everything here. Free
of torch, SB3 and JAX.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from rlgen.errors import RlgenError

CONFIG = "config.yaml"
RUN_FILE = "run.json"
#: A seed group's record (several seeds trained in one process): ``{"format", "algo", "seeds", "members": {seed: relative dir}, "config"}``.
GROUP = "group.json"
#: The TensorBoard group of the held-out-level return logged during training: to watch the generalization gap
#: open, never read by any selection (rungs, early stopping and checkpoints use training and validation levels).
HELD_OUT_CURVE = "eval/held_out_levels_never_used_for_selection"
#: The lock file of a run directory; its content says who holds it (JSON: pid, command, since).
LOCK = ".lock"


def config_dict(cfg: Any) -> dict[str, Any]:
    """A pydantic config as plain JSON data."""
    return json.loads(cfg.model_dump_json())


def read_run_config(run_dir: str | Path) -> dict[str, Any]:
    """The run's ``config.yaml`` as a mapping (its ``resolved`` block included).

    Raises:
        RlgenError: no ``config.yaml`` (not a run directory), or one that is unreadable or not a mapping.
    """
    path = Path(run_dir) / CONFIG
    if not path.is_file():
        if (Path(run_dir) / GROUP).is_file():
            raise RlgenError(f"{str(run_dir)!r} is a group of seed runs (its {GROUP} names them); name one of them, "
                             f"or evaluate them all with `rlgen evaluate {run_dir}`")
        raise RlgenError(f"{str(run_dir)!r} is not a run directory (no {CONFIG}); pass the out_dir of `rlgen train`")
    import yaml

    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        raise RlgenError(f"{path} is not readable YAML ({type(e).__name__}); restore it or start over in a new out_dir") from None
    if not isinstance(data, dict):
        raise RlgenError(f"{path}: expected a mapping of config keys, got {type(data).__name__}")
    return data


#: Config keys a resumed online run may change: how long, how it shows progress, where and how often it saves.
#: ``out_dir`` and ``name`` too: the directory is the run's identity, so a run moved, or named by another
#: path (relative, absolute, ``./x/``), resumes.
RESUME_NEUTRAL_KEYS = ("total_steps", "progress", "device", "checkpoint_every", "out_dir", "name", "held_out_curve", "logger", "wandb")

#: What a directory holds before any training happened in it (a failed start leaves no more): not work.
_NOT_WORK = (CONFIG, RUN_FILE, LOCK)


def holds_work(run_dir: str | Path) -> bool:
    """Whether ``run_dir`` holds anything a trainer made besides its config, run id and lock (ladder rungs,
    checkpoints, TensorBoard events, results...). Temporary files of an interrupted write do not count."""
    d = Path(run_dir)
    if not d.is_dir():
        return False
    return any(p.name not in _NOT_WORK and not p.name.endswith(".tmp") for p in d.iterdir())


#: ``same(saved_value, saved_resolved) -> bool``: whether a key's value in a saved config names the same
#: thing as today's config (a dataset by its content, not its path); given per key to :func:`check_same_config`.
SameAs = Callable[[Any, Mapping[str, Any]], bool]


def check_same_config(run_dir: Path, cfg: Any, ignore: Iterable[str] = RESUME_NEUTRAL_KEYS, same: Mapping[str, SameAs] | None = None) -> None:
    """Refuse to continue ``run_dir`` with a config that differs (outside ``ignore``) from its ``config.yaml``:
    that would mix two experiments in one run directory. A directory without a config passes.

    Keys in ``same`` are compared by their function (``same[key](saved_value, saved_resolved_block)``)
    instead of by equality.
    """
    if not (Path(run_dir) / CONFIG).is_file():
        return
    saved = read_run_config(run_dir)
    resolved = saved.pop("resolved", None)
    resolved = resolved if isinstance(resolved, dict) else {}
    now = config_dict(cfg)
    skip = set(ignore)
    same = dict(same or {})

    def differs(k: str) -> bool:
        if k in same and k in saved:
            return not same[k](saved[k], resolved)
        return saved.get(k) != now.get(k)

    diff = sorted(k for k in set(saved) | set(now) if k not in skip and differs(k))
    if diff:
        advice = _which_key_to_change(run_dir, diff, saved, now, same)
        raise RlgenError(f"{run_dir} holds a run with a different config (keys differ: {', '.join(diff)}); {advice}")


def _which_key_to_change(run_dir: Path, diff: list[str], saved: Mapping[str, Any], now: Mapping[str, Any], same: Mapping[str, Any]) -> str:
    """The refusal's advice: the values that differ, and the key that keeps both runs (``out_dir``), with an example."""

    def short(v: Any) -> str:
        text = json.dumps(v) if not isinstance(v, str) else v
        return text if len(text) <= 40 else text[:37] + "..."

    values = "; ".join(f"{k} holds other content there" if k in same else f"{k} is {short(saved.get(k))} there and {short(now.get(k))} here"
                       for k in diff[:3])  # fmt: skip
    example = f"{run_dir}-2"
    if "seed" in diff and "seed" in now:  # runs/cql-data-s0 -> runs/cql-data-s1, runs/ppo-doorkey -> runs/ppo-doorkey-s1
        example = str(run_dir).removesuffix(f"-s{saved.get('seed')}") + f"-s{now['seed']}"
    return f"{values}. To keep both runs give this one its own out_dir (e.g. out_dir={example}) or name; to start over, delete {run_dir}"


def check_writable_dir(path: str | Path, what: str = "out_dir", remedy: str | None = None) -> None:
    """Fail now, before any work, with one line naming ``path``, when files cannot be created there (or,
    for a directory that does not exist yet, in the nearest parent that does, where it will be made).

    ``what`` names the path in the message, ``remedy`` says what to do (default: choose another ``what``).
    Tries it: a uniquely named empty file is created (``O_EXCL``, never through a symlink) and removed, which
    answers for permissions, ACLs, read-only file systems and root alike.
    """
    p = Path(path)
    existing = next((q for q in (p, *p.parents) if q.exists() or q.is_symlink()), Path("."))
    why = ""
    if not existing.is_dir():
        why = "not a directory"
    else:
        try:
            fd, probe = tempfile.mkstemp(dir=existing, prefix=".rlgen-write-check-")
            os.close(fd)
            os.unlink(probe)
        except OSError as e:
            why = e.strerror or type(e).__name__
    if why:
        where = "" if existing == p else f" (in {existing}, where it would be created)"
        raise RlgenError(f"{what} {str(p)!r}: cannot write there{where}: {why}; {remedy or f'choose another {what}, or fix its permissions'}")
