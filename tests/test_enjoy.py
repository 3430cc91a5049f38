"""`rlgen enjoy` on the tiny runs of tests/fixtures/old_runs: one tile per episode with its level label, the
episodes evaluation runs, one-line errors for bad input and no file left behind by a failed command."""

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from rlgen.cli import main
from rlgen.evaluation import evaluate_on_levels
from rlgen.evaluation.render import record_episodes
from rlgen.pipeline.enjoy import GAP_PIXELS, LABEL_PIXELS, compose, label_strip

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "old_runs"
pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py


@pytest.fixture
def runs(tmp_path, monkeypatch):
    """The fixture runs copied (offline runs name their dataset relative to the working directory)."""
    for name in ("ppo", "bc", "dt", "dataset"):
        shutil.copytree(FIXTURES / name, tmp_path / name)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def gif_frames(path: Path) -> list[np.ndarray]:
    """Every frame of a GIF as RGB, each repeated by its duration in animation frames (Pillow merges equal frames)."""
    im = Image.open(path)
    out = []
    for i in range(im.n_frames):
        im.seek(i)
        out.append(np.asarray(im.convert("RGB")))
    return out


@pytest.mark.parametrize("run", ["ppo", "bc", "dt"])
def test_enjoy_writes_one_labelled_tile_per_episode(runs, run, capsys):
    # DoorKey-5x5 drawn at 32 px a cell: 160x160 per tile, a 14 px label strip above, 2 tiles a row for 3 episodes
    assert main(["enjoy", run, "--episodes", "3", "--max-steps", "6", "--out", "clips/clip.gif"]) == 0
    out = capsys.readouterr().out
    assert "wrote clips/clip.gif: 3 episodes side by side, 7 frames of 322x350 px" in out
    frames = gif_frames(runs / "clips" / "clip.gif")
    tile_h, tile_w = 160 + LABEL_PIXELS, 160
    assert frames[0].shape == (2 * tile_h + GAP_PIXELS, 2 * tile_w + GAP_PIXELS, 3)
    first, last = frames[0], frames[-1]
    for i in range(3):  # each tile: a label with white text on black, a grid picture under it
        y, x = (i // 2) * (tile_h + GAP_PIXELS), (i % 2) * (tile_w + GAP_PIXELS)
        strip = first[y : y + LABEL_PIXELS, x : x + tile_w]
        assert (strip.min(axis=2) > 128).sum() > 20 and (strip.max(axis=2) < 64).sum() > 0.5 * strip[..., 0].size
        assert len(np.unique(first[y + LABEL_PIXELS : y + tile_h, x : x + tile_w].reshape(-1, 3), axis=0)) > 3
    assert (first[tile_h + GAP_PIXELS :, tile_w + GAP_PIXELS :] == 255).all()  # the fourth cell of the grid stays blank
    # the labels change when the episodes are cut ("cut, R 0.00" is added)
    assert not np.array_equal(first[:LABEL_PIXELS, :tile_w], last[:LABEL_PIXELS, :tile_w])


def test_the_label_is_drawn_text():
    blank = label_strip(160, "")
    labelled = label_strip(160, "level 250  R 0.93")
    assert blank.shape == labelled.shape == (LABEL_PIXELS, 160, 3)
    assert not blank.any() and (labelled.min(axis=2) > 128).sum() > 40


def test_enjoyed_episodes_are_the_evaluated_ones_and_finished_ones_hold_their_last_frame(runs):
    from rlgen.agents import load_agent

    run = load_agent(runs / "ppo")
    split = run.split
    levels = [int(x) for x in split.levels("held_out").first(3)]
    recorded = record_episodes(run.agent, split, "held_out", levels, seed=3, max_steps=10_000)
    evaluated = evaluate_on_levels(run.agent, split, "held_out", episodes=3, seed=3, num_envs=2, levels=levels)
    assert [e.total_return for e in recorded] == pytest.approx(evaluated.returns.tolist())
    assert [e.length for e in recorded] == evaluated.lengths.tolist() and all(e.ended for e in recorded)
    assert [len(e.frames) for e in recorded] == [n + 1 for n in evaluated.lengths]
    short = min(recorded, key=lambda e: e.length)
    frames = compose(recorded)
    assert len(frames) == max(e.length for e in recorded) + 1
    i = recorded.index(short)
    y, x = (i // 2) * (160 + LABEL_PIXELS + GAP_PIXELS) + LABEL_PIXELS, (i % 2) * (160 + GAP_PIXELS)
    np.testing.assert_array_equal(frames[-1][y : y + 160, x : x + 160], short.frames[-1])


def test_procgen_frames_are_the_observations_upscaled():
    from rlgen.evaluation.render import observation_frame

    obs = np.random.default_rng(0).integers(0, 256, size=(3, 64, 64), dtype=np.uint8)
    frame = observation_frame(obs)
    assert frame.shape == (192, 192, 3)
    np.testing.assert_array_equal(frame[::3, ::3], obs.transpose(1, 2, 0))
    assert observation_frame(np.zeros((2, 5, 5), dtype=np.uint8)) is None  # XLand's symbolic grid: no picture


@pytest.mark.parametrize(("args", "message"), [
    (["missing"], "no run directory 'missing'"),
    (["ppo", "--episodes", "0"], "--episodes 0: must be 1 to 64"),
    (["ppo", "--out", "clip.avi"], "--out 'clip.avi': the suffix must be one of .gif"),
    (["ppo", "--out", "dir.gif"], "--out 'dir.gif' is a directory"),
    (["ppo", "--levels", "3,70"], "--levels 3: not held_out levels of ppo (70-"),
    (["ppo", "--levels", "a,b"], "--levels 'a,b': expected comma-separated level ids"),
    (["ppo", "--episodes", "2", "--levels", "70"], "--episodes 2 with 1 --levels"),
    (["ppo", "--fps", "0"], "--fps 0: must be 1 to 50"),
    (["ppo", "--max-steps", "0"], "--max-steps 0: must be 1 to 10,000"),
])  # fmt: skip
def test_bad_input_is_one_line_and_leaves_no_file(runs, args, message, capsys):
    out = args[args.index("--out") + 1] if "--out" in args else "clip.gif"
    (runs / "dir.gif").mkdir()
    assert main(["enjoy", *args, *([] if "--out" in args else ["--out", out])]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert not (runs / "clip.gif").exists() and not list(runs.glob(".clip*"))


def test_unknown_which_and_unwritable_out_then_a_corrected_retry(runs, capsys):
    with pytest.raises(SystemExit) as e:
        main(["enjoy", "ppo", "--which", "test"])
    assert e.value.code == 2 and "invalid choice: 'test'" in capsys.readouterr().err
    assert main(["enjoy", "ppo", "--out", "ppo/config.yaml/clip.gif"]) == 2  # its directory is a file (refused even as root)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--out" in err[0] and "ppo/config.yaml" in err[0], err
    assert main(["enjoy", "ppo", "--which", "held_out", "--levels", "70,71", "--max-steps", "2", "--out", "ok.gif"]) == 0
    assert "2 episodes side by side" in capsys.readouterr().out and len(gif_frames(runs / "ok.gif")) >= 1


def test_mp4_needs_its_writer(runs, monkeypatch, capsys):
    import rlgen.pipeline.enjoy as enjoy_module

    monkeypatch.setattr(enjoy_module, "mp4_writer_available", lambda: False)
    assert main(["enjoy", "ppo", "--out", "clip.mp4"]) == 2
    assert "the suffix must be one of .gif; .mp4 needs imageio and imageio-ffmpeg" in capsys.readouterr().err


def test_frames_past_the_memory_limit_are_one_line_and_leave_no_file(runs, monkeypatch, capsys):
    """Frames live in RAM until the animation is written: a clip too large to hold is refused, not swapped to death."""
    import rlgen.evaluation.render as render

    monkeypatch.setattr(render, "FRAME_BYTES_LIMIT", 10 * 160 * 160 * 3)  # ten DoorKey-5x5 frames
    assert main(["enjoy", "ppo", "--episodes", "3", "--max-steps", "6", "--out", "big.gif"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "give fewer --episodes or a smaller --max-steps" in err[0], err
    assert not (runs / "big.gif").exists()
    assert main(["enjoy", "ppo", "--episodes", "1", "--max-steps", "6", "--out", "big.gif"]) == 0  # 7 frames fit


def test_mp4_frames_are_padded_to_whole_blocks_and_the_size_said_is_the_files(runs, capsys):
    """H.264 wants sizes divisible by 16: imageio resized 322x350 frames with a warning on stderr, and the size
    rlgen printed was not the file's."""
    from rlgen.pipeline import enjoy as enjoy_module

    if not enjoy_module.mp4_writer_available():
        pytest.skip("imageio-ffmpeg is not installed")
    import imageio.v2 as imageio

    assert main(["enjoy", "ppo", "--episodes", "3", "--max-steps", "4", "--out", "clip.mp4"]) == 0
    captured = capsys.readouterr()
    assert "macro_block_size" not in captured.err and "5 frames of 336x352 px" in captured.out, captured
    frame = imageio.get_reader(runs / "clip.mp4").get_data(0)
    assert frame.shape == (352, 336, 3)
