"""DT/BCT training encodes a batch's frames in checkpointed chunks (``encoder_chunk``, issue 18 part 7):
the same loss, gradients and update as all frames at once, a fraction of the activations kept for
backward, a validated config key, and runs from before the key still resume."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from rlgen.agents.offline import build_agent
from rlgen.agents.offline_train import train_offline
from rlgen.config import OfflineConfig, load_config
from rlgen.data import Episode, load_dataset, write_dataset
from rlgen.errors import RlgenError
from tests.agents.test_offline_runs import assert_same_model, run_config
from tests.agents.test_offline import bandit_dataset

ROOT = Path(__file__).resolve().parents[2]
SHAPE = (3, 16, 16)  # small enough for a fast IMPALA encoder (the Procgen one, channels_last on CPU)
BATCH, CONTEXT, CHUNK = 6, 4, 5  # 24 frames: chunks of 5, 5, 5, 5, 4


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    rng = np.random.default_rng(0)
    eps = []
    for i in range(12):
        n = int(rng.integers(2, 9))  # some windows shorter than the context: padding
        terminated = np.r_[np.zeros(n - 1, bool), [True]]
        eps.append(Episode(rng.integers(0, 256, (n + 1, *SHAPE), dtype=np.uint8), rng.integers(0, 4, n), rng.random(n).astype(np.float32),
                           terminated, np.zeros(n, bool), level=i))  # fmt: skip
    manifest = {"kind": "dataset", "env": "procgen/coinrun", "observation_space": {"shape": list(SHAPE), "dtype": "uint8"},
                "action_space": {"n": 4}, "policies": [{"label": "expert"}]}  # fmt: skip
    path = tmp_path_factory.mktemp("images") / "d"
    write_dataset(path, eps, manifest)
    return path


def agent(algo: str, data: Path, *extra: str):
    cfg = load_config(ROOT / f"configs/offline/{algo}.yaml", [
        f"dataset={data}", "network=impala", f"batch_size={BATCH}", f"context_length={CONTEXT}", "device=cpu", "progress=false",
        "n_layers=1", "n_heads=2", "embed_dim=16", *extra,
    ], schema=OfflineConfig)  # fmt: skip
    return build_agent(cfg, SHAPE, 4, "cpu", target_return=1.0)


def encoder_batch_sizes(model: torch.nn.Module) -> list[int]:
    """Records the batch size of every call of ``model.encoder`` (forward and recomputation)."""
    sizes: list[int] = []
    model.encoder.register_forward_pre_hook(lambda _m, args: sizes.append(len(args[0])))
    return sizes


@pytest.mark.parametrize("algo", ["dt", "bct"])
def test_chunked_update_has_the_loss_and_gradients_of_the_whole_batch(images, algo):
    windows = load_dataset(images).sample_windows(BATCH, CONTEXT, np.random.default_rng(1))
    assert not windows["mask"].all()  # padding in the batch
    whole, chunked = agent(algo, images, "encoder_chunk=0"), agent(algo, images, f"encoder_chunk={CHUNK}")
    assert chunked.impl.model.encoder.channels_last  # the CPU path the shipped configs take
    sizes = encoder_batch_sizes(chunked.impl.model)
    stats = []
    for a in (whole, chunked):
        torch.manual_seed(7)  # the same dropout draws in the transformer
        stats.append(a.update(windows))
    # Chunked: each chunk's forward, then each chunk recomputed (last first) in backward: activation checkpointing.
    assert sizes == [5, 5, 5, 5, 4] + [4, 5, 5, 5, 5]
    key = "loss/dt" if algo == "dt" else "loss/bc"
    assert stats[1][key] == pytest.approx(stats[0][key], rel=1e-5, abs=1e-6)
    assert stats[1]["grad_norm"] == pytest.approx(stats[0]["grad_norm"], rel=1e-4)
    named = dict(whole.impl.model.named_parameters())
    for name, p in chunked.impl.model.named_parameters():
        q = named[name]
        assert p.grad is not None, name
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-4, atol=1e-6, msg=name)
    # (Not the weights after the step: Adam's first step moves each weight by about lr x sign(grad), so a
    # gradient within rounding of 0 may move its weight either way.)


def saved_bytes_for_backward(a, windows) -> int:
    """Bytes of the tensors autograd keeps for the backward pass of ``a``'s loss on ``windows``."""
    total = 0

    def pack(t: torch.Tensor) -> torch.Tensor:
        nonlocal total
        total += t.numel() * t.element_size()
        return t

    a.impl.model.train()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        a.impl.loss(windows)
    return total


def test_chunks_keep_a_fraction_of_the_encoder_activations(images):
    windows = load_dataset(images).sample_windows(BATCH, CONTEXT, np.random.default_rng(1))
    whole = saved_bytes_for_backward(agent("dt", images, "encoder_chunk=0"), windows)
    chunked = saved_bytes_for_backward(agent("dt", images, f"encoder_chunk={CHUNK}"), windows)
    # Kept per frame without chunks: every conv/ReLU/pool activation (float32); with them: the frame (uint8) and its features.
    assert chunked < whole / 5, (chunked, whole)


def test_acting_and_no_grad_evaluation_encode_all_frames_at_once(images):
    a = agent("dt", images, "encoder_chunk=2")
    sizes = encoder_batch_sizes(a.impl.model)
    a.act(np.zeros((5, *SHAPE), np.uint8), keys=range(5))
    assert sizes == [5]  # no checkpointing without gradients: nothing to keep, nothing to recompute


def test_encoder_chunk_key_defaults_validates_and_turns_off(images):
    assert agent("dt", images).impl.model.encoder_chunk == 512  # the default keeps the reference batch under 4 GiB on CPU
    for off in ("0", "null"):
        assert load_config(ROOT / "configs/offline/dt.yaml", [f"dataset={images}", f"encoder_chunk={off}"], schema=OfflineConfig).encoder_chunk in (0, None)
    for bad, says in (("-1", "greater than or equal to 0"), ("many", "valid integer"), ("1.5", "valid integer"), ("true", "not an integer"),
                      ("2000000", "at most 1,048,576")):  # fmt: skip
        with pytest.raises(RlgenError) as e:
            load_config(ROOT / "configs/offline/bct.yaml", [f"dataset={images}", f"encoder_chunk={bad}"], schema=OfflineConfig)
        msg = str(e.value)
        assert "\n" not in msg and "key `encoder_chunk`" in msg and bad in msg.lower() and says in msg, msg


def test_cli_refuses_a_bad_encoder_chunk_in_one_line(images, capsys, tmp_path):
    from rlgen.cli import main

    code = main(["train", str(ROOT / "configs/offline/dt.yaml"), f"dataset={images}", "encoder_chunk=-3", f"out_dir={tmp_path / 'run'}"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "encoder_chunk" in err and "-3" in err, err
    assert not (tmp_path / "run").exists()


def test_a_run_from_before_the_key_resumes_with_it(tmp_path):
    data = bandit_dataset(tmp_path / "d", 60, p_correct=0.5)
    straight = train_offline(run_config(data, tmp_path / "straight", "dt", "steps=6", "encoder_chunk=0"))
    run = tmp_path / "old"
    train_offline(run_config(data, run, "dt", "steps=3", "encoder_chunk=0"))
    saved = yaml.safe_load((run / "config.yaml").read_text())
    del saved["encoder_chunk"]  # as a run written before the key existed
    (run / "config.yaml").write_text(yaml.safe_dump(saved, sort_keys=False))
    resumed = train_offline(run_config(data, run, "dt", "steps=6", "encoder_chunk=0"))
    assert_same_model(straight / "model/model.pt", resumed / "model/model.pt")  # bit-identical to the uninterrupted run
    # The key is a memory setting, not part of the experiment: a resumed run may change it (e.g. off on a GPU).
    resumed = train_offline(run_config(data, run, "dt", "steps=9", "encoder_chunk=7"))  # 32 frames per batch: chunks of 7
    assert json.loads((resumed / "checkpoints/latest/state.json").read_text())["step"] == 9


def test_encoder_chunk_is_not_part_of_a_runs_identity():
    """Chunking changes memory, not what DT learns: runs with and without it are one report row."""
    from rlgen.agents.identity import config_settings

    base = ["dataset=data/x", "algo=dt"]
    whole = load_config(None, [*base, "encoder_chunk=0"], schema=OfflineConfig)
    chunked = load_config(None, [*base, "encoder_chunk=64"], schema=OfflineConfig)
    assert config_settings(whole) == config_settings(chunked)
