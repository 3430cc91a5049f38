"""Offline agents behind one interface (``rlgen.agents.base.OfflineLearner``): building, saving, loading.

* BC, BCQ, CQL: d3rlpy's discrete implementations (``DiscreteBC``, ``DiscreteBCQ``,
  ``DiscreteCQL``) with rlgen's encoders through ``RlgenEncoderFactory``. We drive each
  algorithm's ``impl.update`` with batches from rlgen's out-of-core sampler, built straight into
  d3rlpy's ``TorchMiniBatch`` (uint8 observations, no float copy on the host), instead of d3rlpy's
  replay buffer, which would hold every transition in Python objects in RAM (see README, "Offline agents").
* IQL (discrete), BCT and Decision Transformer: rlgen's own PyTorch (``rlgen.agents.iql``,
  ``rlgen.agents.bct``, ``rlgen.agents.dt``; BCT and DT share ``rlgen.agents.transformer``). d3rlpy
  has no discrete IQL or BCT, and its discrete DT cannot mask padding out of its loss.

Every agent has ``update(batch) -> losses``, ``act(obs, deterministic=, keys=)``, ``save(dir)``,
``load(dir)`` (a classmethod), ``training_state()``; DT and BCT are *episodic* (``reset(keys)``,
``observe(keys, rewards)``): evaluation tells them where episodes start and what rewards arrived.

``save(dir)`` writes the model file and ``agent.json`` (the config, observation shape, action count and
DT's target return), so a model directory loads on its own, without the dataset or the run directory.
Model directories of older rlgen versions have no ``agent.json``: :func:`load_run` rebuilds those from
the run's ``config.yaml`` and the env's spaces. The training loop is ``rlgen.agents.offline_train``.
"""

from __future__ import annotations

import dataclasses
import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rlgen.agents import networks
from rlgen.agents.identity import TrainingProgress
from rlgen.agents.offline_checkpoint import STATE, decode_bytes, encode_bytes, load_into, load_weights
from rlgen.agents.inputs import CHECKPOINT_DIR
from rlgen.agents.quiet import silence_gym_banner
from rlgen.agents.run_dir import config_dict, read_json, read_run_config
from rlgen.atomic_files import write_bytes_atomic
from rlgen.config import OfflineConfig, validate_config
from rlgen.devices import torch_device
from rlgen.envs import LevelSplit, get_suite, make_env
from rlgen.errors import RlgenError
from rlgen.evaluation.episodes import sample_from_uniforms

silence_gym_banner()

import d3rlpy  # noqa: E402
from d3rlpy.models.encoders import EncoderFactory  # noqa: E402
from d3rlpy.torch_utility import TorchMiniBatch  # noqa: E402

D3RLPY_ALGOS = ("bc", "bcq", "cql")
MODEL_DIR = "model"
#: Beside the model file: what the agent is (config, shapes, target return), so the directory loads on its own.
AGENT_FILE = "agent.json"
AGENT_FORMAT = "rlgen.offline/1"


@dataclasses.dataclass()
class RlgenEncoderFactory(EncoderFactory):
    """d3rlpy encoder factory for rlgen's encoders (``networks.ENCODERS``)."""

    name: str = "impala"
    features_dim: int = 0  # 0: the encoder's default (IMPALA 256, Nature 512, MiniGrid 128)
    channels_last: bool = False  # the memory format only (networks.prefers_channels_last)

    def create(self, observation_shape: Sequence[int]) -> torch.nn.Module:
        return networks.make_encoder(self.name, tuple(observation_shape), features_dim=self.features_dim or None, channels_last=self.channels_last)

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


class ModelDirAgent:
    """What both kinds of offline agent share: a model directory (``save``/``load``) of ``MODEL_FILE`` (the
    subclass's ``state_dict()``) and ``agent.json`` (``spec``: config, shapes, target return)."""

    MODEL_FILE = ""
    spec: dict[str, Any]
    #: Set by :func:`load_run`: the loaded model's step and whether its run had finished training.
    progress: TrainingProgress | None = None

    @property
    def observation_shape(self) -> tuple[int, ...]:
        """The shape of one observation the agent takes (its dataset's)."""
        return tuple(int(x) for x in self.spec["observation_shape"])

    def state_dict(self) -> dict[str, Any]:
        raise NotImplementedError

    def save(self, directory: str | Path) -> Path:
        """The model file and ``agent.json`` into ``directory``; returns it."""
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        (d / AGENT_FILE).write_text(json.dumps(self.spec))
        buf = io.BytesIO()
        torch.save(self.state_dict(), buf)
        write_bytes_atomic(d / self.MODEL_FILE, buf.getvalue())
        return d

    @classmethod
    def load(cls, path: str | Path, device: str = "auto") -> Any:
        """The agent ``save(path)`` wrote (weights only, no optimizer state)."""
        agent = load_model_dir(path, device)
        if not isinstance(agent, cls):
            raise RlgenError(f"{path} holds a {agent.kind} model, not a {cls.__name__}")
        return agent


class D3rlpyAgent(ModelDirAgent):
    """BC, BCQ or CQL from d3rlpy, updated with rlgen batches.

    Files: ``model.d3``, d3rlpy's format (``{module name: state dict}``, optimizer included), written
    and read here so that reading is weights-only whatever torch's default.
    """

    MODEL_FILE = "model.d3"

    def __init__(self, cfg: OfflineConfig, observation_shape: tuple[int, ...], num_actions: int, device: str, encoder: str) -> None:
        _register_factory()
        self.spec = _spec(cfg, observation_shape, num_actions, 0.0)
        self.kind = cfg.algo
        self.device = device
        self.num_actions = int(num_actions)
        # no batch_size: d3rlpy only uses it in its own fit loop, and rlgen samples the batches it passes to update()
        common = {"learning_rate": cfg.learning_rate}
        factory = RlgenEncoderFactory(encoder, channels_last=networks.prefers_channels_last(encoder, device))
        if cfg.algo == "bc":
            # beta=0: plain cross-entropy, as in the reference study (d3rlpy's default adds a logit penalty)
            conf: Any = d3rlpy.algos.DiscreteBCConfig(**common, encoder_factory=factory, beta=0.0)
        elif cfg.algo == "bcq":
            # beta: the imitator's logit penalty, the reference's `i_loss + 1e-2 * logits**2` (d3rlpy's default is 0.5)
            conf = d3rlpy.algos.DiscreteBCQConfig(**common, gamma=cfg.gamma, encoder_factory=factory, beta=cfg.bcq_beta,
                                                  action_flexibility=cfg.bcq_threshold, target_update_interval=cfg.target_update_interval)  # fmt: skip
        elif cfg.algo == "cql":
            conf = d3rlpy.algos.DiscreteCQLConfig(**common, gamma=cfg.gamma, encoder_factory=factory,
                                                  alpha=cfg.cql_alpha, target_update_interval=cfg.target_update_interval)  # fmt: skip
        else:
            raise ValueError(f"D3rlpyAgent runs {', '.join(D3RLPY_ALGOS)}, not {cfg.algo!r}")
        self.algo = conf.create(device=device)
        self.algo.create_impl(observation_shape, num_actions)
        self.episodic = False
        self.samples_from_uniforms = True  # evaluation's per-episode draws (rlgen.evaluation.episodes.UniformSampler)
        self.always_greedy = cfg.algo != "bc"  # BCQ and CQL act greedily on their Q-values either way
        self._generator = torch.Generator().manual_seed(cfg.seed)  # BC's sampled actions

    def update(self, batch: dict[str, Any]) -> dict[str, float]:
        t = {k: torch.as_tensor(np.asarray(v) if not torch.is_tensor(v) else v, device=self.device) for k, v in batch.items()}
        step = self.algo.grad_step  # d3rlpy schedules target copies on it: part of the checkpoint
        b = t["actions"].shape[0]
        tb = TorchMiniBatch(
            observations=t["obs"], actions=t["actions"].float().view(b, 1), rewards=t["rewards"].float().view(b, 1),
            next_observations=t["next_obs"], next_actions=torch.zeros(b, 1, device=self.device),
            returns_to_go=torch.zeros(b, 1, device=self.device), terminals=t["terminated"].float().view(b, 1),
            intervals=torch.ones(b, 1, device=self.device), device=self.device,
        )  # fmt: skip
        losses = self.algo.impl.update(tb, step)
        self.algo.set_grad_step(step + 1)
        return {f"loss/{k}": float(v) for k, v in losses.items()}

    def act(self, obs: np.ndarray, deterministic: bool = False, keys: Sequence[int] | None = None,
            uniforms: np.ndarray | None = None) -> np.ndarray:  # fmt: skip
        """BC samples from its softmax policy unless ``deterministic`` (d3rlpy's ``predict`` is always the
        argmax, and a greedy imitation policy loops forever in partially observed levels: on DoorKey-6x6
        a BC agent measured 0.37 greedy vs 0.94 sampled), with ``uniforms`` (one per row, by inverse CDF)
        when given, else with its own generator. BCQ and CQL act greedily on their Q-values either way
        (``always_greedy``)."""
        if self.kind == "bc" and not deterministic:
            with torch.no_grad():
                logits = self.algo.impl._modules.imitator(torch.as_tensor(np.asarray(obs), device=self.device)).logits  # (B, A)
                if uniforms is not None:
                    return sample_from_uniforms(torch.softmax(logits.double(), dim=-1).cpu().numpy(), uniforms)
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

    def state_dict(self) -> dict[str, Any]:
        """What ``model.d3`` holds: d3rlpy's format, ``{module name: state dict}`` (optimizers included)."""
        return {k: v.state_dict() for k, v in self._modules().items()}

    def load_weights(self, directory: Path, with_optimizer: bool = True) -> None:
        """Put the weights (and optimizer state) of ``directory``'s model file into this agent."""
        path = directory / self.MODEL_FILE
        saved = load_weights(path, self.device)
        if with_optimizer:  # d3rlpy only warns and resumes with a fresh Adam: another run than the one checkpointed
            for k, v in self._modules().items():
                if not isinstance(v, torch.nn.Module) and not (isinstance(saved, dict) and isinstance(saved.get(k), dict) and "optim" in saved[k]):
                    raise RlgenError(f"{path} holds no optimizer state for {k!r}, so training cannot resume from it; delete {directory} "
                                     "to restart from step 0 (the file still evaluates)")  # fmt: skip

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


class OwnTorchAgent(ModelDirAgent):
    """IQL, BCT or DT: rlgen's own PyTorch implementations (d3rlpy has no discrete IQL or BCT, and its DT
    cannot mask padding). Files: ``model.pt`` (the state dict, weights only) and ``agent.json``."""

    MODEL_FILE = "model.pt"

    def __init__(self, cfg: OfflineConfig, observation_shape: tuple[int, ...], num_actions: int, device: str, encoder: str, target_return: float) -> None:
        self.spec = _spec(cfg, observation_shape, num_actions, target_return)
        self.num_actions = int(num_actions)
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
                            max_timestep=_max_timestep(cfg), device=device, seed=cfg.seed, encoder_chunk=cfg.encoder_chunk, **extra)  # fmt: skip
        self.episodic = bool(getattr(self.impl, "episodic", False))
        self.samples_from_uniforms = True  # evaluation's per-episode draws (rlgen.evaluation.episodes.UniformSampler)

    @property
    def always_greedy(self) -> bool:
        """IQL with ``iql_deterministic`` acts by its policy's mode whatever evaluation asks: rows say so."""
        return self.greedy

    @property
    def target_return(self) -> float:
        """DT: the return new episodes are conditioned on (settable between episodes)."""
        return float(getattr(self.impl, "target_return", 0.0))

    @target_return.setter
    def target_return(self, value: float) -> None:
        self.impl.target_return = float(value)
        self.spec["target_return"] = float(value)

    def update(self, batch: dict[str, Any]) -> dict[str, float]:
        """One update; the implementation's keys as they are (``loss/...``, ``grad_norm``, ``q/mean``...):
        the training loop logs them under ``train/``."""
        return {k: float(v) for k, v in self.impl.update(batch).items()}

    def act(self, obs: np.ndarray, deterministic: bool = False, keys: Sequence[int] | None = None,
            uniforms: np.ndarray | None = None) -> np.ndarray:  # fmt: skip
        deterministic = deterministic or self.greedy
        if self.episodic:
            return np.asarray(self.impl.act(obs, deterministic=deterministic, keys=keys, uniforms=uniforms), dtype=np.int64)
        return np.asarray(self.impl.act(obs, deterministic=deterministic, uniforms=uniforms), dtype=np.int64)

    def reseed(self, seed: int) -> None:
        """Evaluation's seeding hook (``rlgen.evaluation``): IQL, BCT and DT sample from their own generator."""
        self.impl.generator.manual_seed(seed)

    def reset(self, keys: Sequence[int]) -> None:
        if self.episodic:
            self.impl.reset(keys)

    def observe(self, keys: Sequence[int], rewards: np.ndarray) -> None:
        if self.episodic:
            self.impl.observe(keys, rewards)

    def state_dict(self) -> dict[str, Any]:
        """What ``model.pt`` holds: the implementation's state dict (optimizer included)."""
        return self.impl.state_dict()

    def load_weights(self, directory: Path, with_optimizer: bool = True) -> None:
        """Put the weights (and optimizer state) of ``directory``'s model file into this agent."""
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
    suite, env = cfg.env.split("/", 1)
    return int(get_suite(suite).episode_steps(env, cfg.split.options)) + 1


OfflineAgent = D3rlpyAgent | OwnTorchAgent


def agent_class(algo: str) -> type[OfflineAgent]:
    return D3rlpyAgent if algo in D3RLPY_ALGOS else OwnTorchAgent


def build_agent(cfg: OfflineConfig, observation_shape: tuple[int, ...], num_actions: int, device: str, target_return: float) -> OfflineAgent:
    """A fresh agent of ``cfg.algo`` (seeded by ``cfg.seed``) for observations ``observation_shape`` and ``num_actions`` actions."""
    encoder = networks.encoder_for(cfg.network, cfg.env, cfg.split.options)
    torch.manual_seed(cfg.seed)
    if cfg.algo in D3RLPY_ALGOS:
        return D3rlpyAgent(cfg, observation_shape, num_actions, device, encoder)
    return OwnTorchAgent(cfg, observation_shape, num_actions, device, encoder, target_return)


# --- self-contained model directories -----------------------------------------------------------------


def _spec(cfg: OfflineConfig, observation_shape: tuple[int, ...], num_actions: int, target_return: float) -> dict[str, Any]:
    return {"format": AGENT_FORMAT, "config": config_dict(cfg), "observation_shape": [int(x) for x in observation_shape],
            "num_actions": int(num_actions), "target_return": float(target_return)}  # fmt: skip


def build_from_spec(spec: Any, source: Path, device: str) -> OfflineAgent:
    """The (untrained) agent an ``agent.json`` describes; a malformed one is one ``RlgenError`` naming ``source``."""
    try:
        if not isinstance(spec, dict) or spec.get("format") != AGENT_FORMAT:
            raise ValueError(f"format {spec.get('format') if isinstance(spec, dict) else spec!r}, expected {AGENT_FORMAT!r}")
        shape = tuple(int(x) for x in spec["observation_shape"])
        num_actions, target_return = int(spec["num_actions"]), float(spec["target_return"])
        if not shape or min(shape) < 1 or num_actions < 1:
            raise ValueError(f"observation_shape {list(shape)} and num_actions {num_actions}")
    except (KeyError, TypeError, ValueError) as e:
        raise RlgenError(f"{source} does not describe an rlgen offline agent ({e})") from None
    cfg = validate_config(spec["config"], OfflineConfig, source=str(source))
    return build_agent(cfg, shape, num_actions, torch_device(device), target_return)


def load_model_dir(path: str | Path, device: str = "auto") -> OfflineAgent:
    """The agent a model directory (``model/``, ``checkpoints/latest/``) holds, from its ``agent.json`` and model file."""
    d = Path(path)
    agent = build_from_spec(read_json(d / AGENT_FILE), d / AGENT_FILE, device)
    agent.load_weights(d, with_optimizer=False)
    return agent




# --- run directories -------------------------------------------------------------------------------------


def run_shapes(cfg: OfflineConfig, resolved: dict[str, Any], split: LevelSplit) -> tuple[tuple[int, ...], int]:
    """Observation shape and action count of a run from before ``agent.json``: its dataset's (when the
    resolved config recorded them) or else its env's, which the dataset was collected from."""
    shape, n = resolved.get("observation_shape"), resolved.get("num_actions")
    if isinstance(shape, list) and isinstance(n, int):
        return tuple(int(x) for x in shape), n
    probe = make_env(split, "train", num_envs=1, levels=[split.train.min])
    try:
        return tuple(int(x) for x in probe.single_observation_space.shape), int(probe.single_action_space.n)
    finally:
        probe.close()


#: What ``--checkpoint`` may name in an offline run: its resumable checkpoint (the default is the final model).
LATEST = "latest"


def _latest_state(run: Path) -> dict[str, Any]:
    """``checkpoints/latest/state.json`` (or that of a unit a kill left under ``.old``); ``{}`` when unreadable."""
    for d in (run / CHECKPOINT_DIR, run / (CHECKPOINT_DIR + ".old")):
        try:
            state = json.loads((d / STATE).read_text())
        except (OSError, ValueError, UnicodeDecodeError):
            continue
        if isinstance(state, dict) and isinstance(state.get("step"), int):
            return state
    return {}


def load_run(run_dir: str | Path, checkpoint: str | None = None, device: str = "auto") -> OfflineAgent:
    """The trained agent of an offline run directory, ready to act: its final model (``model/``), else, for a
    run that has not finished, its latest checkpoint; with ``checkpoint="latest"``, the latest checkpoint
    (``checkpoints/latest/``) in any case. Sets ``agent.progress`` (the model's step, whether the run had
    finished). Reads weights only; never modifies the directory; needs no dataset.

    Raises:
        RlgenError: any other ``checkpoint`` (the message lists what the run keeps), or no trained model.
    """
    run = Path(run_dir)
    data = read_run_config(run)
    resolved = data.pop("resolved", None) or {}
    cfg = validate_config(data, OfflineConfig, source=str(run / "config.yaml"))
    cls = agent_class(cfg.algo)
    model_files = (cls.MODEL_FILE, D3rlpyAgent.MODEL_FILE)  # an old DT's model.d3 gets its own message from load_weights()
    # A unit whose swap a kill interrupted is still complete under its ".old" name.
    final = [d for d in (run / MODEL_DIR, run / (MODEL_DIR + ".old")) if any((d / f).is_file() for f in model_files)]
    latest = [d for d in (run / CHECKPOINT_DIR, run / (CHECKPOINT_DIR + ".old")) if any((d / f).is_file() for f in model_files)]
    state = _latest_state(run)
    if checkpoint is not None and checkpoint != LATEST:
        kept = ([f"the final model ({MODEL_DIR}/, the default)"] if final else []) + (
            [f"its latest checkpoint (--checkpoint {LATEST}: {CHECKPOINT_DIR}/, step {state.get('step', '?')})"] if latest else [])  # fmt: skip
        raise RlgenError(f"--checkpoint {checkpoint!r}: no such checkpoint in the offline run {run}; it keeps "
                         f"{' and '.join(kept) or 'no trained model yet'}")  # fmt: skip
    candidates = latest if checkpoint == LATEST else final + latest
    if not candidates:
        raise RlgenError(f"{run} has no trained model yet (no {MODEL_DIR}/{cls.MODEL_FILE} or {CHECKPOINT_DIR}/{cls.MODEL_FILE})")
    source = candidates[0]
    if (source / AGENT_FILE).is_file():
        agent = load_model_dir(source, device)
    else:
        split = LevelSplit.from_dict(resolved["split"]) if "split" in resolved else cfg.level_split()  # written before agent.json existed
        shape, num_actions = run_shapes(cfg, resolved, split)
        agent = build_agent(cfg, shape, num_actions, torch_device(device), float(resolved.get("dt_target_return", 0.0)))
        agent.load_weights(source, with_optimizer=False)
    # model/ is written once training finished, at the step of the last checkpoint (saved with finished=True)
    state_finished = bool(state.get("finished"))
    finished = True if source in final else state_finished
    step = state.get("step") if (source not in final or state_finished) else None
    agent.progress = TrainingProgress(step, finished, total=cfg.steps, stopped_early=bool(state.get("stopped_early")))
    return agent
