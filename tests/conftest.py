"""Shared test settings: deterministic torch on few threads (CI has two cores)."""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

try:
    import torch

    torch.set_num_threads(1)
except ImportError:  # the API and agent suites do not need torch
    pass


import shutil  # noqa: E402

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def postgres_server():
    """A throwaway PostgreSQL on loopback for the whole session, or (None, why not)."""
    from tests.api.pg_server import start_postgres

    server, reason = start_postgres()
    yield server, reason
    if server is not None:
        server.stop()
        shutil.rmtree(server.data_dir, ignore_errors=True)
