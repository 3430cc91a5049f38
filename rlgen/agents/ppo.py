"""Online PPO through stable-baselines3, with a skill ladder of checkpoints and resume.

Run directory (``out_dir``)::

    config.yaml                  resolved config, with the resolved LevelSplit
    checkpoints/latest.zip       SB3 model with optimizer state (resumable)
    checkpoints/latest_vecnormalize.pkl   reward-normalization statistics
    checkpoints/state.json       env steps done, whether training finished
    ladder/step_<N>.zip          skill-ladder checkpoints (policy at N env steps)
    ladder.json                  each rung: step, checkpoint, mean return (+ normalized) on training levels
    tb/                          TensorBoard
    results.jsonl                evaluation rows (``rlgen evaluate``)

``rlgen train`` on a directory that holds ``checkpoints/latest.zip`` continues from it: same step
counter, same TensorBoard curve. SIGINT/SIGTERM stop at the next env step and save a checkpoint first.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from rlgen.agents import networks
from rlgen.agents.quiet import silence_gym_banner
from rlgen.config import TrainConfig, write_resolved_config
from rlgen.envs import LevelSplit, make_env
from rlgen.agents.run_dir import LADDER, TrainingInterrupted, check_same_config, read_ladder, stop_on_signals
from rlgen.agents.run_dir import write_json_atomic as _write_json
from rlgen.errors import RlgenError

silence_gym_banner()

from stable_baselines3 import PPO  # noqa: E402
from stable_baselines3.common.callbacks import BaseCallback  # noqa: E402
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor  # noqa: E402
from stable_baselines3.common.vec_env import VecNormalize  # noqa: E402

from rlgen.agents.sb3_vec_env import RlgenVecEnv  # noqa: E402

LATEST = "checkpoints/latest.zip"
VECNORM = "checkpoints/latest_vecnormalize.pkl"
STATE = "checkpoints/state.json"


class EncoderExtractor(BaseFeaturesExtractor):
    """SB3 features extractor around one of ``rlgen.agents.networks``' encoders."""

    def __init__(self, observation_space: gym.spaces.Box, encoder: str = "impala") -> None:
        net = networks.make_encoder(encoder, observation_space.shape)
        super().__init__(observation_space, features_dim=net.features_dim)
        self.encoder = net

    def forward(self, observations: torch.Tensor) -> torch.Tensor:
        return self.encoder(observations)


def sb3_device(device: str) -> str:
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise RlgenError(f"device={device!r} but CUDA is not available here; use device=auto or device=cpu")
    return device


class PPOAgent:
    """PPO behind rlgen's Agent interface: ``fit``, ``act``, ``save``, ``load``.

    Args:
        model: a trained or fresh SB3 ``PPO``. Use ``PPOAgent.load`` or ``train_ppo`` to get one.
    """

    def __init__(self, model: PPO) -> None:
        self.model = model

    def act(self, obs: np.ndarray, deterministic: bool = False) -> np.ndarray:
        """Actions ``(B,)`` for observations ``(B, *obs_shape)`` (uint8, as the env gives them)."""
        actions, _ = self.model.predict(obs, deterministic=deterministic)
        return np.asarray(actions)

    def save(self, path: str | Path) -> Path:
        return _atomic_save(self.model, Path(path))

    @classmethod
    def load(cls, path: str | Path, device: str = "auto") -> "PPOAgent":
        p = Path(path)
        if not p.is_file():
            raise RlgenError(f"no PPO checkpoint at {str(p)!r}")
        return cls(PPO.load(p, device=sb3_device(device)))

    def fit(self, total_steps: int, callback: BaseCallback | None = None, resume: bool = False) -> "PPOAgent":
        """Train until the model has taken ``total_steps`` env steps in all."""
        remaining = total_steps - self.model.num_timesteps
        if remaining > 0:
            self.model.learn(remaining, callback=callback, reset_num_timesteps=not resume, tb_log_name="ppo")
        return self


def _atomic_save(model: PPO, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp.zip")
    model.save(tmp)
    os.replace(tmp, path)
    return path


class LadderCallback(BaseCallback):
    """Every ``ladder.every_steps`` env steps: evaluate on training levels and keep a checkpoint (a rung).
    Every ``checkpoint_every`` env steps: save the resumable ``latest`` checkpoint. Stops training
    when a stop signal arrived. Shows progress."""

    def __init__(self, cfg: TrainConfig, split: LevelSplit, run_dir: Path, stop_flag: dict[str, bool]) -> None:
        super().__init__()
        self.cfg = cfg
        self.split = split
        self.run_dir = run_dir
        self.stop_flag = stop_flag
        self.next_rung = 0
        self.next_checkpoint = 0
        self.progress: Any = None
        self.task: Any = None
        self._t0 = time.perf_counter()
        self._steps0 = 0
        self._last_return: float | None = None

    def _on_training_start(self) -> None:
        every, ck = self.cfg.ladder.every_steps, self.cfg.checkpoint_every
        n = self.num_timesteps
        self.next_rung = (n // every + 1) * every if n else every
        self.next_checkpoint = (n // ck + 1) * ck
        self._steps0 = n
        self._t0 = time.perf_counter()
        if self.cfg.progress:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self.progress = Progress(
                TextColumn("[bold]PPO[/] {task.description}"), BarColumn(), MofNCompleteColumn(),
                TextColumn("{task.fields[sps]} steps/s  return {task.fields[ret]}"), TimeRemainingColumn(),
            )  # fmt: skip
            self.progress.start()
            self.task = self.progress.add_task(self.split.id, total=self.cfg.total_steps, completed=n, sps="-", ret="-")

    def _on_step(self) -> bool:
        for info in self.locals.get("infos", ()):
            if "episode" in info:
                self._last_return = info["episode"]["r"]
        n = self.num_timesteps
        if n >= self.next_rung and n < self.cfg.total_steps:
            self.add_rung()
            self.next_rung += self.cfg.ladder.every_steps
        if n >= self.next_checkpoint:
            save_checkpoint(self.model, self.run_dir, finished=False)
            self.next_checkpoint += self.cfg.checkpoint_every
        if self.progress is not None and n % (self.cfg.num_envs * 16) < self.cfg.num_envs:
            self._update_progress()
        return not self.stop_flag["stop"]

    def _update_progress(self) -> None:
        sps = (self.num_timesteps - self._steps0) / max(time.perf_counter() - self._t0, 1e-9)
        ret = f"{self._last_return:.2f}" if self._last_return is not None else "-"
        self.progress.update(self.task, completed=self.num_timesteps, sps=f"{sps:,.0f}", ret=ret)
        self.logger.record("time/steps_per_second", sps)

    def _on_training_end(self) -> None:
        if self.progress is not None:
            self._update_progress()
            self.progress.stop()

    def add_rung(self) -> dict[str, Any]:
        from rlgen.evaluation import evaluate_on_levels

        agent = PPOAgent(self.model)
        result = evaluate_on_levels(
            agent, self.split, "train", episodes=self.cfg.ladder.episodes, seed=self.cfg.seed,
            num_envs=self.cfg.eval_num_envs, deterministic=self.cfg.ladder.deterministic,
        )  # fmt: skip
        step = int(self.num_timesteps)
        rel = f"ladder/step_{step:010d}.zip"
        _atomic_save(self.model, self.run_dir / rel)
        rung = {
            "step": step,
            "checkpoint": rel,
            "mean_return": result.mean_return,
            "mean_normalized": result.mean_normalized,
            "episodes": len(result.returns),
            "levels": "train",
            "deterministic": self.cfg.ladder.deterministic,
            "time": time.time(),
        }
        ladder = _load_ladder(self.run_dir, self.split)
        ladder["rungs"] = [r for r in ladder["rungs"] if r["step"] != step] + [rung]
        _write_json(self.run_dir / LADDER, ladder)
        self.logger.record("eval/train_levels/mean_return", result.mean_return)
        if result.mean_normalized is not None:
            self.logger.record("eval/train_levels/mean_normalized", result.mean_normalized)
        return rung


def _load_ladder(run_dir: Path, split: LevelSplit) -> dict[str, Any]:
    p = run_dir / LADDER
    if p.is_file():
        return json.loads(p.read_text())
    return {"env": split.id, "split": split.to_dict(), "rungs": []}


def save_checkpoint(model: PPO, run_dir: Path, finished: bool) -> None:
    _atomic_save(model, run_dir / LATEST)
    venv = model.get_env()
    if isinstance(venv, VecNormalize):
        tmp = run_dir / (VECNORM + ".tmp")
        venv.save(tmp)
        os.replace(tmp, run_dir / VECNORM)
    _write_json(run_dir / STATE, {"num_timesteps": int(model.num_timesteps), "finished": finished, "time": time.time()})


def build_model(cfg: TrainConfig, venv: Any, run_dir: Path) -> PPO:
    split_suite = cfg.env.split("/", 1)[0]
    encoder = cfg.ppo.network if cfg.ppo.network != "auto" else networks.default_encoder(split_suite, cfg.split.options)
    p = cfg.ppo
    return PPO(
        "CnnPolicy",
        venv,
        n_steps=p.n_steps,
        batch_size=cfg.num_envs * p.n_steps // p.num_minibatches,
        n_epochs=p.n_epochs,
        learning_rate=p.learning_rate,
        gamma=p.gamma,
        gae_lambda=p.gae_lambda,
        clip_range=p.clip_range,
        clip_range_vf=p.clip_range_vf,
        ent_coef=p.ent_coef,
        vf_coef=p.vf_coef,
        max_grad_norm=p.max_grad_norm,
        policy_kwargs={
            "features_extractor_class": EncoderExtractor,
            "features_extractor_kwargs": {"encoder": encoder},
            "normalize_images": False,  # the encoders scale their inputs
            "net_arch": {"pi": [], "vf": []},  # heads straight on the features, as in CleanRL's ppo_procgen
        },
        tensorboard_log=str(run_dir / "tb"),
        seed=cfg.seed,
        device=sb3_device(cfg.device),
        verbose=0,
    )


def train_ppo(cfg: TrainConfig) -> Path:
    """Train (or resume) PPO as ``cfg`` says; returns the run directory.

    Raises:
        TrainingInterrupted: after SIGINT/SIGTERM, once the checkpoint is saved.
    """
    run_dir = Path(cfg.out_dir or "runs/ppo")
    split = cfg.level_split()
    resuming = (run_dir / LATEST).is_file()
    if resuming:
        check_same_config(run_dir, cfg)
        state = json.loads((run_dir / STATE).read_text()) if (run_dir / STATE).is_file() else {}
        if state.get("finished") and state.get("num_timesteps", 0) >= cfg.total_steps:
            return run_dir  # nothing left to do
    write_resolved_config(cfg, run_dir, extra={"split": split.to_dict()})

    venv: Any = RlgenVecEnv(make_env(split, "train", num_envs=cfg.num_envs, seed=cfg.seed))
    if cfg.ppo.normalize_reward:
        if resuming and (run_dir / VECNORM).is_file():
            venv = VecNormalize.load(str(run_dir / VECNORM), venv)
        else:
            venv = VecNormalize(venv, norm_obs=False, norm_reward=True, gamma=cfg.ppo.gamma)
    if resuming:
        model = PPO.load(run_dir / LATEST, env=venv, device=sb3_device(cfg.device), tensorboard_log=str(run_dir / "tb"))
    else:
        model = build_model(cfg, venv, run_dir)

    flag = {"stop": False}
    callback = LadderCallback(cfg, split, run_dir, flag)
    agent = PPOAgent(model)
    with stop_on_signals(flag):
        agent.fit(cfg.total_steps, callback=callback, resume=resuming)
    finished = model.num_timesteps >= cfg.total_steps and not flag["stop"]
    if finished:
        callback.add_rung()  # the final policy: the "expert" rung
    save_checkpoint(model, run_dir, finished=finished)
    venv.close()
    if flag["stop"]:
        raise TrainingInterrupted(
            f"stopped by signal at {model.num_timesteps:,} env steps; checkpoint saved in {run_dir / LATEST}; "
            "run the same command again to resume"
        )
    return run_dir


def load_run_agent(run_dir: str | Path, checkpoint: str | None = None, device: str = "auto") -> PPOAgent:
    """The agent of a run directory: the last ladder rung (the final policy) unless ``checkpoint`` names one."""
    run = Path(run_dir)
    if checkpoint is not None:
        return PPOAgent.load(run / checkpoint, device=device)
    if not (run / LADDER).is_file() and (run / LATEST).is_file():  # stopped before its first rung
        return PPOAgent.load(run / LATEST, device=device)
    ladder = read_ladder(run)
    if not ladder["rungs"]:
        return PPOAgent.load(run / LATEST, device=device)
    last = max(ladder["rungs"], key=lambda r: r["step"])
    return PPOAgent.load(run / last["checkpoint"], device=device)
