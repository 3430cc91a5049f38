"""A dataset on device for the JAX offline agents, and batches drawn from it inside jitted code.

The source is the dataset's memory-mapped cache (``Dataset.cached_arrays``: every observation once, per-step
actions, rewards, terminations, returns-to-go, timesteps and the observation row of each step), copied to the
device once; a batch is ``jax.random`` indices into those arrays, so sampling runs inside the training
``lax.scan`` with no host round trip. Every seed of a vmapped run reads the same arrays (they are not
batched over seeds).

The same batches as ``rlgen.data.sampler`` (``sample_transitions``, ``sample_windows``: same keys, shapes,
window layout and left padding), drawn by another generator.
"""

from __future__ import annotations

import os
from typing import Any, NamedTuple

import numpy as np

from rlgen.errors import RlgenError

#: Of the memory the device has free (host RAM for the CPU), the most a dataset may take.
BUDGET_FRACTION = 0.5


class DeviceData(NamedTuple):
    """A dataset view's arrays on device.

    Attributes:
        obs: ``(N_obs, C, H, W)`` uint8, every observation of the underlying dataset (final ones included).
        obs_of_step, actions, rewards, terminated, returns_to_go, timesteps: ``(N_steps,)`` per step of the
            underlying dataset (int32, int32, float32, bool, float32, int32).
        steps: ``(n,)`` int32, the step rows of this view (a subset's episodes only).
    """

    obs: Any
    obs_of_step: Any
    actions: Any
    rewards: Any
    terminated: Any
    returns_to_go: Any
    timesteps: Any
    steps: Any


#: Cache array -> dtype on device (int64 indices and counters fit int32 for any dataset that fits a device).
_DTYPES = {"obs_of_step": np.int32, "actions": np.int32, "rewards": np.float32, "terminated": np.bool_, "returns_to_go": np.float32,
           "timesteps": np.int32}  # fmt: skip


def view_steps(ds: Any) -> np.ndarray:
    """The cache's step rows of ``ds``'s episodes (a subset's only), in episode order: ``(n,)`` int64."""
    starts = np.asarray(ds.cached_arrays()["ep_step_start"])[ds.episodes["id"]]
    lengths = ds.episodes["length"].astype(np.int64)
    return np.repeat(starts, lengths) + (np.arange(int(lengths.sum())) - np.repeat(np.cumsum(lengths) - lengths, lengths))


def free_bytes(device: Any) -> int:
    """Memory free on ``device`` (a ``jax.Device``): the accelerator's own, or the host's available RAM for the CPU."""
    if device.platform != "cpu":
        stats = device.memory_stats() or {}
        if "bytes_limit" in stats:
            return int(stats["bytes_limit"]) - int(stats.get("bytes_in_use", 0))
    try:
        with open("/proc/meminfo") as f:
            info = {line.split(":")[0]: int(line.split()[1]) * 1024 for line in f}
        return info["MemAvailable"]
    except (OSError, KeyError, ValueError, IndexError):  # not Linux
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def device_bytes(ds: Any) -> int:
    """Bytes ``ds``'s arrays take on device (observations as stored, per-step arrays at their device dtypes)."""
    arrays = ds.cached_arrays()
    n_steps = len(arrays["actions"])
    per_step = sum(np.dtype(t).itemsize for t in _DTYPES.values())
    return int(arrays["obs"].nbytes) + n_steps * per_step + int(ds.num_transitions) * 4  # + the view's step rows (int32)


def to_device(ds: Any, device: Any, budget_bytes: int | None = None) -> DeviceData:
    """``ds``'s arrays on ``device``, read from its memory-mapped cache (built once if needed).

    Raises:
        RlgenError: the arrays would take more than ``budget_bytes`` (default: half of what the device has
            free), naming both sizes.
    """
    import jax  # noqa: PLC0415

    need = device_bytes(ds)
    budget = int(BUDGET_FRACTION * free_bytes(device)) if budget_bytes is None else int(budget_bytes)
    if need > budget:
        raise RlgenError(f"dataset {str(ds.root)!r} takes {need / 2**20:,.0f} MiB on {device.platform} and the JAX agents hold it there whole; "
                         f"the budget is {budget / 2**20:,.0f} MiB (half the free memory): train on a subset "
                         "(Dataset.subset(...).save_subset) or with the torch agents (algo: bc, cql, iql, dt...), which sample out of core")  # fmt: skip
    arrays = ds.cached_arrays()
    put = {name: jax.device_put(np.asarray(arrays[name], dtype=dtype), device) for name, dtype in _DTYPES.items()}
    obs = jax.device_put(np.asarray(arrays["obs"]), device)
    steps = jax.device_put(view_steps(ds).astype(np.int32), device)
    return DeviceData(obs=obs, steps=steps, **put)


def sample_transitions(data: DeviceData, key: Any, batch_size: int) -> dict[str, Any]:
    """A batch of transitions drawn uniformly with replacement from ``data.steps`` (inside jit).

    Returns: ``obs``, ``next_obs`` ``(B, C, H, W)`` uint8, ``actions`` ``(B,)`` int32, ``rewards`` ``(B,)``
    float32, ``terminated`` ``(B,)`` bool (no bootstrapping past it; a truncated step does bootstrap).
    """
    import jax  # noqa: PLC0415

    rows = data.steps[jax.random.randint(key, (batch_size,), 0, data.steps.shape[0])]
    obs_rows = data.obs_of_step[rows]
    return {"obs": data.obs[obs_rows], "next_obs": data.obs[obs_rows + 1], "actions": data.actions[rows], "rewards": data.rewards[rows],
            "terminated": data.terminated[rows]}  # fmt: skip


def sample_windows(data: DeviceData, key: Any, batch_size: int, length: int) -> dict[str, Any]:
    """A batch of trajectory windows of ``length`` steps, each ending at a uniformly drawn step and reaching
    back at most to its episode's start; shorter windows are left-padded (inside jit).

    Returns: ``obs`` ``(B, L, C, H, W)``, ``actions`` ``(B, L)``, ``returns_to_go`` ``(B, L)``, ``timesteps``
    ``(B, L)`` (0-based step in the episode), ``mask`` ``(B, L)`` bool (False on padding, where every other
    array is zero), as ``rlgen.data.sampler.sample_windows``.
    """
    import jax  # noqa: PLC0415
    import jax.numpy as jnp  # noqa: PLC0415

    end = data.steps[jax.random.randint(key, (batch_size,), 0, data.steps.shape[0])]  # (B,)
    back = jnp.arange(length - 1, -1, -1)  # (L,): how far before the end each column is
    mask = back[None, :] <= data.timesteps[end][:, None]  # (B, L)
    rows = jnp.where(mask, end[:, None] - back[None, :], end[:, None])  # padding reads the end row, then is zeroed
    obs = data.obs[data.obs_of_step[rows]]  # (B, L, C, H, W)
    out = {"obs": obs * mask[:, :, None, None, None].astype(obs.dtype)}
    for name in ("actions", "returns_to_go", "timesteps"):
        x = getattr(data, name)[rows]
        out[name] = x * mask.astype(x.dtype)
    out["mask"] = mask
    return out
