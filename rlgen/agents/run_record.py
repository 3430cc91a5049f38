"""``run.json``: who a training run is, written once into its directory.

A *run* is one training run; its id is a uuid4 hex written once into ``run.json`` when the directory first
gets a config (or, by the pipeline, when it creates the run's directory, with the study's label). Resuming,
moving the directory or naming it by a relative or an absolute path keeps the id; deleting the directory and
training again gives a new one.

The record may carry labels that are properties of the run, not of any one evaluation of it: ``study``,
the name of the study (``rlgen run``) that created it. Every evaluation of the run, by the pipeline or by
hand, reads them from here, so re-evaluating a run never moves it out of its study.

Run directories made before ``run.json`` existed have an id derived from their resolved absolute path
(:func:`path_run_id`), so ``runs/p`` and ``/home/me/runs/p`` are the same run; evaluating one writes that id
into a ``run.json`` once (:func:`adopt_run_id`), so from then on it travels with the directory.

Free of torch, SB3 and JAX.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import uuid
from pathlib import Path
from typing import Any

from rlgen.agents.run_checks import RUN_FILE
from rlgen.errors import RlgenError

#: Labels a run record may carry besides its id (``ensure_run_id(..., study=)``).
RUN_LABELS = ("study",)


def path_run_id(run_dir: str | Path) -> str:
    """The id of a run directory without ``run.json``: derived from its resolved absolute path."""
    resolved = str(Path(run_dir).resolve())
    return "path-" + hashlib.sha256(resolved.encode()).hexdigest()[:32]


def _read_record(path: Path) -> dict[str, Any]:
    try:
        record = json.loads(path.read_text())
        run_id = record["run_id"]
    except (OSError, ValueError, KeyError, TypeError):
        raise RlgenError(f"{path} is not a readable run record (expected JSON with a run_id); "
                         "restore it, or delete it to give the run a new id") from None  # fmt: skip
    if not isinstance(run_id, str) or not run_id:
        raise RlgenError(f"{path}: run_id must be a non-empty string, got {run_id!r}")
    for label in RUN_LABELS:
        if record.get(label) is not None and not isinstance(record[label], str):
            raise RlgenError(f"{path}: {label} must be a string or null, got {record[label]!r}")
    return record


def _write_once(d: Path, record: dict[str, Any]) -> str:
    """Write ``record`` as ``d/run.json`` unless one exists; returns the id in ``run.json`` afterwards.

    The record is written to a temporary name and hard-linked to ``run.json``, which fails when another
    process got there first (then its id is the id)."""
    path = d / RUN_FILE
    d.mkdir(parents=True, exist_ok=True)
    tmp = d / f"{RUN_FILE}.{uuid.uuid4().hex}.tmp"  # unique per caller: processes and threads alike
    tmp.write_text(json.dumps(record) + "\n")
    try:
        os.link(tmp, path)
    except FileExistsError:
        return _read_record(path)["run_id"]
    except OSError:  # a file system without hard links: exclusive create instead
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return _read_record(path)["run_id"]
        with os.fdopen(fd, "w") as f:
            f.write(tmp.read_text())
    finally:
        tmp.unlink(missing_ok=True)
    return str(record["run_id"])


def ensure_run_id(run_dir: str | Path, study: str | None = None) -> str:
    """The run id of ``run_dir``, creating ``run.json`` (with ``study`` as its study label) if the
    directory has none yet. Written once and never rewritten: an existing record keeps its id and labels."""
    d = Path(run_dir)
    path = d / RUN_FILE
    if path.is_file():
        return _read_record(path)["run_id"]
    record: dict[str, Any] = {"run_id": uuid.uuid4().hex, "created": time.time()}
    if study is not None:
        record["study"] = str(study)
    return _write_once(d, record)


def read_run_record(run_dir: str | Path) -> dict[str, Any]:
    """``{"run_id", "study", "recorded"}`` of ``run_dir``: from ``run.json`` (``recorded`` True), else the
    path-derived id of a directory from before run ids, with no labels (``recorded`` False).

    Raises:
        RlgenError: a torn or malformed ``run.json``.
    """
    path = Path(run_dir) / RUN_FILE
    if not path.is_file():
        return {"run_id": path_run_id(run_dir), "study": None, "recorded": False}
    record = _read_record(path)
    return {"run_id": record["run_id"], "study": record.get("study"), "recorded": True}


def read_run_id(run_dir: str | Path) -> str:
    """The run id of ``run_dir``: from ``run.json``, else :func:`path_run_id` (run directories made
    before run ids existed)."""
    return str(read_run_record(run_dir)["run_id"])


def adopt_run_id(run_dir: str | Path) -> tuple[str, bool]:
    """Give a run directory from before ``run.json`` its record, once: the id derived from where it is now
    (:func:`path_run_id`, the id its rows carried so far), so the id stays the same when the directory is
    moved afterwards. A directory that already has a record keeps it; one that cannot be written (read-only,
    someone else's) keeps its path-derived id.

    Returns:
        (run id, whether ``run.json`` was written now).
    """
    d = Path(run_dir)
    if (d / RUN_FILE).is_file():
        return read_run_id(d), False
    run_id = path_run_id(d)
    try:
        written = _write_once(d, {"run_id": run_id, "created": time.time(), "adopted": True})
    except OSError:
        return run_id, False
    return written, written == run_id
