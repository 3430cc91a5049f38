"""Updates/s of rlgen's offline agents vs plain d3rlpy with the same network and batch size.

Plain d3rlpy: its own replay buffer (``MDPDataset`` in RAM) and ``algo.update(buffer.sample_*_batch())``,
the loop ``fit`` runs. rlgen: batches from the memory-mapped sampler driving the same algorithm.
DT is rlgen's own, compared with d3rlpy's discrete DT of the same size (a different implementation).
IQL and BCT have no d3rlpy counterpart; their absolute updates/s are printed. Median of timed updates.

    python bench/offline.py            # Procgen-shaped data (3x64x64), IMPALA encoder, reference batch sizes
    python bench/offline.py --quick    # MiniGrid-shaped data, tiny; what the tests run
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from rlgen.agents.offline import RlgenEncoderFactory, build_agent
from rlgen.cli import configure_logging
from rlgen.config import OfflineConfig, validate_config
from rlgen.data import Episode, load_dataset, write_dataset

import d3rlpy  # noqa: E402  (imported after rlgen.agents silenced gym's banner)


def make_data(root: Path, shape: tuple[int, ...], transitions: int, episode_length: int = 100) -> Path:
    rng = np.random.default_rng(0)
    eps = []
    for i in range(transitions // episode_length):
        t = episode_length
        eps.append(Episode(rng.integers(0, 256, (t + 1, *shape), dtype=np.uint8), rng.integers(0, 15, t), rng.random(t).astype(np.float32),
                           np.r_[np.zeros(t - 1, bool), [True]], np.zeros(t, bool), level=i % 200))  # fmt: skip
    env = "procgen/coinrun" if shape[1] == 64 else "minigrid/MiniGrid-Empty-5x5-v0"
    write_dataset(root, eps, {"kind": "dataset", "env": env, "observation_space": {"shape": list(shape), "dtype": "uint8"},
                              "action_space": {"n": 15}, "policies": [{"label": "random"}]})  # fmt: skip
    return root


def interleaved_medians(steps: list, n: int) -> list[float]:
    """Median seconds of each step function over ``n`` timed calls after one warm-up call each (JAX
    compiles there). The calls are interleaved (a, b, a, b, ...) so that a change in background load hits all alike."""
    for step in steps:
        step()  # warm-up
    times: list[list[float]] = [[] for _ in steps]
    for _ in range(n):
        for step, t in zip(steps, times):
            start = time.perf_counter()
            step()
            t.append(time.perf_counter() - start)
    return [statistics.median(t) for t in times]


def median_rates(steps: list, n: int) -> list[float]:
    """Calls/s of each step function: 1 / :func:`interleaved_medians`."""
    return [1.0 / t for t in interleaved_medians(steps, n)]


def d3rlpy_plain(algo: str, cfg: OfflineConfig, ds, encoder: str, device: str = "cpu"):
    """One update of plain d3rlpy on the same data, loaded into its own in-RAM buffer (a step function)
    on torch ``device`` (``"cpu"``, ``"cuda:0"``)."""
    c = {k: v.cpu().numpy() if isinstance(v, torch.Tensor) else np.asarray(v) for k, v in ds.cached_arrays().items()}  # after to_device too
    obs = c["obs"][c["obs_of_step"]]  # the observation at every step, the final ones left out
    mdp = d3rlpy.dataset.MDPDataset(obs, c["actions"], c["rewards"], c["terminated"], timeouts=c["truncated"],
                                    action_space=d3rlpy.ActionSpace.DISCRETE, action_size=15)  # fmt: skip
    enc = RlgenEncoderFactory(encoder)
    common = {"batch_size": cfg.batch_size, "learning_rate": cfg.learning_rate, "encoder_factory": enc}
    if algo == "bc":
        a = d3rlpy.algos.DiscreteBCConfig(**common, beta=0.0).create(device=device)
    elif algo == "bcq":
        a = d3rlpy.algos.DiscreteBCQConfig(**common).create(device=device)
    elif algo == "cql":
        a = d3rlpy.algos.DiscreteCQLConfig(**common, alpha=cfg.cql_alpha).create(device=device)
    else:
        a = d3rlpy.algos.DiscreteDecisionTransformerConfig(**{**common, "encoder_factory": RlgenEncoderFactory(encoder, features_dim=cfg.embed_dim)},
                                                           context_size=cfg.context_length, num_heads=cfg.n_heads, num_layers=cfg.n_layers).create(device=device)  # fmt: skip
    a.build_with_dataset(mdp)
    if algo == "dt":
        return lambda: a.update(mdp.sample_trajectory_batch(cfg.batch_size, cfg.context_length))
    return lambda: a.update(mdp.sample_transition_batch(cfg.batch_size))


BATCH = {"bc": 256, "bcq": 512, "cql": 256, "iql": 512, "dt": 512, "bct": 512}  # configs/offline/*.yaml (the reference study's)
HEADER = f"{'algo':<6} {'batch':>6} {'rlgen updates/s':>16} {'d3rlpy updates/s':>17} {'ratio':>6}"


def time_algos(ds, algos: list[str], device: str, updates: int, quick: bool, encoder: str, batch: int | None = None) -> Iterator[str]:
    """One printed row per algorithm: rlgen's updates/s on ``device`` against plain d3rlpy's (same
    network, batch and device), median of ``updates`` interleaved updates. ``quick``: batch 32 (or
    ``batch``) and a 2-layer 32-dim transformer; otherwise the reference batch sizes and the shipped
    6-layer 128-dim one. rlgen samples from ``ds`` wherever its cache is (``bench/gpu_check.py`` moves it
    to the GPU first with ``to_device``, as ``rlgen train`` does); on CUDA every timed update ends with
    ``torch.cuda.synchronize()``."""
    shape = ds.observation_shape
    rng = np.random.default_rng(0)
    sync = torch.cuda.synchronize if str(device).startswith("cuda") else (lambda: None)
    for algo in algos:
        bs = batch or (32 if quick else BATCH[algo])
        cfg = validate_config({"algo": algo, "dataset": str(ds.root), "batch_size": bs, "network": encoder, "device": device,
                               "n_layers": 2 if quick else 6, "n_heads": 2 if quick else 8, "embed_dim": 32 if quick else 128}, OfflineConfig)  # fmt: skip
        agent = build_agent(cfg, shape, 15, device, target_return=10.0)
        windows = algo in ("dt", "bct")

        def ours_step() -> None:
            agent.update(ds.sample_windows(bs, cfg.context_length, rng) if windows else ds.sample_transitions(bs, rng))
            sync()

        if algo in ("iql", "bct"):
            (ours,) = median_rates([ours_step], updates)
            yield f"{algo:<6} {bs:>6} {ours:>16.2f} {'-':>17} {'-':>6}"
            continue
        plain_update = d3rlpy_plain(algo, cfg, ds, encoder, device)

        def plain_step() -> None:
            plain_update()
            sync()

        ours, plain = median_rates([ours_step, plain_step], updates)
        yield f"{algo:<6} {bs:>6} {ours:>16.2f} {plain:>17.2f} {ours / plain:>6.3f}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--updates", type=int, default=5)
    parser.add_argument("--algos", default="bc,bcq,cql,dt,iql,bct", help="comma-separated subset to time")
    args = parser.parse_args(argv)
    configure_logging(debug=False)
    updates = 10 if args.quick else args.updates
    shape, encoder, n = ((3, 7, 7), "minigrid_cnn", 2000) if args.quick else ((3, 64, 64), "impala", 20_000)
    torch.manual_seed(0)
    load0 = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        ds = load_dataset(make_data(Path(tmp) / "d", shape, n))
        print(HEADER)
        for row in time_algos(ds, args.algos.split(","), "cpu", updates, args.quick, encoder):
            print(row, flush=True)
        print(f"median of {updates} interleaved updates; torch threads {torch.get_num_threads()}; "
              f"load average (1 min) before {load0:.2f}, after {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
