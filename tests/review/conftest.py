"""Fixtures the review tests share: a small written dataset and a manifest edit that keeps its digest valid
(a crafted manifest, as an attacker would write it)."""

import json
from pathlib import Path

import numpy as np
import pytest

from rlgen.data import write_dataset
from rlgen.data.format import with_digest
from tests.data.conftest import make_episodes, manifest


@pytest.fixture
def small(tmp_path) -> Path:
    return write_dataset(tmp_path / "toy", make_episodes(np.random.default_rng(1), 30), manifest(), shard_transitions=40)


def edit_manifest(root: Path, edit) -> None:
    """Apply ``edit(manifest_dict)`` to ``root``'s manifest and write it back with a recomputed digest."""
    m = json.loads((root / "manifest.json").read_text())
    edit(m)
    (root / "manifest.json").write_text(json.dumps(with_digest(m)))
