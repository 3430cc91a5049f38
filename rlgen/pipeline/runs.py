"""Open a run directory (online or offline) as an agent ready to evaluate; splits of a study.

Shared by ``rlgen evaluate`` and the pipeline's evaluation stages.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from rlgen.errors import RlgenError


@dataclasses.dataclass
class LoadedRun:
    """A run directory's agent and what it was trained on.

    Attributes:
        run_dir: the directory it was loaded from.
        algo: ``ppo``, ``ppo_jax`` or the offline algorithm.
        agent: has ``act(obs, deterministic=)`` (and ``reset``/``observe`` for DT and BCT).
        split: the run's resolved LevelSplit (for offline runs: their dataset's, with the training
            levels narrowed to those the data was collected on, so "train" means levels it saw).
        config: the run's validated config (``TrainConfig``, ``JaxPPOConfig`` or ``OfflineConfig``).
        resolved: the ``resolved`` block of its ``config.yaml`` (split, dataset facts...).
        num_actions: size of the discrete action space.
    """

    run_dir: Path
    algo: str
    agent: Any
    split: Any
    config: Any
    resolved: dict[str, Any]
    num_actions: int


def load_run(run_dir: str | Path, checkpoint: str | None = None, device: str | None = None) -> LoadedRun:
    """The agent of ``run_dir`` (its final policy unless ``checkpoint`` names one of a PPO run).

    Raises:
        RlgenError: not a run directory, or no trained model in it yet.
    """
    import yaml

    from rlgen.config import ONLINE_SCHEMAS, schema_for_algo, validate_config
    from rlgen.envs import LevelSet, LevelSplit

    run = Path(run_dir)
    config_path = run / "config.yaml"
    if not config_path.is_file():
        raise RlgenError(f"{str(run)!r} is not a run directory (no config.yaml); pass the out_dir of `rlgen train`")
    try:
        data = yaml.safe_load(config_path.read_text()) or {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        raise RlgenError(f"{config_path} is not readable YAML ({type(e).__name__})") from None
    if not isinstance(data, dict):
        raise RlgenError(f"{config_path}: expected a mapping of config keys, got {type(data).__name__}")
    resolved = data.pop("resolved", {})
    algo = data.get("algo", "ppo")
    cfg = validate_config(data, schema_for_algo(algo, source=str(config_path)), source=str(config_path))
    split = LevelSplit.from_dict(resolved["split"]) if "split" in resolved else cfg.level_split()
    if algo not in ONLINE_SCHEMAS:
        from rlgen.results import dataset_facts

        facts = dataset_facts(resolved) or {}
        if facts.get("train_levels"):
            split = narrow_train_levels(split, LevelSet(facts["train_levels"]))
    device = device or cfg.device
    if algo == "ppo_jax":
        import jax

        from rlgen.agents.ppo_jax import jax_device
        from rlgen.agents.ppo_jax import load_run_agent as load_jax_agent

        jax.config.update("jax_default_device", jax_device(device))
        agent = load_jax_agent(run, checkpoint=checkpoint)
        num_actions = int(agent.num_actions)
    elif algo == "ppo":
        from rlgen.agents.ppo import load_run_agent

        agent: Any = load_run_agent(run, checkpoint=checkpoint, device=device)
        num_actions = agent.num_actions
    else:
        from rlgen.agents.offline import load_offline_agent

        agent = load_offline_agent(run, device=device)
        num_actions = _num_actions(split)
    return LoadedRun(run, algo, agent, split, cfg, resolved, num_actions)


def _num_actions(split: Any) -> int:
    from rlgen.envs import make_env

    probe = make_env(split, "train", num_envs=1, levels=[split.train.min])
    try:
        return int(probe.single_action_space.n)
    finally:
        probe.close()


def study_split(env: str, split: dict[str, Any], first_levels: int | None = None) -> Any:
    """The LevelSplit of ``env`` under a study's ``split`` section (duplicate check included when
    asked for); with ``first_levels``, training levels narrowed to the first N (a dataset collected
    on fewer levels is evaluated on exactly the levels it saw)."""
    from rlgen.config import RlgenConfig, validate_config

    s = validate_config({"env": env, "split": split}, RlgenConfig).level_split()
    if first_levels is None or first_levels >= len(s.train):
        return s
    return narrow_train_levels(s, s.train.first(first_levels))


def narrow_train_levels(split: Any, levels: Any) -> Any:
    """``split`` with training levels ``levels`` (a LevelSet) when they are a strict subset of its
    training levels; ``split`` unchanged otherwise."""
    from rlgen.envs import LevelSplit

    if len(levels) == 0 or len(levels) >= len(split.train) or not levels.issubset(split.train):
        return split
    return LevelSplit.from_dict({**split.to_dict(), "train": str(levels)})


def random_policy(split: Any, seed: int = 0) -> Any:
    """A uniform random policy over ``split``'s action space: the floor every agent must beat."""
    from rlgen.evaluation import RandomPolicy

    return RandomPolicy(_num_actions(split), seed=seed)
