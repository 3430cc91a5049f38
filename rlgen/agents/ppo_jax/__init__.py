"""``algo: ppo_jax``: PPO in JAX for XLand-MiniGrid (pip extra ``rlgen[jax]``).

``network`` (the actor-critic and its pure policy function), ``train`` (the jitted training chunk, :func:`fit`,
the trainer ``train_ppo_jax``), ``agent`` (acting, msgpack checkpoints, loading a run, batched evaluation).
Importing this package imports no JAX; the functions do.
"""

from rlgen.agents.ppo_jax.agent import FORMAT, JaxPPOAgent, evaluate, load_run
from rlgen.agents.ppo_jax.network import make_network, network_policy
from rlgen.agents.ppo_jax.train import Runner, Transition, fit, gae, make_optimizer, make_train_chunk, train_ppo_jax

__all__ = ["FORMAT", "JaxPPOAgent", "Runner", "Transition", "evaluate", "fit", "gae", "load_run", "make_network", "make_optimizer",
           "make_train_chunk", "network_policy", "train_ppo_jax"]  # fmt: skip
