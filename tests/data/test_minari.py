"""Minari export and import round-trip bit-exactly (no JPEG)."""

import numpy as np
import pytest

from rlgen.cli import main
from rlgen.data import DatasetError, load_dataset


@pytest.fixture(autouse=True)
def minari_home(tmp_path, monkeypatch):
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))


def test_export_then_import_is_bit_exact(dataset_dir, tmp_path, capsys):
    assert main(["datasets", "export", str(dataset_dir), "--minari", "rlgen/toy/expert-v0"]) == 0
    assert main(["datasets", "import", "rlgen/toy/expert-v0", str(tmp_path / "back")]) == 0
    a, b = load_dataset(dataset_dir), load_dataset(tmp_path / "back")
    assert b.env == a.env and b.num_episodes == a.num_episodes
    np.testing.assert_array_equal(a.episodes["level"], b.episodes["level"])
    for name in ("obs", "actions", "rewards", "terminated", "truncated"):
        np.testing.assert_array_equal(np.load(a.cache() / f"{name}.npy"), np.load(b.cache() / f"{name}.npy"))


def test_export_of_a_subset_and_errors(dataset_dir, tmp_path):
    import minari

    from rlgen.data.minari_io import export_minari, import_minari

    sub = load_dataset(dataset_dir).subset(levels=[0, 1])
    export_minari(sub, "rlgen/toy/sub-v0")
    assert minari.load_dataset("rlgen/toy/sub-v0").total_episodes == sub.num_episodes
    with pytest.raises(DatasetError, match="already exists"):
        export_minari(sub, "rlgen/toy/sub-v0")
    with pytest.raises(DatasetError, match="no local Minari dataset 'nope/x-v0'"):
        import_minari("nope/x-v0", tmp_path / "x")
