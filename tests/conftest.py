import numpy as np
import pytest


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


@pytest.fixture
def one_torch_thread():
    """Tiny networks, comparable runs: with two OpenMP threads on a busy 2-core machine each step is ~20x
    slower than with one, and the same thread count everywhere keeps in-process and subprocess runs
    comparable bit for bit. Test modules opt in with ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``."""
    import torch  # noqa: PLC0415 - only the tests that ask for it pay for torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
