"""`rlgen datasets export/import` advance a progress bar over the episodes (issue 16, item 4)."""

import pytest

from rlgen.cli import main
from rlgen.data import load_dataset
from tests.test_progress_bars import RecordingBar


@pytest.fixture(autouse=True)
def minari_home(tmp_path, monkeypatch):
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))


def test_export_and_import_advance_a_bar_over_every_episode(dataset_dir, tmp_path, monkeypatch):
    import rlgen.data.minari_io

    RecordingBar.made = []
    monkeypatch.setattr(rlgen.data.minari_io, "ProgressBar", RecordingBar)
    n = load_dataset(dataset_dir).num_episodes
    assert main(["datasets", "export", str(dataset_dir), "--minari", "rlgen/toy/expert-v0"]) == 0
    assert main(["datasets", "import", "rlgen/toy/expert-v0", str(tmp_path / "back")]) == 0
    export, imported = RecordingBar.made
    assert (export.total, sum(export.advances), export.closed) == (n, n, True)
    assert (imported.total, sum(imported.advances), len(imported.advances), imported.closed) == (n, n, n, True)
