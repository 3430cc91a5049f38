import pytest

from rlgen.envs import LEVEL_ID_LIMIT, LevelSet, LevelSplit
from rlgen.errors import SplitError


def test_procgen_defaults_follow_the_reference_study():
    split = LevelSplit.procgen("coinrun")
    assert split.train == LevelSet(range(0, 200))
    assert split.validation == LevelSet(range(200, 250))
    assert split.held_out == LevelSet(range(250, LEVEL_ID_LIMIT))
    assert split.options["distribution_mode"] == "easy"


def test_overlap_is_an_error_naming_the_levels():
    with pytest.raises(SplitError, match=r"train and held_out levels overlap in 150-199 \(50 levels\)"):
        LevelSplit("procgen", "coinrun", train=range(0, 200), held_out=range(150, 1000))
    with pytest.raises(SplitError, match="validation and held_out levels overlap in 300"):
        LevelSplit("procgen", "coinrun", train="0-199", validation="250-300", held_out="300-")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"suite": "atari", "env": "pong"}, "unknown suite 'atari'; allowed: procgen, minigrid, xland"),
        ({"suite": "procgen", "env": "coinrn"}, "unknown Procgen game 'coinrn'; allowed: bigfish"),
        ({"suite": "minigrid", "env": "doorkey-3x3"}, "unknown MiniGrid env 'doorkey-3x3'"),
        ({"suite": "procgen", "env": "coinrun", "options": {"mode": "easy"}}, r"unknown Procgen option\(s\) \['mode'\]"),
        ({"suite": "procgen", "env": "bigfish", "options": {"distribution_mode": "memory"}}, "allowed: easy, hard"),
        ({"suite": "procgen", "env": "coinrun", "train": ()}, "training level set is empty"),
    ],
)
def test_bad_splits(kwargs, match):
    kwargs = {"train": "0-9", "held_out": "20-", **kwargs}
    with pytest.raises(SplitError, match=match):
        LevelSplit(**kwargs)


def test_serialization_round_trip():
    split = LevelSplit.procgen("maze", num_levels=50, distribution_mode="hard")
    again = LevelSplit.from_dict(split.to_dict())
    assert again == split and hash(again) == hash(split)
    assert split.train == LevelSet("0-49") and split.validation == LevelSet("50-99")


def test_from_dict_rejects_unknown_keys():
    data = {**LevelSplit.procgen("coinrun").to_dict(), "trian": "0-9"}
    with pytest.raises(SplitError, match="unknown LevelSplit keys"):
        LevelSplit.from_dict(data)


def test_minigrid_short_names_are_canonicalized():
    assert LevelSplit.minigrid("doorkey-5x5").env == "MiniGrid-DoorKey-5x5-v0"
    assert LevelSplit.minigrid("MiniGrid-DoorKey-5x5-v0").env == "MiniGrid-DoorKey-5x5-v0"


def test_levels_accessor():
    split = LevelSplit.procgen("coinrun")
    assert split.levels("held_out") is split.held_out
    with pytest.raises(SplitError, match="which='test' is not one of: train, validation, held_out"):
        split.levels("test")
