"""``rlgen train`` of the JAX offline agents: every seed of ``seeds`` in one process, one jitted ``lax.scan`` of
updates vmapped over seeds, the dataset on device; each seed its own run directory (``rlgen.agents.offline_jax.run``).

The host syncs between chunks of updates; chunks end at the multiples of ``sync_every``, ``checkpoint_every``
and ``eval.every_steps`` and at ``steps``, so where they end is a function of the update count alone, and a run
resumed from a checkpoint (after SIGINT/SIGTERM, saved at once, or a SIGKILL, from the last checkpoint) runs
the same programs on the same states as one never stopped: bit-identical (tested).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from rlgen.agents.offline_jax import core
from rlgen.agents.offline_jax.agent import JaxOfflineAgent, evaluate, read_checkpoint, write_checkpoint
from rlgen.agents.offline_jax.data import to_device
from rlgen.agents.offline_jax.networks import check_grid
from rlgen.agents.offline_jax.run import (
    COMMIT,
    MODEL_FILE,
    check_same_seeds,
    commit,
    keep_only,
    members_of,
    read_commit,
    step_file,
    write_group,
)
from rlgen.agents.run_dir import check_same_config, config_dict, interrupted, locks_run_dir, stop_on_signals, tensorboard_writer, write_resolved_config
from rlgen.config.offline_jax import JaxOfflineConfig
from rlgen.data import dataset_identity, load_dataset
from rlgen.devices import jax_device
from rlgen.envs import LevelSplit, get_suite
from rlgen.errors import ConfigError, RlgenError
from rlgen.progress import ProgressBar

#: Config keys a resumed run may change: how long, how it shows progress, where it runs.
RESUME_NEUTRAL_KEYS = ("steps", "progress", "device", "logger", "wandb")


def check_symbolic(cfg: JaxOfflineConfig, ds: Any) -> None:
    """The JAX agents train on small symbolic grids; image datasets stay on the torch agents (one line saying why)."""
    shape = ds.observation_shape
    suite, env = cfg.env.split("/", 1)
    encoder = cfg.network if cfg.network != "auto" else get_suite(suite).default_encoder(env, dict(cfg.split.options))
    if encoder != "minigrid_cnn":
        raise ConfigError(f"dataset {cfg.dataset!r} holds {'x'.join(map(str, shape))} image observations ({cfg.env}, network {encoder}); the JAX "
                          f"offline agents train on small symbolic grids (XLand-MiniGrid, its MiniGrid ports, MiniGrid's symbolic view): "
                          f"use the torch agent (algo: {cfg.torch_algo}); XLA's CPU convolutions are ~60x slower inside the training loop")  # fmt: skip
    check_grid(shape)


def member_config(cfg: JaxOfflineConfig, seed: int, out_dir: Path) -> JaxOfflineConfig:
    """Seed ``seed``'s own config: the group's with ``seed``, no ``seeds``, and its directory as ``out_dir``."""
    return JaxOfflineConfig.model_validate({**config_dict(cfg), "seed": seed, "seeds": None, "out_dir": str(out_dir)})


def chunk_ends(step: int, cfg: JaxOfflineConfig) -> int:
    """Where the chunk starting after ``step`` updates ends: the next multiple of sync_every, checkpoint_every or
    eval.every_steps (when evaluating), or ``steps``."""
    every = [cfg.sync_every, cfg.checkpoint_every] + ([cfg.eval.every_steps] if cfg.eval.enabled else [])
    return min([cfg.steps] + [(step // e + 1) * e for e in every])


class _Log:
    """The host side of a run: per-seed TensorBoard scalars, the progress bar, evaluations."""

    def __init__(self, cfg: JaxOfflineConfig, members: dict[int, Path], split: LevelSplit, start: int, resumed: bool) -> None:
        self.cfg, self.members, self.split = cfg, members, split
        self.writers = {s: tensorboard_writer(d / "tb", start if resumed else None, cfg, d) for s, d in members.items()}
        name = f"[bold]{cfg.algo.upper()}[/] x{len(members)} seeds {Path(cfg.dataset).name}"
        self.bar = ProgressBar(name, total=cfg.steps, completed=start, fields={"rate": "updates/s/seed", "loss": ""}, enabled=cfg.progress)

    def chunk(self, step: int, n: int, seconds: float, metrics: dict[str, np.ndarray]) -> None:
        rate = n / max(seconds, 1e-9)
        for i, (s, w) in enumerate(self.writers.items()):
            for k, v in metrics.items():
                w.add_scalar(f"train/{k}", float(v[i]), step)
            w.add_scalar("time/updates_per_second", rate, step)
        first = next(k for k in metrics if k.startswith("loss"))
        self.bar.update(completed=step, rate=f"{rate:,.1f}", loss=f"{first} {float(np.mean(metrics[first])):.4f}")

    def evaluate(self, step: int, agents: dict[int, JaxOfflineAgent], history: dict[str, list[dict[str, Any]]]) -> None:
        """Each seed on training and validation levels (``eval.episodes`` each), as the torch agents' loop does."""
        for s, agent in agents.items():
            row: dict[str, Any] = {"step": step}
            for which, key in (("train", "train_levels"), ("validation", "validation_levels")):
                if which == "validation" and not self.split.validation:
                    continue
                r = evaluate(agent, self.split, which, episodes=self.cfg.eval.episodes, seed=s, num_envs=self.cfg.eval_num_envs)
                self.writers[s].add_scalar(f"eval/{key}/mean_return", r.mean_return, step)
                if r.mean_normalized is not None:
                    self.writers[s].add_scalar(f"eval/{key}/mean_normalized", r.mean_normalized, step)
                row[which] = r.mean_return
            history.setdefault(str(s), []).append(row)

    def close(self) -> None:
        self.bar.close()
        for w in self.writers.values():
            w.close()


@locks_run_dir  # one trainer per out_dir (the group's): a second one gets a one-line error naming the first
def train_offline_jax(cfg: JaxOfflineConfig) -> Path:
    """Train (or resume) every seed of ``cfg`` as one vmapped run; returns ``out_dir`` (the group, or the one run).

    Raises:
        TrainingInterrupted: after SIGINT/SIGTERM, once every seed's checkpoint is committed.
    """
    import jax  # noqa: PLC0415

    root = Path(cfg.out_dir or f"runs/{cfg.name}")
    seeds, grouped = cfg.seed_list(), cfg.seeds is not None
    members = members_of(root, seeds, grouped)
    ds = load_dataset(cfg.dataset, expect_env=cfg.env)
    check_symbolic(cfg, ds)
    if cfg.batch_size > ds.num_transitions:
        raise ConfigError(f"batch_size={cfg.batch_size:,} is larger than the dataset {cfg.dataset!r} ({ds.num_transitions:,} transitions); "
                          f"use batch_size <= {ds.num_transitions:,}")  # fmt: skip
    split = LevelSplit.from_dict(ds.manifest["split"]) if "split" in ds.manifest else cfg.level_split()
    device = jax_device(cfg.device)
    check_same_seeds(root, seeds, grouped)
    state = read_commit(root)
    if state:
        for s, d in members.items():
            check_same_config(d, member_config(cfg, s, d) if grouped else cfg, ignore=RESUME_NEUTRAL_KEYS)
    best_return = float(ds.episodes["return"].max())
    target_return = cfg.dt_target_return if cfg.dt_target_return is not None else cfg.dt_target_return_scale * best_return
    suite, env = cfg.env.split("/", 1)
    spec = core.Spec.from_config(cfg, ds.observation_shape, ds.num_actions, int(get_suite(suite).episode_steps(env, cfg.split.options)) + 1)
    with jax.default_device(device):
        data = to_device(ds, device)  # refuses a dataset over the memory budget before anything is written
        resolved = {"split": split.to_dict(), "dataset": {"path": str(cfg.dataset), **dataset_identity(ds), "best_return": best_return},
                    "dt_target_return": target_return, "observation_shape": list(ds.observation_shape), "num_actions": ds.num_actions,
                    "jax": {"version": jax.__version__, "device": str(device), "platform": device.platform}}  # fmt: skip
        if grouped:
            write_group(root, cfg.algo, seeds, config_dict(cfg))
        for s, d in members.items():
            write_resolved_config(member_config(cfg, s, d) if grouped else cfg, d, extra=resolved)
        return _train(cfg, spec, data, root, members, split, state, target_return, device)


def _train(cfg: JaxOfflineConfig, spec: core.Spec, data: Any, root: Path, members: dict[int, Path], split: LevelSplit,
           state: dict[str, Any], target_return: float, device: Any) -> Path:  # fmt: skip
    import jax  # noqa: PLC0415

    step = int(state.get("step", 0))
    history: dict[str, list[dict[str, Any]]] = dict(state.get("eval_history", {}))
    for d in members.values():
        keep_only(d, step if state else None)  # files of a save that a kill interrupted before its commit
    if state:
        states = core.stack([read_checkpoint(d / step_file(step), spec, s) for s, d in members.items()])
    else:
        states = core.stack([core.init_state(spec, s) for s in members])
    # Committed to the device as the chunk's outputs are: an uncommitted input compiles the chunk a second time.
    states = jax.device_put(states, device)

    def agents(host: Any) -> dict[int, JaxOfflineAgent]:
        return {s: JaxOfflineAgent(spec, core.unstack(host, i).params, target_return, s, step) for i, s in enumerate(members)}

    def save(finished: bool) -> None:
        host = jax.device_get(states)
        for i, (s, d) in enumerate(members.items()):
            meta = {"spec": spec.to_dict(), "target_return": target_return, "seed": s, "updates": step}
            write_checkpoint(d / step_file(step), core.unstack(host, i), meta)
        commit(root, members, step, finished, history)
        if finished:
            for s, agent in agents(host).items():
                agent.save(members[s] / MODEL_FILE)

    if state.get("finished") and step >= cfg.steps:
        if not all((d / MODEL_FILE).is_file() for d in members.values()):  # killed between the commit and the models
            save(finished=True)
        return root
    log = _Log(cfg, members, split, step, resumed=bool(state))
    flag: dict[str, Any] = {"stop": False}
    metrics: dict[str, np.ndarray] = {}
    try:
        with stop_on_signals(flag):
            while step < cfg.steps and not flag["stop"]:
                end = chunk_ends(step, cfg)
                t0 = time.perf_counter()
                states, metrics = core.chunk_program(spec, end - step)(states, data)
                metrics = {k: np.asarray(v) for k, v in jax.device_get(metrics).items()}  # the sync: every seed's chunk means
                log.chunk(end, end - step, time.perf_counter() - t0, metrics)
                step = end
                if cfg.eval.enabled and step % cfg.eval.every_steps == 0:
                    log.evaluate(step, agents(jax.device_get(states)), history)
                if step % cfg.checkpoint_every == 0 and step < cfg.steps:
                    save(finished=False)
        finished = step >= cfg.steps
        save(finished=finished)
    finally:
        log.close()
    if flag["stop"] and not finished:
        raise interrupted(f"update {step:,} of {len(members)} seed(s)", root / COMMIT)
    diverged = [k for k, v in metrics.items() if not np.all(np.isfinite(v))]
    if diverged:  # saved as it is; said in one line rather than evaluated quietly
        raise RlgenError(f"{root}: training diverged ({diverged[0]} is not finite in the last chunk); lower learning_rate or check the dataset's rewards")
    return root
