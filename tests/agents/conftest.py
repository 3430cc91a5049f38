import pytest


@pytest.fixture(autouse=True)
def _one_torch_thread_for_agent_tests(one_torch_thread):
    """Every agent test runs on one torch thread (tests/conftest.py's ``one_torch_thread``)."""
    yield
