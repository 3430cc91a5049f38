"""The shared encoders: shapes a caller relies on and clear errors for a wrong choice."""

import pytest
import torch

from rlgen.agents import networks
from rlgen.errors import ConfigError


@pytest.mark.parametrize(("name", "shape", "features"), [("impala", (3, 64, 64), 256), ("nature", (3, 64, 64), 512), ("minigrid_cnn", (3, 7, 7), 128)])
def test_encoder_maps_uint8_images_to_features(name, shape, features):
    torch.manual_seed(0)
    enc = networks.make_encoder(name, shape)
    obs = torch.randint(0, 256 if name != "minigrid_cnn" else 11, (5, *shape), dtype=torch.uint8)
    out = enc(obs)
    assert out.shape == (5, features)
    assert torch.isfinite(out).all()
    # scaling is inside the encoder: a float copy of the same values gives the same features
    assert torch.allclose(enc(obs.float()), out)


def test_nature_encoder_refuses_images_too_small_for_its_strides():
    with pytest.raises(ConfigError, match=r"nature needs images of at least 36x36, got \(3, 7, 7\)"):
        networks.make_encoder("nature", (3, 7, 7))


def test_unknown_encoder_names_the_allowed_ones():
    with pytest.raises(ConfigError, match="unknown network 'resnet'; allowed: auto, impala, nature, minigrid_cnn"):
        networks.make_encoder("resnet", (3, 64, 64))


@pytest.mark.parametrize(
    ("view", "expected"), [("partial", "minigrid_cnn"), ("full", "minigrid_cnn"), ("full_rgb", "impala")]
)
def test_minigrid_symbolic_views_default_to_the_small_cnn(view, expected):
    assert networks.encoder_for("auto", "minigrid/doorkey-6x6", {"view": view}) == expected


def test_conv_encoders_run_channels_last_on_cpu_only():
    assert networks.prefers_channels_last("impala", "cpu") and networks.prefers_channels_last("nature", "cpu")
    assert not networks.prefers_channels_last("minigrid_cnn", "cpu")  # measured no faster (README, Performance)
    assert not networks.prefers_channels_last("impala", "cuda")
    enc = networks.make_encoder("impala", (3, 16, 16), channels_last=True)
    assert enc.stacks[0].conv.weight.is_contiguous(memory_format=torch.channels_last)
    plain = networks.make_encoder("impala", (3, 16, 16))
    assert list(plain.state_dict()) == list(enc.state_dict())  # same checkpoint keys: the layout is not the format


@pytest.mark.parametrize("algo", ["bc", "bcq", "cql", "iql", "dt", "bct"])
def test_one_offline_update_is_the_same_in_channels_last(algo, monkeypatch, tmp_path):
    """What every offline agent on CPU now does (IMPALA in channels_last) gives the losses of the plain
    NCHW update, to float rounding: the first update's, and the second's, which the first step moved.
    (Weights are not compared: Adam's first step is +-lr for any gradient, so a gradient at rounding level
    may flip its sign.)"""
    import numpy as np

    from rlgen.agents.offline import build_agent
    from rlgen.config import OfflineConfig, validate_config

    shape = (3, 16, 16)
    cfg = validate_config({"algo": algo, "dataset": str(tmp_path), "env": "procgen/coinrun", "network": "impala", "device": "cpu", "batch_size": 8,
                           "n_layers": 1, "n_heads": 2, "embed_dim": 16, "context_length": 3}, OfflineConfig)  # fmt: skip
    rng = np.random.default_rng(0)
    b, length = 8, 3
    if algo in ("dt", "bct"):
        batch = {"obs": rng.integers(0, 256, (b, length, *shape), dtype=np.uint8), "actions": rng.integers(0, 15, (b, length)),
                 "timesteps": np.tile(np.arange(length), (b, 1)), "mask": np.ones((b, length), bool),
                 "returns_to_go": rng.random((b, length)).astype(np.float32)}  # fmt: skip
    else:
        batch = {"obs": rng.integers(0, 256, (b, *shape), dtype=np.uint8), "next_obs": rng.integers(0, 256, (b, *shape), dtype=np.uint8),
                 "actions": rng.integers(0, 15, b), "rewards": rng.random(b).astype(np.float32), "terminated": np.zeros(b, bool),
                 "truncated": np.zeros(b, bool)}  # fmt: skip

    def one_update():
        torch.manual_seed(1)  # dropout
        agent = build_agent(cfg, shape, 15, "cpu", target_return=1.0)
        first = agent.update(batch)
        second = agent.update(batch)
        return agent, {**{f"1:{k}": v for k, v in first.items()}, **{f"2:{k}": v for k, v in second.items()}}

    fast, fast_losses = one_update()
    first_conv = next(m for m in _modules(fast) if isinstance(m, torch.nn.Conv2d))
    assert first_conv.weight.is_contiguous(memory_format=torch.channels_last)
    monkeypatch.setattr(networks, "CHANNELS_LAST_ON_CPU", ())
    plain, plain_losses = one_update()
    assert not next(m for m in _modules(plain) if isinstance(m, torch.nn.Conv2d)).weight.is_contiguous(memory_format=torch.channels_last)
    assert fast_losses.keys() == plain_losses.keys()
    for k in fast_losses:
        assert fast_losses[k] == pytest.approx(plain_losses[k], rel=1e-4, abs=1e-5), k


def _modules(agent):
    impl = getattr(agent, "impl", None)
    if impl is not None and hasattr(impl, "model"):
        return list(impl.model.modules())
    if impl is not None and hasattr(impl, "q_nets"):
        return list(impl.q_nets.modules())
    return [m for v in agent._modules().values() if isinstance(v, torch.nn.Module) for m in v.modules()]

