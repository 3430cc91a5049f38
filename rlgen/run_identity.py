"""Who a training run is: its stable run id, and the facts of the dataset it learned from.

A *run* is one training run. Its id is a uuid4 hex written once into ``run.json`` in the run
directory when the directory is first given a config (``rlgen.config.write_resolved_config``,
which every trainer calls: PPO, JAX PPO and offline). Resuming, moving the directory or naming it
by a relative or an absolute path keeps the id; deleting the directory and training again gives a
new one. Run directories made before ``run.json`` existed get an id derived from their resolved
absolute path, so ``runs/p`` and ``/home/me/runs/p`` are the same run.

Imports nothing of rlgen above ``envs``, so ``config.py`` and every trainer can use it.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import uuid
from pathlib import Path
from typing import Any

from rlgen.envs.levels import LevelSet
from rlgen.errors import RlgenError

RUN_FILE = "run.json"


def path_run_id(run_dir: str | Path) -> str:
    """The id of a run directory without ``run.json``: derived from its resolved absolute path."""
    resolved = str(Path(run_dir).resolve())
    return "path-" + hashlib.sha256(resolved.encode()).hexdigest()[:32]


def _read(path: Path) -> str:
    try:
        run_id = json.loads(path.read_text())["run_id"]
    except (OSError, ValueError, KeyError, TypeError):
        raise RlgenError(f"{path} is not a readable run record (expected JSON with a run_id); "
                         "restore it, or delete it to give the run a new id") from None  # fmt: skip
    if not isinstance(run_id, str) or not run_id:
        raise RlgenError(f"{path}: run_id must be a non-empty string, got {run_id!r}")
    return run_id


def ensure_run_id(run_dir: str | Path) -> str:
    """The run id of ``run_dir``, creating ``run.json`` if the directory has none yet.

    Written once and never rewritten: the record is written to a temporary name and hard-linked to
    ``run.json``, which fails when another process got there first (then its id is the id).
    """
    d = Path(run_dir)
    path = d / RUN_FILE
    if path.is_file():
        return _read(path)
    d.mkdir(parents=True, exist_ok=True)
    run_id = uuid.uuid4().hex
    tmp = d / f"{RUN_FILE}.{uuid.uuid4().hex}.tmp"  # unique per caller: processes and threads alike
    tmp.write_text(json.dumps({"run_id": run_id, "created": time.time()}) + "\n")
    try:
        os.link(tmp, path)
    except FileExistsError:
        return _read(path)
    except OSError:  # a file system without hard links: exclusive create instead
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return _read(path)
        with os.fdopen(fd, "w") as f:
            f.write(tmp.read_text())
    finally:
        tmp.unlink(missing_ok=True)
    return run_id


def read_run_id(run_dir: str | Path) -> str:
    """The run id of ``run_dir``: from ``run.json``, else :func:`path_run_id` (run directories made
    before run ids existed)."""
    path = Path(run_dir) / RUN_FILE
    return _read(path) if path.is_file() else path_run_id(run_dir)


def dataset_identity(ds: Any) -> dict[str, Any]:
    """What a dataset *is*, for keying results: ``name``, ``skill``, ``levels`` (the number of
    training levels it was collected on, as asked), ``size`` (transitions asked for), and the
    measured ``transitions`` and ``distinct_levels``; ``train_levels`` is the level set (text spec)
    the data came from, so the agent is evaluated on "train" levels it actually saw.

    ``levels`` and ``size`` are the nominal values of the collection (or of the subset), not the
    measured ones: two seeds of one recipe hold a few transitions more or less, and a small dataset
    reaches fewer distinct levels by chance; keyed on measured values, the seeds of one experiment
    would land in different report rows.

    Args:
        ds: a ``rlgen.data.Dataset`` (its ``manifest``, ``num_transitions``, ``levels``, ``split``).
    """
    m = ds.manifest
    config = m.get("config") or {}
    subset = m.get("subset") or {}
    split = getattr(ds, "split", None)
    distinct = [int(x) for x in ds.levels]
    collected = LevelSet(split.train) if split is not None else LevelSet(distinct)
    if isinstance(config.get("levels"), int) and split is not None:
        collected = LevelSet(split.train).first(int(config["levels"]))
    if subset.get("levels") is not None:  # a subset chosen by levels holds exactly its episodes' levels
        collected = LevelSet(distinct)
    if subset.get("transitions") is not None:
        size = int(subset["transitions"])
    elif subset.get("episodes") is None and isinstance(config.get("transitions"), int):
        size = int(config["transitions"])
    else:  # collected (or subset) by episodes, or imported: the measured count is all there is
        size = int(ds.num_transitions)
    return {
        "name": str(ds.name),
        "skill": subset.get("skill") or m.get("skill"),
        "levels": len(collected),
        "size": size,
        "transitions": int(ds.num_transitions),
        "distinct_levels": len(distinct),
        "train_levels": str(collected),
    }
