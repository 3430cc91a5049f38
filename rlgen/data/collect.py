"""``rlgen collect``: roll out a policy at a skill level on training levels into a dataset.

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
import logging
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from rlgen.config import CollectConfig, config_to_dict
from rlgen.data.format import (
    MANIFEST,
    SHARD_DIR,
    DatasetError,
    inside,
    read_manifest,
    sha256_of,
    shard_name,
    write_json_atomic,
    write_shard_file,
)
from rlgen.data.writer import Episode, episode_row, finish_dataset
from rlgen.errors import RlgenError

log = logging.getLogger(__name__)

COLLECT_CONFIG = "collect_config.json"
SEGMENT_DIR = "segments"
#: ``rlgen collect`` warns when no ladder rung's return is this close to the medium target (as a fraction of the expert's).
MEDIUM_TOLERANCE = 0.1
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
    ladder_path = Path(cfg.policy_run) / "ladder.json"
    try:
        rungs = read_ladder(cfg.policy_run).get("rungs", [])
        ok = isinstance(rungs, list) and all(isinstance(r, dict) and isinstance(r.get("step"), int) and isinstance(r.get("checkpoint"), str)
                                             and isinstance(r.get("mean_return"), (int, float)) for r in rungs)  # fmt: skip
    except (ValueError, AttributeError) as e:  # torn or hand-edited JSON
        raise RlgenError(f"{ladder_path} is not a readable ladder ({e})") from None
    if not ok:
        raise RlgenError(f"{ladder_path}: rungs must be a list of {{step: int, checkpoint: str, mean_return: number}}")
    rungs = sorted(rungs, key=lambda r: r["step"])
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
    _warn_if_no_rung_near(cfg, earlier, expert, medium)
    return [medium] if cfg.skill == "medium" else [expert, medium]


def target_fraction(cfg: CollectConfig) -> float | None:
    """The mean return the recipe aims at, as a fraction of the expert's: 1 (expert), ``medium_fraction``,
    or for mixed ``f + (1 - f) * medium_fraction`` with ``f = mixed_expert_fraction`` (defaults: 0.75,
    the reference's mixed data)."""
    f = cfg.mixed_expert_fraction
    return {"expert": 1.0, "medium": cfg.medium_fraction, "mixed": f + (1 - f) * cfg.medium_fraction}.get(cfg.skill)


def _warn_if_no_rung_near(cfg: CollectConfig, earlier: list[dict[str, Any]], expert: dict[str, Any], medium: dict[str, Any]) -> None:
    """One warning line when the ladder is too coarse for the medium target (issue 12: DoorKey's mixed
    data landed at 66% of expert because the nearest rung was at 0.133 for a target of 0.48)."""
    e = float(expert["mean_return"])
    if e <= 0:
        log.warning("the expert rung of %s has mean return %.3g <= 0: medium_fraction=%s of it means nothing; pick skill=expert or random",
                    cfg.policy_run, e, cfg.medium_fraction)  # fmt: skip
        return
    if abs(float(medium["mean_return"]) / e - cfg.medium_fraction) <= MEDIUM_TOLERANCE:
        return
    returns = ", ".join(f"{float(r['mean_return']):.3g}" for r in earlier[-40:])
    more = f"{len(earlier) - 40} earlier, " if len(earlier) > 40 else ""
    mixed = ""
    if cfg.skill == "mixed":
        f = cfg.mixed_expert_fraction
        mixed = f"; mixed data will average about {f + (1 - f) * float(medium['mean_return']) / e:.0%} of expert, not {target_fraction(cfg):.0%}"
    log.warning(
        "no ladder rung of %s lies within %.1f of the medium target %.3g (%s x expert %.3g); rung returns: %s%s; using %.3g "
        "(step %s, %.0f%% of expert)%s. Train with a smaller ladder.every_steps for more rungs",
        cfg.policy_run, MEDIUM_TOLERANCE, cfg.medium_fraction * e, cfg.medium_fraction, e, more, returns, float(medium["mean_return"]),
        medium["step"], 100 * float(medium["mean_return"]) / e, mixed,
    )  # fmt: skip


def check_policies(cfg: CollectConfig, specs: list[dict[str, Any]]) -> None:
    """Every checkpoint the specs name lies inside the policy run and exists (checked before anything is written)."""
    for spec in specs:
        if spec["label"] == "random":
            continue
        assert cfg.policy_run is not None
        path = inside(Path(cfg.policy_run), spec["checkpoint"], Path(cfg.policy_run) / "ladder.json", f"{spec['label']} checkpoint")
        if not path.is_file():
            raise RlgenError(f"{spec['label']} checkpoint {str(path)!r} (ladder rung at step {spec['step']:,}) is missing; "
                             "the ladder and its checkpoints must stay together")  # fmt: skip


def return_vs_expert(cfg: CollectConfig, specs: list[dict[str, Any]], rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The manifest's record of the dataset's mean return as a fraction of the expert's (skills from a
    policy run only). The expert's return is its episodes' in this dataset when it has some (what the
    reference compares to: its expert dataset's mean), else the expert rung's ladder evaluation."""
    if cfg.skill == "random" or not rows:
        return None
    mean = float(np.mean([r["return"] for r in rows]))
    expert_rows = [r["return"] for r in rows if r["policy"] == "expert"]
    if expert_rows:
        expert, source = float(np.mean(expert_rows)), f"the {len(expert_rows)} expert episodes of this dataset"
    else:
        assert cfg.policy_run is not None
        from rlgen.agents.run_dir import read_ladder

        rungs = sorted(read_ladder(cfg.policy_run).get("rungs", []), key=lambda r: r["step"])
        expert, source = float(rungs[-1]["mean_return"]), f"the expert rung's ladder evaluation (step {rungs[-1]['step']:,})"
    fraction = mean / expert if expert > 0 else None
    target = target_fraction(cfg)
    if fraction is not None and target is not None and abs(fraction - target) > MEDIUM_TOLERANCE:
        log.warning("the %s data's mean return %.3g is %.0f%% of the expert's %.3g; the recipe aims at %.0f%%", cfg.skill, mean,
                    100 * fraction, expert, 100 * target)  # fmt: skip
    return {"mean_return": mean, "expert_return": expert, "expert_return_from": source, "fraction": fraction, "target_fraction": target}


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


def _has_finished_work(root: Path) -> bool:
    return (root / MANIFEST).is_file() or any((root / SEGMENT_DIR).glob("*.json")) or any((root / SHARD_DIR).glob("*.zst"))


def check_collect_config(root: Path, cfg: CollectConfig, write: bool = True) -> None:
    """Refuse ``out_dir`` when it holds finished work (a manifest, a segment, a shard) of another
    config; then, with ``write``, record this config there. A directory without finished work (what a
    command killed or failed before its first shard leaves) is taken over."""
    if root.exists() and not root.is_dir():
        raise DatasetError(f"out_dir {str(root)!r} is a file; give a directory for the dataset")
    path = root / COLLECT_CONFIG
    record = collect_config_record(cfg)
    old: Any = None
    if path.is_file():
        try:
            old = json.loads(path.read_text())
        except (OSError, ValueError):
            old = {"unreadable": True}
    if old != record and _has_finished_work(root):
        if old is None:
            raise DatasetError(f"{root} holds data that `rlgen collect` did not write with a config record; use another out_dir")
        diff = sorted(k for k in set(old) | set(record) if old.get(k) != record.get(k)) if isinstance(old, dict) else ["the whole record"]
        raise DatasetError(f"{root} was collected with a different config (differs in: {', '.join(diff)}); "
                           "use another out_dir, or delete the directory to start over")  # fmt: skip
    if write and old != record:
        root.mkdir(parents=True, exist_ok=True)
        write_json_atomic(path, record)


def segment_size(unit: str, sizes: list[int], k: int, done: list[dict[str, Any]]) -> int:
    """Segment ``k``'s target: for transitions, what the finished earlier segments lack of the first
    ``k + 1`` nominal sizes (may be <= 0: nothing to collect); for episodes, ``sizes[k]``."""
    if unit == "episodes":
        return sizes[k]
    before = sum(r["length"] for d in done if d["segment"] < k for r in d["episodes"])
    return sum(sizes[: k + 1]) - before


def collect(cfg: CollectConfig) -> Path:
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
    from rlgen.envs import make_env

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
    progress = _Progress(cfg, unit, sum(sizes), sum(sum(r["length"] if unit == "transitions" else 1 for r in d["episodes"]) for d in done))
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
        progress.stop()
    done.sort(key=lambda d: d["segment"])
    shards = [s for d in done for s in d["shards"]]
    rows = [dict(r, id=i) for i, r in enumerate(r for d in done for r in d["episodes"])]
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
    vs_expert = return_vs_expert(cfg, specs, rows)
    if vs_expert is not None:
        manifest["return_vs_expert"] = vs_expert
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
