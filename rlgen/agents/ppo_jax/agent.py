"""The JAX PPO agent: acting, its policy as a pure function, and weights-only msgpack checkpoints.

Checkpoints are msgpack (flax serialization), which holds arrays, numbers, strings, lists and dicts
only: reading one runs no code (arrays of object dtype cannot be decoded, numpy refuses them), and
:meth:`JaxPPOAgent.load` checks the params against the network they claim to be.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from rlgen.agents.jax_trees import restore_tree
from rlgen.agents.ppo_jax.network import _jax, make_network, network_policy
from rlgen.agents.run_dir import final_checkpoint
from rlgen.atomic_files import write_bytes_atomic
from rlgen.devices import jax_device
from rlgen.errors import RlgenError
from rlgen.evaluation import EvalResult, RandomPolicy
from rlgen.evaluation.jax import JaxPolicy, evaluate_jax

FORMAT = "rlgen.ppo_jax/1"
LATEST = "checkpoints/latest.msgpack"


def _settings(settings: Any) -> Any:
    from rlgen.config import JaxPPOSettings

    if isinstance(settings, JaxPPOSettings):
        return settings
    return JaxPPOSettings.model_validate(dict(settings or {}))


class JaxPPOAgent:
    """PPO in JAX behind rlgen's ``Agent`` protocol: ``act``, ``save``, ``load`` (training:
    ``rlgen.agents.ppo_jax.train``).

    Args:
        obs_shape: ``(C, V, V)`` of the env's observations; ``num_actions``: the env's action count.
        settings: ``JaxPPOSettings`` (or a dict of its fields).
        seed: initializes the params and the training PRNG key.
    """

    def __init__(self, obs_shape: tuple[int, ...], num_actions: int, settings: Any = None, seed: int = 0, params: Any = None) -> None:
        jax = _jax()
        self.obs_shape = tuple(int(x) for x in obs_shape)
        self.num_actions = int(num_actions)
        self.settings = _settings(settings)
        self.network = make_network(self.num_actions, self.settings.hidden_dim, self.settings.embed_dim)
        init_key, self.rng = jax.random.split(jax.random.PRNGKey(seed))
        self.params = params if params is not None else self.network.init(init_key, np.zeros((1, *self.obs_shape), np.uint8))
        self.opt_state: Any = None
        self._opt_state_dict: Any = None  # restored lazily: its structure comes from the optimizer
        self.env_steps = 0
        self._np_rng = np.random.default_rng(seed)
        self._act_fn = jax.jit(self._act_impl, static_argnames="deterministic")

    episodic = False

    @classmethod
    def for_split(cls, split: Any, settings: Any = None, seed: int = 0) -> "JaxPPOAgent":
        from rlgen.envs.xland import jax_env_for_split  # noqa: PLC0415

        jenv = jax_env_for_split(split)
        return cls(jenv.obs_shape, jenv.num_actions, settings, seed)

    # --- acting -----------------------------------------------------------------------------------
    def _act_impl(self, params: Any, obs: Any, key: Any, deterministic: bool) -> Any:
        jax = _jax()
        logits, _ = self.network.apply(params, obs)
        return jax.numpy.argmax(logits, -1) if deterministic else jax.random.categorical(key, logits)

    def act(self, obs: np.ndarray, deterministic: bool = False) -> np.ndarray:
        """Actions ``(B,)`` for observations ``(B, C, V, V)`` uint8, as the env gives them."""
        jax = _jax()
        obs = np.asarray(obs, dtype=np.uint8)
        if obs.shape[1:] != self.obs_shape:
            raise RlgenError(f"observations of shape {obs.shape[1:]} given to a policy trained on {self.obs_shape}")
        key = jax.random.PRNGKey(int(self._np_rng.integers(2**31)))
        return np.asarray(self._act_fn(self.params, obs, key, deterministic=bool(deterministic)))

    def jax_policy(self) -> JaxPolicy:
        """This agent's policy as a pure function and its params, for ``rlgen.evaluation.jax.evaluate_jax``."""
        return JaxPolicy(network_policy(self.network), self.params)

    @property
    def observation_shape(self) -> tuple[int, ...]:
        """The shape of one observation the policy takes, ``(C, V, V)``."""
        return self.obs_shape

    def check_env(self, split: Any) -> Any:
        """The ``JaxEnv`` of ``split``, after checking its observations and actions are this policy's."""
        from rlgen.envs.xland import jax_env_for_split  # noqa: PLC0415

        jenv = jax_env_for_split(split)
        if jenv.obs_shape != self.obs_shape or jenv.num_actions != self.num_actions:
            raise RlgenError(
                f"{split.id} has observations {jenv.obs_shape} and {jenv.num_actions} actions; this policy was trained on "
                f"{self.obs_shape} and {self.num_actions} (check split.options goal_obs and view_size)"
            )
        return jenv

    # --- persistence ------------------------------------------------------------------------------
    def save(self, path: str | Path, with_optimizer: bool = False) -> Path:
        """Write params (and with ``with_optimizer`` the optimizer state, env steps and PRNG key) as
        one msgpack file, atomically."""
        jax = _jax()
        from flax import serialization  # noqa: PLC0415

        meta = {"obs_shape": list(self.obs_shape), "num_actions": self.num_actions,
                "settings": self.settings.model_dump(), "env_steps": int(self.env_steps)}
        payload: dict[str, Any] = {"format": FORMAT, "meta": json.dumps(meta),
                                   "params": jax.device_get(serialization.to_state_dict(self.params))}
        if with_optimizer:
            opt = self.opt_state if self.opt_state is not None else None
            if opt is not None:
                payload["opt_state"] = jax.device_get(serialization.to_state_dict(opt))
            elif self._opt_state_dict is not None:
                payload["opt_state"] = self._opt_state_dict
            payload["rng"] = np.asarray(jax.device_get(self.rng))
        return write_bytes_atomic(path, serialization.msgpack_serialize(payload))

    @classmethod
    def load(cls, path: str | Path, device: str | None = "auto") -> "JaxPPOAgent":
        """The agent ``save(path)`` wrote, its arrays on ``device`` (the Agent protocol's ``auto``, the default, or
        None: a GPU when JAX has one, else the CPU; never whatever an earlier ``load_run`` made JAX's default)."""
        with _jax().default_device(jax_device(device or "auto")):
            return cls._read(path)

    @classmethod
    def _read(cls, path: str | Path) -> "JaxPPOAgent":
        jax = _jax()
        from flax import serialization  # noqa: PLC0415

        p = Path(path)
        if not p.is_file():
            raise RlgenError(f"no JAX PPO checkpoint at {str(p)!r}")
        try:
            payload = serialization.msgpack_restore(p.read_bytes())
            if payload.get("format") != FORMAT:
                raise ValueError(f"format {payload.get('format')!r}, expected {FORMAT!r}")
            meta = json.loads(payload["meta"])
        except (ValueError, KeyError, TypeError, AttributeError) as e:  # msgpack's errors are ValueErrors
            raise RlgenError(f"{p} is not a JAX PPO checkpoint ({type(e).__name__}: {str(e)[:160]})") from None
        try:
            obs_shape, num_actions = tuple(int(x) for x in meta["obs_shape"]), int(meta["num_actions"])
            if len(obs_shape) != 3 or min(obs_shape) < 1 or num_actions < 1:
                raise ValueError(f"obs_shape {list(obs_shape)} and num_actions {num_actions} are not a (C, V, V) view and an action count")
            agent = cls(obs_shape, num_actions, meta["settings"])
        except (KeyError, TypeError, ValueError) as e:  # pydantic's ValidationError is a ValueError
            raise RlgenError(f"{p}: bad `meta` in the checkpoint ({type(e).__name__}: {str(e).splitlines()[0][:160]})") from None
        agent.params = restore_tree(agent.params, payload.get("params"), p, "params")
        agent.env_steps = int(meta.get("env_steps", 0))
        if "opt_state" in payload:
            agent._opt_state_dict = payload["opt_state"]
        if "rng" in payload:
            agent.rng = jax.numpy.asarray(payload["rng"], dtype=jax.numpy.uint32)
        return agent


def load_run(run_dir: str | Path, checkpoint: str | None = None, device: str = "auto") -> JaxPPOAgent:
    """The agent of a run directory: the last ladder rung (the final policy) unless ``checkpoint`` names
    one; its arrays on ``device`` (which also becomes JAX's default device, for the evaluation that follows)."""
    _jax().config.update("jax_default_device", jax_device(device))
    return JaxPPOAgent.load(final_checkpoint(run_dir, checkpoint, LATEST), device=device)


def evaluate(policy: Any, split: Any, which: str = "held_out", episodes: int = 100, seed: int = 0, num_envs: int = 1024,
             deterministic: bool = False, levels: Any = None) -> EvalResult:  # fmt: skip
    """The registry's evaluator of ``ppo_jax`` runs: batched on device (``evaluate_jax``) for the agent and
    for the random baseline alike, the same level list and rows as every other evaluation."""
    if isinstance(policy, JaxPPOAgent):
        policy.check_env(split)
        policy = policy.jax_policy()
    if not isinstance(policy, (JaxPolicy, RandomPolicy)):
        raise RlgenError(f"a ppo_jax run evaluates a JaxPPOAgent or a RandomPolicy, got {type(policy).__name__}")
    return evaluate_jax(policy, split, which, episodes, seed, num_envs, deterministic, levels)
