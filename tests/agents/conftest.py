import pytest
import torch


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Agent tests use tiny networks: with two OpenMP threads on a busy 2-core machine each step is
    ~20x slower than with one."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
