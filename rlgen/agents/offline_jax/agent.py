"""A trained JAX offline agent: acting (on device for evaluation, on the host for anything else), msgpack model
files and checkpoints, loading a run, the registry's evaluator.

Files are msgpack (flax serialization): arrays, numbers, strings, lists and dicts only, so reading one runs no
code; every array is checked against the shapes and dtypes the file's ``meta.spec`` implies before use.

* model file (``model.msgpack``): ``format``, ``meta`` (JSON: spec, target return, seed, updates) and ``params``;
* checkpoint (``checkpoints/step_N.msgpack``): the same plus ``target``, ``opt_state``, ``key`` and ``step``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from rlgen.agents.jax_trees import restore_tree
from rlgen.agents.offline_jax.core import Spec, TrainState, build, init_state
from rlgen.atomic_files import write_bytes_atomic
from rlgen.errors import RlgenError

MODEL_FORMAT = "rlgen.offline_jax/1"
CHECKPOINT_FORMAT = "rlgen.offline_jax.checkpoint/1"


def _read_payload(path: Path, fmt: str) -> tuple[dict[str, Any], dict[str, Any], Spec]:
    """``(payload, meta, spec)`` of a model file or checkpoint; one line naming the file when it is not one."""
    from flax import serialization  # noqa: PLC0415

    if not path.is_file():
        raise RlgenError(f"no JAX offline agent file at {str(path)!r}")
    try:
        payload = serialization.msgpack_restore(path.read_bytes())
        if not isinstance(payload, dict) or payload.get("format") != fmt:
            raise ValueError(f"format {payload.get('format') if isinstance(payload, dict) else type(payload).__name__!r}, expected {fmt!r}")
        meta = json.loads(payload["meta"])
        spec = Spec.from_dict(meta["spec"])
        if not np.isfinite(float(meta["target_return"])):  # a NaN return-to-go makes every logit NaN: action 0 forever
            raise ValueError(f"target_return {meta['target_return']!r} is not finite")
    except (ValueError, KeyError, TypeError, AttributeError) as e:  # msgpack's errors are ValueErrors
        raise RlgenError(f"{path} is not a JAX offline agent file ({type(e).__name__}: {str(e)[:160]}); retrain the run") from None
    return payload, meta, spec


@lru_cache(maxsize=32)
def _policy_functions(spec: Spec) -> dict[str, Any]:
    """Pure acting functions of ``spec`` (one set per spec, so compiled programs are shared by every agent of it)."""
    import jax  # noqa: PLC0415

    if spec.windows:
        from rlgen.agents.offline_jax.dt import episodic_policy, episodic_steps, init_carry  # noqa: PLC0415

        act, observe = episodic_policy(spec)
        step_logits, commit = episodic_steps(spec)

        def init(params: Any, batch: int) -> Any:
            return init_carry(spec, batch, params["target_return"])

        return {"init": init, "act": act, "observe": observe, "host_act": jax.jit(act, static_argnames="deterministic"),
                "host_init": jax.jit(init, static_argnums=1), "host_logits": jax.jit(step_logits), "host_commit": jax.jit(commit)}  # fmt: skip
    algo = build(spec)

    def act(params: Any, obs: Any, keys: Any, deterministic: bool) -> Any:
        logits = algo.logits(params, obs)
        if deterministic or algo.greedy:
            return jax.numpy.argmax(logits, axis=-1)
        return jax.vmap(jax.random.categorical)(keys, logits)

    return {"act": act, "host_act": jax.jit(act, static_argnames="deterministic"), "host_logits": jax.jit(algo.logits)}


def _draw(logits: Any, uniforms: np.ndarray) -> np.ndarray:
    """Actions ``(B,)`` drawn from ``softmax(logits)`` by inverse CDF at ``uniforms`` (evaluation's per-episode draws)."""
    from rlgen.evaluation.episodes import sample_from_uniforms  # noqa: PLC0415

    z = np.asarray(logits, dtype=np.float64)
    probs = np.exp(z - z.max(axis=1, keepdims=True))
    return sample_from_uniforms(probs / probs.sum(axis=1, keepdims=True), uniforms)


class JaxOfflineAgent:
    """One seed's trained JAX offline agent behind rlgen's ``Agent`` protocol (``episodic`` for DT and BCT).

    Args:
        spec: architecture and settings; ``params``: its networks; ``target_return``: DT's return-to-go at
            the start of every episode; ``seed``: the training seed (and the first sampling seed).
    """

    #: Sampled actions are drawn from evaluation's per-episode uniforms when it gives them (its ``UniformSampler``),
    #: so an evaluation's result does not depend on ``num_envs`` on any suite (xland evaluates on device, by keys).
    samples_from_uniforms = True

    def __init__(self, spec: Spec, params: Any, target_return: float = 0.0, seed: int = 0, updates: int = 0) -> None:
        self.spec, self.params = spec, params
        self.num_actions = spec.num_actions
        self.episodic = spec.windows
        self.always_greedy = not spec.windows and build(spec).greedy  # CQL and BCQ on Q, IQL with iql_deterministic
        self.target_return = float(target_return)
        self.seed, self.updates = int(seed), int(updates)
        self._rng = np.random.default_rng(seed)
        self._carries: dict[int, Any] = {}  # host-side acting of DT/BCT: episode key -> its carry row

    # --- acting ---------------------------------------------------------------------------------------
    def _policy_params(self) -> Any:
        if self.episodic:
            import jax.numpy as jnp  # noqa: PLC0415

            return {**self.params, "target_return": jnp.float32(self.target_return)}
        return self.params

    def jax_policy(self) -> Any:
        """This agent as pure functions and params, for ``rlgen.evaluation.jax.evaluate_jax``."""
        from rlgen.evaluation.jax import JaxEpisodicPolicy, JaxPolicy  # noqa: PLC0415

        f = _policy_functions(self.spec)
        if self.episodic:
            return JaxEpisodicPolicy(f["init"], f["act"], f["observe"], self._policy_params())
        return JaxPolicy(f["act"], self.params)

    def _keys(self, n: int) -> Any:
        import jax  # noqa: PLC0415

        return jax.random.split(jax.random.PRNGKey(int(self._rng.integers(2**31))), n)

    def act(self, obs: np.ndarray, deterministic: bool = False, keys: Sequence[int] | None = None,
            uniforms: np.ndarray | None = None) -> np.ndarray:  # fmt: skip
        """Actions ``(B,)`` int64 for observations ``(B, C, H, W)`` as the env gives them. DT/BCT: ``keys[i]`` names
        row ``i``'s episode (a new key, or one ``reset``, starts a new one); without keys every row is the first
        step of its own episode. Sampled actions are drawn with ``uniforms`` (one per row in [0, 1), by inverse
        CDF) when given, else with the agent's generator."""
        import jax  # noqa: PLC0415

        obs = np.asarray(obs)
        if obs.shape[1:] != self.spec.observation_shape:
            raise RlgenError(f"observations of shape {obs.shape[1:]} given to an agent trained on {self.spec.observation_shape}")
        f = _policy_functions(self.spec)
        draw = uniforms is not None and not deterministic and not self.always_greedy
        if not self.episodic:
            if draw:
                return _draw(jax.device_get(f["host_logits"](self.params, obs)), uniforms)
            return np.asarray(f["host_act"](self.params, obs, self._keys(len(obs)), deterministic=bool(deterministic)), dtype=np.int64)
        params = self._policy_params()
        rows = [int(k) for k in keys] if keys is not None else None
        if rows is not None and (len(rows) != len(obs) or len(set(rows)) != len(rows)):
            raise RlgenError(f"act needs one distinct key per observation; got {len(rows)} keys for {len(obs)} rows")
        fresh = jax.device_get(f["host_init"](params, 1))
        carry = [self._carries.get(k, fresh) for k in rows] if rows is not None else [fresh] * len(obs)
        batch = {name: np.concatenate([c[name] for c in carry]) for name in fresh}
        if draw:
            logits, window = f["host_logits"](params, batch, obs)
            actions = _draw(jax.device_get(logits), uniforms)
            new = jax.device_get(f["host_commit"](window, actions.astype(np.int32)))
        else:
            actions, new = jax.device_get(f["host_act"](params, batch, obs, self._keys(len(obs)), deterministic=bool(deterministic)))
        if rows is not None:
            for i, k in enumerate(rows):
                self._carries[k] = {name: v[i : i + 1] for name, v in new.items()}
        return np.asarray(actions, dtype=np.int64)

    def reset(self, keys: Sequence[int]) -> None:
        """New episodes start for ``keys``: forget their histories."""
        for k in keys:
            self._carries.pop(int(k), None)

    def observe(self, keys: Sequence[int], rewards: np.ndarray) -> None:
        """Rewards that followed the last ``act`` of each key: DT's return still to collect shrinks by them."""
        for k, r in zip(keys, np.asarray(rewards, dtype=np.float32).reshape(-1)):
            c = self._carries.get(int(k))
            if c is not None:
                c["return_left"] = c["return_left"] - r

    def reseed(self, seed: Any) -> None:
        """Evaluation's seeding hook (``rlgen.evaluation``): sampled actions draw from this generator."""
        self._rng = np.random.default_rng(seed)

    # --- files ------------------------------------------------------------------------------------------
    def meta(self) -> dict[str, Any]:
        return {"spec": self.spec.to_dict(), "target_return": self.target_return, "seed": self.seed, "updates": self.updates}

    def save(self, path: str | Path) -> Path:
        """The model file (weights only), written atomically; returns its path."""
        import jax  # noqa: PLC0415
        from flax import serialization  # noqa: PLC0415

        payload = {"format": MODEL_FORMAT, "meta": json.dumps(self.meta()), "params": jax.device_get(serialization.to_state_dict(self.params))}
        return write_bytes_atomic(path, serialization.msgpack_serialize(payload))

    @classmethod
    def load(cls, path: str | Path, device: str | None = "auto") -> "JaxOfflineAgent":
        """The agent a model file (or a checkpoint) holds, its arrays on ``device`` (the Agent protocol's ``auto``,
        the default, or None: a GPU when JAX has one, else the CPU; never JAX's default of the moment)."""
        import jax  # noqa: PLC0415

        from rlgen.devices import jax_device  # noqa: PLC0415

        with jax.default_device(jax_device(device or "auto")):
            return cls._read(Path(path))

    @classmethod
    def _read(cls, p: Path) -> "JaxOfflineAgent":
        import jax  # noqa: PLC0415

        fmt = CHECKPOINT_FORMAT if p.name.startswith("step_") else MODEL_FORMAT
        payload, meta, spec = _read_payload(p, fmt)
        try:  # a crafted spec (n_heads not dividing embed_dim, context_length 0, an unknown algo) fails inside flax
            template = jax.eval_shape(lambda: build(spec).init_params(jax.random.PRNGKey(0), spec))
        except Exception as e:  # noqa: BLE001 - whatever the model code raises, the file is what is wrong
            raise RlgenError(f"{p}: its meta.spec builds no agent ({type(e).__name__}: {str(e)[:160]}); retrain the run") from None
        params = restore_tree(template, payload.get("params"), p, "params")
        return cls(spec, params, float(meta["target_return"]), int(meta.get("seed", 0)), int(meta.get("updates", 0)))


def write_checkpoint(path: Path, state: TrainState, meta: dict[str, Any]) -> Path:
    """One seed's resumable state (params, targets, optimizer state, key, step) as a msgpack file, atomically."""
    import jax  # noqa: PLC0415
    from flax import serialization  # noqa: PLC0415

    payload = {"format": CHECKPOINT_FORMAT, "meta": json.dumps(meta), **jax.device_get(serialization.to_state_dict(state._asdict()))}
    return write_bytes_atomic(path, serialization.msgpack_serialize(payload))


def read_checkpoint(path: Path, spec: Spec, seed: int) -> TrainState:
    """The state :func:`write_checkpoint` wrote for seed ``seed`` of ``spec``; one line naming the file otherwise."""
    import jax  # noqa: PLC0415

    payload, meta, saved = _read_payload(path, CHECKPOINT_FORMAT)
    if saved != spec:
        differ = sorted(k for k, v in saved.to_dict().items() if spec.to_dict().get(k) != v)
        raise RlgenError(f"{path} holds another agent than this run's seed {seed} (its {', '.join(differ)} differ); delete it to restart that seed")
    if int(meta.get("seed", -1)) != seed:
        raise RlgenError(f"{path} holds seed {meta.get('seed')}, not this run's seed {seed}; delete it to restart that seed")
    template = jax.eval_shape(lambda: init_state(spec, seed))._asdict()
    body = {k: payload.get(k) for k in template}
    return TrainState(**restore_tree(template, body, path, "state"))


def evaluate(policy: Any, split: Any, which: str = "held_out", episodes: int = 100, seed: int = 0, num_envs: int = 16,
             deterministic: bool = False, levels: Any = None) -> Any:  # fmt: skip
    """The registry's evaluator of the JAX offline agents: on xland splits batched on device (``evaluate_jax``,
    for the agent and the random baseline alike), on any other suite episode by episode with ``act``."""
    from rlgen.evaluation import RandomPolicy, evaluate_on_levels  # noqa: PLC0415

    if split.suite == "xland" and isinstance(policy, (JaxOfflineAgent, RandomPolicy)):
        from rlgen.evaluation.jax import evaluate_jax  # noqa: PLC0415

        if isinstance(policy, JaxOfflineAgent):
            check_env(policy, split)
            policy = policy.jax_policy()
        return evaluate_jax(policy, split, which, episodes, seed, num_envs, deterministic, levels)
    return evaluate_on_levels(policy, split, which, episodes=episodes, seed=seed, num_envs=num_envs, deterministic=deterministic, levels=levels)


def check_env(agent: JaxOfflineAgent, split: Any) -> None:
    """``split``'s xland env must give this agent's observations and actions (else one line naming both)."""
    from rlgen.envs.xland import jax_env_for_split  # noqa: PLC0415

    jenv = jax_env_for_split(split)
    if tuple(jenv.obs_shape) != agent.spec.observation_shape or jenv.num_actions != agent.num_actions:
        raise RlgenError(f"{split.id} has observations {tuple(jenv.obs_shape)} and {jenv.num_actions} actions; this agent was trained on "
                         f"{agent.spec.observation_shape} and {agent.num_actions} (check split.options goal_obs and view_size)")  # fmt: skip
