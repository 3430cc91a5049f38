"""``rlgen collect``: roll out a policy at a skill level on training levels into a dataset.

Collection is cut into segments (``segment_transitions`` or ``segment_episodes`` each). A segment is
one rollout from a fresh vector env and fresh random generators seeded by ``(seed, segment)``, cut
into shards at episode boundaries. So every shard is a function of the config alone: a killed
collection is resumed by skipping finished segments (``segments/segment_NNNNN.json``) and replaying
the interrupted one without rewriting the shards it had already finished, and ends byte-identical
to an uninterrupted run.

Only complete episodes are kept (terminated, or truncated by the env's time limit). Whether an episode
is kept never depends on its length: every episode that starts before a segment reaches its size is
run to its end and kept, so a segment holds at least ``segment_transitions`` (up to one episode per
env more), or exactly ``segment_episodes``.
"""

from __future__ import annotations

import json
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from rlgen.config import CollectConfig, config_to_dict
from rlgen.data.format import MANIFEST, DatasetError, read_manifest, sha256_of, shard_name, write_json_atomic, write_shard_file
from rlgen.data.writer import Episode, episode_row, finish_dataset
from rlgen.errors import RlgenError

COLLECT_CONFIG = "collect_config.json"
SEGMENT_DIR = "segments"
#: Config keys that do not change what is collected.
_NEUTRAL_KEYS = ("progress", "device", "name", "out_dir")


# --- skill levels ----------------------------------------------------------------------------------


def resolve_skill(cfg: CollectConfig) -> list[dict[str, Any]]:
    """The policies behind ``cfg.skill``, read from the PPO run's ladder: one dict per policy label
    with ``label``, ``checkpoint`` (relative to the run), ``step`` and the rung's ``mean_return``.

    ``expert`` is the last rung; ``medium`` the earlier rung whose train-level return is nearest
    ``medium_fraction`` of the expert's; ``mixed`` both; ``random`` uniform actions.
    """
    if cfg.skill == "random":
        return [{"label": "random"}]
    from rlgen.agents.run_dir import read_ladder

    assert cfg.policy_run is not None
    if not Path(cfg.policy_run).is_dir():
        raise RlgenError(f"policy_run {cfg.policy_run!r} is not a directory; give the run directory of `rlgen train`")
    rungs = sorted(read_ladder(cfg.policy_run).get("rungs", []), key=lambda r: r["step"])
    if not rungs:
        raise RlgenError(f"{cfg.policy_run!r} has no ladder rungs yet; let `rlgen train` run past ladder.every_steps")
    expert = {"label": "expert", **{k: rungs[-1][k] for k in ("checkpoint", "step", "mean_return")}}
    if cfg.skill == "expert":
        return [expert]
    earlier = rungs[:-1]
    if not earlier:
        raise RlgenError(f"skill={cfg.skill} needs a medium policy, but {cfg.policy_run!r} has a single ladder rung; "
                         "train with a smaller ladder.every_steps to keep checkpoints along the way")  # fmt: skip
    target = cfg.medium_fraction * expert["mean_return"]
    rung = min(earlier, key=lambda r: (abs(r["mean_return"] - target), r["step"]))
    medium = {"label": "medium", "target_return": target, **{k: rung[k] for k in ("checkpoint", "step", "mean_return")}}
    return [medium] if cfg.skill == "medium" else [expert, medium]


def _load_policies(cfg: CollectConfig, specs: list[dict[str, Any]], num_actions: int) -> dict[str, Any]:
    from rlgen.evaluation import RandomPolicy

    policies: dict[str, Any] = {}
    for spec in specs:
        if spec["label"] == "random":
            policies["random"] = RandomPolicy(num_actions, seed=cfg.seed)
        else:
            from rlgen.agents.ppo import load_run_agent

            policies[spec["label"]] = load_run_agent(cfg.policy_run, checkpoint=spec["checkpoint"], device=cfg.device)  # type: ignore[arg-type]
    return policies


# --- one segment -------------------------------------------------------------------------------------


def segment_targets(cfg: CollectConfig) -> tuple[str, list[int]]:
    """``("transitions" | "episodes", [size of segment 0, 1, ...])``."""
    if cfg.transitions is not None:
        total, per = cfg.transitions, cfg.segment_transitions
        unit = "transitions"
    else:
        assert cfg.episodes is not None
        total, per = cfg.episodes, cfg.segment_episodes
        unit = "episodes"
    sizes = [per] * (total // per) + ([total % per] if total % per else [])
    return unit, sizes


class _ShardSink:
    """Cuts a segment's finished episodes into shards and writes them on a background thread
    (zstd compression overlaps the rollout). A shard that already exists is kept as it is: it was
    written by an interrupted run of the same config and holds the same bytes."""

    def __init__(self, root: Path, segment: int, per_shard: int, unit: str) -> None:
        self.root, self.segment, self.per_shard, self.unit = root, segment, per_shard, unit
        self.pool = ThreadPoolExecutor(max_workers=1)
        self.pending: list[tuple[str, list[Episode], Future]] = []
        self.buffer: list[Episode] = []
        self.shards: list[dict[str, Any]] = []
        self.rows: list[dict[str, Any]] = []

    def add(self, episode: Episode) -> None:
        self.buffer.append(episode)
        size = len(self.buffer) if self.unit == "episodes" else sum(e.length for e in self.buffer)
        if size >= self.per_shard:
            self.flush()

    def flush(self) -> None:
        if not self.buffer:
            return
        name = shard_name(self.segment, len(self.shards) + len(self.pending))
        path = self.root / name
        episodes, self.buffer = self.buffer, []
        job = self.pool.submit(_existing_shard, path, len(episodes)) if path.is_file() else self.pool.submit(write_shard_file, path, episodes)
        self.pending.append((name, episodes, job))
        while len(self.pending) > 2:  # bound the memory held by shards waiting to be written
            self._settle()

    def _settle(self) -> None:
        name, episodes, job = self.pending.pop(0)
        info = job.result()
        self.shards.append({"file": name, **info})
        for offset, e in enumerate(episodes):
            self.rows.append(episode_row(e, -1, name, offset))

    def close(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        self.flush()
        while self.pending:
            self._settle()
        self.pool.shutdown()
        return self.shards, self.rows


def _existing_shard(path: Path, episodes: int) -> dict[str, Any]:
    from rlgen.data.format import decode_shard

    _, lengths = decode_shard(path)
    if len(lengths) != episodes:
        raise DatasetError(f"{path} holds {len(lengths)} episodes where a replay of the same config made {episodes}; "
                           "the collection is not deterministic here: delete the dataset directory and collect again")  # fmt: skip
    return {"sha256": sha256_of(path), "bytes": path.stat().st_size, "episodes": episodes, "transitions": int(lengths.sum())}


def collect_segment(cfg: CollectConfig, split: Any, segment: int, size: int, unit: str, root: Path, specs: list[dict[str, Any]], progress: Any = None) -> dict[str, Any]:
    """Roll out segment ``segment`` on ``split``'s training levels until its finished episodes hold
    ``size`` transitions (or are ``size`` episodes); write its shards. Returns
    ``{"segment", "shards": [...], "episodes": [rows]}``."""
    import torch

    from rlgen.envs import make_env

    levels = split.levels("train").first(cfg.levels) if cfg.levels else None
    env = make_env(split, "train", num_envs=cfg.num_envs, seed=cfg.seed * 1_000_003 + segment, levels=levels)
    n = cfg.num_envs
    policies = _load_policies(cfg, specs, int(env.single_action_space.n))
    rng = np.random.default_rng([cfg.seed, segment])
    torch.manual_seed(cfg.seed * 1_000_003 + segment)  # PPO samples its actions with torch's generator
    for p in policies.values():
        if hasattr(p, "reseed"):
            p.reseed([cfg.seed, segment, 1])
    labels = list(policies)

    def draw_label() -> str:
        if cfg.skill == "mixed":
            return "expert" if rng.random() < cfg.mixed_expert_fraction else "medium"
        return labels[0]

    per_shard = cfg.shard_transitions if unit == "transitions" else cfg.shard_episodes
    sink = _ShardSink(root, segment, per_shard, unit)
    # Which episodes are kept must not depend on their length, or short (often successful) episodes are
    # over-represented: an episode is recorded if it *starts* while the target is not yet met, and every
    # recorded episode runs to its end. Transitions: episodes start until the finished ones hold `size`
    # transitions, then the running ones finish (at most one more episode per env). Episodes: exactly
    # `size` episodes start.
    done_size = 0
    started = 0

    def may_start() -> bool:
        return started < size if unit == "episodes" else done_size < size

    def new_episode(o: np.ndarray, level: Any) -> dict[str, Any] | None:
        nonlocal started
        if not may_start():
            return None
        started += 1
        return {"obs": [o], "actions": [], "rewards": [], "term": [], "trunc": [], "level": int(level), "policy": draw_label()}

    obs, info = env.reset()
    obs = obs.copy()
    bufs: list[dict[str, Any] | None] = [new_episode(obs[i], info["level"][i]) for i in range(n)]
    pending_reset = np.zeros(n, dtype=bool)  # next-step autoreset: this step's action is ignored, obs is a new episode's first
    try:
        while any(b is not None for b in bufs):
            actions = np.zeros(n, dtype=np.int64)
            by_label = np.array([b["policy"] if b is not None else "" for b in bufs])
            for label in labels:
                idx = np.flatnonzero(by_label == label)
                if len(idx):
                    actions[idx] = policies[label].act(obs[idx], deterministic=cfg.deterministic)
            obs, reward, terminated, truncated, info = env.step(actions)
            obs = obs.copy()  # one batch copy: the env may reuse its buffers
            for i in range(n):
                b = bufs[i]
                if pending_reset[i]:
                    bufs[i] = new_episode(obs[i], info["level"][i])
                elif b is not None:
                    b["obs"].append(obs[i])
                    b["actions"].append(actions[i])
                    b["rewards"].append(reward[i])
                    b["term"].append(terminated[i])
                    b["trunc"].append(truncated[i])
            pending_reset = np.asarray(terminated) | np.asarray(truncated)
            for i in np.flatnonzero(pending_reset):
                b = bufs[i]
                if b is None:
                    continue
                # obs stays a list of rows: the shard writer streams them to the compressor without a stacked copy
                ep = Episode(b["obs"], np.asarray(b["actions"], np.int64), np.asarray(b["rewards"], np.float32),
                             np.asarray(b["term"], bool), np.asarray(b["trunc"], bool), level=b["level"], policy=b["policy"])  # fmt: skip
                bufs[i] = None
                pending_reset[i] = True
                sink.add(ep)
                added = ep.length if unit == "transitions" else 1
                done_size += added
                if progress is not None:
                    progress.advance(added)
    finally:
        env.close()
        shards, rows = sink.close()
    return {"segment": segment, "shards": shards, "episodes": rows}


# --- the whole collection ------------------------------------------------------------------------------


def collect_config_record(cfg: CollectConfig) -> dict[str, Any]:
    d = config_to_dict(cfg)
    for k in _NEUTRAL_KEYS:
        d.pop(k, None)
    return d


def check_collect_config(root: Path, cfg: CollectConfig) -> None:
    path = root / COLLECT_CONFIG
    record = collect_config_record(cfg)
    if path.is_file():
        old = json.loads(path.read_text())
        if old != record:
            diff = sorted(k for k in set(old) | set(record) if old.get(k) != record.get(k))
            raise DatasetError(f"{root} was collected with a different config (differs in: {', '.join(diff)}); "
                               "use another out_dir, or delete the directory to start over")  # fmt: skip
    elif (root / MANIFEST).is_file() or any((root / SEGMENT_DIR).glob("*.json")):
        raise DatasetError(f"{root} holds data that `rlgen collect` did not write with a config record; use another out_dir")
    else:
        root.mkdir(parents=True, exist_ok=True)
        write_json_atomic(path, record)


def collect(cfg: CollectConfig) -> Path:
    """Collect (or finish collecting) the dataset ``cfg`` describes. Returns its directory.

    Running it again on a finished dataset with the same config does nothing; on an interrupted one
    it resumes; with a different config on the same ``out_dir`` it refuses.
    """
    root = Path(cfg.out_dir or f"data/{cfg.name}")
    check_collect_config(root, cfg)
    if (root / MANIFEST).is_file():
        read_manifest(root)
        return root
    specs = resolve_skill(cfg)
    unit, sizes = segment_targets(cfg)
    (root / SEGMENT_DIR).mkdir(parents=True, exist_ok=True)
    done: list[dict[str, Any]] = []
    todo: list[int] = []
    for k in range(len(sizes)):
        p = root / SEGMENT_DIR / f"segment_{k:05d}.json"
        if p.is_file():
            done.append(json.loads(p.read_text()))
        else:
            todo.append(k)
    progress = _Progress(cfg, unit, sum(sizes), sum(sum(r["length"] if unit == "transitions" else 1 for r in d["episodes"]) for d in done))
    t0 = time.perf_counter()
    env = cfg.level_split()
    try:
        for k in todo:
            result = collect_segment(cfg, env, k, sizes[k], unit, root, specs, progress)
            write_json_atomic(root / SEGMENT_DIR / f"segment_{k:05d}.json", result)
            done.append(result)
    finally:
        progress.stop()
    done.sort(key=lambda d: d["segment"])
    shards = [s for d in done for s in d["shards"]]
    rows = [dict(r, id=i) for i, r in enumerate(r for d in done for r in d["episodes"])]
    from rlgen.envs import make_env

    probe = make_env(env, "train", num_envs=1, seed=0, levels=[env.levels("train").min])
    obs_space, act_space = probe.single_observation_space, probe.single_action_space
    probe.close()
    returns = {}
    for label in sorted({r["policy"] for r in rows}):
        sel = [r["return"] for r in rows if r["policy"] == label]
        returns[label] = {"episodes": len(sel), "mean_return": float(np.mean(sel))}
    manifest = {
        "env": cfg.env,
        "split": env.to_dict(),
        "skill": cfg.skill,
        "policies": [dict(s, run=cfg.policy_run) if s["label"] != "random" else s for s in specs],
        "returns_by_policy": returns,
        "mean_return": float(np.mean([r["return"] for r in rows])),
        "observation_space": {"shape": list(obs_space.shape), "dtype": str(obs_space.dtype)},
        "action_space": {"n": int(act_space.n)},
        "collection": {
            "levels": (env.levels("train").first(cfg.levels) if cfg.levels else env.levels("train")).describe(),
            "num_envs": cfg.num_envs, "seed": cfg.seed, "deterministic": cfg.deterministic, unit: sum(sizes),
            "episodes_kept": "every episode started before its segment reached its size, run to its end (terminated or time-limit truncated); none dropped for its length",
            "seconds": time.perf_counter() - t0,
        },  # fmt: skip
        "config": collect_config_record(cfg),
    }
    return finish_dataset(root, manifest, shards, rows)


class _Progress:
    def __init__(self, cfg: CollectConfig, unit: str, total: int, completed: int) -> None:
        self.p = None
        if not cfg.progress:
            return
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskProgressColumn, TextColumn, TimeRemainingColumn

        self.p = Progress(TextColumn(f"[bold]collect[/] {cfg.name} ({cfg.skill})"), BarColumn(), MofNCompleteColumn(), TextColumn(unit),
                          TaskProgressColumn(), TimeRemainingColumn(), transient=False)  # fmt: skip
        self.task = self.p.add_task("collect", total=total, completed=completed)
        self.p.start()

    def advance(self, n: int) -> None:
        if self.p is not None:
            self.p.advance(self.task, n)

    def stop(self) -> None:
        if self.p is not None:
            self.p.stop()
