"""Fixtures: every storage and API test runs against SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from api.db.engine import make_engine, session_factory, upgrade


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path):
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'tailor.db'}"
        return
    server, reason = request.getfixturevalue("postgres_server")
    if server is None:
        pytest.skip(f"PostgreSQL run skipped: {reason}")
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
