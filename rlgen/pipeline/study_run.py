"""``rlgen run``: load a study, plan its stages, run those not up to date (``scheduler``), summarize."""

from __future__ import annotations

import dataclasses
import fcntl
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rlgen.atomic_files import write_json_atomic
from rlgen.config import load_config
from rlgen.errors import RlgenError
from rlgen.pipeline.plan import Stage, plan_study
from rlgen.pipeline.scheduler import Outcome, make_executor, run_stages
from rlgen.pipeline.study import StudyConfig


def load_study(path: str | Path, overrides: Sequence[str] = ()) -> tuple[StudyConfig, list[Stage]]:
    """Read and validate a study and every stage config it implies; nothing runs.

    Raises:
        ConfigError: one line naming the bad key and value.
    """
    study = load_config(path, overrides, schema=StudyConfig)  # type: ignore[arg-type]
    assert isinstance(study, StudyConfig)
    return study, plan_study(study, source=str(path))


@dataclasses.dataclass
class StudyResult:
    study: StudyConfig
    outcomes: list[Outcome]
    report: Path | None

    @property
    def failures(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.status == "failed"]

    @property
    def blocked(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.status == "blocked"]

    @property
    def results_files(self) -> list[Path]:
        return [Path(o.stage.dir) / "results.jsonl" for o in self.outcomes if o.stage.kind == "evaluate" and o.ok]


class _Lock:
    """One ``rlgen run`` per study directory at a time."""

    def __init__(self, out_dir: Path) -> None:
        out_dir.mkdir(parents=True, exist_ok=True)
        self.path = out_dir / ".rlgen-run.lock"
        self.f = self.path.open("a+")

    def __enter__(self) -> "_Lock":
        try:
            fcntl.flock(self.f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.f.seek(0)
            raise RlgenError(f"another `rlgen run` is working on {self.path.parent} (pid {self.f.read().strip() or '?'}); wait for it or stop it") from None
        self.f.seek(0)
        self.f.truncate()
        self.f.write(str(os.getpid()))
        self.f.flush()
        return self

    def __exit__(self, *exc: Any) -> None:
        fcntl.flock(self.f, fcntl.LOCK_UN)
        self.f.close()


def run_study(study: StudyConfig, stages: list[Stage], runner: str | None = None, console: Any = None) -> StudyResult:
    """Run the stages of ``study`` that are not up to date; failures are collected, not raised.

    Raises:
        StudyInterrupted: after Ctrl-C/SIGTERM (finished stages are kept; re-running continues).
    """
    from rich.console import Console

    console = console or Console(soft_wrap=True, highlight=False)
    out = Path(study.out_dir)
    with _Lock(out):
        write_json_atomic(out / "study.json", {"study": json.loads(study.model_dump_json()), "stages": [s.id for s in stages]})
        executor = make_executor(study, runner)
        outcomes = run_stages(stages, executor, console)
    report = next((Path(o.stage.dir) / "report.md" for o in outcomes if o.stage.kind == "report" and o.ok), None)
    return StudyResult(study, outcomes, report)


def summary_lines(result: StudyResult) -> list[str]:
    """Counts of what ran, and one line per failed or blocked stage."""
    counts: dict[str, int] = {}
    for o in result.outcomes:
        counts[o.status] = counts.get(o.status, 0) + 1
    lines = ["stages: " + ", ".join(f"{n} {status}" for status, n in counts.items())]
    for o in result.failures:
        lines.append(f"FAILED  {o.stage.id}: {o.error}" + (f" (log: {o.log})" if o.log else ""))
    for o in result.blocked:
        lines.append(f"blocked {o.stage.id}: {o.error}")
    return lines


def results_table(files: Sequence[Path], seed: int = 0) -> list[str]:
    """The per-game table (train, held-out, gap with 95% CIs, runs, 1-run rows labelled) printed at
    the end of a run."""
    from rlgen.report import results_table as table

    return table(files, seed=seed)
