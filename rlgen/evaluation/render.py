"""Episodes of any policy on chosen levels, kept as RGB frames: what ``rlgen enjoy`` animates.

Frames come from the env's own RGB rendering when its vector env has one (``rgb_frames()``: MiniGrid's
``get_frame``, what ``render_mode="rgb_array"`` draws, the whole grid whatever the observation view;
XLand-MiniGrid through xminigrid's renderer), else from the observations themselves when they are RGB
images: Procgen through EnvPool has no renderer, so its frames are the agent's own 64x64 views, upscaled.

The episodes are those evaluation would run with the same policy, level list and seed: each one's env seed,
action uniforms and policy generators are seeded as in ``rlgen.evaluation.episodes`` (so the return shown on
a tile is the return ``evaluate_on_levels(..., levels=..., seed=...)`` records for that level), except that
an episode still running after ``max_steps`` is cut there.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from rlgen.envs import LevelSplit, make_env
from rlgen.errors import RlgenError
from rlgen.evaluation.episodes import as_policy, level_list_of, policy_seed, seeded_policy_rngs

#: Frames drawn from observations are upscaled (nearest neighbour) until their longer side is at least this.
MIN_FRAME_PIXELS = 160
#: Recorded frames are held in RAM (the animation is composed from them, then encoded): past this many bytes
#: recording stops with an error instead of growing without bound (composing and encoding take about as much again).
FRAME_BYTES_LIMIT = 1 << 30
#: Pixels per grid cell of the grid suites' RGB rendering.
TILE_PIXELS = 32


@dataclasses.dataclass(frozen=True)
class RecordedEpisode:
    """One episode as pictures.

    Attributes:
        level: the level it ran on.
        frames: ``(T + 1, H, W, 3)`` uint8: the state after reset, then after each of its ``T`` steps.
        total_return: the sum of its rewards (up to the cut, for a cut one).
        length: steps taken (``T``).
        ended: whether it ended (terminated or truncated by the env) rather than being cut at ``max_steps``.
    """

    level: int
    frames: np.ndarray
    total_return: float
    length: int
    ended: bool


def upscale(image: np.ndarray, min_pixels: int = MIN_FRAME_PIXELS) -> np.ndarray:
    """``image`` ``(H, W, 3)`` repeated by the smallest whole factor that makes its longer side ``>= min_pixels``."""
    k = max(1, math.ceil(min_pixels / max(image.shape[:2])))
    return np.repeat(np.repeat(image, k, axis=0), k, axis=1) if k > 1 else image


def observation_frame(obs: np.ndarray) -> np.ndarray | None:
    """An RGB frame ``(H, W, 3)`` of one observation (``(3, H, W)`` or ``(H, W, 3)`` uint8), upscaled; None when
    the observation is no RGB image (symbolic grids, vectors)."""
    a = np.asarray(obs)
    if a.ndim != 3 or a.dtype != np.uint8:
        return None
    if a.shape[0] == 3 and a.shape[-1] != 3:
        a = np.transpose(a, (1, 2, 0))
    return upscale(np.ascontiguousarray(a)) if a.shape[-1] == 3 else None


def frame_of(env: Any, obs: np.ndarray, split: LevelSplit) -> np.ndarray:
    """The picture of a one-env vector env now: its own RGB rendering, else its observation ``obs``."""
    if hasattr(env, "rgb_frames"):
        return np.asarray(env.rgb_frames(TILE_PIXELS)[0], dtype=np.uint8)
    frame = observation_frame(obs)
    if frame is None:
        raise RlgenError(f"cannot draw {split.id}: its env has no RGB rendering and its observations {list(np.shape(obs))} are not RGB "
                         "images (pictures work for the minigrid, xland and procgen suites)")  # fmt: skip
    return frame


def record_episodes(policy: Any, split: LevelSplit, which: str, levels: Sequence[int], seed: int = 0, max_steps: int = 500,
                    deterministic: bool = False) -> list[RecordedEpisode]:  # fmt: skip
    """Run one episode per entry of ``levels`` (each a ``which`` level of ``split``), all at once, keeping frames.

    Args:
        policy: anything ``rlgen.evaluation.as_policy`` takes (DT and BCT are told where episodes start and
            what rewards came back, as in evaluation).
        max_steps: an episode still running after this many steps is cut (``ended=False``).
        seed: evaluation's seed: the same level list and seed give the episodes ``evaluate_on_levels`` runs.

    Returns:
        One :class:`RecordedEpisode` per level, in the order of ``levels``.

    Raises:
        RlgenError: a level outside the ``which`` set, or an env that cannot be drawn.
    """
    if max_steps < 1:
        raise RlgenError(f"max_steps must be >= 1, got {max_steps}")
    driven = as_policy(policy)
    level_list = level_list_of(split, which, len(levels), seed, levels)
    sampling_seed = policy_seed(seed, which)
    envs, obs, frames, rewards, rngs = [], [], [], [], []
    held = 0  # bytes of the recorded frames

    def keep(k: int, frame: np.ndarray) -> None:
        nonlocal held
        held += frame.nbytes
        if held > FRAME_BYTES_LIMIT:
            raise RlgenError(f"the recorded frames of {len(level_list)} episodes passed {FRAME_BYTES_LIMIT / 2**30:.0f} GiB (frames of "
                             f"{frame.shape[1]}x{frame.shape[0]} px, about {sum(map(len, frames)):,} so far): give fewer --episodes or a "
                             "smaller --max-steps")  # fmt: skip
        frames[k].append(frame)

    with seeded_policy_rngs(driven, sampling_seed):
        try:
            for k, level in enumerate(level_list):
                env = make_env(split, which, num_envs=1, seed=seed * 100_003 + k, levels=[int(level)])  # evaluation's env seed
                envs.append(env)
                o, _ = env.reset()
                obs.append(o[0])
                frames.append([])
                keep(k, frame_of(env, o[0], split))
                rewards.append(0.0)
                rngs.append(np.random.default_rng([sampling_seed, k]))  # episode k's own action uniforms, as in evaluation
            driven.reset(list(range(len(level_list))))
            ended = [False] * len(level_list)
            active = list(range(len(level_list)))
            for _ in range(max_steps):
                if not active:
                    break
                draws = np.array([rngs[k].random() for k in active]) if driven.samples_from_uniforms else None
                actions = driven.act(np.stack([obs[k] for k in active]), deterministic=deterministic,
                                     keys=active if driven.episodic else None, uniforms=draws)  # fmt: skip
                step_rewards = []
                still = []
                for k, a in zip(active, actions):
                    o, r, terminated, truncated, _ = envs[k].step(np.asarray([a]))
                    rewards[k] += float(r[0])
                    step_rewards.append(float(r[0]))
                    keep(k, frame_of(envs[k], o[0], split))
                    obs[k] = o[0]
                    if terminated[0] or truncated[0]:
                        ended[k] = True
                    else:
                        still.append(k)
                driven.observe(active, np.asarray(step_rewards))
                active = still
        finally:
            for env in envs:
                env.close()
    return [RecordedEpisode(int(level), np.stack(f), rewards[k], len(f) - 1, ended[k]) for k, (level, f) in enumerate(zip(level_list, frames))]
