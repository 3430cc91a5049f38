"""Env steps/s of rlgen's PPO against plain stable-baselines3 PPO with the same network and settings.

MiniGrid: rlgen (``make_env`` + ``RlgenVecEnv``) vs SB3's own ``DummyVecEnv`` + ``VecMonitor`` over the same
wrapped MiniGrid env. Procgen: rlgen PPO's steps/s against raw EnvPool random stepping (how much of the
time the environment takes). Median of repeats, ratios printed.

    python bench/ppo.py            # a few minutes on 2 CPU cores
    python bench/ppo.py --quick    # what the tests run
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from rlgen.agents.ppo_sb3 import EncoderExtractor, build_model
from rlgen.agents.sb3_vec_env import RlgenVecEnv
from rlgen.config import PPOConfig, validate_config
from rlgen.envs import make_env
from rlgen.envs.minigrid import make_single_env

from stable_baselines3 import PPO  # noqa: E402  (rlgen.agents silenced gym's banner)
from stable_baselines3.common.vec_env import DummyVecEnv, VecMonitor  # noqa: E402


def config(env: str, num_envs: int, n_steps: int, network: str) -> PPOConfig:
    return validate_config({
        "env": env, "num_envs": num_envs, "device": "cpu", "progress": False,
        "ppo": {"n_steps": n_steps, "num_minibatches": 4, "n_epochs": 2, "normalize_reward": False, "network": network},
    }, PPOConfig)  # fmt: skip


def timed_learn(model: PPO, steps: int) -> float:
    model.learn(model.n_steps * model.n_envs)  # warm-up rollout + update
    start = time.perf_counter()
    model.learn(steps, reset_num_timesteps=False)
    return steps / (time.perf_counter() - start)


def rlgen_model(cfg: PPOConfig, tmp: Path) -> PPO:
    split = cfg.level_split()
    return build_model(cfg, RlgenVecEnv(make_env(split, "train", num_envs=cfg.num_envs, seed=0)), tmp)


def plain_sb3_minigrid(cfg: PPOConfig, tmp: Path) -> PPO:
    split = cfg.level_split()
    venv = VecMonitor(DummyVecEnv([lambda: make_single_env(split.env, split.options)] * cfg.num_envs))
    p = cfg.ppo
    return PPO(
        "CnnPolicy", venv, n_steps=p.n_steps, batch_size=cfg.num_envs * p.n_steps // p.num_minibatches,
        n_epochs=p.n_epochs, learning_rate=p.learning_rate, gamma=p.gamma, device="cpu", verbose=0,
        policy_kwargs={"features_extractor_class": EncoderExtractor, "features_extractor_kwargs": {"encoder": p.network},
                       "normalize_images": False, "net_arch": {"pi": [], "vf": []}},
    )  # fmt: skip


def raw_envpool_sps(game: str, num_envs: int, steps: int) -> float:
    from rlgen.envs.procgen import _import_envpool, _task_id

    env = _import_envpool().make_gymnasium(_task_id(game, "easy"), num_envs=num_envs, start_level=0, num_levels=200)
    env.reset()
    actions = np.random.default_rng(0).integers(0, 15, size=(steps, num_envs))
    start = time.perf_counter()
    for a in actions:
        env.step(a)
    return steps * num_envs / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    repeats = 1 if args.quick else args.repeats
    mg_steps, pg_steps = (2048, 256) if args.quick else (32768, 8192)
    with tempfile.TemporaryDirectory() as tmp:
        cfg = config("minigrid/doorkey-6x6", 16, 128, "minigrid_cnn")
        ours, plain, ratios = [], [], []
        for _ in range(repeats):
            o = timed_learn(rlgen_model(cfg, Path(tmp)), mg_steps)
            p = timed_learn(plain_sb3_minigrid(cfg, Path(tmp)), mg_steps)
            ours.append(o), plain.append(p), ratios.append(o / p)
        print(f"{'benchmark':<44} {'rlgen steps/s':>14} {'baseline steps/s':>17} {'ratio':>6}")
        print(f"{'minigrid doorkey-6x6 PPO vs plain SB3 (16 envs)':<44} {statistics.median(ours):>14,.0f} "
              f"{statistics.median(plain):>17,.0f} {statistics.median(ratios):>6.3f}")
        cfg = config("procgen/coinrun", 16, 16 if args.quick else 64, "impala")
        o = statistics.median(timed_learn(rlgen_model(cfg, Path(tmp)), pg_steps) for _ in range(repeats))
        raw = raw_envpool_sps("coinrun", 16, 200 if args.quick else 2000)
        print(f"{'procgen coinrun PPO (IMPALA) vs raw EnvPool':<44} {o:>14,.0f} {raw:>17,.0f} {o / raw:>6.2g}")


if __name__ == "__main__":
    main()
