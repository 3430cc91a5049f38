"""The GPU check's Python driver (``bench/gpu_check.sh`` runs one section per process, each under its own
time limit, so a slow or failing section never costs the others their figures).

Sections:

* ``env``: Python, torch, CUDA and JAX versions and devices (fails at once when ``--cpu`` was not given
  and either framework sees no GPU, rather than timing CPU updates under a GPU label).
* ``sampler``: batches/s of ``sample_transitions(256)`` and ``sample_windows(512, 10)`` from the dataset's
  memory-mapped cache on the host against the same dataset moved to the device with ``Dataset.to_device``.
* ``offline``: offline updates/s of BC, CQL, IQL, DT and BCT with the IMPALA encoder at the reference batch
  sizes on the device, against plain d3rlpy on the same device where it has the algorithm (BC, CQL, DT;
  ``bench/offline.py``'s ``time_algos``).
* ``xland``: JAX env steps/s and PPO training steps/s on XLand-MiniGrid at 1k/4k/8k envs (``bench/xland.py``).

The data is a synthetic Procgen-shaped dataset (3x64x64 uint8 frames, 15 actions, episodes of 100 steps)
written with rlgen's own dataset writer (``bench/offline.py``'s ``make_data``) into ``--data`` once and reused
by the later sections. ``--cpu``: the same code on CPU at tiny sizes (a dry run; no figure means anything).

    python bench/gpu_check.py --section env sampler offline xland --data /tmp/gpu_check_data [--cpu]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/ (offline.py, xland.py) when run by path

SECTIONS = ("env", "sampler", "offline", "xland")


def dataset(path: Path, transitions: int) -> Any:
    """The synthetic Procgen-shaped dataset at ``path``, written there first when absent."""
    from offline import make_data

    from rlgen.data import load_dataset

    if not (path / "manifest.json").is_file():
        t0 = time.perf_counter()
        make_data(path, (3, 64, 64), transitions)
        print(f"dataset: {transitions:,} synthetic 3x64x64 transitions written in {time.perf_counter() - t0:.1f} s", flush=True)
    ds = load_dataset(path)
    t0 = time.perf_counter()
    ds.cache()
    print(f"dataset: cache opened (built if new) in {time.perf_counter() - t0:.1f} s", flush=True)
    return ds


def section_env(cpu: bool) -> None:
    import jax
    import torch

    print(f"python {platform.python_version()}, torch {torch.__version__} (CUDA {torch.version.cuda}), jax {jax.__version__}")
    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        print(f"torch device: {p.name}, {p.total_memory / 2**30:.0f} GiB, {torch.cuda.device_count()} device(s)")
    print(f"jax devices: {', '.join(f'{d.platform}:{d.device_kind}' for d in jax.devices())}; CPU cores {os.cpu_count()}")
    if not cpu and not (torch.cuda.is_available() and jax.devices()[0].platform == "gpu"):
        raise SystemExit("gpu_check: torch or JAX sees no GPU (give --cpu for a dry run on CPU)")


def rate(fn: Callable[[], Any], seconds: float, sync: Callable[[], None]) -> float:
    """Calls/s of ``fn`` over at least ``seconds`` (after 3 warm-up calls), synchronized at both ends."""
    for _ in range(3):
        fn()
    sync()
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        fn()
        n += 1
    sync()
    return n / (time.perf_counter() - t0)


def section_sampler(ds: Any, device: str, seconds: float) -> None:
    import numpy as np
    import torch

    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    rng = np.random.default_rng(0)
    draws = {"transitions 256": lambda: ds.sample_transitions(256, rng), "windows 512x10": lambda: ds.sample_windows(512, 10, rng)}
    host = {name: rate(fn, seconds, sync) for name, fn in draws.items()}
    moved = ds.to_device(device)
    print(f"sampler: to_device({device!r}) -> {moved}")
    print(f"{'sampler batch':<16} {'host batches/s':>15} {'device batches/s':>17} {'ratio':>6}")
    for name, fn in draws.items():
        dev = rate(fn, seconds, sync) if moved else float("nan")
        print(f"{name:<16} {host[name]:>15,.1f} {dev:>17,.1f} {dev / host[name]:>6.2f}", flush=True)


def section_offline(ds: Any, device: str, updates: int, quick: bool) -> None:
    import torch
    from offline import HEADER, time_algos

    from rlgen.cli import configure_logging

    configure_logging(debug=False)
    torch.manual_seed(0)
    # as `rlgen train` on a GPU; on CPU too (a dry run), so that it takes the same tensor-batch path
    print(f"offline: to_device({device!r}) -> {ds.to_device(device)}")
    print(HEADER)
    for row in time_algos(ds, ["bc", "cql", "iql", "dt", "bct"], device, updates, quick, "impala", batch=4 if quick else None):
        print(row, flush=True)
    print(f"median of {updates} interleaved updates on {device}; IQL and BCT have no d3rlpy counterpart")


def section_xland(cpu: bool) -> None:
    import xland

    if cpu:  # PPO's compile alone takes a minute on CPU; tests/agents/test_ppo_jax.py runs bench/xland.py --quick
        print("xland: dry run, env random rows only")
        xland.main(["--num-envs", "16", "--env-steps", "4", "--repeats", "1", "--env-only"])
    else:
        xland.main([])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--section", nargs="+", choices=SECTIONS, default=list(SECTIONS))
    parser.add_argument("--data", type=Path, required=True, help="directory of the synthetic dataset (written when absent)")
    parser.add_argument("--cpu", action="store_true", help="dry run on CPU at tiny sizes")
    parser.add_argument("--updates", type=int, default=20, help="timed updates per algorithm (median)")
    args = parser.parse_args(argv)
    device = "cpu" if args.cpu else "cuda:0"
    for name in args.section:
        t0 = time.perf_counter()
        print(f"== {name}", flush=True)
        if name == "env":
            section_env(args.cpu)
        elif name == "sampler":
            section_sampler(dataset(args.data, 2_000 if args.cpu else 20_000), device, 0.2 if args.cpu else 3.0)
        elif name == "offline":
            section_offline(dataset(args.data, 2_000 if args.cpu else 20_000), device, 1 if args.cpu else args.updates, args.cpu)
        else:
            section_xland(args.cpu)
        print(f"== {name}: {time.perf_counter() - t0:.1f} s", flush=True)


if __name__ == "__main__":
    main()
