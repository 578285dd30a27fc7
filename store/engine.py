"""Engines and sessions for SQLite (WAL, a file) and PostgreSQL (psycopg 3).

SQLite gets WAL, a busy timeout and foreign keys on every connection so concurrent
writers (API workers, the orchestrator) wait instead of failing. PostgreSQL connections are
pre-pinged, so a restarted server is reconnected to without restarting the API.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def normalise_url(url: str) -> str:
    """Accept postgres:// and postgresql:// and use the psycopg 3 driver."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def make_engine(url: str) -> Engine:
    url = normalise_url(url)
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record):
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

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
