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
