import numpy as np
import pytest

from rlgen.envs import LEVEL_ID_LIMIT, LevelSet
from rlgen.errors import SplitError


@pytest.mark.parametrize(
    ("spec", "text", "size"),
    [
        (range(0, 200), "0-199", 200),
        ("0-199", "0-199", 200),
        ("250-", "250-", LEVEL_ID_LIMIT - 250),
        ("1,5,9-12", "1,5,9-12", 6),
        ([3, 1, 2, 2, 10], "1-3,10", 4),
        (7, "7", 1),
        ("0-9,5-19", "0-19", 20),
        ((), "(empty)", 0),
    ],
)
def test_parse_and_text_round_trip(spec, text, size):
    levels = LevelSet(spec)
    assert str(levels) == text
    assert len(levels) == size
    if size:
        assert LevelSet(str(levels)) == levels


@pytest.mark.parametrize("bad", ["a-b", "5-3", "-3", [1.5], True, "1--2", [-1]])
def test_bad_specs_are_rejected_with_the_spec_named(bad):
    with pytest.raises(SplitError):
        LevelSet(bad)


def test_algebra():
    a, b = LevelSet("0-99"), LevelSet("50-149")
    assert str(a & b) == "50-99"
    assert str(a | b) == "0-149"
    assert str(a - b) == "0-49"
    assert str(LevelSet("0-99") - LevelSet([5, 7])) == "0-4,6,8-99"
    assert LevelSet("10-20").issubset(LevelSet("0-99"))
    assert not LevelSet("10-200").issubset(LevelSet("0-99"))


def test_membership_vectorized_and_scalar():
    levels = LevelSet("0-4,10-")
    arr = np.array([0, 4, 5, 9, 10, LEVEL_ID_LIMIT - 1])
    assert levels.contains(arr).tolist() == [True, True, False, False, True, True]
    assert 3 in levels and 7 not in levels


def test_sample_stays_inside_a_huge_set(rng):
    levels = LevelSet("0-9,250-")
    draws = levels.sample(rng, size=10_000)
    assert levels.contains(draws).all()
    assert (draws >= 250).mean() > 0.99  # uniform over ids: the open range dominates


def test_first_and_to_array():
    levels = LevelSet("250-")
    assert str(levels.first(3)) == "250-252"
    assert LevelSet("0-2,5-6").first(4).to_array().tolist() == [0, 1, 2, 5]
    with pytest.raises(SplitError, match="too many"):
        levels.to_array()
