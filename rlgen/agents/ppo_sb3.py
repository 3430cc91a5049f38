"""``algo: ppo``: online PPO through stable-baselines3, with a skill ladder of checkpoints and resume.

Run directory (``out_dir``)::

    config.yaml, run.json        resolved config (with the resolved LevelSplit) and run id (``rlgen.agents.run_dir``)
    checkpoints/latest.pt        policy + optimizer + reward-normalization statistics + step counter (resumable)
    checkpoints/state.json       env steps done, whether training finished
    ladder/step_<N>.pt           skill-ladder checkpoints (policy at N env steps)
    ladder.json                  each rung: step, checkpoint, mean return (+ normalized) on training levels
    tb/ppo_1/                    TensorBoard: one curve, whatever the number of resumes
    results.jsonl                evaluation rows (``rlgen evaluate``)
    .lock                        held by the process training in the directory

Checkpoints are weights only (``rlgen.agents.ppo_sb3_policy``): loading one never runs code from it.
``rlgen train`` on a directory that holds ``checkpoints/latest.pt`` continues from it: same step
counter, same TensorBoard curve (events after the checkpoint are purged from it). A resumable
checkpoint is written at least every tenth of ``total_steps``, always between two rollouts (where the
policy, optimizer, normalization statistics and step counter belong together), so a resumed run
collects whole rollouts and ends on the step count of an uninterrupted one. SIGINT/SIGTERM stop at the
next env step and save the checkpoint of the rollout boundary before it (the unfinished rollout is
collected again). What a resume does not restore: the envs' states and level stream (EnvPool cannot save
them), so the first episodes after a resume are new episodes of the seed's level stream from its start,
and a resumed run is not bit-identical to an uninterrupted one. Directories of older rlgen versions (SB3
``.zip`` files) still evaluate and collect, without unpickling anything, but do not resume.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rlgen.agents.networks import encoder_for
from rlgen.agents.ppo_sb3_policy import (
    EncoderExtractor,  # noqa: F401 - re-exported: the features extractor of rlgen's PPO
    arch_for,
    build_policy,
    is_legacy_zip,
    load_weights,
    policy_kwargs,
    read_checkpoint_file,
    read_legacy_zip,
    save_checkpoint_file,
)
from rlgen.agents.run_dir import (
    final_checkpoint,
    interrupted,
    keep_rung,
    ladder_or_new,
    locks_run_dir,
    read_run_config,
    resume_preamble,
    rung_curves,
    stop_on_signals,
    tensorboard_writer,
    write_resolved_config,
    write_state,
)
from rlgen.config import PPOConfig, validate_config
from rlgen.devices import torch_device
from rlgen.envs import LevelSplit, make_env
from rlgen.errors import RlgenError
from rlgen.evaluation import evaluate_on_levels
from rlgen.evaluation.episodes import sb3_actions
from rlgen.progress import ProgressBar

from stable_baselines3 import PPO  # noqa: E402
from stable_baselines3.common.callbacks import BaseCallback  # noqa: E402
from stable_baselines3.common.logger import Logger, TensorBoardOutputFormat  # noqa: E402
from stable_baselines3.common.vec_env import VecNormalize  # noqa: E402

from rlgen.agents.sb3_vec_env import RlgenVecEnv  # noqa: E402

LATEST = "checkpoints/latest.pt"
STATE = "checkpoints/state.json"
#: What older rlgen versions wrote (SB3 zips, a pickled VecNormalize): read for evaluation only.
LEGACY_LATEST = "checkpoints/latest.zip"
TB_DIR = "tb/ppo_1"  # the name SB3 gave the first run; kept so older run directories continue their curve


class PPOAgent:
    """An SB3 PPO policy behind rlgen's ``Agent`` protocol: ``act``, ``save``, ``load``.

    Args:
        policy: an SB3 actor-critic policy of architecture ``arch``.
        arch: its plain-data description (``rlgen.agents.ppo_sb3_policy.arch_for``).
    Use ``PPOAgent.load``, ``load_run`` or ``train_ppo`` to get one.
    """

    episodic = False
    samples_from_uniforms = True  # evaluation's per-episode draws (rlgen.evaluation.episodes.UniformSampler)

    def __init__(self, policy: Any, arch: dict[str, Any]) -> None:
        self.policy = policy
        self.arch = arch

    @property
    def num_actions(self) -> int:
        return int(self.arch["num_actions"])

    @property
    def observation_shape(self) -> tuple[int, ...]:
        """The shape of one observation the policy takes."""
        return tuple(int(x) for x in self.arch["obs_shape"])

    def act(self, obs: np.ndarray, deterministic: bool = False, uniforms: np.ndarray | None = None) -> np.ndarray:
        """Actions ``(B,)`` for observations ``(B, *obs_shape)`` (uint8, as the env gives them); sampled ones
        from ``uniforms`` (one per row in [0, 1), by inverse CDF) when given, else by SB3's ``predict``."""
        return sb3_actions(self.policy, obs, deterministic, uniforms)

    def save(self, path: str | Path, num_timesteps: int = 0) -> Path:
        """The policy's weights and architecture as one weights-only ``.pt`` file, atomically."""
        return save_checkpoint_file(Path(path), {"arch": self.arch, "policy": self.policy.state_dict(), "num_timesteps": int(num_timesteps)})

    @classmethod
    def load(cls, path: str | Path, device: str = "auto", arch: dict[str, Any] | None = None) -> "PPOAgent":
        """The policy in ``path``: a ``.pt`` of rlgen's, or an older rlgen's SB3 ``.zip`` (whose
        architecture ``arch`` must then come from its run's config: use ``load_run``).
        Nothing in the file is unpickled beyond tensors and plain data."""
        p = Path(path)
        if not p.is_file():
            raise RlgenError(f"no PPO checkpoint at {str(p)!r}")
        dev = torch_device(device)
        if is_legacy_zip(p):
            if arch is None:
                raise RlgenError(f"{p} is an SB3 .zip of an older rlgen: load it with its run directory (rlgen evaluate RUN_DIR)")
            state = read_legacy_zip(p, dev)
        else:
            payload = read_checkpoint_file(p, dev)
            arch, state = payload["arch"], payload["policy"]
        policy = build_policy(arch, dev)
        load_weights(policy, state, p)
        return cls(policy, arch)


@dataclasses.dataclass(frozen=True)
class Boundary:
    """The learner's state between two rollouts that is not in the policy and optimizer (which change only
    in updates): env steps done and the reward-normalization statistics (updated at every env step)."""

    steps: int
    ret_rms: dict[str, Any] | None


class LadderCallback(BaseCallback):
    """Every ``ladder.every_steps`` env steps: evaluate on training levels and keep a checkpoint (a rung); the
    validation-level return (and, with ``held_out_curve``, the held-out one, TensorBoard only) is logged beside it.
    Every ``checkpoint_every`` env steps, at the next rollout boundary: save the resumable ``latest``
    checkpoint. Stops training when a stop signal arrived. Shows progress."""

    def __init__(self, cfg: PPOConfig, split: LevelSplit, run_dir: Path, stop_flag: dict[str, bool], arch: dict[str, Any], tb: Any = None) -> None:
        super().__init__()
        self.cfg = cfg
        self.arch = arch
        self.tb = tb  # a SummaryWriter: rung scalars go in at the rung's own step
        self.split = split
        self.run_dir = run_dir
        self.stop_flag = stop_flag
        self.next_rung = 0
        self.next_checkpoint = 0
        self.boundary: Boundary | None = None  # the start of the rollout being collected
        self.aborted = False  # a stop signal ended a rollout before its update
        self.bar: ProgressBar | None = None
        self._t0 = time.perf_counter()
        self._steps0 = 0
        self._last_return: float | None = None

    def _on_training_start(self) -> None:
        every, ck = self.cfg.ladder.every_steps, self.cfg.checkpoint_interval()
        n = self.num_timesteps
        self.next_rung = (n // every + 1) * every if n else every
        self.next_checkpoint = (n // ck + 1) * ck
        self._steps0 = n
        self._t0 = time.perf_counter()
        self.bar = ProgressBar(f"[bold]PPO[/] {self.split.id}", total=self.cfg.total_steps, completed=n,
                               fields={"sps": "steps/s", "ret": ""}, enabled=self.cfg.progress)  # fmt: skip

    def _on_rollout_start(self) -> None:
        # After the previous rollout's update and before this rollout's first step: the one point where a
        # checkpoint resumes exactly as training would have continued. The update's train/* scalars go out
        # now, at the step they belong to (SB3 would hold them until the end of this rollout), so they are
        # in TensorBoard before any checkpoint taken here: a resume from it never leaves a hole.
        self.logger.dump(self.num_timesteps)
        self.boundary = boundary_of(self.model)
        n = self.num_timesteps
        if n >= self.next_checkpoint:
            save_checkpoint(self.model, self.run_dir, finished=False)
            ck = self.cfg.checkpoint_interval()
            self.next_checkpoint = (n // ck + 1) * ck

    def _on_step(self) -> bool:
        for info in self.locals.get("infos", ()):
            if "episode" in info:
                self._last_return = info["episode"]["r"]
        n = self.num_timesteps
        if n >= self.next_rung and n < self.cfg.total_steps:
            self.add_rung()
            self.next_rung += self.cfg.ladder.every_steps
        if self.cfg.progress and n % (self.cfg.num_envs * 16) < self.cfg.num_envs:
            self._update_progress()
        self.aborted = bool(self.stop_flag["stop"])
        return not self.aborted

    def _update_progress(self) -> None:
        sps = (self.num_timesteps - self._steps0) / max(time.perf_counter() - self._t0, 1e-9)
        ret = f"return {self._last_return:.2f}" if self._last_return is not None else "return -"
        if self.bar is not None:
            self.bar.update(completed=self.num_timesteps, sps=f"{sps:,.0f}", ret=ret)
        self.logger.record("time/steps_per_second", sps)

    def _on_training_end(self) -> None:
        if self.cfg.progress:
            self._update_progress()
        if self.bar is not None:
            self.bar.close()

    def add_rung(self) -> dict[str, Any]:
        agent = PPOAgent(self.model.policy, self.arch)

        def evaluate(which: str) -> Any:
            return evaluate_on_levels(agent, self.split, which, episodes=self.cfg.ladder.episodes, seed=self.cfg.seed,
                                      num_envs=self.cfg.eval_num_envs, deterministic=self.cfg.ladder.deterministic)  # fmt: skip

        result = evaluate("train")
        curves = rung_curves(evaluate, self.split, self.cfg.held_out_curve)
        step = int(self.model.num_timesteps)
        rel = f"ladder/step_{step:010d}.pt"
        agent.save(self.run_dir / rel, num_timesteps=step)
        return keep_rung(self.run_dir, self.split, step, rel, result, self.cfg.ladder.deterministic, tb=self.tb, curves=curves)


def boundary_of(model: PPO) -> Boundary:
    """``model``'s step count and reward-normalization statistics now (copies)."""
    venv = model.get_env()
    ret_rms = None
    if isinstance(venv, VecNormalize):
        rms = venv.ret_rms
        ret_rms = {"mean": torch.as_tensor(np.array(rms.mean, np.float64)), "var": torch.as_tensor(np.array(rms.var, np.float64)),
                   "count": float(rms.count)}  # fmt: skip
    return Boundary(int(model.num_timesteps), ret_rms)


def save_checkpoint(model: PPO, run_dir: Path, finished: bool, at: Boundary | None = None) -> int:
    """The resumable checkpoint: one weights-only file (policy, optimizer, reward-normalization
    statistics, counters), so a kill can never leave them out of step; then ``state.json``. Returns its step.

    ``at``: the rollout boundary to save (default: now, which must be one); a run stopped mid-rollout saves
    the boundary before it, its policy and optimizer being those of that boundary still.
    """
    at = at if at is not None else boundary_of(model)
    arch = arch_for(_encoder(model), model.observation_space, model.action_space)
    save_checkpoint_file(run_dir / LATEST, {
        "arch": arch, "policy": model.policy.state_dict(), "optimizer": model.policy.optimizer.state_dict(),
        "num_timesteps": at.steps, "n_updates": int(model._n_updates), "ret_rms": at.ret_rms,
    })  # fmt: skip
    write_state(run_dir, STATE, at.steps, finished)
    return at.steps


def _encoder(model: PPO) -> str:
    return str(model.policy_kwargs["features_extractor_kwargs"]["encoder"])


def _restore(model: PPO, payload: dict[str, Any], path: Path) -> None:
    """Put a resumable checkpoint's weights, optimizer state, counters and statistics into ``model``."""
    load_weights(model.policy, payload["policy"], path)
    try:
        model.policy.optimizer.load_state_dict(payload["optimizer"])
        model.num_timesteps = int(payload["num_timesteps"])
        model._n_updates = int(payload.get("n_updates", 0))
        venv = model.get_env()
        if isinstance(venv, VecNormalize) and payload.get("ret_rms") is not None:
            rms = payload["ret_rms"]
            venv.ret_rms.mean = np.asarray(rms["mean"].cpu().numpy(), np.float64).reshape(venv.ret_rms.mean.shape)
            venv.ret_rms.var = np.asarray(rms["var"].cpu().numpy(), np.float64).reshape(venv.ret_rms.var.shape)
            venv.ret_rms.count = float(rms["count"])
    except (KeyError, TypeError, ValueError, AttributeError, RuntimeError) as e:
        raise RlgenError(f"{path} is not a resumable checkpoint ({type(e).__name__}: {str(e)[:160]})") from None


def build_model(cfg: PPOConfig, venv: Any, run_dir: Path) -> PPO:
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
        policy_kwargs=policy_kwargs(encoder_of(cfg)),
        seed=cfg.seed,
        device=torch_device(cfg.device),
        verbose=0,
    )


def encoder_of(cfg: PPOConfig) -> str:
    """The encoder a config trains: ``ppo.network``, or the suite's default for ``auto``."""
    return encoder_for(cfg.ppo.network, cfg.env, cfg.split.options)


class _PurgingTensorBoard(TensorBoardOutputFormat):
    """SB3's TensorBoard output on rlgen's writer (``run_dir.tensorboard_writer``), so a resumed run
    shows one curve with each step once."""

    def __init__(self, folder: str, resumed_at: int | None, cfg: Any = None, run_dir: Path | None = None) -> None:  # noqa: D107 - SB3's __init__ would open a writer without purge_step
        self.writer = tensorboard_writer(Path(folder), resumed_at, cfg, run_dir)
        self._is_closed = False


def _logger(run_dir: Path, resumed_at: int | None, cfg: Any = None) -> Logger:
    """TensorBoard in ``tb/ppo_1`` for every attempt (and wandb when ``cfg.logger`` names it). A fresh start
    purges everything an earlier attempt without a checkpoint logged; a resume keeps the steps up to its checkpoint."""
    folder = str(run_dir / TB_DIR)
    return Logger(folder, [_PurgingTensorBoard(folder, resumed_at, cfg, run_dir)])


@locks_run_dir
def train_ppo(cfg: PPOConfig) -> Path:
    """Train (or resume) PPO as ``cfg`` says; returns the run directory.

    Raises:
        TrainingInterrupted: after SIGINT/SIGTERM, once the checkpoint is saved.
    """
    run_dir = Path(cfg.out_dir)
    split = cfg.level_split()
    resume = resume_preamble(run_dir, cfg, LATEST, STATE, cfg.total_steps)
    if resume.finished:
        return run_dir  # nothing left to do
    if not resume.resuming and (run_dir / LEGACY_LATEST).is_file():
        raise RlgenError(f"{run_dir / LEGACY_LATEST} was written by an older rlgen (an SB3 zip with pickled fields); it can be "
                         "evaluated and collected from, but not resumed without unpickling it: train into a new out_dir")  # fmt: skip
    if resume.resuming:
        payload = read_checkpoint_file(run_dir / LATEST, torch_device(cfg.device))  # before any write
        ladder_or_new(run_dir, split)  # a torn ladder fails now, not after the training it would follow
    write_resolved_config(cfg, run_dir, extra={"split": split.to_dict()})

    venv: Any = RlgenVecEnv(make_env(split, "train", num_envs=cfg.num_envs, seed=cfg.seed))
    if cfg.ppo.normalize_reward:
        venv = VecNormalize(venv, norm_obs=False, norm_reward=True, gamma=cfg.ppo.gamma)
    model = build_model(cfg, venv, run_dir)
    if resume.resuming:
        _restore(model, payload, run_dir / LATEST)
    logger = _logger(run_dir, model.num_timesteps if resume.resuming else None, cfg)
    model.set_logger(logger)

    flag = {"stop": False}
    arch = arch_for(encoder_of(cfg), model.observation_space, model.action_space)
    callback = LadderCallback(cfg, split, run_dir, flag, arch, tb=logger.output_formats[0].writer)
    try:
        with stop_on_signals(flag):
            remaining = cfg.total_steps - model.num_timesteps
            if remaining > 0:
                model.learn(remaining, callback=callback, reset_num_timesteps=not resume.resuming)
        finished = model.num_timesteps >= cfg.total_steps and not flag["stop"]
        if finished:
            if getattr(callback, "model", None) is None:  # nothing left to learn (killed after its last checkpoint)
                callback.init_callback(model)
            callback.add_rung()  # the final policy: the "expert" rung
        if not callback.aborted:
            logger.dump(model.num_timesteps)  # the last update's train/* scalars
        # stopped mid-rollout: the boundary before it (otherwise learn() ended between rollouts)
        saved_at = save_checkpoint(model, run_dir, finished=finished, at=callback.boundary if callback.aborted else None)
    finally:
        logger.close()
        venv.close()
    if flag["stop"]:
        raise interrupted(f"{saved_at:,} env steps (the last rollout boundary)", run_dir / LATEST)
    return run_dir


def load_run(run_dir: str | Path, checkpoint: str | None = None, device: str = "auto") -> PPOAgent:
    """The agent of a run directory: the last ladder rung (the final policy) unless ``checkpoint`` names one.

    Paths from ``ladder.json`` (and ``checkpoint``) must stay inside the run directory. Checkpoints
    of older rlgen versions (SB3 ``.zip``) are rebuilt from the run's ``config.yaml`` and the zip's
    ``policy.pth`` weights alone.
    """
    run = Path(run_dir)
    path = final_checkpoint(run, checkpoint, LATEST)
    if checkpoint is None and path == run / LATEST and not path.is_file() and (run / LEGACY_LATEST).is_file():
        path = run / LEGACY_LATEST  # an older rlgen's run stopped before its first rung
    arch = legacy_arch(run) if path.is_file() and is_legacy_zip(path) else None
    return PPOAgent.load(path, device=device, arch=arch)


def legacy_arch(run_dir: Path) -> dict[str, Any]:
    """The architecture of an older rlgen's run, from its ``config.yaml`` (encoder) and its env (spaces)."""
    data = read_run_config(run_dir)
    resolved = data.pop("resolved", None) or {}
    cfg = validate_config(data, PPOConfig, source=str(run_dir / "config.yaml"))
    split = LevelSplit.from_dict(resolved["split"]) if isinstance(resolved, dict) and "split" in resolved else cfg.level_split()
    probe = make_env(split, "train", num_envs=1, levels=[split.train.min])
    try:
        return arch_for(encoder_of(cfg), probe.single_observation_space, probe.single_action_space)
    finally:
        probe.close()
