"""Updates/s x seeds of the JAX offline agents (bc_jax, iql_jax, cql_jax) vs rlgen's torch agents (bc, iql, cql)
on the same dataset, network (the small grid CNN, minigrid_cnn) and batch size.

JAX: ``seeds`` seeds vmapped in one jitted ``lax.scan`` of ``updates`` updates (one timed call = one chunk, as
``rlgen train`` runs them); its rate counts every seed's updates. Torch: the agent's ``update`` on batches of
rlgen's memory-mapped sampler, ``updates`` of them per timed call (the offline training loop). ``seeds`` torch
runs one after another take ``seeds`` times one run's time, so the ratio (JAX updates x seeds/s over torch
updates/s) is extrapolated from one torch run, not measured over five. Calls are interleaved (torch, JAX,
torch, JAX...) so that a change in the shared machine's load hits both alike; medians; load average printed.

    python bench/offline_jax.py            # XLand-shaped data (7x5x5), the configs' batch sizes, 5 seeds
    python bench/offline_jax.py --quick    # tiny; what the tests run
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import numpy as np

SHAPE = (7, 5, 5)
NUM_ACTIONS = 6
ENV = "xland/XLand-MiniGrid-R1-9x9"
BATCH = {"bc": 256, "iql": 512, "cql": 256}  # configs/offline_jax/*.yaml (the torch configs' values)


def make_data(root: Path, transitions: int, episode_length: int = 50) -> Path:
    from rlgen.data import Episode, write_dataset

    rng = np.random.default_rng(0)
    eps = []
    for i in range(transitions // episode_length):
        t = episode_length
        eps.append(Episode(rng.integers(0, 10, (t + 1, *SHAPE), dtype=np.uint8), rng.integers(0, NUM_ACTIONS, t), rng.random(t).astype(np.float32),
                           np.r_[np.zeros(t - 1, bool), [True]], np.zeros(t, bool), level=i % 100))  # fmt: skip
    write_dataset(root, eps, {"kind": "dataset", "env": ENV, "observation_space": {"shape": list(SHAPE), "dtype": "uint8"},
                              "action_space": {"n": NUM_ACTIONS}, "policies": [{"label": "random"}]})  # fmt: skip
    return root


def torch_step(algo: str, ds, batch: int, updates: int):
    from rlgen.agents.offline import build_agent
    from rlgen.config import OfflineConfig

    cfg = OfflineConfig.model_validate({"algo": algo, "env": ENV, "dataset": str(ds.root), "network": "minigrid_cnn", "batch_size": batch, "device": "cpu"})
    agent = build_agent(cfg, SHAPE, NUM_ACTIONS, "cpu", 1.0)
    rng = np.random.default_rng(0)

    def step() -> None:
        for _ in range(updates):
            agent.update(ds.sample_transitions(batch, rng))

    return step


def jax_step(algo: str, ds, batch: int, updates: int, seeds: int):
    import jax

    from rlgen.agents.offline_jax import core
    from rlgen.agents.offline_jax.data import to_device
    from rlgen.config.offline_jax import JaxOfflineConfig

    cfg = JaxOfflineConfig.model_validate({"algo": f"{algo}_jax", "env": ENV, "dataset": str(ds.root), "batch_size": batch, "device": "cpu"})
    spec = core.Spec.from_config(cfg, SHAPE, NUM_ACTIONS, 244)
    device = jax.devices("cpu")[0]
    data = to_device(ds, device)
    program = core.chunk_program(spec, updates)
    box = {"states": jax.device_put(core.stack([core.init_state(spec, s) for s in range(seeds)]), device)}

    def step() -> None:
        box["states"], metrics = program(box["states"], data)
        jax.block_until_ready(metrics)

    return step


def main() -> None:
    from offline import interleaved_medians  # bench/offline.py: run by path, bench/ is on sys.path

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes (the tests)")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--algos", nargs="+", default=["bc", "iql", "cql"], choices=["bc", "iql", "cql"])
    parser.add_argument("--torch-threads", type=int, default=1,
                        help="torch's threads (default 1, as rlgen's tests and OMP_NUM_THREADS=1: with 2 on this loaded 2-core machine torch measured ~30x slower)")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.torch_threads)

    from rlgen.data import load_dataset

    transitions, updates, rounds = (2_000, 5, 2) if args.quick else (50_000, 50, 5)
    print(f"load average before: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f}; torch threads {torch.get_num_threads()}, "
          f"{os.cpu_count()} CPUs; {updates} updates per timed call, median of {rounds} interleaved rounds")  # fmt: skip
    print(f"{'algo':<5} {'batch':>6} {'seeds':>5} {'torch upd/s':>12} {'jax upd x seeds/s':>18} {'ratio':>7}")
    with tempfile.TemporaryDirectory() as tmp:
        ds = load_dataset(make_data(Path(tmp) / "d", transitions))
        for algo in args.algos:
            batch = 32 if args.quick else BATCH[algo]
            t_torch, t_jax = interleaved_medians([torch_step(algo, ds, batch, updates), jax_step(algo, ds, batch, updates, args.seeds)], rounds)
            torch_rate, jax_rate = updates / t_torch, updates * args.seeds / t_jax
            print(f"{algo:<5} {batch:>6} {args.seeds:>5} {torch_rate:>12,.1f} {jax_rate:>18,.1f} {jax_rate / torch_rate:>6.1f}x")
    print(f"load average after: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f}")


if __name__ == "__main__":
    main()
