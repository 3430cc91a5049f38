import numpy as np
import pytest

from rlgen.envs import LevelSet, LevelSplit, make_env
from rlgen.envs import procgen
from rlgen.envs.qt_libs import load_qt_libraries, pip_qt_dirs
from rlgen.errors import DependencyError, SplitError


def run_random(env, steps: int, seed: int = 0) -> tuple[set[int], int, np.ndarray]:
    """Random actions; returns the levels episodes started on, the finished-episode count, first obs."""
    rng = np.random.default_rng(seed)
    obs, info = env.reset()
    first = obs.copy()
    started = set(info["level"].tolist())
    finished = 0
    for _ in range(steps):
        obs, reward, terminated, truncated, info = env.step(rng.integers(0, 15, size=env.num_envs))
        done = terminated | truncated
        finished += int(done.sum())
        started.update(info["level"].tolist())
    return started, finished, first


@pytest.mark.parametrize("game", procgen.GAMES)
def test_every_game_constructs_and_steps(game):
    env = make_env(LevelSplit.procgen(game), which="train", num_envs=2, seed=0)
    obs, info = env.reset()
    assert obs.shape == (2, 3, 64, 64) and obs.dtype == np.uint8
    assert env.single_action_space.n == 15
    for _ in range(5):
        obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
    assert reward.shape == (2,) and terminated.dtype == bool
    assert set(info["level"].tolist()) <= set(range(200))
    env.close()


def test_held_out_rollouts_never_start_a_training_level():
    split = LevelSplit.procgen("bigfish")  # random bigfish episodes end fast: many episodes per second
    env = make_env(split, which="held_out", num_envs=64, seed=0)
    started, finished, _ = run_random(env, steps=400)
    assert finished >= 100
    levels = np.array(sorted(started))
    assert levels.min() >= 250
    assert split.held_out.contains(levels).all()
    assert not split.train.contains(levels).any()


def test_train_rollouts_stay_on_training_levels():
    split = LevelSplit.procgen("bigfish", num_levels=20)
    started, finished, _ = run_random(make_env(split, "train", num_envs=32, seed=1), steps=300)
    assert finished >= 50
    assert started <= set(range(20)) and len(started) > 10


def test_a_non_contiguous_level_set_never_shows_an_excluded_level():
    # As after drop_duplicates: every other level of 250-269 excluded; the env must redraw them.
    held = LevelSet("250-269") - LevelSet(range(251, 270, 4))
    split = LevelSplit("procgen", "bigfish", train="0-199", held_out=held)
    started, finished, _ = run_random(make_env(split, "held_out", num_envs=32, seed=0), steps=300)
    assert finished >= 50
    assert started <= set(held) and len(started) >= 10


def test_sparse_level_sets_are_refused():
    split = LevelSplit("procgen", "coinrun", train="0-199", held_out=[300, 10_000])
    with pytest.raises(SplitError, match="fills only"):
        make_env(split, "held_out", num_envs=2)


def test_levels_argument_must_be_inside_the_chosen_set():
    split = LevelSplit.procgen("coinrun")
    with pytest.raises(SplitError, match=r"levels 190-249 \(60 levels\) are not held_out levels"):
        make_env(split, "held_out", levels="190-260")


def test_same_seed_same_first_observations_and_levels():
    split = LevelSplit.procgen("coinrun")
    a_obs, a_info = make_env(split, "train", num_envs=8, seed=3).reset()
    b_obs, b_info = make_env(split, "train", num_envs=8, seed=3).reset()
    c_obs, c_info = make_env(split, "train", num_envs=8, seed=4).reset()
    np.testing.assert_array_equal(a_obs, b_obs)
    np.testing.assert_array_equal(a_info["level"], b_info["level"])
    assert not np.array_equal(a_info["level"], c_info["level"])


def test_reset_with_a_seed_reseeds():
    split = LevelSplit.procgen("coinrun")
    env = make_env(split, "train", num_envs=4, seed=0)
    first, _ = env.reset(seed=11)
    env.step(np.zeros(4, dtype=np.int64))
    again, _ = env.reset(seed=11)
    np.testing.assert_array_equal(first, again)


def test_normalized_return_uses_easy_constants():
    assert procgen.normalized_return("coinrun", 10.0) == pytest.approx(1.0)
    assert procgen.normalized_return("coinrun", 5.0) == pytest.approx(0.0)
    # The reference code used hard-mode ranges (1, 10) and (1.5, 10) here; easy mode is (3, 10).
    assert procgen.return_range("jumper", "easy") == (3.0, 10.0)
    assert procgen.return_range("leaper", "easy") == (3.0, 10.0)
    assert procgen.return_range("leaper", "hard") == (1.5, 10.0)
    np.testing.assert_allclose(procgen.normalized_return("bigfish", np.array([1.0, 40.0, 20.5])), [0.0, 1.0, 0.5])
    assert set(procgen.RETURN_RANGES["easy"]) == set(procgen.GAMES) == set(procgen.RETURN_RANGES["hard"])
    with pytest.raises(SplitError, match="no published return range"):
        procgen.return_range("maze", "memory")


def test_qt_loader_error_says_how_to_fix(tmp_path):
    with pytest.raises(DependencyError, match=r"pip install PyQt5-Qt5.*apt install libqt5gui5"):
        load_qt_libraries(search_dirs=[tmp_path], allow_system=False)


def test_qt_loader_finds_the_pip_wheel():
    dirs = pip_qt_dirs()
    assert dirs, "PyQt5-Qt5 is a dependency and must be installed"
    loaded = load_qt_libraries(search_dirs=dirs, allow_system=False)
    assert [p.rsplit("/", 1)[-1] for p in loaded] == ["libQt5Core.so.5", "libQt5Gui.so.5"]
