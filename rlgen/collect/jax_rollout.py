"""``rlgen collect`` for ``ppo_jax`` runs (and random actions on xland envs): rolled out on device.

The skill semantics are those of ``rlgen.collect.skills``: ``expert`` is the last
ladder rung of a ``ppo_jax`` run, ``medium`` the earlier rung whose train-level return is nearest
``medium_fraction`` of the expert's, ``mixed`` draws expert or medium per episode (expert with
probability ``mixed_expert_fraction``), ``random`` acts uniformly. ``num_envs`` envs step together
in a jitted ``lax.scan`` of ``chunk_steps`` steps; the host cuts the chunk into complete episodes
(observations with the final one) and streams them to ``rlgen.data.DatasetWriter`` (what
``write_dataset`` uses; the writer lets the per-policy returns join the manifest at the end). As in the
generic collector, whether an episode is kept never depends on its length: every episode that starts
before the target is reached runs to its end and is kept.

Collection is a function of the config alone (seeded). An interrupted collection is redone from
the start on the next run (it takes seconds to minutes on device); a finished one is left as is.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from rlgen.agents.ppo_jax import JaxPPOAgent
from rlgen.agents.run_dir import run_dir_lock
from rlgen.atomic_files import remove_temporaries
from rlgen.collect.manifest import check_collect_config, check_out_dir_is_a_directory, dataset_manifest
from rlgen.collect.skills import check_policies, check_policy_env, resolve_skill
from rlgen.data import DatasetWriter, Episode
from rlgen.data.format import MANIFEST, SHARD_DIR
from rlgen.devices import jax_device
from rlgen.envs.xland import LevelSampler, jax_env_for_split, rulesets_info
from rlgen.progress import ProgressBar

#: Steps per env per device call.
CHUNK_STEPS = 128


@lru_cache(maxsize=8)
def _rollout_program(jenv: Any, network: Any, num_envs: int, steps: int, deterministic: bool, expert_prob: float) -> Any:
    """``chunk(params (2 policies), carry, sampler) -> (carry, traj)``. ``carry`` = (state, obs, choice,
    rng); ``choice`` is each env's policy for its current episode (0 = first, 1 = second; drawn at
    every episode start with P(0) = ``expert_prob``). ``network=None``: uniform random actions."""
    import jax  # noqa: PLC0415

    jnp = jax.numpy

    def chunk(params: Any, carry: Any, sampler: Any) -> Any:
        def step(carry: Any, _: Any) -> Any:
            state, obs, choice, rng = carry
            rng, k_act, k_choice = jax.random.split(rng, 3)
            if network is None:
                action = jax.random.randint(k_act, (num_envs,), 0, jenv.num_actions)
            else:
                logits0, _ = network.apply(params[0], obs)
                logits1, _ = network.apply(params[1], obs)
                logits = jnp.where((choice == 0)[:, None], logits0, logits1)
                action = jnp.argmax(logits, -1) if deterministic else jax.random.categorical(k_act, logits)
            out = jax.vmap(lambda s, a: jenv.step_autoreset(s, a, sampler))(state, action)
            done = out["terminated"] | out["truncated"]
            new_choice = jnp.where(jax.random.uniform(k_choice, (num_envs,)) < expert_prob, 0, 1)
            record = {"obs": obs, "action": action, "reward": out["reward"], "terminated": out["terminated"],
                      "truncated": out["truncated"], "final_obs": out["final_obs"], "level": out["level"], "choice": choice}
            return (out["state"], out["obs"], jnp.where(done, new_choice, choice), rng), record

        return jax.lax.scan(step, carry, None, length=steps)

    return jax.jit(chunk)


def _load_agents(cfg: Any, specs: list[dict[str, Any]], split: Any) -> list[JaxPPOAgent]:
    """The ``ppo_jax`` agents behind ``specs`` (none for random), checked against ``split``."""
    if [s["label"] for s in specs] == ["random"]:
        return []
    agents = [JaxPPOAgent.load(Path(cfg.policy_run) / s["checkpoint"], device=cfg.device) for s in specs]
    for a in agents:
        a.check_env(split)
    return agents


def _episodes(cfg: Any, split: Any, specs: list[dict[str, Any]], stats: dict[str, Any], agents: list[Any] | None = None) -> Iterator[Any]:
    """Complete episodes in a fixed order (by end step, then env): every episode that starts before the
    target is reached. ``agents``: ``_load_agents``' (loaded here when not given)."""
    import jax  # noqa: PLC0415

    jenv = jax_env_for_split(split)
    levels = split.levels("train").first(cfg.levels) if cfg.levels else split.levels("train")
    sampler = LevelSampler.from_levels(levels)
    labels = [s["label"] for s in specs]
    if labels == ["random"]:
        network, params = None, (None, None)
    else:
        agents = agents if agents is not None else _load_agents(cfg, specs, split)
        network = agents[0].network  # same architecture for every rung of a run
        params = (agents[0].params, agents[-1].params)
    expert_prob = cfg.mixed_expert_fraction if len(labels) == 2 else 1.0
    n = cfg.num_envs
    program = _rollout_program(jenv, network, n, CHUNK_STEPS, cfg.deterministic, expert_prob)
    rng = jax.random.PRNGKey(cfg.seed)
    rng, k_reset, k_choice = jax.random.split(rng, 3)
    state, obs = jax.vmap(lambda k: jenv.reset_sampled(k, sampler))(jax.random.split(k_reset, n))
    choice = jax.numpy.where(jax.random.uniform(k_choice, (n,)) < expert_prob, 0, 1)
    carry = (state, obs, choice, rng)
    # Which episodes are kept must not depend on their length (as in rlgen.collect.rollout): an episode is
    # recorded if it *starts* while the target is not met, and every recorded episode runs to its end.
    # Transitions: episodes start until the finished ones hold the target, then the running ones finish
    # (at most one more episode per env). Episodes: exactly the target number start.
    target_transitions, target_episodes = cfg.transitions, cfg.episodes
    started = 0

    def may_start() -> bool:
        if target_episodes is not None:
            return started < target_episodes
        return stats["transitions"] < target_transitions

    recording = np.zeros(n, dtype=bool)
    for i in range(n):
        recording[i] = may_start()
        started += int(recording[i])
    # per recording env: the steps of its running episode from earlier chunks
    partial: list[list[dict[str, np.ndarray]]] = [[] for _ in range(n)]
    while recording.any():
        carry, traj = program(params, carry, sampler)
        traj = jax.device_get(traj)
        done = traj["terminated"] | traj["truncated"]  # (T, N)
        start = np.zeros(n, dtype=np.int64)
        steps, envs = np.nonzero(done)  # time-major: episodes end in time order, envs in index order
        for t in np.unique(steps):
            ended = envs[steps == t]
            for i in ended:
                if recording[i]:
                    parts = partial[i] + [{k: v[start[i] : t + 1, i] for k, v in traj.items()}]
                    cat = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
                    episode = Episode(
                        obs=np.concatenate([cat["obs"], cat["final_obs"][-1:]]).astype(np.uint8),
                        actions=cat["action"].astype(np.int64), rewards=cat["reward"].astype(np.float32),
                        terminated=cat["terminated"].astype(bool), truncated=cat["truncated"].astype(bool),
                        level=int(cat["level"][0]), policy=labels[int(cat["choice"][0])] if len(labels) == 2 else labels[0],
                    )  # fmt: skip
                    stats["episodes"] += 1
                    stats["transitions"] += episode.length
                    if stats.get("progress") is not None:
                        stats["progress"](episode.length)
                    yield episode
                partial[i] = []
                start[i] = t + 1
            for i in ended:  # the next episodes start at t + 1
                recording[i] = may_start()
                started += int(recording[i])
        for i in np.flatnonzero(recording & (start < CHUNK_STEPS)):
            partial[i].append({k: v[start[i] :, i] for k, v in traj.items()})


def collect_jax(cfg: Any) -> Path:
    """Collect the dataset ``cfg`` (a ``CollectConfig`` with an ``xland/...`` env) describes; returns its directory.
    One collection per ``out_dir`` at a time, as the generic collector (its lock)."""
    root = Path(cfg.out_dir or f"data/{cfg.name}")
    check_out_dir_is_a_directory(root)
    with run_dir_lock(root):
        return _collect_jax_locked(cfg, root)


def _collect_jax_locked(cfg: Any, root: Path) -> Path:
    import jax  # noqa: PLC0415

    check_collect_config(root, cfg, write=False)  # the generic collector's rule: same config resumes, another is refused
    if (root / MANIFEST).is_file():
        return root  # already collected with this config
    # as in the generic collector, everything is checked before anything is written
    split = cfg.level_split()
    jenv = jax_env_for_split(split)
    specs = resolve_skill(cfg)
    check_policies(cfg, specs)
    check_policy_env(cfg, split)
    agents = _load_agents(cfg, specs, split)
    device = jax_device(cfg.device)
    check_collect_config(root, cfg)
    unit, total = ("transitions", cfg.transitions) if cfg.transitions is not None else ("episodes", cfg.episodes)
    progress = ProgressBar(f"[bold]collect[/] {cfg.name} ({cfg.skill})", total=total, unit=unit, enabled=cfg.progress)
    stats: dict[str, Any] = {"episodes": 0, "transitions": 0,
                             "progress": lambda length: progress.update(advance=length if unit == "transitions" else 1)}  # fmt: skip
    t0 = time.perf_counter()
    if (root / SHARD_DIR).is_dir():  # an interrupted collection: redo it from the start
        for f in (root / SHARD_DIR).glob("shard_*.zst"):
            f.unlink()
        remove_temporaries(root / SHARD_DIR)
    try:
        with jax.default_device(device):
            writer = DatasetWriter(root, {"action_space": {"n": int(jenv.num_actions)}}, shard_transitions=cfg.shard_transitions)
            rows: list[dict[str, Any]] = []
            for e in _episodes(cfg, split, specs, stats, agents):
                rows.append({"policy": e.policy, "return": e.total_return})
                writer.add(e)
            levels = split.levels("train").first(cfg.levels) if cfg.levels else split.levels("train")
            writer.manifest = dataset_manifest(
                cfg, split, specs, rows, {"shape": list(jenv.obs_shape), "dtype": "uint8"}, int(jenv.num_actions),
                {"levels": levels.describe(), "num_envs": cfg.num_envs, "seed": cfg.seed, unit: total, "device": str(device),
                 "seconds": time.perf_counter() - t0},
                rulesets=rulesets_info(split),
            )  # fmt: skip
            writer.close()  # shards, then episodes.jsonl, then manifest.json
    finally:
        progress.close()
    return root
