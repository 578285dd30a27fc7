"""Enrollment attempts per client address, counted in the database, so that every server
process (`tailor serve --workers N`) counts against the one configured limit: a window kept
in each process let N workers allow N times `enroll_attempts_per_minute`."""

from __future__ import annotations

import hashlib
from datetime import timedelta

from sqlalchemy import delete, func, select

from store.models import EnrollAttempt, utcnow

from . import SessionFactory, transaction

WINDOW_S = 60.0


def _lock_key(client: str) -> int:
    """A stable signed 64-bit key for PostgreSQL's advisory locks."""
    return int.from_bytes(
        hashlib.blake2b(client.encode(), digest_size=8).digest(), "big", signed=True
    )


def take_attempt(sessions: SessionFactory, client: str, per_minute: int) -> bool:
    """Count an attempt of `client`: True and recorded while it made fewer than
    `per_minute` in the last minute, else False and not recorded (a refused client is let
    in again a minute after its earliest counted attempt). Exact across processes: on
    PostgreSQL a transaction-scoped advisory lock per client puts its attempts in line; on
    SQLite the first statement is a write, which takes the database's one write lock.
    Attempts older than the window are deleted as it goes, whoever made them."""
    now, client = utcnow(), client[:255]  # the column's width
    with transaction(sessions) as s:
        if s.bind.dialect.name == "postgresql":
            s.execute(select(func.pg_advisory_xact_lock(_lock_key(client))))
        s.execute(
            delete(EnrollAttempt).where(EnrollAttempt.at <= now - timedelta(seconds=WINDOW_S))
        )
        recent = s.scalar(
            select(func.count(EnrollAttempt.id)).where(EnrollAttempt.client == client)
        )
        if recent >= per_minute:
            return False
        s.add(EnrollAttempt(client=client, at=now))
        return True
