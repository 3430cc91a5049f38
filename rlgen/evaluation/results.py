"""``results.jsonl``: one evaluation per row, who it is about, and which rows count.

A row is ``EvalResult.to_row(**identity)``: the per-episode returns of one evaluation plus the
identity of the agent, given as data (:data:`IDENTITY_FIELDS`: ``rlgen.agents.run_dir.agent_identity``
for a trained run, :func:`random_identity` for the random baseline).

The latest evaluation wins: per (run id, checkpoint, greedy or sampled, level set) only the most
recent row counts. ``rlgen evaluate`` replaces such rows in the run's ``results.jsonl`` (atomically,
under a lock), and :func:`load_results` keeps the latest of any it still finds across files (the same
run evaluated by the pipeline and by hand, or files from before rows were replaced).

Reading is tolerant: a torn or unparseable line, or a row missing what a report needs, is skipped
with a one-line warning naming ``file:line``; the other rows are used.
"""

from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import json
import math
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from rlgen.atomic_files import write_lines_atomic
from rlgen.envs import WHICH
from rlgen.errors import RlgenError

#: ``run_id_of(run_dir) -> run id``: how rows from before run ids find the run of the directory they were
#: written in (``rlgen.agents.run_dir.read_run_id``); without it, such rows are told apart by their fields.
RunIdOf = Callable[[Path], str]

#: The fields that say which agent a row is about (``env`` and ``which`` come with every row).
IDENTITY_FIELDS = ("run_id", "algorithm", "env", "train_levels", "train_seed", "checkpoint", "study", "dataset", "dataset_skill",
                   "dataset_levels", "dataset_transitions")  # fmt: skip


def random_identity(split: Any, seed: int, study: str | None = None) -> dict[str, Any]:
    """Row fields of the uniform random baseline on ``split`` with policy seed ``seed``: its own run
    id (from the split's level sets and the seed), algorithm ``random``, no dataset."""
    key = json.dumps([split.id, str(split.train), str(split.validation), str(split.held_out), int(seed)])
    return {
        "run_id": "random-" + hashlib.sha256(key.encode()).hexdigest()[:32],
        "algorithm": "random", "env": split.id, "train_levels": len(split.train), "train_seed": int(seed), "checkpoint": None,
        "study": study, "dataset": None, "dataset_skill": None, "dataset_levels": None, "dataset_transitions": None,
        "dataset_transitions_measured": None, "dataset_distinct_levels": None, "run": None,
    }  # fmt: skip


# --- which rows count -------------------------------------------------------------------------------


def row_algorithm(row: dict[str, Any]) -> str:
    """The algorithm of a row (rows from before identities name it ``algo`` or ``agent``)."""
    return str(row.get("algorithm") or row.get("algo") or row.get("agent") or "?")


def row_run_id(row: dict[str, Any], source: Path | None = None, run_id_of: RunIdOf | None = None) -> str:
    """The run a row belongs to. Rows from before run ids: one written by ``rlgen evaluate`` into a
    run directory belongs to that directory's run (``run_id_of(directory)``, so a later evaluation
    replaces it); others are told apart by what they recorded (run path, agent, env, seed)."""
    if row.get("run_id"):
        return str(row["run_id"])
    algo = row_algorithm(row)
    if run_id_of is not None and source is not None and algo != "random" and (source.parent / "config.yaml").is_file():
        return run_id_of(source.parent)
    key = json.dumps([row.get("run"), algo, row.get("agent"), row.get("env"), row.get("train_seed"), row.get("dataset"), row.get("seed")], default=str)
    return "legacy-" + hashlib.sha256(key.encode()).hexdigest()[:32]


def evaluation_key(row: dict[str, Any], source: Path | None = None, run_id_of: RunIdOf | None = None) -> tuple[str, str | None, bool, str]:
    """(run id, checkpoint, greedy, level set): rows with the same key evaluate the same policy the
    same way, and only the latest counts."""
    return (row_run_id(row, source, run_id_of), row.get("checkpoint"), bool(row.get("deterministic", False)), str(row["which"]))


# --- writing ---------------------------------------------------------------------------------------


def write_rows(path: str | Path, rows: Iterable[dict[str, Any]]) -> Path:
    """Write ``rows`` as the whole of ``path`` (temporary file, then rename: a kill leaves the old
    file or the new one, never half of one)."""
    return write_lines_atomic(path, (json.dumps(r) for r in rows), fsync=True)


def record_results(path: str | Path, rows: Sequence[dict[str, Any]], run_id_of: RunIdOf | None = None) -> tuple[Path, int, list[str]]:
    """Add ``rows`` to ``path``, replacing earlier rows with the same :func:`evaluation_key`.

    The file is rewritten atomically under an exclusive lock (two ``rlgen evaluate`` of one run at
    once both land). Unreadable lines already in the file are dropped, with a warning.

    Returns:
        (path, number of earlier rows replaced, warnings).
    """
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    new_keys = {evaluation_key(r, p, run_id_of) for r in rows}
    with (p.parent / f"{p.name}.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, or by the kernel if we die
        warnings: list[str] = []
        old = read_results(p, warnings) if p.is_file() else []
        kept = [r for r in old if evaluation_key(r, p, run_id_of) not in new_keys]
        write_rows(p, [*kept, *rows])
    return p, len(old) - len(kept), warnings


# --- reading ---------------------------------------------------------------------------------------


def _row_problem(row: Any) -> str | None:
    """Why a parsed row cannot be used, or None."""
    if not isinstance(row, dict):
        return f"not a JSON object ({type(row).__name__})"
    for key in ("env", "which", "returns"):
        if key not in row or row[key] is None:
            return f"missing key {key!r}"
    if row["which"] not in WHICH:
        return f"which={row['which']!r} is not one of {', '.join(WHICH)}"
    for key in ("returns", "normalized"):
        values = row.get(key)
        if key == "normalized" and values is None:
            continue
        if not isinstance(values, list) or not values or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in values):
            return f"{key!r} is not a non-empty list of finite numbers"
    if row.get("normalized") is not None and len(row["normalized"]) != len(row["returns"]):
        return f"'normalized' has {len(row['normalized'])} entries but 'returns' {len(row['returns'])}"
    return None


def read_results(path: str | Path, warnings: list[str] | None = None) -> list[dict[str, Any]]:
    """The usable rows of a ``results.jsonl`` file. Lines that do not parse, or rows without
    ``env``, ``which`` or returns, are skipped; a one-line warning per skipped line, naming
    ``file:line``, is appended to ``warnings``.

    Raises:
        RlgenError: the file does not exist or cannot be read.
    """
    p = Path(path)
    try:
        text = p.read_text()
    except FileNotFoundError:
        raise RlgenError(f"no results file at {str(p)!r}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise RlgenError(f"cannot read {p}: {e}") from None
    rows = []
    for i, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            problem: str | None = f"not a JSON row ({e.msg})"
        else:
            problem = _row_problem(row)
        if problem is not None:
            if warnings is not None:
                warnings.append(f"{p}:{i}: skipped: {problem}")
            continue
        rows.append(row)
    return rows


@dataclasses.dataclass
class Results:
    """Rows of one or more files after "latest evaluation wins".

    Attributes:
        rows: the rows that count, each with ``run_id`` filled in (for rows from before run ids too).
        files: the files read.
        dropped: rows superseded by a later evaluation of the same run (same :func:`evaluation_key`).
        warnings: one line per skipped line.
    """

    rows: list[dict[str, Any]]
    files: list[Path]
    dropped: int
    warnings: list[str]


def keep_latest(rows: Iterable[tuple[dict[str, Any], Path | None]], run_id_of: RunIdOf | None = None) -> tuple[list[dict[str, Any]], int]:
    """Per :func:`evaluation_key`, the latest row (by ``time``; among rows without one, the last
    given), each with ``run_id`` filled in. ``rows`` pairs each row with the file it came from.

    Returns:
        (the kept rows in reading order, number dropped).
    """
    latest: dict[tuple, tuple[tuple[float, int], dict[str, Any]]] = {}
    total = 0
    for order, (row, source) in enumerate(rows):
        total += 1
        key = evaluation_key(row, source, run_id_of)
        t = row.get("time")
        rank = (float(t) if isinstance(t, (int, float)) else -math.inf, order)
        if key not in latest or rank > latest[key][0]:
            latest[key] = (rank, {**row, "run_id": key[0]})
    kept = [row for _, row in sorted(latest.values(), key=lambda kv: kv[0][1])]
    return kept, total - len(kept)


def load_results(files: Sequence[str | Path], run_id_of: RunIdOf | None = None) -> Results:
    """Read ``files`` and keep only the latest evaluation of each run (:func:`keep_latest`)."""
    warnings: list[str] = []
    paths = [Path(f) for f in files]
    kept, dropped = keep_latest(((row, path) for path in paths for row in read_results(path, warnings)), run_id_of)
    return Results(kept, paths, dropped, warnings)
