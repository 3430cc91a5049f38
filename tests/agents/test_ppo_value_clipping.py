"""PPO's value-function clipping (SB3 ``clip_range_vf``) reaches the SB3 model from the config."""

from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

from rlgen.agents.ppo_sb3 import build_model
from rlgen.config import ConfigError, PPOConfig, load_config

ROOT = Path(__file__).resolve().parents[2]
PROCGEN_CONFIGS = sorted((ROOT / "configs/ppo").glob("procgen_*.yaml"))


class FrameEnv(gym.Env):
    """Procgen's spaces without Procgen: (3, 64, 64) uint8 frames, 15 actions."""

    observation_space = gym.spaces.Box(0, 255, (3, 64, 64), np.uint8)
    action_space = gym.spaces.Discrete(15)

    def reset(self, *, seed=None, options=None):
        return np.zeros((3, 64, 64), np.uint8), {}

    def step(self, action):
        return np.zeros((3, 64, 64), np.uint8), 0.0, False, False, {}


def sb3_model(path: Path, tmp_path: Path, *extra: str):
    from stable_baselines3.common.vec_env import DummyVecEnv

    cfg = load_config(path, ["num_envs=2", "ppo.n_steps=8", "ppo.num_minibatches=2", "device=cpu", *extra], schema=PPOConfig)
    return build_model(cfg, DummyVecEnv([FrameEnv, FrameEnv]), tmp_path)


@pytest.mark.parametrize("path", PROCGEN_CONFIGS, ids=lambda p: p.stem)
def test_procgen_configs_clip_the_value_function_at_0_2_as_the_reference(path, tmp_path):
    # gen_dgrl online/behavior_policies/algos/ppo.py clips the value loss with clip_param = 0.2.
    assert len(PROCGEN_CONFIGS) == 17
    model = sb3_model(path, tmp_path)
    assert model.clip_range_vf is not None and model.clip_range_vf(1.0) == pytest.approx(0.2) and model.clip_range_vf(0.0) == pytest.approx(0.2)


def test_value_clipping_is_off_unless_configured_and_must_be_positive(tmp_path):
    assert sb3_model(ROOT / "configs/ppo/procgen_coinrun.yaml", tmp_path, "ppo.clip_range_vf=null").clip_range_vf is None
    assert load_config(None, ["env=procgen/coinrun"], schema=PPOConfig).ppo.clip_range_vf is None  # SB3's default
    with pytest.raises(ConfigError, match="ppo.clip_range_vf"):
        load_config(ROOT / "configs/ppo/procgen_coinrun.yaml", ["ppo.clip_range_vf=0"], schema=PPOConfig)
