"""Batches from a dataset's flat cache arrays, on the host (memory-mapped) or on a device (torch).

Batch keys follow Gymnasium's vocabulary in both samplers: ``obs``, ``actions``, ``rewards``,
``terminated``, ``truncated`` (plus ``next_obs`` for transitions; ``returns_to_go``, ``timesteps``
and ``mask`` for windows). Values are numpy arrays, or torch tensors on the device after
``Dataset.to_device``.
"""

from __future__ import annotations

from typing import Any

import numpy as np


class CacheArrays:
    """The cache's arrays (``rlgen.data.cache``'s names) and where they live.

    Attributes:
        arrays: name -> memory-mapped numpy array, or a torch tensor on ``device``.
        device: None on the host, else the torch device the arrays were copied to.
    """

    def __init__(self, arrays: dict[str, Any], device: str | None = None) -> None:
        self.arrays = arrays
        self.device = device

    def gather(self, name: str, rows: np.ndarray) -> Any:
        if self.device is not None:
            import torch

            return self.arrays[name][torch.as_tensor(rows, device=self.device)]
        return self.arrays[name][rows]

    def host(self, x: Any) -> np.ndarray:
        return x.cpu().numpy() if self.device is not None else np.asarray(x)


def copy_to_device(source: CacheArrays, device: str) -> CacheArrays | None:
    """``source``'s arrays copied to torch ``device`` (e.g. ``"cuda"``), or None when they would take
    more than half its free memory."""
    import torch

    need = sum(a.nbytes for a in source.arrays.values())
    if str(device).startswith("cuda"):
        free, _ = torch.cuda.mem_get_info(torch.device(device))
        if need > 0.5 * free:
            return None
    moved = {}
    for k, v in source.arrays.items():
        t = torch.empty(v.shape, dtype=torch.from_numpy(np.zeros(0, v.dtype)).dtype, device=device)
        step = max(1, (256 << 20) // max(1, v[:1].nbytes))  # ~256 MB at a time: never a second full copy in host RAM
        for i in range(0, len(v), step):
            t[i : i + step] = torch.from_numpy(np.array(v[i : i + step]))
        moved[k] = t
    return CacheArrays(moved, str(device))


def sample_transitions(src: CacheArrays, steps: np.ndarray, batch_size: int, rng: np.random.Generator) -> dict[str, Any]:
    """A batch of transitions drawn uniformly with replacement from the step rows ``steps``.

    Returns:
        ``obs`` and ``next_obs`` ``(B, *obs_shape)``, ``actions`` ``(B,)`` int64, ``rewards`` ``(B,)``
        float32, ``terminated`` ``(B,)`` bool (no bootstrapping past it), ``truncated`` ``(B,)`` bool.
    """
    rows = np.sort(steps[rng.integers(0, len(steps), size=int(batch_size))])
    obs_rows = src.host(src.gather("obs_of_step", rows))
    return {
        "obs": src.gather("obs", obs_rows),
        "actions": src.gather("actions", rows),
        "rewards": src.gather("rewards", rows),
        "next_obs": src.gather("obs", obs_rows + 1),
        "terminated": src.gather("terminated", rows),
        "truncated": src.gather("truncated", rows),
    }


def sample_windows(src: CacheArrays, steps: np.ndarray, batch_size: int, length: int, rng: np.random.Generator) -> dict[str, Any]:
    """A batch of trajectory windows of ``length`` steps, each ending at a uniformly drawn step of
    ``steps`` and reaching back at most to its episode's start; shorter windows are left-padded.

    Returns:
        ``obs`` ``(B, L, *obs_shape)``, ``actions`` ``(B, L)`` int64, ``rewards`` ``(B, L)`` float32,
        ``returns_to_go`` ``(B, L)`` float32 (sum of this and later rewards of the episode),
        ``timesteps`` ``(B, L)`` int64 (step index in the episode), ``terminated`` and ``truncated``
        ``(B, L)`` bool, ``mask`` ``(B, L)`` bool (False on padding, where every other array is zero).
    """
    end = steps[rng.integers(0, len(steps), size=int(batch_size))]
    t_end = src.host(src.gather("timesteps", end))
    back = np.arange(length - 1, -1, -1)  # (L,): how far before the end each column is
    mask = back[None, :] <= t_end[:, None]  # (B, L)
    rows = np.where(mask, end[:, None] - back[None, :], end[:, None])  # padding reads the end row, then is zeroed
    flat = rows.ravel()
    order = np.argsort(flat, kind="stable")  # memory-mapped reads are faster in file order
    inverse = np.empty_like(order)
    inverse[order] = np.arange(len(order))
    sorted_rows = flat[order]

    if src.device is not None:
        import torch

        inverse = torch.as_tensor(inverse, device=src.device)

    def take(name: str, index: np.ndarray) -> Any:
        x = src.gather(name, index)[inverse]
        return x.reshape(len(end), length, *x.shape[1:])

    obs_rows = src.host(src.gather("obs_of_step", sorted_rows))
    out = {"obs": take("obs", obs_rows)}
    for name in ("actions", "rewards", "returns_to_go", "timesteps", "terminated", "truncated"):
        out[name] = take(name, sorted_rows)
    if src.device is not None:
        import torch

        m = torch.as_tensor(mask, device=src.device)
        for k, v in out.items():
            out[k] = v * m.view(*m.shape, *([1] * (v.dim() - 2))).to(v.dtype)
        out["mask"] = m
    else:
        for k, v in out.items():
            v = np.asarray(v)
            out[k] = v * mask.reshape(*mask.shape, *([1] * (v.ndim - 2))).astype(v.dtype)
        out["mask"] = mask
    return out
