"""Reports from ``results.jsonl`` rows: ``tables`` (per-game rows over runs, rliable aggregates, probability of
improvement), ``plots`` (bars, gap curves, performance profiles) and ``document`` (``report.md`` and CSVs).

    from rlgen.report import make_report
    make_report(["runs/"], out_dir="runs/report")
"""

from rlgen.report.document import Report, make_report
from rlgen.report.tables import (
    ONE_RUN,
    Agent,
    Aggregate,
    GameRow,
    Improvement,
    agent_labels,
    aggregate_table,
    find_results,
    fmt,
    improvement_table,
    keep_latest,
    load_results,
    per_game,
    per_game_table,
    results_table,
    table_lines,
)

__all__ = ["ONE_RUN", "Agent", "Aggregate", "GameRow", "Improvement", "Report", "agent_labels", "aggregate_table", "find_results", "fmt",
           "improvement_table", "keep_latest", "load_results", "make_report", "per_game", "per_game_table", "results_table", "table_lines"]  # fmt: skip
