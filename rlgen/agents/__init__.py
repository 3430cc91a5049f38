"""Agents: one interface (``rlgen.agents.base``) over SB3, d3rlpy and rlgen's own code, and the registry that
maps an ``algo`` to its config schema, trainer and loader.

    from rlgen.agents import available_algorithms, load_agent
    available_algorithms()                       # ('ppo', 'ppo_jax', 'bc', 'bcq', 'cql', 'iql', 'dt', 'bct', 'bc_jax', 'iql_jax', 'cql_jax', 'dt_jax', 'bct_jax', 'bcq_jax')
    agent = load_agent("runs/ppo-doorkey")       # .act(obs, deterministic=...), .num_actions, .split, .evaluate(...)

Importing this package imports no torch, SB3, d3rlpy or JAX; the algorithm modules do, when used.
"""

from rlgen.agents.quiet import silence_gym_banner

from rlgen.agents.base import Agent, EpisodicAgent, OfflineLearner, Trainer
from rlgen.agents.registry import (
    Algorithm,
    LoadedAgent,
    available_algorithms,
    get_algorithm,
    load_agent,
    register_algorithm,
    schema_for_algo,
    train,
    train_and_describe,
    train_schema,
)

silence_gym_banner()  # SB3 and d3rlpy import the old gym, whose import prints a banner; keep the terminal clean

__all__ = ["Agent", "Algorithm", "EpisodicAgent", "LoadedAgent", "OfflineLearner", "Trainer", "available_algorithms", "get_algorithm",
           "load_agent", "register_algorithm", "schema_for_algo", "train", "train_and_describe", "train_schema"]  # fmt: skip
