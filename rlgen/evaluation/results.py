"""``results.jsonl``: one evaluation per row, who it is about, and which rows count.

A row is ``EvalResult.to_row(**identity)``: the per-episode returns of one evaluation plus the
identity of the agent, given as data (:data:`IDENTITY_FIELDS`: ``rlgen.agents.identity.agent_identity``
for a trained run, :func:`random_identity` for the random baseline).

The latest evaluation wins: per :func:`evaluation_key` (run id, algorithm, env, checkpoint, the acting mode
asked for, level set) only the most recent row counts, except that an evaluation of a run that had
finished training is never superseded by one of an unfinished state. ``rlgen evaluate`` replaces such rows
in the run's ``results.jsonl`` (atomically, under a lock, keeping every line it cannot read as it is), and
:func:`load_results` keeps the latest of any it still finds across files (the same run evaluated by the
pipeline and by hand, or files from before rows were replaced).

Reading is tolerant: a torn or unparseable line, or a row with a field of the wrong type (a string where a
count belongs, a list as a study, a return beyond +-1e15), is skipped with a one-line warning naming
``file:line`` and the key; the other rows are used.
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
#: written in, or name (``rlgen.agents.run_dir.read_run_id``: a directory's ``run.json``, else an id from
#: its resolved absolute path); without it, such rows are told apart by their fields.
RunIdOf = Callable[[Path], str]

#: The fields that say which agent a row is about (``env`` and ``which`` come with every row).
IDENTITY_FIELDS = ("run_id", "algorithm", "env", "split_digest", "held_out_digest", "split_options", "train_levels", "train_seed",
                   "config_digest", "settings", "checkpoint", "study", "dataset", "dataset_skill", "dataset_levels", "dataset_transitions",
                   "step", "finished")  # fmt: skip
#: Scores beyond this magnitude are refused: a mean or bootstrap of them would overflow to inf.
MAX_ABS_SCORE = 1e15


def digest(data: Any) -> str:
    """A short stable digest (16 hex digits of sha256) of JSON data, key order aside."""
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:16]


def split_facts(split: Any) -> dict[str, Any]:
    """Row fields naming the level split an evaluation ran on: ``split_digest`` (suite, options and the
    training and validation level sets: how the agent was trained, the same for every game of a study, so
    one agent's games aggregate), ``held_out_digest`` (suite, env, options and the held-out levels,
    duplicates dropped: per game; rows of one game with other held-out levels never share a row) and
    ``split_options`` (the suite options, resolved: Procgen's ``distribution_mode``, MiniGrid's ``view``...)."""
    base = {"suite": split.suite, "options": dict(split.options)}
    levels = {"train": str(split.train), "validation": str(split.validation) if split.validation else ""}
    return {"split_digest": digest({**base, **levels}), "held_out_digest": digest({**base, "env": split.env, "held_out": str(split.held_out)}),
            "split_options": json.loads(json.dumps(dict(split.options), default=str))}  # fmt: skip


def random_identity(split: Any, seed: int, study: str | None = None) -> dict[str, Any]:
    """Row fields of the uniform random baseline on ``split`` with policy seed ``seed``: its own run
    id (from the split's level sets and the seed), algorithm ``random``, no dataset, no training."""
    key = json.dumps([split.id, str(split.train), str(split.validation), str(split.held_out), int(seed)])
    return {
        "run_id": "random-" + hashlib.sha256(key.encode()).hexdigest()[:32],
        "algorithm": "random", "env": split.id, **split_facts(split), "train_levels": len(split.train), "train_seed": int(seed),
        "config_digest": digest(["random", {}]), "settings": {}, "checkpoint": None,
        "study": study, "dataset": None, "dataset_skill": None, "dataset_levels": None, "dataset_transitions": None,
        "dataset_transitions_measured": None, "dataset_distinct_levels": None, "step": None, "finished": None, "run": None,
    }  # fmt: skip


# --- which rows count -------------------------------------------------------------------------------


def row_algorithm(row: dict[str, Any]) -> str:
    """The algorithm of a row (rows from before identities name it ``algo`` or ``agent``)."""
    return str(row.get("algorithm") or row.get("algo") or row.get("agent") or "?")


def row_run_id(row: dict[str, Any], source: Path | None = None, run_id_of: RunIdOf | None = None) -> str:
    """The run a row belongs to. Rows from before run ids: one written by ``rlgen evaluate`` into a
    run directory belongs to that directory's run (``run_id_of(directory)``, so a later evaluation
    replaces it); one that names its run directory (``run``) belongs to that directory, resolved to an
    absolute path (``runs/p`` and ``/abs/runs/p`` are one run); others are told apart by what they
    recorded (agent, env, seed, dataset)."""
    if row.get("run_id"):
        return str(row["run_id"])
    algo = row_algorithm(row)
    if run_id_of is not None and algo != "random":
        if source is not None and (source.parent / "config.yaml").is_file():
            return run_id_of(source.parent)
        if isinstance(row.get("run"), str) and row["run"]:
            try:
                return run_id_of(Path(row["run"]))
            except RlgenError:  # a torn run.json there: fall back to the fields
                pass
    key = json.dumps([row.get("run"), algo, row.get("agent"), row.get("env"), row.get("train_seed"), row.get("dataset"), row.get("seed")], default=str)
    return "legacy-" + hashlib.sha256(key.encode()).hexdigest()[:32]


def requested_mode(row: dict[str, Any]) -> bool:
    """Whether the evaluation asked for greedy actions (``deterministic_requested``; rows from before it
    recorded only ``deterministic``). A row's ``deterministic`` says how the agent actually acted: BCQ and
    CQL act greedily whatever is asked."""
    asked = row.get("deterministic_requested")
    return asked if isinstance(asked, bool) else bool(row.get("deterministic", False))


def evaluation_key(row: dict[str, Any], source: Path | None = None, run_id_of: RunIdOf | None = None) -> tuple[str, str, str, str | None, bool, str]:
    """(run id, algorithm, env, checkpoint, greedy asked for, level set): rows with the same key evaluate
    the same policy the same way, and only the latest counts. The algorithm and env are part of it, so a
    row claiming another run's id for another agent supersedes nothing."""
    return (row_run_id(row, source, run_id_of), row_algorithm(row), str(row["env"]), row.get("checkpoint"), requested_mode(row), str(row["which"]))


def rank(row: dict[str, Any], order: int) -> tuple[int, float, int]:
    """Which of two rows with one key counts: one of a finished run over one of an unfinished run, then the
    later ``time``, then the later in reading order."""
    t = row.get("time")
    return (0 if row.get("finished") is False else 1, float(t) if isinstance(t, (int, float)) else -math.inf, order)


# --- writing ---------------------------------------------------------------------------------------


def write_rows(path: str | Path, rows: Iterable[dict[str, Any]]) -> Path:
    """Write ``rows`` as the whole of ``path`` (temporary file, then rename: a kill leaves the old
    file or the new one, never half of one)."""
    return write_lines_atomic(path, (json.dumps(r) for r in rows), fsync=True)


def record_results(path: str | Path, rows: Sequence[dict[str, Any]], run_id_of: RunIdOf | None = None) -> tuple[Path, int, list[str]]:
    """Add ``rows`` to ``path``, replacing earlier rows with the same :func:`evaluation_key`.

    The file is rewritten atomically under an exclusive lock (two ``rlgen evaluate`` of one run at
    once both land). Every other line stays as it was, byte for byte: lines that do not parse, or rows
    this version cannot use, are kept (with a warning each), never dropped.

    Returns:
        (path, number of earlier rows replaced, warnings).
    """
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    new_keys = {evaluation_key(r, p, run_id_of) for r in rows}
    with (p.parent / f"{p.name}.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, or by the kernel if we die
        warnings: list[str] = []
        kept: list[str] = []
        replaced = 0
        for i, line, row, problem in _lines(p) if p.is_file() else []:
            if problem is not None:
                warnings.append(f"{p}:{i}: kept as it is, not read: {problem}")
            elif evaluation_key(row, p, run_id_of) in new_keys:
                replaced += 1
                continue
            kept.append(line)
        write_lines_atomic(p, [*kept, *(json.dumps(r) for r in rows)], fsync=True)
    return p, replaced, warnings


# --- reading ---------------------------------------------------------------------------------------

_STRINGS = ("run_id", "algorithm", "algo", "agent", "study", "checkpoint", "dataset", "dataset_skill", "split_digest", "held_out_digest",
            "config_digest", "run")  # fmt: skip
_COUNTS = ("train_levels", "train_seed", "dataset_levels", "dataset_transitions", "step", "num_envs", "episodes", "seed")
_FLAGS = ("deterministic", "deterministic_requested", "finished")
_MAPPINGS = ("settings", "split_options")


def _scores_problem(key: str, values: Any) -> str | None:
    if not isinstance(values, list) or not values:
        return f"{key!r} is not a non-empty list of finite numbers"
    for v in values:
        if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v):
            return f"{key!r} is not a non-empty list of finite numbers"
        if abs(v) > MAX_ABS_SCORE:
            return f"{key!r} holds {v!r}, beyond +-{MAX_ABS_SCORE:.0e}"
    return None


def _row_problem(row: Any) -> str | None:
    """Why a parsed row cannot be used (naming the key), or None. Every field the report reads is checked."""
    if not isinstance(row, dict):
        return f"not a JSON object ({type(row).__name__})"
    for key in ("env", "which", "returns"):
        if key not in row or row[key] is None:
            return f"missing key {key!r}"
    if not isinstance(row["env"], str) or "/" not in row["env"]:
        return f"key 'env' = {str(row['env'])[:60]!r} is not SUITE/ENV"
    if row["which"] not in WHICH:
        return f"which={row['which']!r} is not one of {', '.join(WHICH)}"
    for key in ("returns", "normalized"):
        if key == "normalized" and row.get(key) is None:
            continue
        problem = _scores_problem(key, row[key])
        if problem:
            return problem
    if row.get("normalized") is not None and len(row["normalized"]) != len(row["returns"]):
        return f"'normalized' has {len(row['normalized'])} entries but 'returns' {len(row['returns'])}"
    for keys, ok, what in ((_STRINGS, lambda v: isinstance(v, str), "a string"),
                           (_COUNTS, lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0, "a whole number >= 0"),
                           (_FLAGS, lambda v: isinstance(v, bool), "true or false"),
                           (_MAPPINGS, lambda v: isinstance(v, dict), "a mapping")):  # fmt: skip
        for key in keys:
            if row.get(key) is not None and not ok(row[key]):
                return f"key {key!r} = {json.dumps(row[key])[:60]} is not {what} (or null)"
    if row.get("run_id") == "":
        return "key 'run_id' is empty"
    t = row.get("time")
    if t is not None and (not isinstance(t, (int, float)) or isinstance(t, bool) or not math.isfinite(t)):
        return f"key 'time' = {json.dumps(t)[:60]} is not a finite number (or null)"
    return None


def _lines(p: Path) -> Iterable[tuple[int, str, Any, str | None]]:
    """(line number, line, parsed row or None, why it cannot be used or None) for each non-empty line of ``p``.

    Raises:
        RlgenError: the file does not exist or cannot be read.
    """
    try:
        text = p.read_text()
    except FileNotFoundError:
        raise RlgenError(f"no results file at {str(p)!r}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise RlgenError(f"cannot read {p}: {e}") from None
    out = []
    for i, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except (json.JSONDecodeError, RecursionError) as e:
            out.append((i, line, None, f"not a JSON row ({getattr(e, 'msg', type(e).__name__)})"))
            continue
        out.append((i, line, row, _row_problem(row)))
    return out


def read_results(path: str | Path, warnings: list[str] | None = None) -> list[dict[str, Any]]:
    """The usable rows of a ``results.jsonl`` file. Lines that do not parse, or rows with a missing or
    malformed field (:func:`_row_problem`), are skipped; a one-line warning per skipped line, naming
    ``file:line`` and the key, is appended to ``warnings``.

    Raises:
        RlgenError: the file does not exist or cannot be read.
    """
    p = Path(path)
    rows = []
    for i, _, row, problem in _lines(p):
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
    """Per :func:`evaluation_key`, the row that counts (:func:`rank`: finished over unfinished, then by
    ``time``; among rows without one, the last given), each with ``run_id`` filled in. ``rows`` pairs each
    row with the file it came from.

    Returns:
        (the kept rows in reading order, number dropped).
    """
    latest: dict[tuple, tuple[tuple[int, float, int], dict[str, Any]]] = {}
    total = 0
    for order, (row, source) in enumerate(rows):
        total += 1
        key = evaluation_key(row, source, run_id_of)
        r = rank(row, order)
        if key not in latest or r > latest[key][0]:
            latest[key] = (r, {**row, "run_id": key[0]})
    kept = [row for _, row in sorted(latest.values(), key=lambda kv: kv[0][2])]
    return kept, total - len(kept)


def load_results(files: Sequence[str | Path], run_id_of: RunIdOf | None = None) -> Results:
    """Read ``files`` and keep only the latest evaluation of each run (:func:`keep_latest`)."""
    warnings: list[str] = []
    paths = [Path(f) for f in files]
    kept, dropped = keep_latest(((row, path) for path in paths for row in read_results(path, warnings)), run_id_of)
    return Results(kept, paths, dropped, warnings)
