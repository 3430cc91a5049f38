"""Steps/s of ``rlgen.envs.make_env`` vs raw EnvPool: same game, levels, seed, num_envs, actions.

Prints one row per num_envs: median steps/s of each, and the median of per-pair ratios (goal >= 0.95).

    python bench/envs.py                 # coinrun, 16 and 64 envs
    python bench/envs.py --quick         # a few seconds; what the tests run
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from rlgen.envs import LevelSplit, make_env
from rlgen.envs.procgen import _import_envpool, _task_id


def steps_per_second(env, actions: np.ndarray) -> float:
    env.reset()
    start = time.perf_counter()
    for a in actions:
        env.step(a)
    return actions.size / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--game", default="coinrun")
    parser.add_argument("--num-envs", type=int, nargs="+", default=[16, 64])
    parser.add_argument("--steps", type=int, default=1000, help="batched steps per repeat")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--quick", action="store_true", help="16 envs, 200 steps, 3 repeats")
    args = parser.parse_args(argv)
    if args.quick:
        args.num_envs, args.steps, args.repeats = [16], 200, 3

    envpool = _import_envpool()
    split = LevelSplit.procgen(args.game)
    rows = []
    print(f"{'game':<10} {'envs':>5} {'raw EnvPool steps/s':>20} {'make_env steps/s':>17} {'ratio':>6}")
    for n in args.num_envs:
        actions = np.random.default_rng(0).integers(0, 15, size=(args.steps, n))
        raw = envpool.make_gymnasium(
            _task_id(args.game, "easy"), num_envs=n, seed=0, start_level=0, num_levels=200,
            max_episode_steps=split.options["max_episode_steps"],
        )
        ours = make_env(split, "train", num_envs=n, seed=0)
        raw_sps, our_sps, ratios = [], [], []
        for i in range(args.repeats):
            # Pairs in alternating order (ABBA), so drift in machine load hits both alike;
            # the ratio is the median of the per-pair ratios.
            if i % 2 == 0:
                r, o = steps_per_second(raw, actions), steps_per_second(ours, actions)
            else:
                o, r = steps_per_second(ours, actions), steps_per_second(raw, actions)
            raw_sps.append(r)
            our_sps.append(o)
            ratios.append(o / r)
        r, o, ratio = statistics.median(raw_sps), statistics.median(our_sps), statistics.median(ratios)
        rows.append({"game": args.game, "num_envs": n, "raw": r, "rlgen": o, "ratio": ratio})
        print(f"{args.game:<10} {n:>5} {r:>20,.0f} {o:>17,.0f} {ratio:>6.3f}")
    return rows


if __name__ == "__main__":
    main()
