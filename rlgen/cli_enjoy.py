"""``rlgen enjoy``'s arguments and command (the CLI layer; kept out of ``cli.py`` to keep that module small).
The work is ``rlgen.pipeline.enjoy.enjoy``; importing this module imports nothing but argparse."""

from __future__ import annotations

import argparse

DESCRIPTION = ("Render a run's agent (any algorithm whose agent acts: ppo, ppo_jax, bc, bcq, cql, iql, dt, bct, bc_jax...) on levels of "
               "its own split, the episodes side by side in one animation, each tile labelled with its level id and, when it ends, its "
               "return; episodes that end early hold their last frame. MiniGrid and XLand-MiniGrid are drawn by their RGB renderers "
               "(the whole grid); Procgen through EnvPool has no renderer, so its tiles are the agent's own observation frames, upscaled. "
               "The episodes are those `rlgen evaluate --seed S` runs on the same levels.")  # fmt: skip


def add_enjoy_parser(sub: argparse._SubParsersAction) -> None:
    """Add ``enjoy`` to the ``rlgen`` subcommands ``sub``."""
    p = sub.add_parser("enjoy", help="render a run's agent on chosen levels, episodes side by side, to a GIF (or MP4)", description=DESCRIPTION)
    p.add_argument("run_dir", help="a run directory made by rlgen train")
    p.add_argument("--which", default="held_out", choices=["train", "validation", "held_out"], help="level set (default held_out)")
    p.add_argument("--episodes", type=int, help="episodes, one tile each (default: one per --levels entry, else 4)")
    p.add_argument("--levels", help="comma-separated levels of that set, e.g. 250,251 (default: drawn with --seed, as evaluation does)")
    p.add_argument("--out", default="clip.gif", help="output file: .gif, or .mp4 where imageio-ffmpeg is installed (default clip.gif)")
    p.add_argument("--checkpoint", help="a checkpoint inside the run dir (default: the final policy)")
    p.add_argument("--max-steps", type=int, default=500, help="cut episodes still running after this many steps (default 500)")
    p.add_argument("--fps", type=int, default=8, help="frames per second (default 8)")
    p.add_argument("--seed", type=int, default=0, help="fixes the drawn levels and the sampled actions (default 0)")
    p.add_argument("--deterministic", action="store_true", help="greedy actions instead of sampled")
    p.add_argument("--device", help="override the run's device")
    p.set_defaults(func=cmd_enjoy)


def cmd_enjoy(args: argparse.Namespace) -> int:
    from rlgen.pipeline.enjoy import enjoy

    clip = enjoy(args.run_dir, which=args.which, episodes=args.episodes, out=args.out, levels=args.levels, checkpoint=args.checkpoint,
                 max_steps=args.max_steps, fps=args.fps, seed=args.seed, deterministic=args.deterministic, device=args.device)  # fmt: skip
    tiles = ", ".join(f"{e.level}: {e.total_return:.2f}" + ("" if e.ended else " (cut)") for e in clip.episodes)
    print(f"wrote {clip.path}: {len(clip.episodes)} episodes side by side, {clip.frames} frames of {clip.size[1]}x{clip.size[0]} px; "
          f"returns by level {tiles}")  # fmt: skip
    return 0
