"""The one progress-bar set-up (rich): PPO, JAX PPO, offline training and collection use it.

A bar shows a title, the bar, ``done/total`` with an optional unit, named fields (rate, loss, return...)
and the time remaining. It stays silent when ``enabled`` is false (a config's ``progress: false``) or when
stdout is not a terminal (logs, CI, pipeline workers), so redirected output holds no bar redraws.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def _terminal() -> bool:
    from rich.console import Console

    return Console().is_terminal


class ProgressBar:
    """``ProgressBar("[bold]PPO[/] procgen/coinrun", total=25_000_000, fields={"sps": "steps/s"})``.

    Args:
        title: text left of the bar (rich markup).
        total, completed: the count the bar runs to, and where it starts (a resumed run).
        unit: shown after ``done/total`` (e.g. ``transitions``).
        fields: name -> text shown after its value, in order (``{"rate": "updates/s", "loss": ""}``
            shows ``- updates/s  - ``); ``update(rate=...)`` sets them.
        enabled: False gives a bar that draws nothing.
    """

    def __init__(self, title: str, total: int, completed: int = 0, unit: str = "", fields: Mapping[str, str] | None = None,
                 enabled: bool = True) -> None:  # fmt: skip
        self._progress: Any = None
        if not enabled or not _terminal():
            return
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        fields = dict(fields or {})
        columns: list[Any] = [TextColumn(title), BarColumn(), MofNCompleteColumn()]
        if unit:
            columns.append(TextColumn(unit))
        if fields:
            columns.append(TextColumn("  ".join(f"{{task.fields[{k}]}} {label}".rstrip() for k, label in fields.items())))
        columns.append(TimeRemainingColumn())
        self._progress = Progress(*columns)
        self._task = self._progress.add_task("", total=total, completed=completed, **dict.fromkeys(fields, "-"))
        self._progress.start()

    @property
    def active(self) -> bool:
        """Whether the bar draws (enabled, on a terminal, not closed): callers skip work that only feeds it."""
        return self._progress is not None

    def update(self, completed: int | None = None, advance: int | None = None, **fields: Any) -> None:
        if self._progress is None:
            return
        kwargs: dict[str, Any] = dict(fields)
        if completed is not None:
            kwargs["completed"] = completed
        if advance is not None:
            kwargs["advance"] = advance
        self._progress.update(self._task, **kwargs)

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    def __enter__(self) -> "ProgressBar":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def status_line(console: Any, enabled: bool = True) -> Any:
    """A live one-line status (rich ``Status``, started) on ``console``, or None when disabled or not a terminal."""
    if not enabled or not console.is_terminal:
        return None
    status = console.status("", spinner="dots")
    status.start()
    return status
