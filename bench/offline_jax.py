"""Updates/s x seeds of the JAX offline agents (bc_jax, iql_jax, cql_jax, dt_jax) vs rlgen's torch agents (bc,
iql, cql, dt) on the same dataset, network (the small grid CNN, minigrid_cnn) and the configs' batch sizes
(``configs/offline_jax/*.yaml``; DT's window and transformer size too), with the FLOPs of one update and the
ceiling they put on the ratio.

JAX: ``seeds`` seeds vmapped in one jitted ``lax.scan`` of ``updates`` updates (one timed call = one chunk, as
``rlgen train`` runs them); its rate counts every seed's updates. Torch: the agent's ``update`` on batches of
rlgen's memory-mapped sampler, ``updates`` of them per timed call (the offline training loop), at 1 and at 2
threads; the ratio is over the faster. ``seeds`` torch runs one after another take ``seeds`` times one run's
time, so the ratio (JAX updates x seeds/s over torch updates/s) is extrapolated from one torch run, not
measured over five. Calls are interleaved (torch 1 thread, torch 2 threads, JAX, ...) so that a change in the
shared machine's load hits all alike; medians; load average printed.

FLOPs of one update: torch's ``FlopCounterMode`` over one ``update`` (matmuls and convolutions, forward and
backward); JAX's XLA ``cost_analysis()`` of one vmapped update over ``seeds`` (XLA counts elementwise ops too:
for BC, IQL and CQL the two counts of the same network differ by < 3%). GFLOP/s = FLOP per update x updates/s. The
ceiling: were JAX's update to run at this machine's measured dense float32 matmul peak (1024x1024, the best of
numpy, torch and JAX at 1 and 2 threads), it would do ``peak / JAX FLOP per update`` updates x seeds/s; over
the torch rate, that bounds the ratio from above.

    python bench/offline_jax.py            # XLand-shaped data (7x5x5), the configs' sizes, 5 seeds
    python bench/offline_jax.py --quick    # tiny; what the tests run
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

SHAPE = (7, 5, 5)
NUM_ACTIONS = 6
ENV = "xland/XLand-MiniGrid-R1-9x9"
MAX_TIMESTEP = 244  # the env's episode steps + 1, as the torch DT's timestep embedding
CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "offline_jax"
ALGOS = ("bc", "iql", "cql", "dt")
#: The settings each side takes from ``configs/offline_jax/<algo>.yaml`` (the torch configs' values).
SIZE_KEYS = ("batch_size", "context_length", "n_layers", "n_heads", "embed_dim")
#: --quick: tiny sizes, so the test runs in seconds.
QUICK_SIZES = {"batch_size": 32, "context_length": 4, "n_layers": 1, "n_heads": 2, "embed_dim": 32}


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


def sizes(algo: str, quick: bool) -> dict:
    """The settings of ``configs/offline_jax/<algo>.yaml`` that the timing depends on (tiny with ``quick``)."""
    cfg = yaml.safe_load((CONFIGS / f"{algo}.yaml").read_text())
    out = {k: cfg[k] for k in SIZE_KEYS if k in cfg}
    return {k: QUICK_SIZES[k] for k in out} if quick else out


def matmul_peak(n: int = 1024, calls: int = 7) -> dict[str, float]:
    """GFLOP/s of an ``n x n`` float32 matmul (median of ``calls``): numpy and torch at 1 and 2 threads, JAX at its own."""
    import jax
    import jax.numpy as jnp
    import threadpoolctl
    import torch

    a = np.random.default_rng(0).random((n, n), dtype=np.float32)

    def rate(f) -> float:
        f()
        times = []
        for _ in range(calls):
            start = time.perf_counter()
            f()
            times.append(time.perf_counter() - start)
        return 2 * n**3 / statistics.median(times) / 1e9

    out, before = {}, torch.get_num_threads()
    ta = torch.from_numpy(a)
    for threads in (1, 2):
        with threadpoolctl.threadpool_limits(threads, user_api="blas"):
            out[f"numpy {threads}t"] = rate(lambda: a @ a)
        torch.set_num_threads(threads)
        out[f"torch {threads}t"] = rate(lambda: ta @ ta)
    torch.set_num_threads(before)
    ja, dot = jnp.asarray(a), jax.jit(jnp.dot)
    out["jax"] = rate(lambda: dot(ja, ja).block_until_ready())
    return out


def torch_step(algo: str, ds, size: dict, updates: int):
    """(step, FLOP of one update): ``step()`` runs ``updates`` updates of a fresh torch agent."""
    from torch.utils.flop_counter import FlopCounterMode

    from rlgen.agents.offline import build_agent
    from rlgen.config import OfflineConfig

    cfg = OfflineConfig.model_validate({"algo": algo, "env": ENV, "dataset": str(ds.root), "network": "minigrid_cnn", "device": "cpu", **size})
    agent = build_agent(cfg, SHAPE, NUM_ACTIONS, "cpu", 1.0)
    rng = np.random.default_rng(0)

    def batch() -> dict:
        return ds.sample_windows(cfg.batch_size, cfg.context_length, rng) if agent.episodic else ds.sample_transitions(cfg.batch_size, rng)

    def step() -> None:
        for _ in range(updates):
            agent.update(batch())

    agent.update(batch())  # d3rlpy builds lazily: count a steady-state update
    with FlopCounterMode(display=False) as counter:
        agent.update(batch())
    return step, counter.get_total_flops()


def jax_step(algo: str, ds, size: dict, updates: int, seeds: int):
    """(step, FLOP of one update of one seed): ``step()`` runs one chunk of ``updates`` updates of ``seeds`` seeds."""
    import jax

    from rlgen.agents.offline_jax import core
    from rlgen.agents.offline_jax.data import to_device
    from rlgen.config.offline_jax import JaxOfflineConfig

    cfg = JaxOfflineConfig.model_validate({"algo": f"{algo}_jax", "env": ENV, "dataset": str(ds.root), "device": "cpu", **size})
    spec = core.Spec.from_config(cfg, SHAPE, NUM_ACTIONS, MAX_TIMESTEP)
    device = jax.devices("cpu")[0]
    data = to_device(ds, device)
    box = {"states": jax.device_put(core.stack([core.init_state(spec, s) for s in range(seeds)]), device)}
    # One vmapped update, not the chunk: XLA's count of a lax.scan covers its body once, whatever its length.
    # The lowered (unoptimized) program's count: no compile, and within 1% of the compiled one's (measured).
    cost = jax.jit(jax.vmap(core.make_update(spec), in_axes=(0, None))).lower(box["states"], data).cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost  # a list of one dict in older jax
    program = core.chunk_program(spec, updates)

    def step() -> None:
        box["states"], metrics = program(box["states"], data)
        jax.block_until_ready(metrics)

    return step, float(cost["flops"]) / seeds


def with_threads(threads: int, step):
    """``step`` run with torch at ``threads`` intra-op threads (set before every call: calls are interleaved)."""
    import torch

    def run() -> None:
        torch.set_num_threads(threads)
        step()

    return run


def num(x: float) -> str:
    """One decimal, or three significant digits below 10 (DT's rates are fractions of an update per second)."""
    return f"{x:,.1f}" if x >= 10 else f"{x:.3g}"


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    from offline import interleaved_medians  # bench/offline.py: run by path, bench/ is on sys.path

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes (the tests)")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--algos", nargs="+", default=list(ALGOS), choices=ALGOS)
    args = parser.parse_args()

    from rlgen.data import load_dataset

    transitions = 2_000 if args.quick else 50_000
    # Sized to take a few minutes on the shared 2-core machine (torch at 2 threads there is ~10x slower than at 1).
    # DT's update (6 layers over 30 tokens x 512 windows: ~125 GFLOP) costs ~900x BC's: one per timed call, one round.
    updates = {a: 2 if args.quick else (1 if a == "dt" else 20) for a in ALGOS}
    rounds = {a: 2 if args.quick else (1 if a == "dt" else 3) for a in ALGOS}
    print(f"load average before: {load()}; {os.cpu_count()} CPUs; updates per timed call {updates}, medians of interleaved rounds {rounds}")
    peak = matmul_peak(256 if args.quick else 1024)
    best = max(peak.values())
    print("matmul peak, float32, GFLOP/s: " + ", ".join(f"{k} {v:,.1f}" for k, v in peak.items()))
    print(f"{'algo':<5} {'batch':>6} {'seeds':>5} {'torch 1t/s':>11} {'torch 2t/s':>11} {'torch MFLOP':>12} {'torch GFLOP/s':>14} "
          f"{'jax upd x seeds/s':>18} {'jax MFLOP':>10} {'jax GFLOP/s':>12} {'ceiling':>8} {'ratio':>7}")  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        ds = load_dataset(make_data(Path(tmp) / "d", transitions))
        for algo in args.algos:
            size, n = sizes(algo, args.quick), updates[algo]
            t_step, t_flops = torch_step(algo, ds, size, n)
            j_step, j_flops = jax_step(algo, ds, size, n, args.seeds)
            t1, t2, tj = interleaved_medians([with_threads(1, t_step), with_threads(2, t_step), j_step], rounds[algo])
            torch_rate, jax_rate = n / min(t1, t2), n * args.seeds / tj
            ceiling = best * 1e9 / j_flops / torch_rate
            print(f"{algo:<5} {size['batch_size']:>6} {args.seeds:>5} {num(n / t1):>11} {num(n / t2):>11} {num(t_flops / 1e6):>12} "
                  f"{num(t_flops * torch_rate / 1e9):>14} {num(jax_rate):>18} {num(j_flops / 1e6):>10} {num(j_flops * jax_rate / 1e9):>12} "
                  f"{ceiling:>7.1f}x {jax_rate / torch_rate:>6.1f}x")  # fmt: skip
    print("ratio: JAX updates x seeds/s over the faster torch rate; ceiling: the ratio were JAX's update to run at the best matmul peak above")
    print(f"load average after: {load()}")


if __name__ == "__main__":
    main()
