"""What every JAX offline algorithm provides, each seed's training state, one update, and the jitted chunk of
updates: ``jax.vmap`` over seeds of a ``lax.scan`` over updates, the dataset on device shared by all seeds.

An algorithm module (``bc``, ``bcq``, ``cql``, ``iql``, ``dt``) has ``build(spec) -> OfflineAlgo``: pure functions over
pytrees (init, loss, target update, acting) and its optax optimizer. :class:`Spec` holds every setting the
compiled programs depend on and is hashable, so programs are built once per spec and shared by every run
and test of that spec in a process.

Randomness: seed ``s`` initializes from ``split(PRNGKey(s))[0]``; update ``t`` (0-based) draws its batch and
dropout from ``fold_in(split(PRNGKey(s))[1], t)``. A run's updates are therefore a function of its seed and
update count alone, whatever the chunking or a resume point.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable
from functools import lru_cache
from typing import Any, NamedTuple

from rlgen.config.offline_jax import JAX_OFFLINE_ALGOS, JAX_WINDOW_ALGOS

#: algo -> the module whose ``build(spec)`` makes it.
ALGORITHM_MODULES = {"bc_jax": "bc", "cql_jax": "cql", "iql_jax": "iql", "dt_jax": "dt", "bct_jax": "dt", "bcq_jax": "bcq"}


@dataclasses.dataclass(frozen=True)
class Spec:
    """An agent's architecture and training settings (hashable; saved with every checkpoint as ``meta.spec``)."""

    algo: str
    observation_shape: tuple[int, ...]
    num_actions: int
    batch_size: int
    learning_rate: float
    gamma: float
    target_update_interval: int
    cql_alpha: float
    iql_temperature: float
    iql_expectile: float
    iql_target_update: str
    iql_tau: float
    iql_deterministic: bool
    context_length: int
    n_layers: int
    n_heads: int
    embed_dim: int
    max_timestep: int
    # added with bcq_jax: files saved before it lack them and load with these (unused by other algorithms)
    bcq_threshold: float = 0.5
    bcq_beta: float = 0.01

    @classmethod
    def from_config(cls, cfg: Any, observation_shape: tuple[int, ...], num_actions: int, max_timestep: int) -> "Spec":
        keys = {f.name for f in dataclasses.fields(cls)} - {"observation_shape", "num_actions", "max_timestep"}
        return cls(observation_shape=tuple(int(x) for x in observation_shape), num_actions=int(num_actions), max_timestep=int(max_timestep),
                   **{k: getattr(cfg, k) for k in keys})  # fmt: skip

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Spec":
        names = {f.name for f in dataclasses.fields(cls)}
        optional = {f.name for f in dataclasses.fields(cls) if f.default is not dataclasses.MISSING}
        if not set(data) <= names or not names - optional <= set(data):
            raise ValueError(f"spec keys {sorted((set(data) - names) | (names - optional - set(data)))} missing or unknown")
        return cls(**{**data, "observation_shape": tuple(int(x) for x in data["observation_shape"])})

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "observation_shape": list(self.observation_shape)}

    @property
    def windows(self) -> bool:
        """DT and BCT learn from trajectory windows and act on the episode so far."""
        return self.algo in JAX_WINDOW_ALGOS


@dataclasses.dataclass(frozen=True)
class OfflineAlgo:
    """One algorithm as pure functions.

    Attributes:
        init_params: ``(key, spec) -> params`` (a dict of flax variable trees).
        loss: ``(params, target, batch, key) -> (loss, metrics)``; ``batch`` from ``data.sample_*``; ``key``
            for dropout (DT, BCT; None: none, as a torch model in eval mode); ``metrics`` a dict of scalars (``loss/...`` and diagnostics).
        optimizer: the optax transformation over ``params``.
        init_target: ``params -> target`` (target networks; ``{}`` when there are none).
        update_target: ``(target, params, step) -> target`` after the optimizer step; ``step`` counts the updates
            before this one (hard copies when it is a multiple of the interval, as d3rlpy and rlgen's IQL count).
        logits: ``(params, obs (B, C, H, W)) -> (B, A)`` action scores of a non-episodic agent.
        greedy: act by the argmax even when sampling is asked for (CQL's Q-values; IQL with iql_deterministic).
    """

    init_params: Callable[[Any, Spec], Any]
    loss: Callable[[Any, Any, dict[str, Any], Any], tuple[Any, dict[str, Any]]]
    optimizer: Any
    init_target: Callable[[Any], Any] = lambda params: {}
    update_target: Callable[[Any, Any, Any], Any] = lambda target, params, step: target
    logits: Callable[[Any, Any], Any] | None = None
    greedy: bool = False


@lru_cache(maxsize=64)
def build(spec: Spec) -> OfflineAlgo:
    """The algorithm of ``spec.algo``, built once per spec."""
    if spec.algo not in JAX_OFFLINE_ALGOS:
        raise ValueError(f"no JAX offline algorithm {spec.algo!r}; known: {', '.join(JAX_OFFLINE_ALGOS)}")
    module = importlib.import_module(f"rlgen.agents.offline_jax.{ALGORITHM_MODULES[spec.algo]}")
    return module.build(spec)


class TrainState(NamedTuple):
    """One seed's training state (stacked over seeds along axis 0 in a vmapped run).

    Attributes:
        params, target, opt_state: the networks, their targets, the optimizer's state.
        key: ``(2,)`` uint32, the seed's training key (see the module docstring).
        step: ``()`` int32, updates done.
    """

    params: Any
    target: Any
    opt_state: Any
    key: Any
    step: Any


def init_state(spec: Spec, seed: int) -> TrainState:
    """Seed ``seed``'s fresh state: its own initial params (and targets, optimizer state, training key)."""
    import jax  # noqa: PLC0415

    algo = build(spec)
    init_key, train_key = jax.random.split(jax.random.PRNGKey(seed))
    params = algo.init_params(init_key, spec)
    return TrainState(params, algo.init_target(params), algo.optimizer.init(params), train_key, jax.numpy.zeros((), jax.numpy.int32))


def stack(states: list[TrainState]) -> TrainState:
    """Per-seed states -> one state with a leading seed axis."""
    import jax  # noqa: PLC0415

    return jax.tree_util.tree_map(lambda *xs: jax.numpy.stack(xs), *states)


def unstack(states: TrainState, i: int) -> TrainState:
    """Seed ``i``'s state out of a stacked one."""
    import jax  # noqa: PLC0415

    return jax.tree_util.tree_map(lambda x: x[i], states)


def make_update(spec: Spec) -> Callable[[TrainState, Any], tuple[TrainState, dict[str, Any]]]:
    """``update(state, data) -> (state, metrics)``: one gradient step of one seed on a batch drawn from ``data``."""
    import jax  # noqa: PLC0415
    import optax  # noqa: PLC0415

    from rlgen.agents.offline_jax.data import sample_transitions, sample_windows  # noqa: PLC0415

    algo = build(spec)

    def update(state: TrainState, data: Any) -> tuple[TrainState, dict[str, Any]]:
        k_batch, k_loss = jax.random.split(jax.random.fold_in(state.key, state.step))
        if spec.windows:
            batch = sample_windows(data, k_batch, spec.batch_size, spec.context_length)
        else:
            batch = sample_transitions(data, k_batch, spec.batch_size)
        (_, metrics), grads = jax.value_and_grad(algo.loss, has_aux=True)(state.params, state.target, batch, k_loss)
        updates, opt_state = algo.optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        target = algo.update_target(state.target, params, state.step)
        metrics = {**metrics, "grad_norm": optax.tree.norm(grads)}
        return TrainState(params, target, opt_state, state.key, state.step + 1), metrics

    return update


@lru_cache(maxsize=32)
def chunk_program(spec: Spec, n_updates: int) -> Callable[[TrainState, Any], tuple[TrainState, dict[str, Any]]]:
    """``chunk(states, data) -> (states, metrics)``: ``n_updates`` updates of every seed of ``states`` (stacked
    along axis 0) in one jitted program; ``metrics`` are each seed's means over the chunk, ``(S,)`` each.
    ``states`` is donated: use the returned one."""
    import jax  # noqa: PLC0415

    update = make_update(spec)

    def one_seed(state: TrainState, data: Any) -> tuple[TrainState, dict[str, Any]]:
        state, metrics = jax.lax.scan(lambda s, _: update(s, data), state, None, length=n_updates)
        return state, jax.tree_util.tree_map(lambda m: m.mean(), metrics)

    return jax.jit(jax.vmap(one_seed, in_axes=(0, None)), donate_argnums=(0,))
