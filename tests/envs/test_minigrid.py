import numpy as np
import pytest

from rlgen.envs import LevelSplit, make_env
from rlgen.envs.minigrid import make_single_env


def layout(env_id: str, level: int) -> bytes:
    e = make_single_env(env_id, {"view": "partial", "tile_size": 8, "max_steps": None})
    e.reset(seed=level)
    return e.unwrapped.grid.encode().tobytes()


def test_levels_repeat_for_the_same_seed_and_differ_across_seeds():
    env_id = "MiniGrid-MultiRoom-N2-S4-v0"
    assert layout(env_id, 7) == layout(env_id, 7)
    assert len({layout(env_id, s) for s in range(10)}) >= 8


@pytest.mark.parametrize(
    ("view", "shape"),
    [("partial", (3, 7, 7)), ("full", (3, 5, 5)), ("partial_rgb", (3, 56, 56)), ("full_rgb", (3, 40, 40))],
)
def test_views(view, shape):
    split = LevelSplit.minigrid("doorkey-5x5", options={"view": view})
    obs, info = make_env(split, "train", num_envs=2, seed=0).reset()
    assert obs.shape == (2, *shape) and obs.dtype == np.uint8


def test_full_view_is_the_whole_symbolic_grid_with_the_agent_and_its_direction():
    from minigrid.core.constants import OBJECT_TO_IDX  # noqa: PLC0415

    e = make_single_env("MiniGrid-DoorKey-8x8-v0", {"view": "full", "tile_size": 8, "max_steps": None})
    obs, _ = e.reset(seed=3)
    base = e.unwrapped
    assert obs.shape == (3, 8, 8)
    x, y = base.agent_pos
    agent_cells = np.argwhere(obs[0] == OBJECT_TO_IDX["agent"])
    assert agent_cells.tolist() == [[x, y]]
    assert obs[2, x, y] == base.agent_dir
    grid = base.grid.encode().transpose(2, 0, 1)  # every other cell is the layout itself
    mask = np.ones((8, 8), dtype=bool)
    mask[x, y] = False
    np.testing.assert_array_equal(obs[:, mask], grid[:, mask])
    obs2, *_ = e.step(base.actions.left)  # turning changes only the agent's direction code
    assert obs2[2, x, y] == (base.agent_dir) and (obs2 != obs).sum() == 1


@pytest.mark.filterwarnings("error::UserWarning")  # gym's env checker: observations must lie in the declared space
@pytest.mark.parametrize(
    "env_id", ["MiniGrid-DoorKey-6x6-v0", "MiniGrid-MultiRoom-N2-S4-v0", "MiniGrid-KeyCorridorS3R1-v0"]
)
def test_full_view_equals_minigrids_fully_obs_wrapper_step_for_step(env_id):
    import gymnasium as gym  # noqa: PLC0415
    from minigrid.wrappers import FullyObsWrapper, ImgObsWrapper  # noqa: PLC0415

    ours = make_single_env(env_id, {"view": "full", "tile_size": 8, "max_steps": 40})
    ref = ImgObsWrapper(FullyObsWrapper(gym.make(env_id, max_steps=40)))
    actions = np.random.default_rng(0).integers(0, 6, size=400)
    a, _ = ours.reset(seed=11)
    b, _ = ref.reset(seed=11)
    episodes = 0
    for t, action in enumerate(actions):
        np.testing.assert_array_equal(a, b.transpose(2, 0, 1), err_msg=f"step {t}")
        a, ra, ta, tra, _ = ours.step(int(action))
        b, rb, tb, trb, _ = ref.step(int(action))
        assert (ra, ta, tra) == (rb, tb, trb)
        if ta or tra:
            episodes += 1
            a, _ = ours.reset(seed=100 + t)
            b, _ = ref.reset(seed=100 + t)
    assert episodes >= 5  # resets are covered too


def test_vector_env_reports_levels_from_the_chosen_set():
    split = LevelSplit.minigrid("empty-5x5", num_levels=10)
    env = make_env(split, "held_out", num_envs=4, seed=0)
    obs, info = env.reset()
    seen = set(info["level"].tolist())
    rng = np.random.default_rng(0)
    episodes = 0
    for _ in range(600):
        obs, reward, terminated, truncated, info = env.step(rng.integers(0, 3, size=4))
        episodes += int((terminated | truncated).sum())
        seen.update(info["level"].tolist())
    assert episodes >= 4
    assert min(seen) >= 60  # held-out starts after 10 train + 50 validation levels
    train_env = make_env(split, "train", num_envs=4, seed=0)
    _, info = train_env.reset()
    assert set(info["level"].tolist()) <= set(range(10))


def test_same_seed_same_first_observations():
    split = LevelSplit.minigrid("doorkey-8x8")
    a, ia = make_env(split, "train", num_envs=4, seed=5).reset()
    b, ib = make_env(split, "train", num_envs=4, seed=5).reset()
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(ia["level"], ib["level"])
