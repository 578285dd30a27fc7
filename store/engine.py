"""Engines and sessions for SQLite (WAL, a file) and PostgreSQL (psycopg 3).

SQLite gets WAL, a busy timeout and foreign keys on every connection so concurrent
writers (API workers, the orchestrator) wait instead of failing, and one process's writers
queue for SQLite's one write lock on a lock of their own (`_queue_writers`). PostgreSQL
connections are pre-pinged, so a restarted server is reconnected to without restarting
the API.
"""

from __future__ import annotations

import threading
from pathlib import Path

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
BUSY_TIMEOUT_S = 30.0
WRITES = ("INSERT", "UPDATE", "DELETE", "REPLACE")


def normalise_url(url: str) -> str:
    """Accept postgres:// and postgresql:// and use the psycopg 3 driver."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def make_engine(url: str) -> Engine:
    url = normalise_url(url)
    if url.startswith("sqlite"):
        engine = create_engine(
            url, connect_args={"check_same_thread": False, "timeout": BUSY_TIMEOUT_S}
        )

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record):
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_S * 1000)}")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        _queue_writers(engine)
        return engine
    # 20 + 30 connections: more than the API's 40 request threads (anyio's default thread
    # limiter runs FastAPI's sync routes), so a lab of agents never waits for a connection
    # behind the pool (30 s, SQLAlchemy's pool_timeout) while PostgreSQL has them to give.
    return create_engine(
        url,
        pool_pre_ping=True,
        pool_size=20,
        max_overflow=30,
        connect_args={"connect_timeout": 5},
    )


def _queue_writers(engine: Engine) -> None:
    """A transaction's first write waits for this engine's lock, held until its connection
    goes back to the pool (committed or rolled back). Why: SQLite's busy handler polls the
    write lock with sleeps of up to 100 ms, so under a lab's heartbeats and leases a writer
    could lose the race over and over (a 50-agent load: heartbeat p99 2-5 s in the server);
    on a lock the next writer starts the moment the last one ends. Other processes on the
    same file still meet SQLite's own lock and busy timeout."""
    lock = threading.Lock()

    @event.listens_for(engine, "before_cursor_execute")
    def _first_write(conn, _cursor, statement, _params, _context, _many):
        info = conn.info
        if not info.get("write_lock") and statement.lstrip()[:7].upper().startswith(WRITES):
            # bounded: a writer stuck past it is left to SQLite's busy timeout
            info["write_lock"] = lock.acquire(timeout=BUSY_TIMEOUT_S)

    @event.listens_for(engine, "checkin")
    def _returned(_dbapi_connection, record):
        if record is not None and record.info.pop("write_lock", False):
            lock.release()


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


def upgrade(engine: Engine) -> None:
    """Bring the schema to the newest migration (what `tailor serve` does at start)."""
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
