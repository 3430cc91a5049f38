"""Offline agents behind one interface, and the offline training loop.

* BC, BCQ, CQL: d3rlpy's discrete implementations (``DiscreteBC``, ``DiscreteBCQ``,
  ``DiscreteCQL``) with rlgen's encoders through ``RlgenEncoderFactory``. We drive each
  algorithm's ``impl.update`` with batches from rlgen's out-of-core sampler, built straight into
  d3rlpy's ``TorchMiniBatch`` (uint8 observations, no float copy on the host), instead of d3rlpy's
  replay buffer, which would hold every transition in Python objects in RAM (see README, "Offline agents").
* IQL (discrete), BCT and Decision Transformer: rlgen's own PyTorch (``rlgen.agents.iql``,
  ``rlgen.agents.bct``, ``rlgen.agents.dt``; BCT and DT share ``rlgen.agents.transformer``). d3rlpy
  has no discrete IQL or BCT, and its discrete DT cannot mask padding out of its loss.

Every agent has ``update(batch) -> losses``, ``act(obs, deterministic=, keys=)``, ``save(dir)``,
``load(dir)``, ``training_state()``; DT and BCT are *episodic* (``reset(keys)``, ``observe(keys,
rewards)``): evaluation tells them where episodes start and what rewards arrived.

A run directory holds ``config.yaml``, ``checkpoints/latest/`` (model file + ``state.json``: step,
sampler and torch RNG states, agent counters, evaluation history) and, once finished, ``model/``;
both directories are written as units (``rlgen.agents.offline_checkpoint``), so resuming after a
kill continues bit for bit as if never stopped.
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
from rlgen.agents.offline_checkpoint import STATE, decode_bytes, encode_bytes, load_into, load_weights, read_state, recover_unit, write_unit
from rlgen.agents.quiet import silence_gym_banner
from rlgen.agents.run_dir import locks_run_dir
from rlgen.config import OfflineConfig, config_to_dict, write_resolved_config
from rlgen.errors import ConfigError, RlgenError
from rlgen.run_identity import dataset_identity

silence_gym_banner()

import d3rlpy  # noqa: E402
from d3rlpy.models.encoders import EncoderFactory  # noqa: E402
from d3rlpy.torch_utility import TorchMiniBatch  # noqa: E402

D3RLPY_ALGOS = ("bc", "bcq", "cql")
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
    """BC, BCQ or CQL from d3rlpy, updated with rlgen batches.

    Files: ``model.d3``, d3rlpy's format (``{module name: state dict}``, optimizer included), written
    and read here so that reading is weights-only whatever torch's default.
    """

    MODEL_FILE = "model.d3"

    def __init__(self, cfg: OfflineConfig, observation_shape: tuple[int, ...], num_actions: int, device: str, encoder: str) -> None:
        _register_factory()
        self.kind = cfg.algo
        self.device = device
        common = {"batch_size": cfg.batch_size, "learning_rate": cfg.learning_rate}
        if cfg.algo == "bc":
            # beta=0: plain cross-entropy, as in the reference study (d3rlpy's default adds a logit penalty)
            conf: Any = d3rlpy.algos.DiscreteBCConfig(**common, encoder_factory=RlgenEncoderFactory(encoder), beta=0.0)
        elif cfg.algo == "bcq":
            # beta: the imitator's logit penalty, the reference's `i_loss + 1e-2 * logits**2` (d3rlpy's default is 0.5)
            conf = d3rlpy.algos.DiscreteBCQConfig(**common, gamma=cfg.gamma, encoder_factory=RlgenEncoderFactory(encoder), beta=cfg.bcq_beta,
                                                  action_flexibility=cfg.bcq_threshold, target_update_interval=cfg.target_update_interval)  # fmt: skip
        elif cfg.algo == "cql":
            conf = d3rlpy.algos.DiscreteCQLConfig(**common, gamma=cfg.gamma, encoder_factory=RlgenEncoderFactory(encoder),
                                                  alpha=cfg.cql_alpha, target_update_interval=cfg.target_update_interval)  # fmt: skip
        else:
            raise ValueError(f"D3rlpyAgent runs {', '.join(D3RLPY_ALGOS)}, not {cfg.algo!r}")
        self.algo = conf.create(device=device)
        self.algo.create_impl(observation_shape, num_actions)
        self.episodic = False
        self._generator = torch.Generator().manual_seed(cfg.seed)  # BC's sampled actions

    def update(self, batch: dict[str, Any]) -> dict[str, float]:
        t = {k: torch.as_tensor(np.asarray(v) if not torch.is_tensor(v) else v, device=self.device) for k, v in batch.items()}
        step = self.algo.grad_step  # d3rlpy schedules target copies on it: part of the checkpoint
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

    def act(self, obs: np.ndarray, deterministic: bool = False, keys: Sequence[int] | None = None) -> np.ndarray:
        """BC samples from its softmax policy unless ``deterministic`` (d3rlpy's ``predict`` is always the
        argmax, and a greedy imitation policy loops forever in partially observed levels: on DoorKey-6x6
        a BC agent measured 0.37 greedy vs 0.94 sampled). BCQ and CQL act greedily on their Q-values
        either way."""
        if self.kind == "bc" and not deterministic:
            with torch.no_grad():
                logits = self.algo.impl._modules.imitator(torch.as_tensor(np.asarray(obs), device=self.device)).logits  # (B, A)
                probs = torch.softmax(logits.float(), dim=-1)
                return torch.multinomial(probs.cpu(), 1, generator=self._generator).squeeze(1).numpy().astype(np.int64)
        return np.asarray(self.algo.predict(np.asarray(obs)), dtype=np.int64)

    def reseed(self, seed: int) -> None:
        """Evaluation's seeding hook (``rlgen.evaluation``): BC samples from its own generator."""
        self._generator.manual_seed(seed)

    def reset(self, keys: Sequence[int]) -> None:
        """Not episodic: nothing to do."""

    def observe(self, keys: Sequence[int], rewards: np.ndarray) -> None:
        """Not episodic: nothing to do."""

    # persistence ---------------------------------------------------------------------------------
    def _modules(self) -> dict[str, Any]:
        return self.algo.impl.modules.create_checkpointer(self.device).modules  # name -> nn.Module or optimizer wrapper

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        tmp = directory / (self.MODEL_FILE + ".tmp")
        torch.save({k: v.state_dict() for k, v in self._modules().items()}, tmp)
        tmp.replace(directory / self.MODEL_FILE)

    def load(self, directory: Path, with_optimizer: bool = True) -> None:
        path = directory / self.MODEL_FILE
        saved = load_weights(path, self.device)

        def restore() -> None:
            for k, v in self._modules().items():
                if with_optimizer or isinstance(v, torch.nn.Module):
                    v.load_state_dict(saved[k])

        load_into(path, f"{self.kind} model", restore)

    def training_state(self) -> dict[str, Any]:
        """Counters beside the weights that a resumed run needs (JSON)."""
        return {"grad_step": int(self.algo.grad_step), "sampler": encode_bytes(self._generator.get_state())}

    def restore_training_state(self, state: dict[str, Any]) -> None:
        self.algo.set_grad_step(int(state["grad_step"]))
        self._generator.set_state(decode_bytes(state["sampler"]))


OLD_DT_MESSAGE = (
    "{path}: this Decision Transformer was trained by an older rlgen with d3rlpy's DT, which acted with timesteps "
    "shifted by one from training and averaged its loss over padding; it cannot be evaluated faithfully: "
    "retrain it with this rlgen (same config, a new out_dir)"
)


class TorchAgent:
    """IQL, BCT or DT: rlgen's own PyTorch implementations. Files: ``model.pt`` (the state dict, weights only)."""

    MODEL_FILE = "model.pt"

    def __init__(self, cfg: OfflineConfig, observation_shape: tuple[int, ...], num_actions: int, device: str, encoder: str, target_return: float) -> None:
        self.kind = cfg.algo
        self.greedy = False  # act greedily even when the caller asks for samples
        if cfg.algo == "iql":
            from rlgen.agents.iql import DiscreteIQL

            self.impl: Any = DiscreteIQL(observation_shape, num_actions, encoder=encoder, learning_rate=cfg.learning_rate, gamma=cfg.gamma,
                                         expectile=cfg.iql_expectile, temperature=cfg.iql_temperature, tau=cfg.iql_tau,
                                         target_update=cfg.iql_target_update, target_update_interval=cfg.target_update_interval,
                                         device=device, seed=cfg.seed)  # fmt: skip
            self.greedy = cfg.iql_deterministic  # the reference evaluates IQL by its policy's mode
        else:
            from rlgen.agents.bct import BCTransformer
            from rlgen.agents.dt import DecisionTransformer

            cls = DecisionTransformer if cfg.algo == "dt" else BCTransformer
            extra = {"target_return": target_return} if cfg.algo == "dt" else {}
            self.impl = cls(observation_shape, num_actions, encoder=encoder, context_length=cfg.context_length, n_layers=cfg.n_layers,
                            n_heads=cfg.n_heads, embed_dim=cfg.embed_dim, learning_rate=cfg.learning_rate,
                            max_timestep=_max_timestep(cfg), device=device, seed=cfg.seed, **extra)  # fmt: skip
        self.episodic = bool(getattr(self.impl, "episodic", False))

    @property
    def target_return(self) -> float:
        """DT: the return new episodes are conditioned on (settable between episodes)."""
        return float(getattr(self.impl, "target_return", 0.0))

    @target_return.setter
    def target_return(self, value: float) -> None:
        self.impl.target_return = float(value)

    def update(self, batch: dict[str, Any]) -> dict[str, float]:
        return {k if k.startswith("loss") else f"loss/{k}": float(v) for k, v in self.impl.update(batch).items()}

    def act(self, obs: np.ndarray, deterministic: bool = False, keys: Sequence[int] | None = None) -> np.ndarray:
        deterministic = deterministic or self.greedy
        if self.episodic:
            return np.asarray(self.impl.act(obs, deterministic=deterministic, keys=keys), dtype=np.int64)
        return np.asarray(self.impl.act(obs, deterministic=deterministic), dtype=np.int64)

    def reseed(self, seed: int) -> None:
        """Evaluation's seeding hook (``rlgen.evaluation``): IQL, BCT and DT sample from their own generator."""
        self.impl.generator.manual_seed(seed)

    def reset(self, keys: Sequence[int]) -> None:
        if self.episodic:
            self.impl.reset(keys)

    def observe(self, keys: Sequence[int], rewards: np.ndarray) -> None:
        if self.episodic:
            self.impl.observe(keys, rewards)

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        tmp = directory / (self.MODEL_FILE + ".tmp")
        torch.save(self.impl.state_dict(), tmp)
        tmp.replace(directory / self.MODEL_FILE)

    def load(self, directory: Path, with_optimizer: bool = True) -> None:
        path = directory / self.MODEL_FILE
        old = directory / D3rlpyAgent.MODEL_FILE
        if self.kind == "dt" and not path.is_file() and old.is_file():
            raise RlgenError(OLD_DT_MESSAGE.format(path=old))
        state = load_weights(path, "cpu")
        load_into(path, f"{self.kind} model", lambda: self.impl.load_state_dict(state, with_optimizer=with_optimizer))

    def training_state(self) -> dict[str, Any]:
        return {}  # everything is in the state dict

    def restore_training_state(self, state: dict[str, Any]) -> None:
        pass


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
        return D3rlpyAgent(cfg, observation_shape, num_actions, device, encoder)
    return TorchAgent(cfg, observation_shape, num_actions, device, encoder, target_return)


# --- the training loop ---------------------------------------------------------------------------------


@locks_run_dir  # one trainer per run directory: a second one gets a one-line error naming the first
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
    if cfg.batch_size > ds.num_transitions:  # sampling with replacement would allow it, at a cost of GBs for nothing
        raise ConfigError(f"batch_size={cfg.batch_size:,} is larger than the dataset {cfg.dataset!r} ({ds.num_transitions:,} transitions); "
                          f"use batch_size <= {ds.num_transitions:,}")  # fmt: skip
    split = LevelSplit.from_dict(ds.manifest["split"]) if "split" in ds.manifest else cfg.level_split()
    device = resolve_device(cfg.device)
    best_return = float(ds.episodes["return"].max())
    target_return = cfg.dt_target_return if cfg.dt_target_return is not None else cfg.dt_target_return_scale * best_return
    checkpoint = run_dir / CHECKPOINT_DIR
    recover_unit(checkpoint)  # a kill mid-swap leaves the previous checkpoint under another name
    resuming = (checkpoint / STATE).is_file()
    state: dict[str, Any] = {}
    if resuming:
        _check_same_offline_config(run_dir, cfg)
        state = read_state(checkpoint)
    write_resolved_config(cfg, run_dir, extra={"split": split.to_dict(), "dataset": {"path": str(cfg.dataset), **dataset_identity(ds),
                          "best_return": best_return}, "dt_target_return": target_return})  # fmt: skip
    agent = build_agent(cfg, ds.observation_shape, ds.num_actions, device, target_return)
    rng = np.random.default_rng(cfg.seed)
    step = 0
    history: list[dict[str, Any]] = []
    if resuming:
        agent.load(checkpoint)
        step, history = _restore_training_state(checkpoint, state, agent, rng)
        if state.get("finished") and step >= cfg.steps:
            if not (run_dir / MODEL_DIR / agent.MODEL_FILE).is_file():  # killed between the last checkpoint and model/
                write_unit(run_dir / MODEL_DIR, agent.save)
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
        """Model and counters as one unit: every RNG and counter the next updates depend on."""
        state = {"step": step, "rng": rng.bit_generator.state, "finished": finished, "eval_history": history, "time": time.time(),
                 "agent": agent.training_state(), "torch_rng": encode_bytes(torch.get_rng_state())}  # fmt: skip
        if torch.cuda.is_available() and device.startswith("cuda"):
            state["cuda_rng"] = [encode_bytes(s) for s in torch.cuda.get_rng_state_all()]

        def fill(d: Path) -> None:
            agent.save(d)
            (d / STATE).write_text(json.dumps(state))

        write_unit(checkpoint, fill)

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
        write_unit(run_dir / MODEL_DIR, agent.save)
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


def _restore_training_state(checkpoint: Path, state: dict[str, Any], agent: D3rlpyAgent | TorchAgent, rng: np.random.Generator) -> tuple[int, list[dict[str, Any]]]:
    """Put back the sampler, torch RNG and agent counters saved with ``checkpoint``; returns (step, eval history)."""
    try:
        rng.bit_generator.state = state["rng"]
        agent.restore_training_state(state.get("agent", {}))
        if "torch_rng" in state:  # dropout (DT, BCT) draws from the global generator
            torch.set_rng_state(decode_bytes(state["torch_rng"]))
        if "cuda_rng" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all([decode_bytes(s) for s in state["cuda_rng"]])
        return int(state["step"]), list(state.get("eval_history", []))
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        raise RlgenError(f"{checkpoint / STATE} is damaged ({type(e).__name__}: {e}); delete {checkpoint} to restart from step 0") from None


def _read_run_config(run_dir: Path) -> dict[str, Any]:
    import yaml

    path = run_dir / "config.yaml"
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError, UnicodeDecodeError) as e:
        raise RlgenError(f"{path} cannot be read ({str(e).splitlines()[0] if str(e) else type(e).__name__}); is {run_dir} an rlgen run directory?") from None
    if not isinstance(data, dict):
        raise RlgenError(f"{path} is not a mapping of config keys; is {run_dir} an rlgen run directory?")
    return data


def _check_same_offline_config(run_dir: Path, cfg: OfflineConfig) -> None:
    if not (run_dir / "config.yaml").is_file():
        return  # a checkpoint without its config: nothing to compare (the resolved config is written next)
    saved = _read_run_config(run_dir)
    saved.pop("resolved", None)
    now = config_to_dict(cfg)
    diff = sorted(k for k in set(saved) | set(now) if k not in {"steps", "progress", "device"} and saved.get(k) != now.get(k))
    if diff:
        raise RlgenError(f"{run_dir} holds a run with a different config (keys differ: {', '.join(diff)}); use another out_dir")


def load_offline_agent(run_dir: str | Path, device: str = "auto") -> D3rlpyAgent | TorchAgent:
    """The trained agent of an offline run directory (its final model, else its latest checkpoint),
    ready to act. Reads weights only; never modifies the directory."""
    from rlgen.config import validate_config
    from rlgen.data import load_dataset

    run = Path(run_dir)
    data = _read_run_config(run)
    resolved = data.pop("resolved", None) or {}
    cfg = validate_config(data, OfflineConfig, source=str(run / "config.yaml"))
    ds = load_dataset(cfg.dataset)
    agent = build_agent(cfg, ds.observation_shape, ds.num_actions, resolve_device(device), float(resolved.get("dt_target_return", 0.0)))
    # A unit whose swap a kill interrupted is still complete under its ".old" name.
    candidates = [run / MODEL_DIR, run / (MODEL_DIR + ".old"), run / CHECKPOINT_DIR, run / (CHECKPOINT_DIR + ".old")]
    model_files = (agent.MODEL_FILE, D3rlpyAgent.MODEL_FILE)  # an old DT's model.d3 gets its own message from load()
    source = next((d for d in candidates if any((d / f).is_file() for f in model_files)), None)
    if source is None:
        raise RlgenError(f"{run} has no trained model yet (no {MODEL_DIR}/{agent.MODEL_FILE} or {CHECKPOINT_DIR}/{agent.MODEL_FILE})")
    agent.load(source, with_optimizer=False)
    return agent
