"""``rlgen collect`` for any agent: its ``act`` stepped in a vector env (``make_env``) on training levels.

Collection is cut into segments (``segment_transitions`` or ``segment_episodes`` each). A segment is
one rollout from a fresh vector env and fresh random generators seeded by ``(seed, segment)``, cut
into shards at episode boundaries. So every shard is a function of the config alone: a killed
collection is resumed by skipping finished segments (``segments/segment_NNNNN.json``) and replaying
the interrupted one without rewriting the shards it had already finished, and ends byte-identical
to an uninterrupted run.

Only complete episodes are kept (terminated, or truncated by the env's time limit). Whether an episode
is kept never depends on its length: every episode that starts before a segment reaches its size is
run to its end and kept. Segment k's size is what the collection still lacks of its first k + 1 nominal
segments (``segment_transitions`` each), so a segment's overshoot is taken off the next one and the
whole collection holds at least ``transitions`` and at most one episode per env more; with
``episodes``, exactly that many.

Nothing is written before everything the collection needs has been checked (the policy run, its
ladder and checkpoints, the env, ``out_dir``), so a failed command never blocks its corrected retry;
a directory holding no finished segment or shard is not a conflicting collection.
"""

from __future__ import annotations

import json
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from rlgen.agents import load_agent
from rlgen.atomic_files import write_json_atomic
from rlgen.collect.manifest import SEGMENT_DIR, check_collect_config, dataset_manifest
from rlgen.collect.skills import check_policies, resolve_skill
from rlgen.config import CollectConfig
from rlgen.data.format import MANIFEST, DatasetError, decode_shard, read_manifest, sha256_of, shard_name, write_shard_file
from rlgen.data.writer import Episode, episode_row, finish_dataset
from rlgen.envs import make_env
from rlgen.evaluation import DrivenPolicy, RandomPolicy, as_policy
from rlgen.progress import ProgressBar


def _load_policies(cfg: CollectConfig, specs: list[dict[str, Any]], num_actions: int) -> dict[str, DrivenPolicy]:
    """Label -> policy: the policy run's checkpoints (through the registry, whatever its algorithm), or uniform actions."""
    policies: dict[str, DrivenPolicy] = {}
    for spec in specs:
        if spec["label"] == "random":
            policies["random"] = as_policy(RandomPolicy(num_actions, seed=cfg.seed))
        else:
            assert cfg.policy_run is not None
            policies[spec["label"]] = as_policy(load_agent(cfg.policy_run, checkpoint=spec["checkpoint"], device=cfg.device).agent)
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

    levels = split.levels("train").first(cfg.levels) if cfg.levels else None
    env = make_env(split, "train", num_envs=cfg.num_envs, seed=cfg.seed * 1_000_003 + segment, levels=levels)
    n = cfg.num_envs
    policies = _load_policies(cfg, specs, int(env.single_action_space.n))
    rng = np.random.default_rng([cfg.seed, segment])
    torch.manual_seed(cfg.seed * 1_000_003 + segment)  # PPO samples its actions with torch's generator
    for p in policies.values():
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
        # While episodes may start, every env is running one or starts one at its next step (may_start only
        # turns False): when all envs finish on the same step (time limits), the loop goes on.
        while may_start() or any(b is not None for b in bufs):
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
                    progress.update(advance=added)
    finally:
        env.close()
        shards, rows = sink.close()
    return {"segment": segment, "shards": shards, "episodes": rows}


# --- the whole collection ------------------------------------------------------------------------------


def segment_size(unit: str, sizes: list[int], k: int, done: list[dict[str, Any]]) -> int:
    """Segment ``k``'s target: for transitions, what the finished earlier segments lack of the first
    ``k + 1`` nominal sizes (may be <= 0: nothing to collect); for episodes, ``sizes[k]``."""
    if unit == "episodes":
        return sizes[k]
    before = sum(r["length"] for d in done if d["segment"] < k for r in d["episodes"])
    return sum(sizes[: k + 1]) - before


def collect_rollouts(cfg: CollectConfig) -> Path:
    """Collect (or finish collecting) the dataset ``cfg`` describes. Returns its directory.

    Running it again on a finished dataset with the same config does nothing; on an interrupted one
    it resumes; with a different config on the same ``out_dir`` it refuses.
    """
    root = Path(cfg.out_dir or f"data/{cfg.name}")
    check_collect_config(root, cfg, write=False)
    if (root / MANIFEST).is_file():
        read_manifest(root)
        return root
    # Everything is checked before anything is written: a failure here leaves out_dir as it was.
    specs = resolve_skill(cfg)
    check_policies(cfg, specs)
    env = cfg.level_split()
    probe = make_env(env, "train", num_envs=1, seed=0, levels=[env.levels("train").min])
    obs_space, act_space = probe.single_observation_space, probe.single_action_space
    probe.close()
    _load_policies(cfg, specs, int(act_space.n))  # the checkpoints load (each segment loads them afresh)
    check_collect_config(root, cfg)
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
    completed = sum(sum(r["length"] if unit == "transitions" else 1 for r in d["episodes"]) for d in done)
    progress = ProgressBar(f"[bold]collect[/] {cfg.name} ({cfg.skill})", total=sum(sizes), completed=completed, unit=unit, enabled=cfg.progress)
    t0 = time.perf_counter()
    try:
        for k in todo:
            size = segment_size(unit, sizes, k, done)
            if size > 0:
                result = collect_segment(cfg, env, k, size, unit, root, specs, progress)
            else:  # earlier segments overshot by this segment's size already
                result = {"segment": k, "shards": [], "episodes": []}
            write_json_atomic(root / SEGMENT_DIR / f"segment_{k:05d}.json", result)
            done.append(result)
    finally:
        progress.close()
    done.sort(key=lambda d: d["segment"])
    shards = [s for d in done for s in d["shards"]]
    rows = [dict(r, id=i) for i, r in enumerate(r for d in done for r in d["episodes"])]
    levels = env.levels("train").first(cfg.levels) if cfg.levels else env.levels("train")
    manifest = dataset_manifest(cfg, env, specs, rows, {"shape": list(obs_space.shape), "dtype": str(obs_space.dtype)}, int(act_space.n),
                                {"levels": levels.describe(), "num_envs": cfg.num_envs, "seed": cfg.seed, unit: sum(sizes),
                                 "seconds": time.perf_counter() - t0})  # fmt: skip
    return finish_dataset(root, manifest, shards, rows)
