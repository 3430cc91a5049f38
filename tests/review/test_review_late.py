"""Review of five late changes on main (f9128c6), branch review_late: each test is a defect found; the ones not
fixed here are ``xfail(strict=True)`` with the reason, so they turn into errors the day they are fixed."""

import json
from pathlib import Path

import numpy as np
import pytest

from rlgen.data import load_dataset, write_dataset
from rlgen.data.compact import compact_dataset
from rlgen.data.format import with_digest
from rlgen.errors import DatasetError
from tests.data.conftest import ENV, make_episodes, manifest


@pytest.fixture
def small(tmp_path) -> Path:
    return write_dataset(tmp_path / "toy", make_episodes(np.random.default_rng(1), 30), manifest(), shard_transitions=40)


def _edit_manifest(root: Path, edit) -> None:
    m = json.loads((root / "manifest.json").read_text())
    edit(m)
    (root / "manifest.json").write_text(json.dumps(with_digest(m)))


# --- 1. Dataset._adopt_compaction ------------------------------------------------------------------


def test_adopting_a_compaction_never_changes_what_the_dataset_is(small):
    """Compaction changes shard entries only. A manifest on disk that records ours in ``compacted_from`` (valid digest)
    but names another env and observation space was adopted wholesale by ``cache()``: a Dataset opened with
    ``expect_env=ENV`` then says it holds another env's data, and shapes of a network already built differ."""
    ds = load_dataset(small, expect_env=ENV)
    compact_dataset(small, workers=1)

    def other(m):
        m.update(env="minigrid/MiniGrid-Empty-8x8-v0", action_space={"n": 7})

    _edit_manifest(small, other)
    try:
        ds.cache()
    except DatasetError:
        pass  # refusing it is fine
    assert ds.env == ENV and ds.num_actions == 4


def test_adoption_of_a_crafted_manifest_whose_shards_do_not_hold_the_episodes_is_one_dataset_error(small):
    """A crafted compacted manifest (valid digest, our digest in compacted_from, same episodes_sha256) whose shard
    list drops the shards episodes.jsonl names: load_dataset's "episodes name shard X" check is not redone."""
    ds = load_dataset(small)
    compact_dataset(small, workers=1)
    _edit_manifest(small, lambda m: m.update(shards=m["shards"][:1]))
    with pytest.raises(DatasetError):
        ds.sample_transitions(4)
