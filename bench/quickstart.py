"""Wall time of `rlgen quickstart` against its budget (10 minutes on 2 CPU cores), with this host's speed.

Runs the real command in a fresh directory, in a subprocess, and prints its closing table, the wall time, the
budget and their ratio, the time per stage kind (from each stage's `stage.json`), and the machine's load average
before and after (the budget is for an otherwise idle machine; other work on the same cores shows up as a
higher load). Hosts differ 2-3x in speed, so the same run also measures two fixed workloads on one core, before
and after the quickstart: BC updates/s of the quickstart's network on a fixed batch, and DoorKey-6x6 env
steps/s with random actions. Compare those figures between hosts before comparing wall times.

    python bench/quickstart.py              # the real quickstart: about 6 minutes on an idle 2-core CPU
    python bench/quickstart.py --quick      # tiny budgets: checks the command end to end (no timing claim)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

BUDGET_S = 600.0
#: Tiny budgets for --quick: the same stages, a few seconds each.
QUICK = [
    "ppo.set.total_steps=2048", "ppo.set.ladder.every_steps=1024", "ppo.set.checkpoint_every=1024", "ppo.set.ladder.episodes=4",
    "datasets.transitions=[1000]", "offline.per_algo.bc.steps=20", "offline.per_algo.cql.steps=20", "offline.per_algo.dt.steps=5",
    "evaluation.episodes=4",
]  # fmt: skip


def bc_updates_per_s(updates: int, seed: int = 0) -> float:
    """Behaviour-cloning updates/s on one thread: the quickstart's MiniGrid CNN on DoorKey-6x6's full view
    ``(3, 6, 6)``, 7 actions, one fixed batch of 128 (Adam, lr 1e-3). No data loading: the network only."""
    import torch

    from rlgen.agents.networks import make_encoder

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        g = torch.Generator().manual_seed(seed)
        obs = torch.randint(0, 11, (128, 3, 6, 6), generator=g).float()
        actions = torch.randint(0, 7, (128,), generator=g)
        torch.manual_seed(seed)
        encoder = make_encoder("minigrid_cnn", (3, 6, 6))
        model = torch.nn.Sequential(encoder, torch.nn.Linear(128, 7))
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)

        def step() -> None:
            loss = torch.nn.functional.cross_entropy(model(obs), actions)
            opt.zero_grad()
            loss.backward()
            opt.step()

        for _ in range(10):  # warm-up: allocator, kernels
            step()
        t0 = time.perf_counter()
        for _ in range(updates):
            step()
        return updates / (time.perf_counter() - t0)
    finally:
        torch.set_num_threads(threads)


def env_steps_per_s(steps: int, num_envs: int = 16, seed: int = 0) -> float:
    """DoorKey-6x6 (full view, the quickstart's 25 training levels) env steps/s with random actions,
    ``num_envs`` envs in one process; counts every env's step."""
    import numpy as np

    from rlgen.envs import LevelSplit, make_env

    split = LevelSplit("minigrid", "doorkey-6x6", train=range(0, 25), held_out=range(250, 1250), options={"view": "full"})
    env = make_env(split, which="train", num_envs=num_envs, seed=seed)
    rng = np.random.default_rng(seed)
    env.reset(seed=seed)
    t0 = time.perf_counter()
    for _ in range(steps // num_envs):
        env.step(rng.integers(0, 7, size=num_envs))
    seconds = time.perf_counter() - t0
    env.close()
    return (steps // num_envs) * num_envs / seconds


def host_speed(quick: bool) -> tuple[float, float]:
    return bc_updates_per_s(50 if quick else 1000), env_steps_per_s(800 if quick else 32_000)


def stage_breakdown(out: Path) -> list[tuple[str, int, float, float]]:
    """(what, stages, total seconds, longest) per stage kind, with offline training per algorithm and
    evaluation per agent label, from the ``stage.json`` records under ``out``."""
    by: dict[str, list[float]] = defaultdict(list)
    for record_path in sorted(out.rglob("stage.json")):
        record = json.loads(record_path.read_text())
        seconds = (record.get("info") or {}).get("seconds")
        if seconds is None:
            continue
        kind, config = record["kind"], record["config"]
        if kind == "offline":
            kind = f"offline {config.get('algo')}"
        elif kind == "evaluate":
            kind = f"evaluate {(config.get('row') or {}).get('agent', config.get('agent'))}"
        by[kind].append(float(seconds))
    order = ("ppo", "collect", "subset", "offline", "evaluate", "report")
    keys = sorted(by, key=lambda k: (order.index(k.split()[0]) if k.split()[0] in order else len(order), k))
    return [(k, len(by[k]), sum(by[k]), max(by[k])) for k in keys]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny budgets (no timing claim)")
    parser.add_argument("--out", help="study directory (default: a fresh temporary directory)")
    parser.add_argument("overrides", nargs="*", help="more quickstart overrides, e.g. workers=1")
    args = parser.parse_args()
    speed0 = host_speed(args.quick)
    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or str(Path(tmp) / "quickstart")
        cmd = [sys.executable, "-m", "rlgen.cli", "quickstart", f"out_dir={out}", *(QUICK if args.quick else []), *args.overrides]
        load0 = os.getloadavg()
        t0 = time.perf_counter()
        result = subprocess.run(cmd, capture_output=True, text=True)
        seconds = time.perf_counter() - t0
        load1 = os.getloadavg()
        stages = stage_breakdown(Path(out))
    speed1 = host_speed(args.quick)
    if result.returncode != 0:
        print(result.stdout[-4000:], result.stderr[-4000:], sep="\n", file=sys.stderr)
        return result.returncode
    lines = result.stdout.splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith("agent ")), None)
    if start is not None:
        for line in lines[start:]:
            if line.startswith(("stages:", "took")):
                break
            print(line)
    print()
    print(f"{'measure':<34} {'seconds':>8} {'budget':>7} {'ratio':>6}")
    print(f"{'rlgen quickstart' + (' --quick' if args.quick else '') + ' wall time':<34} {seconds:>8.0f} {BUDGET_S:>7.0f} {seconds / BUDGET_S:>6.2f}")
    print()
    print(f"{'stage':<22} {'stages':>6} {'total s':>8} {'longest s':>9}")
    for what, n, total, longest in stages:
        print(f"{what:<22} {n:>6} {total:>8.1f} {longest:>9.1f}")
    busy = sum(total for _, _, total, _ in stages)
    print(f"{'all stages':<22} {sum(n for _, n, _, _ in stages):>6} {busy:>8.1f}   ({busy / seconds:.2f} stage-seconds per wall second)")
    print()
    print(f"host speed (one core)  before / after: BC updates/s {speed0[0]:,.0f} / {speed1[0]:,.0f}; "
          f"DoorKey-6x6 env steps/s {speed0[1]:,.0f} / {speed1[1]:,.0f}")  # fmt: skip
    print(f"cores {os.cpu_count()}, load average (1, 5, 15 min) before {' '.join(f'{x:.2f}' for x in load0)}, "
          f"after {' '.join(f'{x:.2f}' for x in load1)}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
