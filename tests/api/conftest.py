"""Fixtures: every storage and API test runs against SQLite and PostgreSQL."""

from __future__ import annotations

import shutil

import pytest
from sqlalchemy import text

from api.db.engine import make_engine, session_factory, upgrade

from .pg_server import start_postgres

_PG = {"server": None, "reason": None, "started": False}


def _postgres():
    if not _PG["started"]:
        _PG["started"] = True
        _PG["server"], _PG["reason"] = start_postgres()
    return _PG["server"]


def pytest_sessionfinish(session, exitstatus):
    server = _PG["server"]
    if server is not None:
        server.stop()
        shutil.rmtree(server.data_dir, ignore_errors=True)


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path):
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'tailor.db'}"
        return
    server = _postgres()
    if server is None:
        pytest.skip(f"PostgreSQL run skipped: {_PG['reason']}")
    name = f"t{abs(hash(request.node.nodeid)) % 10**10}"
    admin = make_engine(server.url)
    with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text(f"DROP DATABASE IF EXISTS {name}"))
        conn.execute(text(f"CREATE DATABASE {name}"))
    admin.dispose()
    yield server.url.rsplit("/", 1)[0] + f"/{name}"


@pytest.fixture
def sessions(database_url):
    engine = make_engine(database_url)
    upgrade(engine)
    yield session_factory(engine)
    engine.dispose()
