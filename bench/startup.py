"""Start-up time of the CLI: seconds from launching a command to its first progress line, and to its end,
for small work (goal: first progress line under 2 s).

Each command runs in a pseudo-terminal (so progress bars draw as they do for a user) in a fresh directory:

    train ppo      rlgen train configs/ppo/minigrid_doorkey.yaml, 2,048 env steps on 4 envs
    train bc       rlgen train configs/offline/bc.yaml on the tiny fixture dataset, 20 updates
    evaluate ppo   rlgen evaluate of the tiny fixture PPO run, 4 episodes per level set
    evaluate bc    rlgen evaluate of the tiny fixture BC run, 4 episodes per level set

"first line" is the first line the command prints (a progress bar or status line counts; rich redraws
count once); "end" is its exit. Median of ``--repeats`` runs of each, interleaved (a, b, c, d, a, b, ...)
so that background load hits all alike; the load average is printed before and after.

    python bench/startup.py              # 3 repeats
    python bench/startup.py --quick      # 1 repeat; what the tests run
"""

from __future__ import annotations

import argparse
import os
import pty
import select
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures" / "old_runs"
GOAL_S = 2.0


def commands(work: Path) -> dict[str, list[str]]:
    rl = [sys.executable, "-m", "rlgen.cli"]
    ppo = ["env=minigrid/doorkey-5x5", "split.num_levels=20", "num_envs=4", "total_steps=2048", "ppo.n_steps=256",
           "ppo.num_minibatches=2", "ppo.n_epochs=1", "ladder.every_steps=2048", "ladder.episodes=2", "eval_num_envs=2"]  # fmt: skip
    return {
        "train ppo": [*rl, "train", str(ROOT / "configs/ppo/minigrid_doorkey.yaml"), *ppo, f"out_dir={work / 'ppo'}"],
        "train bc": [*rl, "train", str(ROOT / "configs/offline/bc.yaml"), f"dataset={work / 'dataset'}", "steps=20", "batch_size=8",
                     "network=minigrid_cnn", "eval.enabled=false", "checkpoint_every=20", f"out_dir={work / 'bc'}"],  # fmt: skip
        "evaluate ppo": [*rl, "evaluate", str(work / "old_ppo"), "--episodes", "4"],
        "evaluate bc": [*rl, "evaluate", str(work / "old_bc"), "--episodes", "4"],
    }


def timed(cmd: list[str], cwd: Path) -> tuple[float, float, int]:
    """(seconds to the first printed line, seconds to exit, exit status) of ``cmd`` run in a pty."""
    master, slave = pty.openpty()
    env = {**os.environ, "COLUMNS": "120", "TERM": os.environ.get("TERM", "xterm")}
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, stdin=slave, stdout=slave, stderr=slave, env=env, close_fds=True)
    os.close(slave)
    first, buf = None, b""
    while True:
        ready, _, _ = select.select([master], [], [], 0.05)
        if ready:
            try:
                data = os.read(master, 65536)
            except OSError:  # the child closed the terminal
                data = b""
            if not data:
                break
            buf += data
            if first is None and any(c.isalnum() for c in buf.decode(errors="replace")):
                first = time.perf_counter() - t0
        elif proc.poll() is not None:
            break
    rc = proc.wait()
    end = time.perf_counter() - t0
    os.close(master)
    if rc != 0:
        sys.stderr.write(buf.decode(errors="replace")[-3000:])
    return (first if first is not None else end), end, rc


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="one repeat (what the tests run)")
    args = parser.parse_args(argv)
    repeats = 1 if args.quick else args.repeats
    load0 = os.getloadavg()
    times: dict[str, list[tuple[float, float]]] = {}
    with tempfile.TemporaryDirectory(prefix="rlgen-startup-") as tmp:
        for _ in range(repeats):
            for name in commands(Path(tmp)):
                work = Path(tmp) / "w"
                shutil.rmtree(work, ignore_errors=True)
                work.mkdir()
                shutil.copytree(FIXTURES / "dataset", work / "dataset")
                shutil.copytree(FIXTURES / "ppo", work / "old_ppo")
                shutil.copytree(FIXTURES / "bc", work / "old_bc")
                first, end, rc = timed(commands(work)[name], work)
                if rc != 0:
                    print(f"{name}: exit status {rc}", file=sys.stderr)
                    return 1
                times.setdefault(name, []).append((first, end))
    load1 = os.getloadavg()
    print(f"{'command':<14} {'first line s':>12} {'end s':>7} {'goal s':>7} {'ratio':>6}")
    for name, t in times.items():
        first, end = statistics.median(x[0] for x in t), statistics.median(x[1] for x in t)
        print(f"{name:<14} {first:>12.2f} {end:>7.2f} {GOAL_S:>7.1f} {first / GOAL_S:>6.2f}")
    print(f"median of {repeats}; cores {os.cpu_count()}, load average (1 min) before {load0[0]:.2f}, after {load1[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
