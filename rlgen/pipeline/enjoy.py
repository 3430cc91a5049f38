"""``rlgen enjoy``: a run's agent on chosen levels of its own split, the episodes side by side in one animation.

    from rlgen.pipeline.enjoy import enjoy
    clip = enjoy("runs/ppo-doorkey", which="held_out", episodes=4, out="clip.gif")   # clip.path, clip.episodes

Each tile is one episode, headed by its level id and, from the step it ends, its return; an episode that
ends early holds its last frame until the longest one ends (or ``max_steps`` cuts it: "cut"). The file is
written whole or not at all (``rlgen.atomic_files``). GIF through Pillow (a matplotlib dependency, so always
there); MP4 through imageio with imageio-ffmpeg, when installed (they come with the ``jax`` extra).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import math
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rlgen.atomic_files import atomic_writer, write_bytes_atomic
from rlgen.config import MAX_SEED
from rlgen.envs import LEVEL_ID_LIMIT, WHICH
from rlgen.errors import DependencyError, RlgenError

#: Most tiles in one animation (episodes), and the other bounds of the arguments.
MAX_EPISODES = 64
MAX_FPS = 50  # GIF frame durations are whole centiseconds: 50 fps is 2 of them
MAX_STEPS = 10_000
#: Height in pixels of the label strip above each tile, and the gap between tiles.
LABEL_PIXELS = 14
GAP_PIXELS = 2
SUFFIXES = (".gif", ".mp4")


@dataclasses.dataclass(frozen=True)
class Clip:
    """What :func:`enjoy` wrote: ``path``, its ``frames`` of ``size`` ``(height, width)`` pixels, and the
    recorded ``episodes`` (``rlgen.evaluation.render.RecordedEpisode``, one per tile)."""

    path: Path
    frames: int
    size: tuple[int, int]
    episodes: list[Any]


def mp4_writer_available() -> bool:
    """Whether MP4 can be written here (imageio and its ffmpeg binary package are installed)."""
    return all(importlib.util.find_spec(m) is not None for m in ("imageio", "imageio_ffmpeg"))


def check_out_path(out: str | Path) -> Path:
    """``out`` as a path a clip can be written to: a ``.gif`` (or ``.mp4`` when :func:`mp4_writer_available`),
    not a directory, in a directory that is (or can be made) writable; else one ``RlgenError``."""
    from rlgen.agents.run_checks import check_writable_dir

    path = Path(out)
    suffix = path.suffix.lower()
    allowed = [s for s in SUFFIXES if s != ".mp4" or mp4_writer_available()]
    if suffix not in allowed:
        extra = "; .mp4 needs imageio and imageio-ffmpeg (pip install imageio imageio-ffmpeg)" if ".mp4" not in allowed else ""
        raise RlgenError(f"--out {str(out)!r}: the suffix must be one of {', '.join(allowed)}{extra}")
    if path.is_dir():
        raise RlgenError(f"--out {str(out)!r} is a directory; give a file name such as {path / ('clip' + suffix)}")
    check_writable_dir(path.parent, "--out", remedy="choose another --out")
    return path


def parse_levels(text: str | Sequence[int] | None) -> list[int] | None:
    """``"250,251"`` (or a list of ints) as a level list; None stays None. Anything else is one ``RlgenError``."""
    if text is None:
        return None
    parts = [p.strip() for p in text.split(",")] if isinstance(text, str) else list(text)
    try:
        levels = [int(p) for p in parts]
    except (TypeError, ValueError):
        raise RlgenError(f"--levels {text!r}: expected comma-separated level ids such as 250,251") from None
    if not levels or any(x < 0 for x in levels):
        raise RlgenError(f"--levels {text!r}: expected one or more level ids >= 0")
    too_large = [x for x in levels if x >= LEVEL_ID_LIMIT]  # numpy's int64 (and the envs' int32 seeds) cannot hold them
    if too_large:
        raise RlgenError(f"--levels {too_large[0]}: level ids are 0 to {LEVEL_ID_LIMIT - 1:,}")
    return levels


def check_arguments(which: str, episodes: int | None, levels: list[int] | None, max_steps: int, fps: int, seed: int) -> int:
    """One ``RlgenError`` for any argument out of range; returns the number of episodes (tiles)."""
    if which not in WHICH:
        raise RlgenError(f"--which {which!r}: must be one of {', '.join(WHICH)}")
    n = episodes if episodes is not None else (len(levels) if levels else 4)
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_EPISODES:
        raise RlgenError(f"--episodes {n!r}: must be 1 to {MAX_EPISODES} (one tile each)")
    if levels is not None and len(levels) != n:
        raise RlgenError(f"--episodes {n} with {len(levels)} --levels: give one level per episode, or leave --episodes out")
    for name, value, high in (("--max-steps", max_steps, MAX_STEPS), ("--fps", fps, MAX_FPS)):
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= high:
            raise RlgenError(f"{name} {value!r}: must be 1 to {high:,}")
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise RlgenError(f"--seed {seed!r}: must be 0 to {MAX_SEED:,}")
    return n


def label_strip(width: int, text: str) -> np.ndarray:
    """A ``(LABEL_PIXELS, width, 3)`` black strip with ``text`` in white (Pillow's built-in font)."""
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (width, LABEL_PIXELS), (0, 0, 0))
    ImageDraw.Draw(img).text((2, 1), text, fill=(255, 255, 255))
    return np.asarray(img)


def tile_label(episode: Any, t: int) -> str:
    """The label of ``episode``'s tile at animation frame ``t``: its level, and its return once it has ended."""
    text = f"level {episode.level}"
    if t >= episode.length:
        text += f"  R {episode.total_return:.2f}" if episode.ended else f"  cut, R {episode.total_return:.2f}"
    return text


def compose(episodes: Sequence[Any]) -> list[np.ndarray]:
    """The animation's frames ``(H, W, 3)`` uint8: the episodes' tiles in a near-square grid, each with its
    label strip; finished episodes hold their last frame."""
    cols = math.ceil(math.sqrt(len(episodes)))
    rows = math.ceil(len(episodes) / cols)
    th = max(e.frames.shape[1] for e in episodes) + LABEL_PIXELS
    tw = max(e.frames.shape[2] for e in episodes)
    height, width = rows * th + (rows - 1) * GAP_PIXELS, cols * tw + (cols - 1) * GAP_PIXELS
    out = []
    labels: dict[tuple[int, str], np.ndarray] = {}  # a label's strip is drawn once
    for t in range(max(e.length for e in episodes) + 1):
        canvas = np.full((height, width, 3), 255, dtype=np.uint8)
        for i, e in enumerate(episodes):
            y, x = (i // cols) * (th + GAP_PIXELS), (i % cols) * (tw + GAP_PIXELS)
            text = tile_label(e, t)
            if (i, text) not in labels:
                labels[(i, text)] = label_strip(tw, text)
            canvas[y : y + LABEL_PIXELS, x : x + tw] = labels[(i, text)]
            frame = e.frames[min(t, e.length)]
            canvas[y + LABEL_PIXELS : y + LABEL_PIXELS + frame.shape[0], x : x + frame.shape[1]] = frame
        out.append(canvas)
    return out


def pad_to_blocks(frames: Sequence[np.ndarray], block: int = 16) -> list[np.ndarray]:
    """``frames`` ``(H, W, 3)`` padded at the bottom and right with white to multiples of ``block`` pixels."""
    h, w = frames[0].shape[:2]
    ph, pw = -h % block, -w % block
    if not ph and not pw:
        return list(frames)
    return [np.pad(f, ((0, ph), (0, pw), (0, 0)), constant_values=255) for f in frames]


def write_animation(frames: Sequence[np.ndarray], path: Path, fps: int) -> Path:
    """``frames`` as a looping GIF or an MP4 at ``path`` (by its suffix), atomically."""
    if path.suffix.lower() == ".gif":
        from PIL import Image

        images = [Image.fromarray(f) for f in frames]
        with atomic_writer(path) as f:
            images[0].save(f, format="GIF", save_all=True, append_images=images[1:], duration=max(20, round(1000 / fps)), loop=0)
        return path
    if not mp4_writer_available():
        raise DependencyError(f"--out {path}: .mp4 needs imageio and imageio-ffmpeg (pip install imageio imageio-ffmpeg)")
    import imageio.v2 as imageio

    with tempfile.TemporaryDirectory() as tmp:  # ffmpeg writes to a path: encode there, then move the bytes in whole
        scratch = Path(tmp) / "clip.mp4"
        # H.264 wants dimensions divisible by 16: pad with the canvas' white here (imageio would resize, and warn)
        with imageio.get_writer(scratch, fps=fps, codec="libx264", macro_block_size=1) as w:
            for frame in pad_to_blocks(frames):
                w.append_data(frame)
        return write_bytes_atomic(path, scratch.read_bytes())


def enjoy(run_dir: str | Path, which: str = "held_out", episodes: int | None = None, out: str | Path = "clip.gif",
          levels: str | Sequence[int] | None = None, checkpoint: str | None = None, max_steps: int = 500, fps: int = 8, seed: int = 0,
          deterministic: bool = False, device: str | None = None) -> Clip:  # fmt: skip
    """Render ``run_dir``'s agent on ``episodes`` levels of its split's ``which`` set (``levels``, or drawn
    with ``seed`` as evaluation draws them) into one animation at ``out``.

    Arguments are checked (and the output directory tried) before the agent loads; a level outside the set
    fails after, before anything is written.

    Raises:
        RlgenError: a bad argument, no such run, a level not in the set, or an env that cannot be drawn.
    """
    from rlgen.agents import load_agent
    from rlgen.evaluation import evaluation_levels
    from rlgen.evaluation.render import record_episodes

    chosen = parse_levels(levels)
    n = check_arguments(which, episodes, chosen, max_steps, fps, seed)
    path = check_out_path(out)
    if not Path(run_dir).is_dir():
        raise RlgenError(f"no run directory {str(run_dir)!r}; give a directory made by rlgen train")
    run = load_agent(run_dir, checkpoint=checkpoint, device=device)
    split = run.split
    if chosen is not None:
        outside = [x for x in chosen if not split.levels(which).contains(np.asarray([x]))[0]]
        if outside:
            raise RlgenError(f"--levels {','.join(map(str, outside))}: not {which} levels of {run_dir} ({split.levels(which).describe()})")
    level_list = chosen if chosen is not None else [int(x) for x in evaluation_levels(split, which, n, seed)]
    recorded = record_episodes(run.agent, split, which, level_list, seed=seed, max_steps=max_steps, deterministic=deterministic)
    frames = compose(recorded)
    write_animation(frames, path, fps)
    shape = (pad_to_blocks(frames[:1])[0] if path.suffix.lower() == ".mp4" else frames[0]).shape  # what the file holds
    return Clip(path, len(frames), (int(shape[0]), int(shape[1])), recorded)
