"""Evaluation speed per agent type: episodes/s and env steps/s of ``evaluate_on_levels`` for the same level
list, and each agent's wall time against BC's (issue 18, part 1: DT and BCT act for all envs in one forward
pass; goal DT <= 2x BC's wall time for the same episodes).

The agents are fresh (untrained) rlgen offline agents built with ``build_agent`` at the sizes of the shipped
configs (DT/BCT: 6 layers, 8 heads, 128-dim, context 10); an untrained policy rarely finishes a level, so most
episodes run to the time limit, the slow case (the quickstart's failed DT episodes). Each repeat evaluates
every agent once, interleaved (bc, dt, bct, bc, ...), so background load hits all alike; the median wall time
of each is printed, and its ratio to BC's median. The time per env step is printed as well, since episode
lengths differ between agents.

    python bench/evaluate.py             # MiniGrid DoorKey-6x6 full view, 32 episodes on 16 envs, 3 repeats
    python bench/evaluate.py --quick     # 8 episodes, small DT; what the tests run
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch

from rlgen.agents.offline import build_agent
from rlgen.cli import configure_logging
from rlgen.config import OfflineConfig, validate_config
from rlgen.envs import make_env
from rlgen.evaluation import evaluate_on_levels

AGENTS = ("bc", "dt", "bct")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="8 episodes, 1 repeat, a 2-layer DT (no timing claim)")
    parser.add_argument("--episodes", type=int, default=32)
    parser.add_argument("--num-envs", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    configure_logging(debug=False)
    episodes, repeats = (8, 1) if args.quick else (args.episodes, args.repeats)
    size = {"n_layers": 2, "n_heads": 2, "embed_dim": 32} if args.quick else {"n_layers": 6, "n_heads": 8, "embed_dim": 128}
    base = {"env": "minigrid/doorkey-6x6", "split": {"num_levels": 25, "options": {"view": "full"}}, "dataset": "unused",
            "device": "cpu", "context_length": 10, **size}  # fmt: skip
    agents = {}
    for algo in AGENTS:
        cfg = validate_config({**base, "algo": algo}, OfflineConfig)
        split = cfg.level_split(check_duplicates=False)
        env = make_env(split, "train", num_envs=1, seed=0)
        shape, n_actions = tuple(env.single_observation_space.shape), int(env.single_action_space.n)
        env.close()
        agents[algo] = build_agent(cfg, shape, n_actions, "cpu", target_return=1.0)
    load0 = os.getloadavg()[0]
    walls: dict[str, list[float]] = {a: [] for a in AGENTS}
    steps: dict[str, list[int]] = {a: [] for a in AGENTS}
    with torch.inference_mode():
        for _ in range(repeats):
            for algo, agent in agents.items():
                t0 = time.perf_counter()
                result = evaluate_on_levels(agent, split, "held_out", episodes=episodes, seed=0, num_envs=args.num_envs)
                walls[algo].append(time.perf_counter() - t0)
                steps[algo].append(int(result.lengths.sum()))
    print(f"{'agent':<6} {'episodes':>8} {'env steps':>9} {'wall s':>7} {'episodes/s':>10} {'ms/step':>8} {'wall vs bc':>10}")
    bc = statistics.median(walls["bc"])
    for algo in AGENTS:
        wall, n_steps = statistics.median(walls[algo]), statistics.median(steps[algo])
        print(f"{algo:<6} {episodes:>8} {n_steps:>9.0f} {wall:>7.2f} {episodes / wall:>10.2f} {1000 * wall / n_steps:>8.3f} {wall / bc:>10.2f}")
    print(f"median of {repeats} interleaved repeats, {args.num_envs} envs; torch threads {torch.get_num_threads()}; "
          f"load average (1 min) before {load0:.2f}, after {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
