"""Offline agents behind one interface, and the offline training loop.

* BC, BCQ, CQL, Decision Transformer: d3rlpy's discrete implementations (``DiscreteBC``,
  ``DiscreteBCQ``, ``DiscreteCQL``, ``DiscreteDecisionTransformer``) with rlgen's encoders through
  ``RlgenEncoderFactory``. We drive each algorithm's ``impl.update`` with batches from rlgen's
  out-of-core sampler, built straight into d3rlpy's ``TorchMiniBatch``/``TorchTrajectoryMiniBatch``
  (uint8 observations, no float copy on the host), instead of d3rlpy's replay buffer, which would
  hold every transition in Python objects in RAM (see README, "Offline agents").
* IQL (discrete) and BCT: rlgen's own PyTorch (``rlgen.agents.iql``, ``rlgen.agents.bct``); d3rlpy
  has no discrete versions.

Every agent has ``update(batch) -> losses``, ``act(obs, deterministic=, keys=)``, ``save(dir)``,
``load(dir)``; DT and BCT are *episodic* (``reset(keys)``, ``observe(keys, rewards)``): evaluation
tells them where episodes start and what rewards arrived.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rlgen.agents import networks
from rlgen.agents.quiet import silence_gym_banner
from rlgen.config import OfflineConfig, config_to_dict, write_resolved_config
from rlgen.errors import RlgenError
from rlgen.run_identity import dataset_identity

silence_gym_banner()

import d3rlpy  # noqa: E402
from d3rlpy.models.encoders import EncoderFactory  # noqa: E402
from d3rlpy.torch_utility import TorchMiniBatch, TorchTrajectoryMiniBatch  # noqa: E402

D3RLPY_ALGOS = ("bc", "bcq", "cql", "dt")
CHECKPOINT_DIR = "checkpoints/latest"
MODEL_DIR = "model"


def resolve_device(device: str) -> str:
    if device == "auto":
        return "cuda:0" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise RlgenError(f"device={device!r} but CUDA is not available here; use device=auto or device=cpu")
    return "cuda:0" if device == "cuda" else device


@dataclasses.dataclass()
class RlgenEncoderFactory(EncoderFactory):
    """d3rlpy encoder factory for rlgen's encoders (``networks.ENCODERS``)."""

    name: str = "impala"
    features_dim: int = 0  # 0: the encoder's default (IMPALA 256, Nature 512, MiniGrid 128)

    def create(self, observation_shape: Sequence[int]) -> torch.nn.Module:
        return networks.make_encoder(self.name, tuple(observation_shape), features_dim=self.features_dim or None)

    def create_with_action(self, observation_shape: Sequence[int], action_size: int, discrete_action: bool = False) -> torch.nn.Module:
        raise NotImplementedError("rlgen's encoders are for discrete-action algorithms, which encode states only")

    @staticmethod
    def get_type() -> str:
        return "rlgen"


_registered = False


def _register_factory() -> None:
    global _registered
    if not _registered:
        d3rlpy.models.encoders.register_encoder_factory(RlgenEncoderFactory)
        _registered = True


class D3rlpyAgent:
    """BC, BCQ, CQL or DT from d3rlpy, updated with rlgen batches."""

    def __init__(self, cfg: OfflineConfig, observation_shape: tuple[int, ...], num_actions: int, device: str, encoder: str, target_return: float) -> None:
        _register_factory()
        self.kind = cfg.algo
        self.device = device
        self.target_return = target_return
        common = {"batch_size": cfg.batch_size, "learning_rate": cfg.learning_rate}
        if cfg.algo == "bc":
            # beta=0: plain cross-entropy, as in the reference study (d3rlpy's default adds a logit penalty)
            conf: Any = d3rlpy.algos.DiscreteBCConfig(**common, encoder_factory=RlgenEncoderFactory(encoder), beta=0.0)
        elif cfg.algo == "bcq":
            conf = d3rlpy.algos.DiscreteBCQConfig(**common, gamma=cfg.gamma, encoder_factory=RlgenEncoderFactory(encoder),
                                                  action_flexibility=cfg.bcq_threshold, target_update_interval=cfg.target_update_interval)  # fmt: skip
        elif cfg.algo == "cql":
            conf = d3rlpy.algos.DiscreteCQLConfig(**common, gamma=cfg.gamma, encoder_factory=RlgenEncoderFactory(encoder),
                                                  alpha=cfg.cql_alpha, target_update_interval=cfg.target_update_interval)  # fmt: skip
        else:
            conf = d3rlpy.algos.DiscreteDecisionTransformerConfig(
                **common, encoder_factory=RlgenEncoderFactory(encoder, features_dim=cfg.embed_dim),
                context_size=cfg.context_length, num_heads=cfg.n_heads, num_layers=cfg.n_layers, max_timestep=_max_timestep(cfg),
            )  # fmt: skip
        self.algo = conf.create(device=device)
        self.algo.create_impl(observation_shape, num_actions)
        self.episodic = cfg.algo == "dt"
        self._wrappers: dict[int, Any] = {}
        self._last_reward: dict[int, float] = {}
        self._generator = torch.Generator().manual_seed(cfg.seed)  # BC's sampled actions

    def update(self, batch: dict[str, Any]) -> dict[str, float]:
        t = {k: torch.as_tensor(np.asarray(v) if not torch.is_tensor(v) else v, device=self.device) for k, v in batch.items()}
        step = self.algo.grad_step
        if self.kind == "dt":
            b, length = t["actions"].shape
            tb = TorchTrajectoryMiniBatch(
                observations=t["obs"], actions=t["actions"].float().view(b, length, 1), rewards=t["rewards"].float().view(b, length, 1),
                returns_to_go=t["returns_to_go"].float().view(b, length, 1), terminals=torch.zeros(b, length, 1, device=self.device),
                timesteps=t["timesteps"].long(), masks=t["mask"].float(), device=self.device,
            )  # fmt: skip
        else:
            b = t["action"].shape[0]
            tb = TorchMiniBatch(
                observations=t["obs"], actions=t["action"].float().view(b, 1), rewards=t["reward"].float().view(b, 1),
                next_observations=t["next_obs"], next_actions=torch.zeros(b, 1, device=self.device),
                returns_to_go=torch.zeros(b, 1, device=self.device), terminals=t["done"].float().view(b, 1),
                intervals=torch.ones(b, 1, device=self.device), device=self.device,
            )  # fmt: skip
        losses = self.algo.impl.update(tb, step)
        self.algo.set_grad_step(step + 1)
        return {f"loss/{k}": float(v) for k, v in losses.items()}

    # acting --------------------------------------------------------------------------------------
    def act(self, obs: np.ndarray, deterministic: bool = False, keys: Sequence[int] | None = None) -> np.ndarray:
        """BC samples from its softmax policy unless ``deterministic`` (d3rlpy's ``predict`` is always the
        argmax, and a greedy imitation policy loops forever in partially observed levels: on DoorKey-6x6
        a BC agent measured 0.37 greedy vs 0.94 sampled). BCQ and CQL act greedily on their Q-values
        either way. DT conditions on each episode's history and samples unless ``deterministic``."""
        if self.kind == "bc" and not deterministic:
            with torch.no_grad():
                logits = self.algo.impl._modules.imitator(torch.as_tensor(np.asarray(obs), device=self.device)).logits  # (B, A)
                probs = torch.softmax(logits.float(), dim=-1)
                return torch.multinomial(probs.cpu(), 1, generator=self._generator).squeeze(1).numpy().astype(np.int64)
        if not self.episodic:
            return np.asarray(self.algo.predict(np.asarray(obs)), dtype=np.int64)
        keys = list(range(len(obs))) if keys is None else list(keys)
        out = np.empty(len(obs), dtype=np.int64)
        for i, key in enumerate(keys):
            if key not in self._wrappers:  # a new episode: its wrapper samples, or acts greedily
                sampler = d3rlpy.algos.GreedyTransformerActionSampler() if deterministic else None
                self._wrappers[key] = self.algo.as_stateful_wrapper(self.target_return, action_sampler=sampler)
                self._last_reward.setdefault(key, 0.0)
            w = self._wrappers[key]
            out[i] = int(w.predict(np.asarray(obs[i]), self._last_reward[key]))
        return out

    def reseed(self, seed: int) -> None:
        """Evaluation's seeding hook (``rlgen.evaluation``): BC samples from its own generator."""
        self._generator.manual_seed(seed)

    def reset(self, keys: Sequence[int]) -> None:
        for key in keys:
            self._wrappers.pop(key, None)
            self._last_reward[key] = 0.0

    def observe(self, keys: Sequence[int], rewards: np.ndarray) -> None:
        for key, r in zip(keys, rewards):
            self._last_reward[key] = float(r)

    # persistence ---------------------------------------------------------------------------------
    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        tmp = directory / "model.d3.tmp"  # a kill mid-save must not destroy the previous checkpoint
        self.algo.save_model(str(tmp))
        tmp.replace(directory / "model.d3")

    def load(self, directory: Path) -> None:
        self.algo.load_model(str(directory / "model.d3"))


class TorchAgent:
    """IQL or BCT, rlgen's own PyTorch implementations."""

    def __init__(self, cfg: OfflineConfig, observation_shape: tuple[int, ...], num_actions: int, device: str, encoder: str) -> None:
        self.kind = cfg.algo
        if cfg.algo == "iql":
            from rlgen.agents.iql import DiscreteIQL

            self.impl: Any = DiscreteIQL(observation_shape, num_actions, encoder=encoder, learning_rate=cfg.learning_rate, gamma=cfg.gamma,
                                         expectile=cfg.iql_expectile, temperature=cfg.iql_temperature, tau=cfg.iql_tau, device=device, seed=cfg.seed)  # fmt: skip
        else:
            from rlgen.agents.bct import BCTransformer

            self.impl = BCTransformer(observation_shape, num_actions, encoder=encoder, context_length=cfg.context_length, n_layers=cfg.n_layers,
                                      n_heads=cfg.n_heads, embed_dim=cfg.embed_dim, learning_rate=cfg.learning_rate,
                                      max_timestep=_max_timestep(cfg), device=device, seed=cfg.seed)  # fmt: skip
        self.episodic = bool(getattr(self.impl, "episodic", False))

    def update(self, batch: dict[str, Any]) -> dict[str, float]:
        return {k if k.startswith("loss") else f"loss/{k}": float(v) for k, v in self.impl.update(batch).items()}

    def act(self, obs: np.ndarray, deterministic: bool = False, keys: Sequence[int] | None = None) -> np.ndarray:
        if self.episodic:
            return np.asarray(self.impl.act(obs, deterministic=deterministic, keys=keys), dtype=np.int64)
        return np.asarray(self.impl.act(obs, deterministic=deterministic), dtype=np.int64)

    def reseed(self, seed: int) -> None:
        """Evaluation's seeding hook (``rlgen.evaluation``): IQL and BCT sample from their own generator."""
        self.impl.generator.manual_seed(seed)

    def reset(self, keys: Sequence[int]) -> None:
        if self.episodic:
            self.impl.reset(keys)

    def observe(self, keys: Sequence[int], rewards: np.ndarray) -> None:
        if self.episodic:
            self.impl.observe(keys, rewards)

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        tmp = directory / "model.pt.tmp"
        torch.save(self.impl.state_dict(), tmp)
        tmp.replace(directory / "model.pt")

    def load(self, directory: Path) -> None:
        self.impl.load_state_dict(torch.load(directory / "model.pt", map_location="cpu", weights_only=False))


def _max_timestep(cfg: OfflineConfig) -> int:
    from rlgen.envs import get_suite

    suite, env = cfg.env.split("/", 1)
    module = get_suite(suite)
    limits = getattr(module, "EPISODE_STEPS", {})
    return int(limits.get(env, 1000)) + 1


def build_agent(cfg: OfflineConfig, observation_shape: tuple[int, ...], num_actions: int, device: str, target_return: float) -> D3rlpyAgent | TorchAgent:
    suite = cfg.env.split("/", 1)[0]
    encoder = cfg.network if cfg.network != "auto" else networks.default_encoder(suite, cfg.split.options)
    torch.manual_seed(cfg.seed)
    if cfg.algo in D3RLPY_ALGOS:
        return D3rlpyAgent(cfg, observation_shape, num_actions, device, encoder, target_return)
    return TorchAgent(cfg, observation_shape, num_actions, device, encoder)


# --- the training loop ---------------------------------------------------------------------------------


def train_offline(cfg: OfflineConfig) -> Path:
    """Train (or resume) an offline agent as ``cfg`` says; returns the run directory.

    Raises:
        TrainingInterrupted: after SIGINT/SIGTERM, once the checkpoint is saved.
    """
    from torch.utils.tensorboard import SummaryWriter

    from rlgen.agents.run_dir import TrainingInterrupted, stop_on_signals
    from rlgen.data import load_dataset
    from rlgen.envs import LevelSplit
    from rlgen.evaluation import evaluate_on_levels

    run_dir = Path(cfg.out_dir or f"runs/{cfg.name}")
    ds = load_dataset(cfg.dataset, expect_env=cfg.env)
    split = LevelSplit.from_dict(ds.manifest["split"]) if "split" in ds.manifest else cfg.level_split()
    device = resolve_device(cfg.device)
    best_return = float(ds.episodes["return"].max())
    target_return = cfg.dt_target_return if cfg.dt_target_return is not None else cfg.dt_target_return_scale * best_return
    state_path = run_dir / CHECKPOINT_DIR / "state.json"
    resuming = state_path.is_file()
    if resuming:
        _check_same_offline_config(run_dir, cfg)
    write_resolved_config(cfg, run_dir, extra={"split": split.to_dict(), "dataset": {"path": str(cfg.dataset), **dataset_identity(ds),
                          "best_return": best_return}, "dt_target_return": target_return})  # fmt: skip
    agent = build_agent(cfg, ds.observation_shape, ds.num_actions, device, target_return)
    rng = np.random.default_rng(cfg.seed)
    step = 0
    history: list[dict[str, Any]] = []
    if resuming:
        state = json.loads(state_path.read_text())
        agent.load(run_dir / CHECKPOINT_DIR)
        step = int(state["step"])
        rng.bit_generator.state = state["rng"]
        history = state.get("eval_history", [])
        if state.get("finished") and step >= cfg.steps:
            return run_dir  # nothing left to do
    if device != "cpu":
        ds.to_device(device)
    windows = cfg.algo in ("dt", "bct")
    tb = SummaryWriter(str(run_dir / "tb"), purge_step=step if resuming else None)
    flag = {"stop": False}
    progress = _progress(cfg, step)
    t0, s0 = time.perf_counter(), step
    losses: dict[str, float] = {}
    stopped_early = False

    def save_checkpoint(finished: bool) -> None:
        d = run_dir / CHECKPOINT_DIR
        agent.save(d)
        tmp = d / "state.json.tmp"
        tmp.write_text(json.dumps({"step": step, "rng": rng.bit_generator.state, "finished": finished, "eval_history": history, "time": time.time()}))
        tmp.replace(d / "state.json")

    def evaluate_now() -> bool:
        """Evaluate on training and validation levels; True when early stopping says stop."""
        row: dict[str, Any] = {"step": step}
        for which, key in (("train", "train_levels"), ("validation", "validation_levels")):
            if which == "validation" and not split.validation:
                continue
            r = evaluate_on_levels(agent, split, which, episodes=cfg.eval.episodes, seed=cfg.seed, num_envs=cfg.eval_num_envs)
            tb.add_scalar(f"eval/{key}/mean_return", r.mean_return, step)
            if r.mean_normalized is not None:
                tb.add_scalar(f"eval/{key}/mean_normalized", r.mean_normalized, step)
            row[which] = r.mean_return
        history.append(row)
        patience = cfg.eval.early_stopping_patience
        if patience and "validation" in row:
            best_at = max(range(len(history)), key=lambda i: history[i].get("validation", -np.inf))
            if len(history) - 1 - best_at >= patience:
                return True
        return False

    with stop_on_signals(flag):
        try:
            while step < cfg.steps and not flag["stop"]:
                batch = ds.sample_windows(cfg.batch_size, cfg.context_length, rng) if windows else ds.sample_transitions(cfg.batch_size, rng)
                losses = agent.update(batch)
                step += 1
                if step % 50 == 0 or step == cfg.steps:
                    rate = (step - s0) / max(time.perf_counter() - t0, 1e-9)
                    for k, v in losses.items():
                        tb.add_scalar(f"train/{k}", v, step)
                    tb.add_scalar("time/updates_per_second", rate, step)
                    if progress is not None:
                        loss = next(iter(losses.values()), float("nan"))
                        progress[0].update(progress[1], completed=step, rate=f"{rate:,.1f}", loss=f"{loss:.4f}")
                if cfg.eval.enabled and step % cfg.eval.every_steps == 0:
                    if evaluate_now():
                        stopped_early = True
                        break
                if step % cfg.checkpoint_every == 0:
                    save_checkpoint(finished=False)
        finally:
            if progress is not None:
                progress[0].stop()
            tb.flush()
    finished = step >= cfg.steps or stopped_early
    save_checkpoint(finished=finished)
    if finished:
        agent.save(run_dir / MODEL_DIR)
    tb.close()
    if flag["stop"] and not finished:
        raise TrainingInterrupted(f"stopped by signal at step {step:,}; checkpoint saved in {run_dir / CHECKPOINT_DIR}; run the same command again to resume")
    return run_dir


def _progress(cfg: OfflineConfig, completed: int) -> Any:
    if not cfg.progress:
        return None
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    p = Progress(TextColumn(f"[bold]{cfg.algo.upper()}[/] {Path(cfg.dataset).name}"), BarColumn(), MofNCompleteColumn(),
                 TextColumn("{task.fields[rate]} updates/s  loss {task.fields[loss]}"), TimeRemainingColumn())  # fmt: skip
    p.start()
    return p, p.add_task("train", total=cfg.steps, completed=completed, rate="-", loss="-")


def _check_same_offline_config(run_dir: Path, cfg: OfflineConfig) -> None:
    import yaml

    saved = yaml.safe_load((run_dir / "config.yaml").read_text()) or {}
    saved.pop("resolved", None)
    now = config_to_dict(cfg)
    diff = sorted(k for k in set(saved) | set(now) if k not in {"steps", "progress", "device"} and saved.get(k) != now.get(k))
    if diff:
        raise RlgenError(f"{run_dir} holds a run with a different config (keys differ: {', '.join(diff)}); use another out_dir")


def load_offline_agent(run_dir: str | Path, device: str = "auto") -> D3rlpyAgent | TorchAgent:
    """The trained agent of an offline run directory (its final model, else its latest checkpoint)."""
    import yaml

    from rlgen.config import validate_config

    run = Path(run_dir)
    data = yaml.safe_load((run / "config.yaml").read_text()) or {}
    resolved = data.pop("resolved", {})
    cfg = validate_config(data, OfflineConfig, source=str(run / "config.yaml"))
    from rlgen.data import load_dataset

    ds = load_dataset(cfg.dataset)
    agent = build_agent(cfg, ds.observation_shape, ds.num_actions, resolve_device(device), float(resolved.get("dt_target_return", 0.0)))
    source = run / MODEL_DIR if (run / MODEL_DIR).is_dir() else run / CHECKPOINT_DIR
    if not source.is_dir():
        raise RlgenError(f"{run} has no trained model yet (no {MODEL_DIR}/ or {CHECKPOINT_DIR}/)")
    agent.load(source)
    return agent
