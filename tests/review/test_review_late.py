"""Review of five late changes on main (f9128c6), branch review_late: each test is a defect found there, fixed since."""

import pytest

from rlgen.data import load_dataset
from rlgen.data.compact import compact_dataset
from rlgen.errors import DatasetError
from tests.data.conftest import ENV
from tests.review.conftest import edit_manifest


# --- 1. Dataset._adopt_compaction ------------------------------------------------------------------


def test_adopting_a_compaction_never_changes_what_the_dataset_is(small):
    """Compaction changes shard entries only. A manifest on disk that records ours in ``compacted_from`` (valid digest)
    but names another env and observation space was adopted wholesale by ``cache()``: a Dataset opened with
    ``expect_env=ENV`` then says it holds another env's data, and shapes of a network already built differ."""
    ds = load_dataset(small, expect_env=ENV)
    compact_dataset(small, workers=1)

    def other(m):
        m.update(env="minigrid/MiniGrid-Empty-8x8-v0", action_space={"n": 7})

    edit_manifest(small, other)
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
    edit_manifest(small, lambda m: m.update(shards=m["shards"][:1]))
    with pytest.raises(DatasetError):
        ds.sample_transitions(4)


# --- 3. gap_lines on the levels axis ----------------------------------------------------------------


def test_a_levels_line_never_holds_two_experiments_at_the_same_level_count():
    """Two studies of bc with the same split options, 10 training levels each, but different level sets (split
    digests ``a-10`` / ``b-10``): before the change, two lines; now one line with two points at x=10."""
    from rlgen.report import per_game_table
    from rlgen.report.plots import gap_lines
    from tests.test_report import COINRUN, row

    rows = []
    for split in ("a", "b"):
        for levels in (10, 50):
            extra = {"dataset_levels": levels, "dataset_transitions": 30000, "dataset_skill": "expert", "train_levels": levels,
                     "split_digest": f"{split}-{levels}", "split_options": {"view": "full"}}  # fmt: skip
            for seed in range(2):
                rid = f"bc-{split}-{levels}-{seed}"
                rows += [row("bc", COINRUN, "train", [0.9] * 4, seed, run_id=rid, **extra),
                         row("bc", COINRUN, "held_out", [0.5] * 4, seed, run_id=rid, **extra)]  # fmt: skip
    for pts in gap_lines(per_game_table(rows), "levels").values():
        xs = [x for x, _ in pts]
        assert len(xs) == len(set(xs)), f"one line has two points at one level count: {xs}"


# --- 5. wandb init timeout ------------------------------------------------------------------------------


def test_wandb_init_timeout_env_var_is_still_honoured(tmp_path, monkeypatch):
    """wandb documents ``WANDB_INIT_TIMEOUT`` for slow networks; passing ``init_timeout=30`` in ``wandb.Settings``
    overrides it (explicit settings win over the environment), so a user who raised it still fails after 30 s."""
    wandb = pytest.importorskip("wandb")
    from types import SimpleNamespace

    from rlgen.agents import trackers

    seen = {}

    class Stop(Exception):
        pass

    def init(**kwargs):
        seen["settings"] = kwargs["settings"]
        raise Stop

    monkeypatch.setenv("WANDB_INIT_TIMEOUT", "300")
    monkeypatch.setattr(wandb, "init", init)
    cfg = SimpleNamespace(logger=["tensorboard", "wandb"], wandb=SimpleNamespace(project="p", entity=None, group=None, tags=(), mode="offline"),
                          model_dump=lambda mode: {})  # fmt: skip
    with pytest.raises(Exception):
        trackers.open_wandb_run(cfg, tmp_path)
    merged = wandb.Settings(init_timeout=float("300"))  # what wandb makes of the environment alone
    merged.update_from_settings(seen["settings"])  # then init's explicit settings, which win
    assert merged.init_timeout == 300
