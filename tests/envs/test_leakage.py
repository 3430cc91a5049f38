import pytest

from rlgen.envs import LevelSet, LevelSplit, make_env
from rlgen.envs.leakage import drop_duplicates, find_duplicate_levels
from rlgen.errors import SplitError


def test_identical_layouts_are_all_duplicates():
    # MiniGrid-Empty: every seed gives the same grid, agent pose and goal.
    report = find_duplicate_levels("minigrid", "empty-5x5", LevelSet("0-4"), LevelSet("100-109"), {})
    assert report.duplicated_held_out == tuple(range(100, 110))
    assert report.distinct_train == 1 and report.fraction == 1.0
    assert report.matches[100] == (0, 1, 2, 3, 4)


def test_distinct_layouts_are_not_duplicates():
    report = find_duplicate_levels("procgen", "coinrun", LevelSet("0-19"), LevelSet("250-269"), {})
    assert report.distinct_train == 20
    assert report.duplicated_held_out == ()


def test_drop_duplicates_removes_exactly_the_duplicates():
    split = drop_duplicates(LevelSplit.minigrid("doorkey-5x5", num_levels=50), check_levels=200)
    checked = LevelSet(range(100, 300))
    report = find_duplicate_levels("minigrid", "doorkey-5x5", LevelSet("0-49"), checked, {})
    assert split.dropped_levels == report.duplicated_held_out
    assert split.held_out == checked - LevelSet(report.duplicated_held_out)
    assert len(split.dropped_levels) > 0
    # saved and loaded, the split keeps its result without re-checking
    assert LevelSplit.from_dict(split.to_dict()) == split
    env = make_env(split, "held_out", num_envs=4, seed=0)
    _, info = env.reset()
    assert split.held_out.contains(info["level"]).all()


def test_a_split_with_nothing_left_held_out_is_an_error():
    with pytest.raises(SplitError, match="every checked held-out level duplicates a training level"):
        drop_duplicates(LevelSplit.minigrid("empty-5x5", num_levels=3), check_levels=5)


def test_a_split_is_pure_data_and_runs_no_duplicate_check():
    # Before: LevelSplit(..., drop_duplicates=True) rolled out every checked level in its constructor.
    with pytest.raises(SplitError, match="make the split with rlgen.envs.leakage.drop_duplicates"):
        LevelSplit.minigrid("empty-5x5", num_levels=3, drop_duplicates=True, duplicate_check_levels=5)
