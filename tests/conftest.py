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

# Every storage and API test runs against SQLite and PostgreSQL (`database_url`, `sessions`).


@pytest.fixture(scope="session")
def postgres_server():
    """A throwaway PostgreSQL on loopback for the whole session, or (None, why not)."""
    from tests.pg_server import start_postgres

    server, reason = start_postgres()
    yield server, reason
    if server is not None:
        server.stop()
        shutil.rmtree(server.data_dir, ignore_errors=True)


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path):
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'tailor.db'}"
        return
    yield request.getfixturevalue("postgres_database")[1]


@pytest.fixture
def postgres_database(request, postgres_server):
    """(the throwaway server, the URL of a fresh database of this test's own), or a skip."""
    from sqlalchemy import text

    from store.engine import make_engine

    server, reason = postgres_server
    if server is None:
        pytest.skip(f"PostgreSQL run skipped: {reason}")
    name = f"t{abs(hash(request.node.nodeid)) % 10**10}"
    admin = make_engine(server.url)
    with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text(f"DROP DATABASE IF EXISTS {name}"))
        conn.execute(text(f"CREATE DATABASE {name}"))
    admin.dispose()
    return server, server.url.rsplit("/", 1)[0] + f"/{name}"


@pytest.fixture
def sessions(database_url):
    from store.engine import make_engine, session_factory, upgrade

    engine = make_engine(database_url)
    upgrade(engine)
    yield session_factory(engine)
    engine.dispose()


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A real ONNX export of a tiny genome, (genome, {file name: bytes}): the files a
    profiling task points at (the API's and the agents' tests serve it)."""
    from core import preset
    from workers.export.onnx_export import export_onnx

    genome = preset(
        "hyena-edge", width=32, layers=2, heads=2, kv_heads=1, ffn=64, vocab=97
    ).to_json()
    out = tmp_path_factory.mktemp("export")
    export_onnx(genome, out, verify=False)
    return genome, {p.name: p.read_bytes() for p in out.iterdir()}


# A loopback phone: the ADB stand-in over TCP (tests/device_agent/adb_standin.py) and an
# agent-side connection to it, for the device tests and the export tests that push graphs.


@pytest.fixture
def standin(tmp_path):
    from tests.device_agent.adb_standin import AdbStandin, make_sandbox

    device = AdbStandin(make_sandbox(tmp_path / "phone"))
    device.start()
    yield device
    device.stop()


@pytest.fixture
def phone(standin, tmp_path):
    from device_agent.adb_device import Phone
    from device_agent.config import adb_key_path

    handle = Phone(
        adb_key_path(tmp_path / "agent"),
        tcp=f"127.0.0.1:{standin.port}",
        auth_timeout_s=10,
        transport_timeout_s=10,
    )
    handle.connect()
    yield handle
    handle.close()
