"""Wall time of `rlgen quickstart` against its budget (10 minutes on 2 CPU cores).

Runs the real command in a fresh directory, in a subprocess, and prints its closing table, the wall time, the
budget and their ratio, and the machine's load average before and after (the budget is for an otherwise idle
machine; other work on the same cores shows up as a higher load).

    python bench/quickstart.py              # the real quickstart: about 5 minutes on an idle 2-core CPU
    python bench/quickstart.py --quick      # tiny budgets: checks the command end to end in about a minute
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BUDGET_S = 600.0
#: Tiny budgets for --quick: the same stages, a few seconds each.
QUICK = [
    "ppo.set.total_steps=2048", "ppo.set.ladder.every_steps=1024", "ppo.set.checkpoint_every=1024", "ppo.set.ladder.episodes=4",
    "datasets.transitions=[1000]", "offline.per_algo.bc.steps=20", "offline.per_algo.cql.steps=20", "offline.per_algo.dt.steps=5",
    "evaluation.episodes=4",
]  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny budgets (no timing claim)")
    parser.add_argument("--out", help="study directory (default: a fresh temporary directory)")
    parser.add_argument("overrides", nargs="*", help="more quickstart overrides, e.g. workers=1")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or str(Path(tmp) / "quickstart")
        cmd = [sys.executable, "-m", "rlgen.cli", "quickstart", f"out_dir={out}", *(QUICK if args.quick else []), *args.overrides]
        load0 = os.getloadavg()[0]
        t0 = time.perf_counter()
        result = subprocess.run(cmd, capture_output=True, text=True)
        seconds = time.perf_counter() - t0
        load1 = os.getloadavg()[0]
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
    print(f"cores {os.cpu_count()}, load average (1 min) before {load0:.2f}, after {load1:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
