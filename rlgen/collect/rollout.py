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
ladder and checkpoints, that it was trained on this env with these observation and action spaces,
``out_dir``), so a failed command never blocks its corrected retry; a directory holding no finished
segment or shard is not a conflicting collection. One collection at a time per ``out_dir``: it holds the
directory's lock (``rlgen.agents.run_dir.run_dir_lock``), and a second one is refused naming the holder.

Seeds: segment k's envs are ``make_env(seed=(seed, k))``, whose env i draws from
``SeedSequence([seed, k, i])``-derived streams (``rlgen.envs.seeding``), so no two segments, seeds or envs
replay one another's levels. Segments are planned lazily (``transitions=10**12`` allocates nothing up
front), and episode ids are fixed when their shard is written (segment k's start after those of
segments 0..k-1), so shard headers carry the ids ``episodes.jsonl`` gives them.
"""

from __future__ import annotations

import json
import logging
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from rlgen.agents import load_agent
from rlgen.agents.run_dir import run_dir_lock
from rlgen.atomic_files import remove_temporaries, write_json_atomic
from rlgen.collect.manifest import SEGMENT_DIR, check_collect_config, check_out_dir_is_a_directory, dataset_manifest
from rlgen.collect.skills import check_policies, check_policy_env, check_policy_spaces, resolve_skill
from rlgen.config import CollectConfig
from rlgen.data.format import MANIFEST, SHARD_DIR, DatasetError, read_manifest, read_shard, sha256_of, shard_name, write_shard_file
from rlgen.data.writer import Episode, episode_row, finish_dataset
from rlgen.envs import make_env
from rlgen.envs.seeding import stream_seed
from rlgen.evaluation import DrivenPolicy, RandomPolicy, as_policy
from rlgen.progress import ProgressBar

log = logging.getLogger(__name__)

#: Shards compressed at once (each on its own thread). zstd compresses 3x64x64 Procgen frames at 200-400 MB/s on one
#: core (rlgen.data.codec.FRESH; bench/data.py), below the ~490 MB/s EnvPool makes (40k steps/s): one writer kept the
#: rollout waiting (issue 18, part 2).
WRITER_THREADS = 2


def _load_policies(cfg: CollectConfig, specs: list[dict[str, Any]], num_actions: int,
                   observation_shape: tuple[int, ...] | None = None) -> dict[str, DrivenPolicy]:  # fmt: skip
    """Label -> policy: the policy run's checkpoints (through the registry, whatever its algorithm), or uniform
    actions. With ``observation_shape``, each loaded policy is checked to take the env's observations and
    to have ``num_actions`` actions (``check_policy_spaces``)."""
    policies: dict[str, DrivenPolicy] = {}
    for spec in specs:
        if spec["label"] == "random":
            policies["random"] = as_policy(RandomPolicy(num_actions, seed=cfg.seed))
        else:
            assert cfg.policy_run is not None
            loaded = load_agent(cfg.policy_run, checkpoint=spec["checkpoint"], device=cfg.device)
            if observation_shape is not None:
                check_policy_spaces(cfg, spec["label"], loaded.split, loaded.num_actions, observation_shape, num_actions)
            policies[spec["label"]] = as_policy(loaded.agent)
    return policies


# --- one segment -------------------------------------------------------------------------------------


def segment_plan(cfg: CollectConfig) -> tuple[str, int, int]:
    """``(unit, total, per_segment)``: ``"transitions"`` or ``"episodes"``, the size asked for and the nominal
    size of a segment. Segment ``k`` is nominally the ``k``-th slice of ``per_segment`` of ``total`` (the last
    one shorter); nothing per segment is computed up front, so any ``total`` the config allows costs nothing."""
    if cfg.transitions is not None:
        return "transitions", cfg.transitions, cfg.segment_transitions
    assert cfg.episodes is not None
    return "episodes", cfg.episodes, cfg.segment_episodes


def num_segments(total: int, per: int) -> int:
    return -(-total // per)


class _ShardSink:
    """Cuts a segment's finished episodes into shards and writes them on a background thread
    (zstd compression overlaps the rollout). A shard that already exists is kept as it is: it was
    written by an interrupted run of the same config and holds the same bytes."""

    def __init__(self, root: Path, segment: int, per_shard: int, unit: str, first_id: int) -> None:
        self.root, self.segment, self.per_shard, self.unit = root, segment, per_shard, unit
        self.next_id = first_id  # the dataset id of the next episode to go into a shard
        # Shards are compressed independently (zstd releases the GIL), so two at once give the same bytes as
        # one after another, and the compressor is not the only thing running while the rollout waits for it.
        self.pool = ThreadPoolExecutor(max_workers=WRITER_THREADS)
        self.pending: list[tuple[str, list[Episode], list[int], Future]] = []
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
        ids = list(range(self.next_id, self.next_id + len(episodes)))
        self.next_id += len(episodes)
        if path.is_file():
            job = self.pool.submit(_existing_shard, path, episodes, ids)
        else:
            job = self.pool.submit(write_shard_file, path, episodes, ids)
        self.pending.append((name, episodes, ids, job))
        while len(self.pending) > 2:  # bound the memory held by shards waiting to be written
            self._settle()

    def _settle(self) -> None:
        name, episodes, ids, job = self.pending.pop(0)
        info = job.result()
        self.shards.append({"file": name, **info})
        for offset, (e, i) in enumerate(zip(episodes, ids)):
            self.rows.append(episode_row(e, i, name, offset))

    def close(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        self.flush()
        while self.pending:
            self._settle()
        self.pool.shutdown()
        return self.shards, self.rows


def _existing_shard(path: Path, episodes: list[Episode], ids: list[int]) -> dict[str, Any]:
    """The record of a shard an interrupted run of the same config wrote: it must hold what the replay made."""
    shard = read_shard(path, frame_checksum=True)
    labels = shard.labels
    same = (np.array_equal(shard.lengths, [e.length for e in episodes]) and labels is not None
            and np.array_equal(labels["ids"], ids) and np.array_equal(labels["levels"], [e.level for e in episodes]))  # fmt: skip
    if not same:
        raise DatasetError(f"{path} holds other episodes than a replay of the same config made ({len(shard.lengths)} vs {len(episodes)}, "
                           "or other lengths, ids or levels); the collection is not deterministic here: delete the dataset "
                           "directory and collect again")  # fmt: skip
    return {"sha256": sha256_of(path), "bytes": path.stat().st_size, "episodes": len(episodes), "transitions": int(shard.lengths.sum()),
            "codec": shard.codec}


def collect_segment(cfg: CollectConfig, split: Any, segment: int, size: int, unit: str, root: Path, specs: list[dict[str, Any]],
                    progress: Any = None, first_id: int = 0) -> dict[str, Any]:  # fmt: skip
    """Roll out segment ``segment`` on ``split``'s training levels until its finished episodes hold
    ``size`` transitions (or are ``size`` episodes); write its shards, its episodes numbered from
    ``first_id``. Returns ``{"segment", "shards": [...], "episodes": [rows]}``."""
    import torch

    levels = split.levels("train").first(cfg.levels) if cfg.levels else None
    env = make_env(split, "train", num_envs=cfg.num_envs, seed=(cfg.seed, segment), levels=levels)
    n = cfg.num_envs
    policies = _load_policies(cfg, specs, int(env.single_action_space.n))
    rng = np.random.default_rng([cfg.seed, segment])
    torch.manual_seed(stream_seed((cfg.seed, segment, 2)))  # PPO samples its actions with torch's generator
    for p in policies.values():
        p.reseed([cfg.seed, segment, 1])
    labels = list(policies)

    def draw_label() -> str:
        if cfg.skill == "mixed":
            return "expert" if rng.random() < cfg.mixed_expert_fraction else "medium"
        return labels[0]

    per_shard = cfg.shard_transitions if unit == "transitions" else cfg.shard_episodes
    sink = _ShardSink(root, segment, per_shard, unit, first_id)
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
            # Python lists: indexing them per env is several times cheaper than indexing numpy arrays, and
            # their values (exact copies of the int64/float32/bool entries) give the episodes the same arrays.
            step = zip(bufs, pending_reset.tolist(), actions.tolist(), np.asarray(reward).tolist(),
                       np.asarray(terminated).tolist(), np.asarray(truncated).tolist())  # fmt: skip
            for i, (b, reset_now, a, r, term, trunc) in enumerate(step):
                if reset_now:
                    bufs[i] = new_episode(obs[i], info["level"][i])
                elif b is not None:
                    b["obs"].append(obs[i])
                    b["actions"].append(a)
                    b["rewards"].append(r)
                    b["term"].append(term)
                    b["trunc"].append(trunc)
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


def segment_size(unit: str, total: int, per: int, k: int, before: int) -> int:
    """Segment ``k``'s target: for transitions, what the segments before it (which hold ``before``) lack of
    the first ``k + 1`` nominal slices (may be <= 0: nothing to collect); for episodes, its nominal slice."""
    upto = min((k + 1) * per, total)
    return upto - k * per if unit == "episodes" else upto - before


def _segment_file(root: Path, k: int) -> Path:
    return root / SEGMENT_DIR / f"segment_{k:05d}.json"


def read_segment(root: Path, k: int, first_id: int) -> dict[str, Any] | None:
    """Segment ``k``'s record if it was finished and its record is sound (the shards it lists exist, its rows
    number its episodes from ``first_id``), else None: the segment is then collected again (its shards are a
    function of the config, so a replay keeps the ones that exist). A torn or edited record gives a warning."""
    path = _segment_file(root, k)
    if not path.is_file():
        return None
    try:
        d = json.loads(path.read_bytes().decode("utf-8"))
        shards, rows = d["shards"], d["episodes"]
        files = [sh["file"] for sh in shards]
        ok = (d["segment"] == k and isinstance(shards, list) and isinstance(rows, list)
              and all(isinstance(f, str) and f.startswith(f"{SHARD_DIR}/shard_{k:05d}_") and (root / f).is_file() for f in files)
              and all(isinstance(sh["sha256"], str) and isinstance(sh["bytes"], int) and isinstance(sh["transitions"], int) for sh in shards)
              and sum(int(sh["episodes"]) for sh in shards) == len(rows)
              and [r["id"] for r in rows] == list(range(first_id, first_id + len(rows)))
              and all(r["shard"] in files and isinstance(r["length"], int) and r["length"] >= 1 and isinstance(r["level"], int)
                      and isinstance(r["return"], (int, float)) and isinstance(r["policy"], str) and isinstance(r["offset"], int)
                      for r in rows))  # fmt: skip
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        ok, d = False, {"problem": f"{type(e).__name__}: {e}"}
    if not ok:
        log.warning("%s is not a sound segment record (%s); collecting segment %d again", path, d.get("problem", "fields or shards "
                    "do not match") if isinstance(d, dict) else "not an object", k)  # fmt: skip
        return None
    return d


def collect_rollouts(cfg: CollectConfig) -> Path:
    """Collect (or finish collecting) the dataset ``cfg`` describes. Returns its directory.

    Running it again on a finished dataset with the same config does nothing; on an interrupted one
    it resumes; with a different config on the same ``out_dir`` it refuses; while another collection
    runs in ``out_dir`` it refuses, naming that process.
    """
    root = Path(cfg.out_dir or f"data/{cfg.name}")
    check_out_dir_is_a_directory(root)
    with run_dir_lock(root):
        return _collect_locked(cfg, root)


def _collect_locked(cfg: CollectConfig, root: Path) -> Path:
    check_collect_config(root, cfg, write=False)
    if (root / MANIFEST).is_file():
        read_manifest(root)
        return root
    # Everything is checked before anything is written: a failure here leaves out_dir as it was.
    specs = resolve_skill(cfg)
    check_policies(cfg, specs)
    env = cfg.level_split()
    check_policy_env(cfg, env)
    probe = make_env(env, "train", num_envs=1, seed=0, levels=[env.levels("train").min])
    obs_space, act_space = probe.single_observation_space, probe.single_action_space
    probe.close()
    # the checkpoints load and fit the env (each segment loads them afresh)
    _load_policies(cfg, specs, int(act_space.n), tuple(int(x) for x in obs_space.shape))
    check_collect_config(root, cfg)
    unit, total, per = segment_plan(cfg)
    for d in (root / SHARD_DIR, root / SEGMENT_DIR):  # what killed writers left (we hold the lock: nobody is writing)
        remove_temporaries(d)
    (root / SEGMENT_DIR).mkdir(parents=True, exist_ok=True)
    done: list[dict[str, Any]] = []
    progress = ProgressBar(f"[bold]collect[/] {cfg.name} ({cfg.skill})", total=total, unit=unit, enabled=cfg.progress)
    t0 = time.perf_counter()
    next_id = transitions = 0  # over the segments so far
    try:
        for k in range(num_segments(total, per)):  # lazily: a huge total allocates nothing up front
            result = read_segment(root, k, next_id)
            if result is None:
                size = segment_size(unit, total, per, k, transitions)
                if size > 0:
                    result = collect_segment(cfg, env, k, size, unit, root, specs, progress, first_id=next_id)
                else:  # earlier segments overshot by this segment's size already
                    result = {"segment": k, "shards": [], "episodes": []}
                write_json_atomic(_segment_file(root, k), result)
            else:  # finished by an earlier run
                progress.update(advance=sum(r["length"] if unit == "transitions" else 1 for r in result["episodes"]))
            done.append(result)
            next_id += len(result["episodes"])
            transitions += sum(r["length"] for r in result["episodes"])
    finally:
        progress.close()
    shards = [s for d in done for s in d["shards"]]
    rows = [r for d in done for r in d["episodes"]]
    levels = env.levels("train").first(cfg.levels) if cfg.levels else env.levels("train")
    manifest = dataset_manifest(cfg, env, specs, rows, {"shape": list(obs_space.shape), "dtype": str(obs_space.dtype)}, int(act_space.n),
                                {"levels": levels.describe(), "num_envs": cfg.num_envs, "seed": cfg.seed, unit: total,
                                 "seconds": time.perf_counter() - t0})  # fmt: skip
    return finish_dataset(root, manifest, shards, rows)
