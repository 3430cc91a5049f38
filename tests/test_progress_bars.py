"""Progress bars on long commands (issue 16, item 4): ``rlgen evaluate`` advances a bar per finished episode,
``rlgen splits check`` per level fingerprinted; the bars are rlgen.progress's, silent when stdout is not a terminal."""

import shutil
from pathlib import Path

import pytest

import rlgen.progress
from rlgen.cli import main
from rlgen.envs import LevelSet, LevelSplit
from rlgen.envs.leakage import find_duplicate_levels
from rlgen.progress import ProgressBar

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures" / "old_runs"


class RecordingBar:
    """Stands in for ``ProgressBar`` on a terminal: records its total and every advance."""

    made: list["RecordingBar"] = []

    def __init__(self, title: str, total: int, completed: int = 0, unit: str = "", fields=None, enabled: bool = True) -> None:
        self.title, self.total, self.enabled, self.advances, self.closed = title, total, enabled, [], False
        RecordingBar.made.append(self)

    @property
    def active(self) -> bool:
        return self.enabled and not self.closed

    def update(self, completed=None, advance=None, **fields) -> None:
        assert self.active, "an update of a bar that does not draw"
        if advance:
            self.advances.append(advance)

    def close(self) -> None:
        self.closed = True

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@pytest.fixture
def bars(monkeypatch):
    import rlgen.envs.leakage
    import rlgen.pipeline.evaluate_run

    RecordingBar.made = []
    monkeypatch.setattr(rlgen.pipeline.evaluate_run, "ProgressBar", RecordingBar)
    monkeypatch.setattr(rlgen.envs.leakage, "ProgressBar", RecordingBar)
    return RecordingBar.made


def test_rlgen_evaluate_advances_a_bar_per_episode_of_each_level_set(bars, tmp_path):
    shutil.copytree(FIXTURES / "ppo", tmp_path / "ppo")
    assert main(["evaluate", str(tmp_path / "ppo"), "--episodes", "3", "--which", "train", "held_out"]) == 0
    assert [(b.total, sum(b.advances), b.closed) for b in bars] == [(3, 3, True), (3, 3, True)]
    assert ["train" in bars[0].title, "held_out" in bars[1].title] == [True, True]


def test_evaluate_and_record_draws_no_bar_unless_asked(bars, tmp_path):
    from rlgen.pipeline.evaluate_run import evaluate_and_record, random_candidate

    split = LevelSplit.minigrid("empty-5x5", num_levels=10)
    done = evaluate_and_record([random_candidate(split, 7, seed=0)], split, ["train"], tmp_path / "r.jsonl", episodes=2, seed=0, num_envs=2)
    assert len(done.rows) == 1 and all(not b.enabled and not b.advances for b in bars)


def test_splits_check_advances_a_bar_over_every_level_and_finds_the_same_duplicates(bars):
    train, held = LevelSet("0-69"), LevelSet("250-259")
    shown = find_duplicate_levels("minigrid", "empty-5x5", train, held, {}, progress=True)
    assert [(b.total, sum(b.advances)) for b in bars] == [(80, 80)] and len(bars[0].advances) == 3  # 64 + 6, then 10
    quiet = find_duplicate_levels("minigrid", "empty-5x5", train, held, {})
    assert shown == quiet and shown.duplicated_held_out  # empty-5x5 has few layouts: held-out levels repeat training ones


def test_bars_are_silent_when_stdout_is_not_a_terminal(monkeypatch):
    assert not ProgressBar("x", total=3).active  # pytest captures stdout: not a terminal
    monkeypatch.setattr(rlgen.progress, "_terminal", lambda: True)
    bar = ProgressBar("x", total=3)
    assert bar.active and not ProgressBar("x", total=3, enabled=False).active
    bar.close()
    assert not bar.active


def test_rlgen_report_advances_a_bar_through_its_stages(tmp_path, monkeypatch):
    import rlgen.report.document
    from tests.test_report import three_seeds, write_rows

    RecordingBar.made = []
    stages = []

    class StageBar(RecordingBar):
        def update(self, completed=None, advance=None, **fields) -> None:
            stages.append((completed, fields.get("stage")))

    monkeypatch.setattr(rlgen.report.document, "ProgressBar", StageBar)
    write_rows(tmp_path / "r" / "results.jsonl", three_seeds())
    assert main(["report", str(tmp_path / "r"), "--out", str(tmp_path / "rep")]) == 0
    (bar,) = RecordingBar.made
    assert bar.total == 5 and bar.closed and [c for c, _ in stages] == [0, 1, 2, 3, 4, 5]
    assert [s for _, s in stages] == ["per-game estimates", "aggregates", "improvements", "plots", "report.md", "done"]
