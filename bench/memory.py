"""Peak memory of each phase of offline training on a large Procgen-shaped dataset (issue 18, part 7).

Phases, in one process: ``import`` torch and d3rlpy (rlgen's offline agents); ``write`` a synthetic dataset of ``--transitions`` 3x64x64 uint8 frames (1M: 12 GB raw)
with rlgen's ``DatasetWriter``; ``cache``: build and open its memory-mapped sampler cache (``Dataset.cache``);
``bc`` and ``dt``: that many updates of BC (batch 256) and DT (batch 512 x context 10, 6 layers, 8 heads,
128-dim: the shipped configs) sampling from the cache, on CPU. For each phase it prints the wall time and the
peak resident set: ``VmHWM`` (reset at the phase's start through ``/proc/self/clear_refs``) and, from a thread
reading ``/proc/self/status`` every 5 ms, the peaks of its two parts: anonymous memory (the process's own:
arrays, model, optimizer, activations, the writer's shard buffer) and file-backed pages (the memory-mapped
cache's pages in the page cache, which the kernel drops under memory pressure instead of failing).

The frames look like Procgen's for the compressor: a per-episode background of 8x8-pixel tiles in four colours
and a moving 8x8 sprite of random pixels, so shards are small while the cache holds every raw byte.

    python bench/memory.py                              # 1M transitions, 300 BC and 10 DT updates (13 GB of disk)
    python bench/memory.py --transitions 50000          # scaled down
    python bench/memory.py --quick                      # tiny; what the tests run

Linux only (``/proc``).
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from rlgen.data import DatasetWriter, Episode, load_dataset

GIB = 1 << 30
STATUS_FIELDS = ("VmHWM", "VmRSS", "RssAnon", "RssFile", "RssShmem")


def read_status() -> dict[str, int]:
    """This process's ``/proc/self/status`` memory fields, in bytes."""
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            name, _, value = line.partition(":")
            if name in STATUS_FIELDS:
                out[name] = int(value.split()[0]) * 1024
    return out


class PhaseMemory:
    """Peak memory of named phases of this process (``with meter.phase("cache"): ...``).

    Attributes:
        rows: one dict per finished phase: ``phase``, ``seconds``, ``peak_rss`` (VmHWM over the phase, bytes),
            ``peak_anon`` and ``peak_file`` (bytes; file includes shared memory), ``start_rss`` (bytes).
    """

    def __init__(self, interval_s: float = 0.005) -> None:
        self.interval_s = interval_s
        self.rows: list[dict[str, Any]] = []

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        start = read_status()
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets VmHWM to the current RSS (Linux >= 4.0)
        peaks = {"anon": start["RssAnon"], "file": start["RssFile"] + start["RssShmem"]}
        stop = threading.Event()

        def sample() -> None:
            while not stop.wait(self.interval_s):
                s = read_status()
                peaks["anon"] = max(peaks["anon"], s["RssAnon"])
                peaks["file"] = max(peaks["file"], s["RssFile"] + s["RssShmem"])

        thread = threading.Thread(target=sample, daemon=True)
        t0 = time.perf_counter()
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()
            end = read_status()
            self.rows.append({"phase": name, "seconds": time.perf_counter() - t0, "start_rss": start["VmRSS"], "start_anon": start["RssAnon"],
                              "peak_rss": end["VmHWM"], "peak_anon": max(peaks["anon"], end["RssAnon"]),
                              "peak_file": max(peaks["file"], end["RssFile"] + end["RssShmem"])})  # fmt: skip


def synthetic_episode(rng: np.random.Generator, length: int, level: int) -> Episode:
    """One Procgen-shaped episode: ``length`` steps, ``(length + 1, 3, 64, 64)`` uint8 frames, 15 actions."""
    palette = rng.integers(0, 256, (4, 3), dtype=np.uint8)
    background = palette[rng.integers(0, 4, (8, 8))].transpose(2, 0, 1).repeat(8, axis=1).repeat(8, axis=2)  # (3, 64, 64)
    obs = np.broadcast_to(background, (length + 1, 3, 64, 64)).copy()
    sprite = rng.integers(0, 256, (3, 8, 8), dtype=np.uint8)
    ys = np.clip(28 + np.cumsum(rng.integers(-1, 2, length + 1)), 0, 56)
    xs = (2 * np.arange(length + 1) + rng.integers(0, 57)) % 57
    for t in range(length + 1):
        obs[t, :, ys[t] : ys[t] + 8, xs[t] : xs[t] + 8] = sprite
    rewards = np.zeros(length, np.float32)
    rewards[-1] = 10.0 * (rng.random() < 0.5)
    return Episode(obs, rng.integers(0, 15, length), rewards, np.r_[np.zeros(length - 1, bool), [True]], np.zeros(length, bool), level=level)


def write_synthetic(root: Path, transitions: int, seed: int = 0) -> None:
    """At least ``transitions`` steps in episodes of 100-500 steps on levels 0-199, one episode in RAM at a time."""
    rng = np.random.default_rng(seed)
    manifest = {"env": "procgen/coinrun", "observation_space": {"shape": [3, 64, 64], "dtype": "uint8"}, "action_space": {"n": 15},
                "policies": [{"label": "random"}]}  # fmt: skip
    written, i = 0, 0
    with DatasetWriter(root, manifest) as w:
        while written < transitions:
            length = int(min(rng.integers(100, 501), max(1, transitions - written)))
            w.add(synthetic_episode(rng, length, level=i % 200))
            written, i = written + length, i + 1


def train(ds: Any, algo: str, updates: int, batch: int, quick: bool) -> float:
    """``updates`` updates of ``algo`` on CPU from ``ds``'s cache; returns the median seconds per update."""
    import torch

    from rlgen.agents.offline import build_agent
    from rlgen.config import OfflineConfig, validate_config

    cfg = validate_config({"algo": algo, "dataset": str(ds.root), "batch_size": batch, "network": "impala", "device": "cpu",
                           "n_layers": 2 if quick else 6, "n_heads": 2 if quick else 8, "embed_dim": 32 if quick else 128}, OfflineConfig)  # fmt: skip
    torch.manual_seed(0)
    agent = build_agent(cfg, ds.observation_shape, ds.num_actions, "cpu", target_return=10.0)
    rng = np.random.default_rng(0)
    times = []
    for _ in range(updates):
        t0 = time.perf_counter()
        agent.update(ds.sample_windows(batch, cfg.context_length, rng) if agent.episodic else ds.sample_transitions(batch, rng))
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def dominant(row: dict[str, Any]) -> str:
    anon, file = row["peak_anon"], row["peak_file"]
    if anon >= file:
        return "anonymous"
    return "file-backed"


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--transitions", type=int, default=1_000_000)
    parser.add_argument("--updates", type=int, default=300, help="BC updates")
    parser.add_argument("--dt-updates", type=int, default=10, help="DT updates (one took 107 s on one core of the loaded 2-core machine at batch 512 x 10)")
    parser.add_argument("--bc-batch", type=int, default=256)
    parser.add_argument("--dt-batch", type=int, default=512)
    parser.add_argument("--dir", type=Path, help="where the dataset goes (kept; reused when it already holds one); default: a temporary folder")
    parser.add_argument("--quick", action="store_true", help="3,000 transitions, 3 updates of each at batch 16, a 2-layer DT")
    args = parser.parse_args(argv)
    if args.quick:
        args.transitions, args.updates, args.dt_updates, args.bc_batch, args.dt_batch = 3_000, 3, 3, 16, 16
    for name in ("transitions", "updates", "dt_updates", "bc_batch", "dt_batch"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    from rlgen.cli import configure_logging

    configure_logging(debug=False)
    tmp = None if args.dir else Path(tempfile.mkdtemp(prefix="rlgen_memory_"))
    root = args.dir or tmp / "procgen_synthetic"
    meter = PhaseMemory()
    load0 = os.getloadavg()[0]
    try:
        with meter.phase("import"):  # torch and d3rlpy, so that the training phases show their own memory
            import rlgen.agents.offline  # noqa: F401
        if not (root / "manifest.json").is_file():
            with meter.phase("write"):
                write_synthetic(root, args.transitions)
        with meter.phase("cache"):
            ds = load_dataset(root)
            cache = ds.cache()
        with meter.phase("bc"):
            bc_s = train(ds, "bc", args.updates, args.bc_batch, args.quick)
        with meter.phase("dt"):
            dt_s = train(ds, "dt", args.dt_updates, args.dt_batch, args.quick)
        stored = sum(f.stat().st_size for f in (root / "shards").rglob("*") if f.is_file()) if (root / "shards").is_dir() else 0
        cached = sum(f.stat().st_size for f in cache.rglob("*") if f.is_file())
        raw = ds.num_transitions * 3 * 64 * 64
        print(f"dataset: {ds.num_transitions:,} transitions, {ds.num_episodes:,} episodes; raw frames {raw / GIB:.2f} GiB, "
              f"shards {stored / GIB:.3f} GiB ({stored / ds.num_transitions:,.0f} bytes/transition), cache {cached / GIB:.2f} GiB")  # fmt: skip
        print(f"{'phase':<6} {'seconds':>8} {'start RSS GiB':>14} {'peak RSS GiB':>13} {'peak anon GiB':>14} {'peak file GiB':>14}  dominated by")
        for r in meter.rows:
            print(f"{r['phase']:<6} {r['seconds']:>8.1f} {r['start_rss'] / GIB:>14.2f} {r['peak_rss'] / GIB:>13.2f} "
                  f"{r['peak_anon'] / GIB:>14.2f} {r['peak_file'] / GIB:>14.2f}  {dominant(r)}")  # fmt: skip
        print(f"updates: BC {args.updates} at batch {args.bc_batch}, median {bc_s:.3f} s; DT {args.dt_updates} at batch "
              f"{args.dt_batch} x 10, median {dt_s:.3f} s")  # fmt: skip
        top = max(meter.rows, key=lambda r: r["peak_rss"])
        print(f"highest peak: {top['phase']}, {top['peak_rss'] / GIB:.2f} GiB RSS ({top['peak_anon'] / GIB:.2f} GiB anonymous, "
              f"{top['peak_file'] / GIB:.2f} GiB file-backed cache pages); highest anonymous: "
              f"{max(meter.rows, key=lambda r: r['peak_anon'])['phase']}")  # fmt: skip
        print(f"load average (1 min) before {load0:.2f}, after {os.getloadavg()[0]:.2f}; torch threads: OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}")
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    return meter.rows


if __name__ == "__main__":
    main()
