"""One device resolver: the same meaning of ``auto`` and the same error for a missing GPU, whichever framework asks."""

import importlib.util

import pytest
import torch

from rlgen.devices import check_device_name, jax_device, torch_device
from rlgen.errors import RlgenError

MISSING = "device='cuda:7' but CUDA is not available here"


def test_device_names():
    for name in ("auto", "cpu", "cuda", "cuda:3"):
        assert check_device_name(name) == name
    for bad in ("gpu", "cuda:", "cuda:x", "CPU", 3):
        with pytest.raises(ValueError, match="is not one of: auto, cpu, cuda, cuda:N"):
            check_device_name(bad)


def test_torch_devices():
    assert torch_device("cpu") == "cpu"
    assert torch_device("auto") == ("cuda:0" if torch.cuda.is_available() else "cpu")
    if torch.cuda.device_count() > 7:  # pragma: no cover
        pytest.skip("needs a machine without a GPU number 7")
    with pytest.raises(RlgenError) as e:
        torch_device("cuda:7")
    assert str(e.value).startswith(MISSING) and str(e.value).endswith("use device=auto or device=cpu")


@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="JAX is the jax extra")
def test_jax_devices_mean_the_same():
    import jax

    try:
        gpus = jax.devices("gpu")
    except RuntimeError:
        gpus = []
    assert jax_device("cpu").platform == "cpu"
    assert jax_device("auto") == (gpus[0] if gpus else jax.devices("cpu")[0])  # auto: the GPU when JAX has one
    if len(gpus) > 7:  # pragma: no cover
        pytest.skip("needs a machine without a GPU number 7")
    with pytest.raises(RlgenError) as e:
        jax_device("cuda:7")
    assert str(e.value).startswith(MISSING) and str(e.value).endswith("use device=auto or device=cpu")
