"""The algorithm registry: ``algo`` -> config schema, trainer, loader (and, optionally, evaluator and collector).

``rlgen train``, ``rlgen evaluate``, ``rlgen collect`` and the pipeline decide nothing by algorithm name
themselves: they look the algorithm up here. Adding an algorithm is one module and one call::

    from rlgen.agents import register_algorithm
    register_algorithm("my_bc", "offline", MyConfig, train="my_pkg.bc:train", load="my_pkg.bc:load_run")

Trainers, loaders, evaluators and collectors are given as lazy ``"module:function"`` strings (or the
functions themselves), so registering imports no torch, SB3, d3rlpy or JAX, and a config is checked
against its schema before any of them loads.

* ``train(cfg) -> run directory`` (``rlgen.agents.base.Trainer``): trains, resumes, or finds the run finished.
* ``load(run_dir, checkpoint=None, device="auto") -> agent`` (an ``rlgen.agents.base.Agent``).
* ``evaluate(policy, split, which, episodes, seed, num_envs, deterministic) -> EvalResult``, for the run's
  agent and for the random baseline; default ``rlgen.evaluation.evaluate_on_levels``.
* ``collect(cfg: CollectConfig) -> dataset directory``, rolling out the run's checkpoints; default the
  generic collector (``rlgen.collect.rollout``), which steps any agent's ``act``.
* ``check(cfg) -> None``, optional: light checks of what the run reads (a dataset, the run directory), run by
  :func:`train` before the trainer is imported, so a bad path is one line before torch/d3rlpy/SB3/JAX load.
"""

from __future__ import annotations

import dataclasses
import importlib
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

from rlgen.agents.identity import TrainingProgress, agent_identity, dataset_facts, online_progress
from rlgen.agents.run_dir import inside_run_dir, read_run_config
from rlgen.config import OFFLINE_ALGOS, JaxPPOConfig, OfflineConfig, PPOConfig, RlgenConfig, merge, parse_overrides, read_yaml, validate_config
from rlgen.config.offline import accept_registered_algo
from rlgen.config.offline_jax import JAX_OFFLINE_ALGOS, JaxOfflineConfig
from rlgen.envs import LevelSet, LevelSplit
from rlgen.errors import ConfigError, RlgenError
from rlgen.evaluation import EvalResult, RandomPolicy

Kind = Literal["online", "offline"]
#: A function, or where to find it: ``"package.module:function"`` (imported on first use).
Ref = str | Callable[..., Any]

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


@dataclasses.dataclass(frozen=True)
class Algorithm:
    """One registered algorithm. See the module docstring for what each entry is called with."""

    name: str
    kind: Kind
    schema: type[RlgenConfig]
    train: Ref
    load: Ref
    evaluate: Ref | None = None
    collect: Ref | None = None
    check: Ref | None = None

    def check_inputs(self, cfg: RlgenConfig) -> None:
        """The algorithm's light ``check(cfg)`` (files and directories the run reads), when it has one."""
        if self.check is not None:
            _resolve(self.check, f"{self.name} input check")(cfg)

    def trainer(self) -> Callable[[RlgenConfig], Path]:
        return _resolve(self.train, f"{self.name} trainer")

    def loader(self) -> Callable[..., Any]:
        return _resolve(self.load, f"{self.name} loader")

    def evaluator(self) -> Callable[..., EvalResult]:
        return _resolve(self.evaluate or "rlgen.evaluation.episodes:evaluate_on_levels", f"{self.name} evaluator")

    def collector(self) -> Callable[..., Path] | None:
        """The collector the algorithm registered, or None: then ``rlgen.collect.collector_for`` picks rlgen's own
        (the generic one, or the on-device one for ``ppo_jax``), since ``rlgen.collect`` sits above this layer."""
        return None if self.collect is None else _resolve(self.collect, f"{self.name} collector")


_ALGORITHMS: dict[str, Algorithm] = {}


def _resolve(ref: Ref, what: str) -> Callable[..., Any]:
    if callable(ref):
        return ref
    module, sep, name = str(ref).partition(":")
    if not sep:
        raise RlgenError(f"{what} {ref!r} is not 'package.module:function'")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as e:
        raise RlgenError(f"{what} {ref!r} cannot be imported ({type(e).__name__}: {e})") from None


def register_algorithm(name: str, kind: Kind, schema: type[RlgenConfig], train: Ref, load: Ref, evaluate: Ref | None = None,
                       collect: Ref | None = None, check: Ref | None = None) -> Algorithm:  # fmt: skip
    """Make ``algo: name`` trainable, loadable and evaluable everywhere (CLI, pipeline, Python).

    Args:
        name: lower-case letters, digits and ``_``; registering a name again replaces its entry.
        kind: ``"online"`` (trains on env steps, keeps a skill ladder) or ``"offline"`` (trains on a dataset).
        schema: the config class of its runs (an ``RlgenConfig`` subclass; light: no heavy imports).
        train, load, evaluate, collect, check: functions or ``"module:function"`` strings (module docstring).

    Raises:
        ConfigError: a bad name or kind, or a schema that is not an ``RlgenConfig``.
    """
    if not isinstance(name, str) or not _NAME.match(name):
        raise ConfigError(f"algorithm name {name!r} must be lower-case letters, digits and '_'")
    if kind not in ("online", "offline"):
        raise ConfigError(f"algorithm {name!r}: kind {kind!r} is not one of: online, offline")
    if not (isinstance(schema, type) and issubclass(schema, RlgenConfig)):
        raise ConfigError(f"algorithm {name!r}: schema must be a subclass of rlgen.config.RlgenConfig, got {schema!r}")
    algorithm = Algorithm(name, kind, schema, train, load, evaluate, collect, check)
    _ALGORITHMS[name] = algorithm
    if issubclass(schema, OfflineConfig):  # its `algo` validator accepts the built-in names and these
        accept_registered_algo(schema, name)
    return algorithm


def available_algorithms(kind: Kind | None = None) -> tuple[str, ...]:
    """Registered algorithm names (of ``kind``, when given), in registration order."""
    return tuple(a.name for a in _ALGORITHMS.values() if kind is None or a.kind == kind)


def get_algorithm(algo: Any, source: str = "config") -> Algorithm:
    """The entry of ``algo``; anything else (``algo=[ppo]``, an unknown name) is one ``ConfigError`` listing the algorithms."""
    allowed = ", ".join(_ALGORITHMS)
    if not isinstance(algo, str):
        raise ConfigError(f"{source}: key `algo` = {algo!r}: must be one name, one of: {allowed}")
    if algo not in _ALGORITHMS:
        raise ConfigError(f"{source}: key `algo` = {algo!r}: not one of: {allowed}")
    return _ALGORITHMS[algo]


def schema_for_algo(algo: Any, source: str = "config") -> type[RlgenConfig]:
    """The config schema of ``algo`` (:func:`get_algorithm`'s errors for anything else)."""
    return get_algorithm(algo, source).schema


def train_schema(path: str | Path | None, overrides: Sequence[str]) -> type[RlgenConfig]:
    """The schema ``rlgen train`` validates ``path`` + ``overrides`` against: that of their ``algo`` (default ppo)."""
    data = read_yaml(path) if path is not None else {}
    data = merge(data, parse_overrides(overrides))
    return schema_for_algo(data.get("algo", "ppo"), source=str(path) if path is not None else "config")


def train(cfg: RlgenConfig) -> Path:
    """Train (or resume) the run ``cfg`` describes with its algorithm's trainer; returns the run directory.
    The algorithm's light input check runs first, before the trainer's heavy imports."""
    algorithm = get_algorithm(getattr(cfg, "algo", None))
    algorithm.check_inputs(cfg)
    return algorithm.trainer()(cfg)


# --- loading a run -------------------------------------------------------------------------------------


@dataclasses.dataclass
class LoadedAgent:
    """A run directory's agent, ready to act and be evaluated, with what it was trained on.

    Attributes:
        run_dir: the directory it was loaded from.
        algo: its algorithm (a registry name).
        agent: the agent (``act``, ``num_actions``, ``episodic``; ``reset``/``observe`` for DT and BCT).
        split: the run's LevelSplit (for offline runs: their dataset's, with the training levels narrowed
            to those the data was collected on, so "train" means levels it saw).
        config: the run's validated config (its algorithm's schema).
        resolved: the ``resolved`` block of its ``config.yaml`` (split, dataset facts...).
        checkpoint: the checkpoint loaded (None: the final policy).
        progress: how far training had got (the loaded model's step, whether the run had finished).
    """

    run_dir: Path
    algo: str
    agent: Any
    split: LevelSplit
    config: RlgenConfig
    resolved: dict[str, Any]
    checkpoint: str | None = None
    progress: TrainingProgress | None = None

    @property
    def num_actions(self) -> int:
        return int(self.agent.num_actions)

    @property
    def episodic(self) -> bool:
        return bool(self.agent.episodic)

    def act(self, obs: Any, deterministic: bool = False) -> Any:
        """The agent's actions ``(B,)`` for observations ``(B, *obs_shape)`` (an episodic agent is driven
        by evaluation: give ``loaded.agent`` to ``evaluate_on_levels``, or use :meth:`evaluate`)."""
        return self.agent.act(obs, deterministic=deterministic)

    def identity(self, study: str | None = None, split: LevelSplit | None = None) -> dict[str, Any]:
        """The ``results.jsonl`` identity fields of this agent (run id, study, algorithm, split and config
        digests, dataset facts, training progress...) evaluated on ``split`` (default the run's); ``study``
        labels a run whose ``run.json`` records none."""
        return agent_identity(self.run_dir, self.algo, self.config, self.resolved, split or self.split, checkpoint=self.checkpoint, study=study,
                              progress=self.progress)  # fmt: skip

    def evaluate(self, which: str = "held_out", episodes: int = 100, seed: int = 0, num_envs: int | None = None,
                 deterministic: bool = False, policy: Any = None, split: LevelSplit | None = None) -> EvalResult:  # fmt: skip
        """Evaluate the agent (or ``policy``, e.g. :meth:`random_policy`) on ``split`` (default the run's) with
        its algorithm's evaluator; ``num_envs`` defaults to the run's ``eval_num_envs``."""
        n = num_envs if num_envs is not None else int(getattr(self.config, "eval_num_envs", 16))
        evaluate = get_algorithm(self.algo).evaluator()
        return evaluate(self.agent if policy is None else policy, split or self.split, which, episodes=episodes, seed=seed,
                        num_envs=n, deterministic=deterministic)  # fmt: skip

    def random_policy(self, seed: int = 0) -> RandomPolicy:
        """A uniform random policy over this agent's actions: the floor it must beat."""
        return RandomPolicy(self.num_actions, seed=seed)


def load_agent(run_dir: str | Path, checkpoint: str | None = None, device: str | None = None) -> LoadedAgent:
    """The agent of ``run_dir`` (its final policy unless ``checkpoint`` names one), on ``device`` (default:
    the run's). Reads the run's ``config.yaml``; checkpoints are weights and plain data only.

    Raises:
        RlgenError: not a run directory, an unknown algorithm, or no trained model in it yet.
    """
    run = Path(run_dir)
    data = read_run_config(run)
    resolved = data.pop("resolved", None) or {}
    source = str(run / "config.yaml")
    algorithm = get_algorithm(data.get("algo", "ppo"), source=source)
    cfg = validate_config(data, algorithm.schema, source=source)
    split = LevelSplit.from_dict(resolved["split"]) if "split" in resolved else cfg.level_split()
    if algorithm.kind == "offline":
        facts = dataset_facts(resolved) or {}
        if facts.get("train_levels"):
            split = split.with_train(LevelSet(facts["train_levels"]))
    if checkpoint is not None and algorithm.kind == "online":  # a ladder path error is one line before the loader's heavy imports
        # (offline runs name their checkpoints: latest, model/; their loader says which exist)
        path = inside_run_dir(run, checkpoint, "--checkpoint")
        if not path.exists():
            raise RlgenError(f"--checkpoint {checkpoint!r}: no such file in {run} (rungs are listed in {run / 'ladder.json'})")
    agent = algorithm.loader()(run, checkpoint=checkpoint, device=device or cfg.device)
    check_agent_fits(agent, split, f"{run} ({split.id}, as its config.yaml says)")
    # A loader may say how far the model it loaded had trained (offline runs do); online runs follow the
    # run-directory protocol (checkpoints/state.json, ladder rungs), read here for every online algorithm.
    progress = getattr(agent, "progress", None)
    if not isinstance(progress, TrainingProgress) and algorithm.kind == "online":
        progress = online_progress(run, checkpoint, total=getattr(cfg, "total_steps", None))
    return LoadedAgent(run, algorithm.name, agent, split, cfg, resolved, checkpoint, progress if isinstance(progress, TrainingProgress) else None)


#: rlgen's online trainers' state files (``num_timesteps``, ``finished``: ``rlgen.agents.run_dir.write_state``).
ONLINE_STATE_FILES = {"ppo": "checkpoints/state.json", "ppo_jax": "checkpoints/state.json"}


def train_and_describe(cfg: RlgenConfig, announce: Callable[[str], None] | None = None) -> tuple[Path, str]:
    """``rlgen train``: check ``cfg``'s inputs (writable run directory, datasets: before any heavy import), train
    or resume its algorithm, and say in one line what happened. Returns the run directory and that line.

    ``announce`` is called with one status line once the inputs are checked and before the trainer's heavy
    imports (torch and the algorithm's libraries take seconds), so a user sees at once that the command started."""
    from rlgen.agents.run_dir import check_writable_dir

    algorithm = get_algorithm(cfg.algo)  # type: ignore[attr-defined]
    check_writable_dir(cfg.out_dir)  # the trainers check it too; here it fails before torch loads
    algorithm.check_inputs(cfg)
    if announce is not None:
        on = getattr(cfg, "dataset", None) if algorithm.kind == "offline" else getattr(cfg, "env", None)
        announce(f"rlgen: {cfg.algo}{f' on {on}' if on else ''} -> {cfg.out_dir}: inputs checked; "  # type: ignore[attr-defined]
                 "loading the trainer (torch and its libraries take a few seconds)")
    if algorithm.kind == "offline" and cfg.algo in OFFLINE_ALGOS:  # type: ignore[attr-defined]
        from rlgen.agents.offline_train import training_summary

        before = training_summary(cfg.out_dir)
        run_dir = algorithm.trainer()(cfg)
        after = training_summary(run_dir)
        early = " (stopped early: no better validation return)" if after["stopped_early"] else ""
        if before["finished"] and after["step"] == before["step"]:
            return run_dir, f"nothing to do: {run_dir} finished training at gradient step {after['step']:,}{early}"
        return run_dir, f"trained {cfg.algo} on {cfg.dataset} to gradient step {after['step']:,}{early}; run directory {run_dir}"  # type: ignore[attr-defined]
    if algorithm.kind == "online" and cfg.algo in ONLINE_STATE_FILES:  # type: ignore[attr-defined]
        # the steps the state file records: PPO runs whole rollouts, so it can pass total_steps (4,096 for 4,000)
        from rlgen.agents.run_dir import read_state

        state_file = ONLINE_STATE_FILES[cfg.algo]  # type: ignore[attr-defined]
        before = read_state(cfg.out_dir, state_file)
        run_dir = algorithm.trainer()(cfg)
        after = read_state(run_dir, state_file)
        if before.get("finished") and after.get("num_timesteps") == before.get("num_timesteps"):
            return run_dir, f"nothing to do: {run_dir} finished training at env step {after['num_timesteps']:,}"
        return run_dir, f"trained {cfg.algo} on {cfg.env} to env step {after['num_timesteps']:,}; run directory {run_dir}"  # type: ignore[attr-defined]
    run_dir = algorithm.trainer()(cfg)
    # a registered algorithm's schema need not have rlgen's own budget fields: say what the schema has
    data, budget, unit = (getattr(cfg, "dataset", None), getattr(cfg, "steps", None), "gradient steps") if algorithm.kind == "offline" \
        else (cfg.env, getattr(cfg, "total_steps", None), "env steps")  # fmt: skip
    on = f" on {data}" if data else ""
    amount = f" for {budget:,} {unit}" if isinstance(budget, int) else ""
    return run_dir, f"trained {cfg.algo}{on}{amount}; run directory {run_dir}"  # type: ignore[attr-defined]


def env_spaces(split: LevelSplit) -> tuple[tuple[int, ...], int]:
    """The observation shape and action count of ``split``'s env (one env is made and closed)."""
    from rlgen.envs import make_env

    probe = make_env(split, "train", num_envs=1, levels=[split.train.min])
    try:
        return tuple(int(x) for x in probe.single_observation_space.shape), int(probe.single_action_space.n)
    finally:
        probe.close()


def check_agent_fits(agent: Any, split: LevelSplit, where: str) -> None:
    """Refuse, with one line, an agent whose observations are not those of ``split``'s env, or that chooses among
    more actions than the env has (a run whose config.yaml was edited or emptied, a policy collected or
    evaluated on another view...), instead of a traceback from inside its network or the env. A policy over
    fewer actions (the first ones) acts validly and passes; so do agents that do not say their ``observation_shape``."""
    shape = getattr(agent, "observation_shape", None)
    if shape is None:
        return
    shape, num_actions = tuple(int(x) for x in shape), int(agent.num_actions)
    env_shape, env_actions = env_spaces(split)
    if shape != env_shape or num_actions > env_actions:
        raise RlgenError(f"{where}: the policy takes observations {list(shape)} and {num_actions} actions, the env gives "
                         f"{list(env_shape)} and {env_actions}; it was trained on another env or view (check env and split.options)")  # fmt: skip


# --- rlgen's own algorithms ----------------------------------------------------------------------------

register_algorithm("ppo", "online", PPOConfig, train="rlgen.agents.ppo_sb3:train_ppo", load="rlgen.agents.ppo_sb3:load_run",
                   check="rlgen.agents.inputs:check_ppo_inputs")
register_algorithm("ppo_jax", "online", JaxPPOConfig, train="rlgen.agents.ppo_jax.train:train_ppo_jax", load="rlgen.agents.ppo_jax.agent:load_run",
                   evaluate="rlgen.agents.ppo_jax.agent:evaluate", check="rlgen.agents.inputs:check_ppo_jax_inputs")  # its on-device collector: rlgen.collect.BUILT_IN_COLLECTORS  # fmt: skip
for _algo in OFFLINE_ALGOS:
    register_algorithm(_algo, "offline", OfflineConfig, train="rlgen.agents.offline_train:train_offline", load="rlgen.agents.offline:load_run",
                       check="rlgen.agents.inputs:check_offline_inputs")  # fmt: skip
for _algo in JAX_OFFLINE_ALGOS:  # bc_jax, iql_jax, cql_jax, dt_jax, bct_jax, bcq_jax: seeds vmapped in one process, pip extra rlgen[jax]
    register_algorithm(_algo, "offline", JaxOfflineConfig, train="rlgen.agents.offline_jax.train:train_offline_jax",
                       load="rlgen.agents.offline_jax.run:load_run", evaluate="rlgen.agents.offline_jax.agent:evaluate")  # fmt: skip
