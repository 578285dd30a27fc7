"""The database connection pool on PostgreSQL (store/engine.py)."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import text

from store.engine import make_engine


def test_a_connection_the_database_closed_is_replaced_when_taken_from_the_pool(
    postgres_server,
):
    """What pool_pre_ping's round trip did, without it: a pooled connection whose server
    process ended (a restarted PostgreSQL, an administrator's pg_terminate_backend) is not
    handed out; the first statement after it succeeds."""
    server, reason = postgres_server
    if server is None:
        pytest.skip(f"PostgreSQL run skipped: {reason}")
    engine, admin = make_engine(server.url), make_engine(server.url)
    try:
        with engine.connect() as conn:  # back in the pool, idle, when the block ends
            pid = conn.execute(text("SELECT pg_backend_pid()")).scalar()
        with admin.connect() as conn:
            assert conn.execute(text("SELECT pg_terminate_backend(:p)"), {"p": pid}).scalar()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # until the backend has exited
            with admin.connect() as conn:
                gone = not conn.execute(
                    text("SELECT count(*) FROM pg_stat_activity WHERE pid = :p"), {"p": pid}
                ).scalar()
            if gone:
                break
            time.sleep(0.05)
        with engine.connect() as conn:
            assert conn.execute(text("SELECT pg_backend_pid()")).scalar() != pid
    finally:
        engine.dispose()
        admin.dispose()
