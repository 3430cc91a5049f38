"""``rlgen collect``: roll out a policy at a skill level on a split's training levels into a dataset.

``skills`` resolves what ``expert``/``medium``/``mixed``/``random`` mean in a policy run's ladder;
``rollout`` steps any agent's ``act`` in a vector env; ``jax_rollout`` rolls ``ppo_jax`` policies out on
device; ``manifest`` is the one manifest writer. Which collector runs is the policy's algorithm's
(``rlgen.agents.registry``: the generic one unless the algorithm registers its own).

    from rlgen.collect import collect
    collect(load_config("configs/collect/minigrid_doorkey.yaml", ["skill=mixed"], schema=CollectConfig))
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from rlgen.agents import get_algorithm
from rlgen.agents.run_dir import CONFIG, read_run_config
from rlgen.collect.jax_rollout import collect_jax
from rlgen.collect.rollout import collect_rollouts
from rlgen.config import CollectConfig

#: rlgen's own algorithms with a collector of their own (this layer's, so not registered in ``rlgen.agents``);
#: every other algorithm without a registered one gets the generic ``collect_rollouts``.
BUILT_IN_COLLECTORS: dict[str, Callable[[CollectConfig], Path]] = {"ppo_jax": collect_jax}

#: Suites whose envs are JAX functions: uniform random actions on them are drawn on device as well.
JAX_SUITES = ("xland",)


def collector_for(cfg: CollectConfig) -> Callable[[CollectConfig], Path]:
    """The collector of ``cfg``: that of the policy run's algorithm; for ``skill=random`` (no policy run) the
    on-device one on JAX suites, the generic one elsewhere."""
    if cfg.skill == "random":
        return collect_jax if cfg.env.split("/", 1)[0] in JAX_SUITES else collect_rollouts
    if cfg.policy_run is None or not (Path(cfg.policy_run) / CONFIG).is_file():
        return collect_rollouts  # no run there: the generic collector's checks name what is missing
    algorithm = get_algorithm(read_run_config(cfg.policy_run).get("algo", "ppo"), source=str(Path(cfg.policy_run) / CONFIG))
    return algorithm.collector() or BUILT_IN_COLLECTORS.get(algorithm.name, collect_rollouts)


def collect(cfg: CollectConfig) -> Path:
    """Collect (or finish collecting) the dataset ``cfg`` describes; returns its directory.

    Running it again on a finished dataset with the same config does nothing; on an interrupted one it
    resumes; with a different config on the same ``out_dir`` it refuses.
    """
    return collector_for(cfg)(cfg)


__all__ = ["JAX_SUITES", "collect", "collector_for"]
