"""Dataset benchmarks, in one run on one machine:

(a) collection: transitions/s written by ``rlgen collect`` (random policy, Procgen coinrun, 64 envs) vs raw
    ``make_env`` steps/s with the same policy (goal >= 0.5 on CPU);
(b) storage: bytes/transition on disk vs the raw 12,288 of a 3x64x64 frame (goal <= 0.06 for fresh Procgen shards);
(c) sampling: batches/s of ``sample_transitions(256)`` from the memory-mapped cache vs BC updates/s with the
    IMPALA encoder at batch 256 (sampling must not limit training);
and the cost of building the cache once and of checking it (sha256 of every file) each time a process opens it;
(d) shard codecs: for every candidate (layout, zstd level, long-distance matching, threads, xz), bytes/transition,
    the fraction of raw and compression/decompression MB/s (of raw bytes) on random-policy coinrun frames and on
    MiniGrid symbolic observations, frames in the order shards hold them (each env's steps together).

    python bench/data.py                       # 1M transitions: ~12 GB cache on disk, several minutes
    python bench/data.py --quick               # 20k transitions; what the tests run
    python bench/data.py --codecs-only --frames 8000   # (d) alone, on 8,000 frames of each env
"""

from __future__ import annotations

import argparse
import lzma
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from rlgen.agents.networks import ImpalaEncoder
from rlgen.config import CollectConfig, validate_config
from rlgen.data import load_dataset
from rlgen.collect import collect
from rlgen.data.codec import Codec, decompressor, to_stored
from rlgen.envs import LevelSplit, make_env


def raw_steps_per_second(num_envs: int, steps: int) -> float:
    env = make_env(LevelSplit.procgen("coinrun"), "train", num_envs=num_envs, seed=0)
    env.reset()
    rng = np.random.default_rng(0)
    start = time.perf_counter()
    for _ in range(steps):
        env.step(rng.integers(0, 15, size=num_envs))
    return steps * num_envs / (time.perf_counter() - start)


def bc_updates_per_second(batch: dict, updates: int) -> float:
    torch.manual_seed(0)
    encoder = ImpalaEncoder((3, 64, 64))
    head = torch.nn.Linear(encoder.features_dim, 15)
    opt = torch.optim.Adam([*encoder.parameters(), *head.parameters()], lr=5e-4)
    obs = torch.as_tensor(np.asarray(batch["obs"]))
    act = torch.as_tensor(np.asarray(batch["actions"]))
    times = []
    for _ in range(updates + 1):
        start = time.perf_counter()
        loss = torch.nn.functional.cross_entropy(head(encoder(obs)), act)
        opt.zero_grad()
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - start)
    return 1.0 / statistics.median(times[1:])


def env_frames(split: LevelSplit, n: int, num_envs: int = 16, seed: int = 0) -> np.ndarray:
    """``(n, *obs_shape)`` observations of a random policy on ``split``'s training levels, each env's steps
    together (as a shard holds whole episodes), channel-first as the env gives them."""
    env = make_env(split, "train", num_envs=num_envs, seed=seed)
    obs, _ = env.reset()
    steps = -(-n // num_envs)
    out = np.empty((num_envs, steps, *obs.shape[1:]), dtype=obs.dtype)
    rng = np.random.default_rng(seed)
    for t in range(steps):
        out[:, t] = obs
        obs, *_ = env.step(rng.integers(0, int(env.single_action_space.n), size=num_envs))
    env.close()
    return out.reshape(-1, *obs.shape[1:])[:n]


#: (name, layout, codec or xz preset): every candidate (d) measures; "chw" keeps the env's channel-first order.
CANDIDATES: list[tuple[str, str, Codec | int]] = [
    ("chw zstd-3 (schema 3)", "chw", Codec(3)),
    ("hwc zstd-3", "hwc", Codec(3)),
    ("hwc zstd-3 ldm27", "hwc", Codec(3, ldm=True, window_log=27)),
    *[(f"hwc zstd-{lv} threads=2", "hwc", Codec(lv, threads=2)) for lv in (3, 5, 7, 9)],
    *[(f"hwc zstd-{lv} ldm27 threads=2", "hwc", Codec(lv, ldm=True, window_log=27, threads=2)) for lv in (3, 5, 7, 9)],
    ("hwc zstd-19", "hwc", Codec(19)),
    ("hwc zstd-19 ldm27", "hwc", Codec(19, ldm=True, window_log=27)),
    ("hwc xz-6", "hwc", 6),
    ("hwc xz-9", "hwc", 9),
]


def codec_rows(frames: np.ndarray, slow: bool = True) -> list[tuple[str, float, float, float, float]]:
    """``(candidate, bytes/transition, fraction of raw, compress MB/s, decompress MB/s)`` per candidate; MB/s of
    raw bytes (1e6), one thread unless the candidate says threads. Every decode is checked to give the input back."""
    rows = []
    raw_layouts = {"chw": to_stored(frames, None).tobytes(), "hwc": to_stored(frames, [1, 2, 0] if frames.ndim == 4 else None).tobytes()}
    for name, layout, codec in CANDIDATES:
        if not slow and (name.startswith("hwc zstd-19") or "xz" in name):
            continue
        raw = raw_layouts[layout]
        start = time.perf_counter()
        if isinstance(codec, Codec):
            packed = codec.compressor().compress(raw)
            mid = time.perf_counter()
            back = decompressor().decompress(packed)
        else:
            packed = lzma.compress(raw, preset=codec)
            mid = time.perf_counter()
            back = lzma.decompress(packed)
        end = time.perf_counter()
        if back != raw:
            raise RuntimeError(f"{name} did not decode to its input")
        mb = len(raw) / 1e6
        rows.append((name, len(packed) / len(frames), len(packed) / len(raw), mb / (mid - start), mb / (end - mid)))
    return rows


def codec_inputs(frames: int) -> dict[str, np.ndarray]:
    return {"procgen/coinrun": env_frames(LevelSplit.procgen("coinrun"), frames),
            "minigrid/doorkey-6x6": env_frames(LevelSplit.minigrid("doorkey-6x6"), frames)}  # fmt: skip


def print_codecs(frames_by_env: dict[str, np.ndarray], slow: bool = True) -> None:
    print(f"{'(d) shard codec':<30} {'env':<20} {'bytes/transition':>16} {'comp MB/s':>10} {'dec MB/s':>9} {'ratio':>7}")
    for env, frames in frames_by_env.items():
        for name, bpt, frac, comp, dec in codec_rows(frames, slow):
            print(f"{name:<30} {env:<20} {bpt:>16,.1f} {comp:>10,.1f} {dec:>9,.0f} {frac:>7.4f}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--transitions", type=int, default=1_000_000)
    parser.add_argument("--dir", help="where to write the dataset (default: a temporary directory)")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--frames", type=int, help="frames of each env for (d) (default 20,000; 1,000 with --quick)")
    parser.add_argument("--codecs-only", action="store_true", help="only (d)")
    args = parser.parse_args(argv)
    frames = args.frames or (1_000 if args.quick else 20_000)
    if args.codecs_only:
        load0 = os.getloadavg()[0]
        print_codecs(codec_inputs(frames))
        print(f"load average (1 min) before {load0:.2f}, after {os.getloadavg()[0]:.2f}; {os.cpu_count()} CPUs")
        return
    n = 20_000 if args.quick else args.transitions
    work = Path(args.dir or tempfile.mkdtemp(prefix="rlgen-bench-"))
    root = work / "coinrun-random"
    shutil.rmtree(root, ignore_errors=True)
    load0 = os.getloadavg()[0]
    try:
        raw = raw_steps_per_second(64, 100 if args.quick else 500)
        cfg = validate_config({"env": "procgen/coinrun", "skill": "random", "transitions": n, "num_envs": 64,
                               "shard_transitions": 10_000 if args.quick else 50_000, "progress": False,
                               "out_dir": str(root)}, CollectConfig)  # fmt: skip
        start = time.perf_counter()
        collect(cfg)
        ds = load_dataset(root)
        collect_rate = ds.num_transitions / (time.perf_counter() - start)
        bpt = ds.manifest["counts"]["bytes"] / ds.num_transitions

        start = time.perf_counter()
        ds.cache()
        cache_s = time.perf_counter() - start
        start = time.perf_counter()
        load_dataset(root).cache()  # what every later process pays: the cache's sizes, headers, sha256 and index ranges
        check_s = time.perf_counter() - start
        rng = np.random.default_rng(0)
        ds.sample_transitions(256, rng)
        k = 50 if args.quick else 500
        start = time.perf_counter()
        for _ in range(k):
            batch = ds.sample_transitions(256, rng)
        sample_rate = k / (time.perf_counter() - start)
        bc_rate = bc_updates_per_second(batch, 3 if args.quick else 10)

        print(f"{'measure':<52} {'rlgen':>12} {'baseline':>12} {'ratio':>8}")
        print(f"{'(a) collect transitions/s vs raw env steps/s':<52} {collect_rate:>12,.0f} {raw:>12,.0f} {collect_rate / raw:>8.3f}")
        print(f"{'(b) bytes/transition vs raw 3x64x64 frame':<52} {bpt:>12,.0f} {12288:>12,} {bpt / 12288:>8.3f}")
        print(f"{'(c) sample_transitions(256)/s vs BC updates/s':<52} {sample_rate:>12,.1f} {bc_rate:>12,.2f} {sample_rate / bc_rate:>8.1f}")
        cache_gb = sum(f.stat().st_size for f in (root / "cache").glob("*.npy")) / 1e9
        print(f"dataset: {ds.num_transitions:,} transitions; cache ({cache_gb:.2f} GB) built once in {cache_s:.1f}s, checked on each open in {check_s:.2f}s")
        print_codecs(codec_inputs(frames), slow=True)
        print(f"load average (1 min) before {load0:.2f}, after {os.getloadavg()[0]:.2f}; {os.cpu_count()} CPUs")
    finally:
        if not args.dir:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
