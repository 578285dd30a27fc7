"""Engines and sessions for SQLite (WAL, a file) and PostgreSQL (psycopg 3).

SQLite gets WAL (synchronous=NORMAL), a busy timeout and foreign keys on every connection
so concurrent writers (API workers, the orchestrator) wait instead of failing, and one
process's writers queue for SQLite's one write lock on a lock of their own
(`_queue_writers`). A PostgreSQL connection the server closed (a restarted or stopped
server) is replaced when it is taken from the pool (`_replace_closed_connections`), so a
restarted server is reconnected to without restarting the API.
"""

from __future__ import annotations

import select
import sqlite3
import threading
import time
from pathlib import Path

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.orm import Session, sessionmaker

from store.timing import add_seconds

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
BUSY_TIMEOUT_S = 30.0
WRITES = ("INSERT", "UPDATE", "DELETE", "REPLACE")
# 20 + 30 connections: more than the API's request threads (`request_threads`, and anyio's
# default of 40 where an app does not set it), so a request never waits for a connection
# behind the pool (up to 30 s, SQLAlchemy's pool_timeout). On SQLite too: its default of
# 5 + 10 had request threads queue for a connection unseen by any timing.
POOL = {"pool_size": 20, "max_overflow": 30}


def normalise_url(url: str) -> str:
    """Accept postgres:// and postgresql:// and use the psycopg 3 driver."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


# A lease is one UPDATE ... RETURNING (store/leasing.py), which SQLite has from 3.35.
SQLITE_OLDEST = (3, 35, 0)


def make_engine(url: str) -> Engine:
    url = normalise_url(url)
    if url.startswith("sqlite"):
        if sqlite3.sqlite_version_info < SQLITE_OLDEST:
            raise RuntimeError(
                f"this Python's SQLite is {sqlite3.sqlite_version}; Tailor needs "
                f"{'.'.join(map(str, SQLITE_OLDEST))} or newer (UPDATE ... RETURNING): "
                "use a newer Python or PostgreSQL"
            )
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": BUSY_TIMEOUT_S},
            **POOL,
        )

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record):
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            # No fsync at each commit (WAL's own recommendation): a commit survives a killed
            # server, not a power cut. With FULL, every writer held the one write lock
            # through an fsync (p99 300 ms on a loaded disk) and a lab's leases queued behind.
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_S * 1000)}")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        _queue_writers(engine)
        _time_statements(engine)
        return engine
    engine = create_engine(url, connect_args={"connect_timeout": 5}, **POOL)
    _replace_closed_connections(engine)
    _time_statements(engine)
    return engine


def _replace_closed_connections(engine: Engine) -> None:
    """A pooled connection whose socket has something to read while it sits idle was closed
    by the server (a stopped or restarted PostgreSQL sends its termination notice and hangs
    up): raising DisconnectionError at checkout makes the pool open a fresh one instead
    (SQLAlchemy, "Disconnect Handling - Pessimistic", custom checkout events). Why not
    `pool_pre_ping`: its `SELECT 1` is a round trip per transaction, and a device lab's
    requests on two busy cores waited for the database's process to be scheduled at every
    round trip (bench/README, "Device lab under load": one lease was ~6 transactions). What
    this cannot see is a server that vanished without closing (a cut network): its first
    statement fails, the request gets 503 and the pool is replaced (SQLAlchemy invalidates
    it on a disconnect error)."""

    @event.listens_for(engine, "checkout")
    def _closed_by_server(dbapi_connection, _record, _proxy):
        try:
            poller = select.poll()
            poller.register(dbapi_connection.fileno(), select.POLLIN | select.POLLHUP)
            hung_up = dbapi_connection.closed or bool(poller.poll(0))
        except Exception as exc:  # psycopg: no socket left to ask
            raise DisconnectionError(f"the connection is unusable: {exc}") from exc
        if hung_up:
            raise DisconnectionError("the server closed the connection")


def _time_statements(engine: Engine) -> None:
    """Each statement's time (row-lock waits on PostgreSQL included) goes to the request's
    `db` timing (store/timing.py)."""

    @event.listens_for(engine, "before_cursor_execute")
    def _started(conn, _cursor, _statement, _params, _context, _many):
        conn.info["statement_started"] = time.perf_counter()

    @event.listens_for(engine, "after_cursor_execute")
    def _ended(conn, _cursor, _statement, _params, _context, _many):
        started = conn.info.pop("statement_started", None)
        if started is not None:
            add_seconds("db", time.perf_counter() - started)


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
            queued = time.perf_counter()
            info["write_lock"] = lock.acquire(timeout=BUSY_TIMEOUT_S)
            add_seconds("dblock", time.perf_counter() - queued)

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
