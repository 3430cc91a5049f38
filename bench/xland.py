"""XLand-MiniGrid throughput: env steps/s with random actions and JAX PPO training steps/s.

Two rows per number of envs (default 1024, 4096, 8192), on XLand-MiniGrid-R1-9x9 with trivial
rulesets (configs/ppo_jax/xland_trivial.yaml), everything jitted and on JAX's default device:

* ``env random``: rlgen's ``JaxEnv.step_autoreset`` (ruleset drawn per episode from the training ids,
  channel-first observation with goal channels) vs raw xminigrid (``GymAutoResetWrapper``, one
  ruleset per env as in xminigrid's own benchmark script), both vmapped in a ``lax.scan``; the ratio
  is rlgen / raw (median of per-pair ratios, pairs in alternating order).
* ``ppo train``: env steps/s of whole PPO updates (rollout, GAE, 2 epochs x 16 minibatches) vs
  rlgen's random-action env steps/s: the share of env throughput left while learning.

    python bench/xland.py                   # 1024, 4096, 8192 envs
    python bench/xland.py --quick           # 256 envs, short; what the tests run
    python bench/xland.py --env-only        # the env random rows only
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from rlgen.agents.ppo_jax import JaxPPOAgent, Runner, make_optimizer, make_train_chunk
from rlgen.config import JaxPPOConfig, load_config
from rlgen.envs.xland import LevelSampler, jax_env_for_split, load_rulesets

CONFIG = "configs/ppo_jax/xland_trivial.yaml"


def timed(fn: Callable[[], Any], steps: int) -> float:
    t0 = time.perf_counter()
    jax.block_until_ready(fn())
    return steps / (time.perf_counter() - t0)


def rlgen_env_fn(jenv: Any, sampler: Any, n: int, t: int) -> Callable[[Any], Any]:
    @jax.jit
    def run(key: Any) -> Any:
        k_reset, k_act = jax.random.split(key)
        state, _ = jax.vmap(lambda k: jenv.reset_sampled(k, sampler))(jax.random.split(k_reset, n))

        def body(state: Any, k: Any) -> Any:
            a = jax.random.randint(k, (n,), 0, jenv.num_actions)
            out = jax.vmap(lambda s, a: jenv.step_autoreset(s, a, sampler))(state, a)
            return out["state"], out["reward"].sum()

        _, r = jax.lax.scan(body, state, jax.random.split(k_act, t))
        return r.sum()

    return run


def raw_env_fn(env_id: str, rulesets: Any, train_ids: np.ndarray, n: int, t: int) -> Callable[[Any], Any]:
    import xminigrid
    from xminigrid.types import RuleSet
    from xminigrid.wrappers import GymAutoResetWrapper

    env, params = xminigrid.make(env_id)
    env = GymAutoResetWrapper(env)
    goals, rules, tiles = jnp.asarray(rulesets.goals), jnp.asarray(rulesets.rules), jnp.asarray(rulesets.init_tiles)
    ids = jnp.asarray(train_ids, dtype=jnp.int32)

    @jax.jit
    def run(key: Any) -> Any:
        k_rs, k_reset, k_act = jax.random.split(key, 3)
        pick = ids[jax.random.randint(k_rs, (n,), 0, ids.shape[0])]
        batched = jax.vmap(lambda i: params.replace(ruleset=RuleSet(goal=goals[i], rules=rules[i], init_tiles=tiles[i])))(pick)
        ts = jax.vmap(env.reset)(batched, jax.random.split(k_reset, n))

        def body(ts: Any, k: Any) -> Any:
            a = jax.random.randint(k, (n,), 0, 6)
            ts = jax.vmap(env.step)(batched, ts, a)
            return ts, ts.reward.sum()

        _, r = jax.lax.scan(body, ts, jax.random.split(k_act, t))
        return r.sum()

    return run


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num-envs", type=int, nargs="+", default=[1024, 4096, 8192])
    parser.add_argument("--env-steps", type=int, default=64, help="batched random-action steps per timing")
    parser.add_argument("--updates", type=int, default=2, help="PPO updates per timing")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="256 envs, 16 steps, 1 update, 2 repeats")
    parser.add_argument("--env-only", action="store_true", help="the env random rows only (no PPO to compile: a dry run)")
    args = parser.parse_args(argv)
    if args.quick:
        args.num_envs, args.env_steps, args.updates, args.repeats = [256], 16, 1, 2

    from pathlib import Path

    cfg = load_config(Path(__file__).resolve().parents[1] / CONFIG, ["progress=false"], schema=JaxPPOConfig)
    split = cfg.level_split()
    jenv = jax_env_for_split(split)
    sampler = LevelSampler.from_levels(split.train)
    rulesets = load_rulesets(split.options)
    device = jax.devices()[0]
    print(f"device: {device.platform} ({device.device_kind}), jax {jax.__version__}, env {split.id} "
          f"({split.options['rulesets']} rulesets)", file=sys.stderr)  # fmt: skip
    print(f"{'benchmark':<10} {'envs':>5} {'rlgen steps/s':>14} {'baseline steps/s':>17} {'ratio':>6}")
    rows = []
    for n in args.num_envs:
        steps = n * args.env_steps
        ours, raw = rlgen_env_fn(jenv, sampler, n, args.env_steps), raw_env_fn(jenv.env_id, rulesets, split.train.to_array(), n, args.env_steps)
        jax.block_until_ready((ours(jax.random.PRNGKey(0)), raw(jax.random.PRNGKey(0))))  # compile
        o_sps, r_sps, ratios = [], [], []
        for i in range(args.repeats):
            key = jax.random.PRNGKey(i + 1)
            if i % 2 == 0:
                r, o = timed(lambda: raw(key), steps), timed(lambda: ours(key), steps)
            else:
                o, r = timed(lambda: ours(key), steps), timed(lambda: raw(key), steps)
            o_sps.append(o)
            r_sps.append(r)
            ratios.append(o / r)
        env_sps = statistics.median(o_sps)
        rows.append({"benchmark": "env random", "num_envs": n, "rlgen": env_sps, "baseline": statistics.median(r_sps), "ratio": statistics.median(ratios)})
        print(f"{'env random':<10} {n:>5} {env_sps:>14,.0f} {statistics.median(r_sps):>17,.0f} {statistics.median(ratios):>6.3f}", flush=True)
        if args.env_only:
            continue

        settings = cfg.ppo_jax
        agent = JaxPPOAgent.for_split(split, settings, seed=0)
        optimizer = make_optimizer(settings, 1000)
        chunk = make_train_chunk(jenv, agent.network, optimizer, settings, n, args.updates)
        state, obs = jax.vmap(lambda k: jenv.reset_sampled(k, sampler))(jax.random.split(jax.random.PRNGKey(0), n))
        runner = Runner(agent.params, optimizer.init(agent.params), state, obs, jax.random.PRNGKey(0), jnp.zeros(n), jnp.zeros(n, jnp.int32))
        runner, m = chunk(runner, sampler)  # compile
        jax.block_until_ready(m)
        ppo = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            runner, m = chunk(runner, sampler)
            jax.block_until_ready(m)
            ppo.append(args.updates * n * settings.n_steps / (time.perf_counter() - t0))
        ppo_sps = statistics.median(ppo)
        rows.append({"benchmark": "ppo train", "num_envs": n, "rlgen": ppo_sps, "baseline": env_sps, "ratio": ppo_sps / env_sps})
        print(f"{'ppo train':<10} {n:>5} {ppo_sps:>14,.0f} {env_sps:>17,.0f} {ppo_sps / env_sps:>6.3f}", flush=True)
    return rows


if __name__ == "__main__":
    main()
