"""Enrollment attempts per client address, counted in the database, so that every server
process (`tailor serve --workers N`) counts against the one configured limit: a window kept
in each process let N workers allow N times `enroll_attempts_per_minute`."""

from __future__ import annotations

import hashlib
from datetime import timedelta

from sqlalchemy import delete, func, select, text

from store.models import EnrollAttempt, utcnow

from . import SessionFactory, transaction

WINDOW_S = 60.0
CLEANUP_ROWS = 100  # other addresses' expired attempts deleted per counted attempt, at most


def _lock_key(client: str) -> int:
    """A stable signed 64-bit key for PostgreSQL's advisory locks."""
    digest = hashlib.blake2b(client.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def take_attempt(sessions: SessionFactory, client: str, per_minute: int) -> float | None:
    """Count an attempt of `client`: None, and recorded, while it made fewer than
    `per_minute` in the last minute; else the seconds until its earliest counted attempt
    leaves the window, and not recorded (refused attempts do not count). Exact across
    processes: on PostgreSQL a transaction-scoped advisory lock per client puts its
    attempts in line; on SQLite the first statement is a write, which takes the database's
    one write lock. Also deletes up to CLEANUP_ROWS expired attempts of other addresses
    (skipping rows another transaction holds, so two cleanups never wait for each other)."""
    now, client = utcnow(), client[:255]  # the column's width
    cutoff = now - timedelta(seconds=WINDOW_S)
    with transaction(sessions) as s:
        postgres = s.bind.dialect.name == "postgresql"
        if postgres:
            # a lost attempt row in a crash is harmless: no WAL flush for it
            s.execute(text("SET LOCAL synchronous_commit = off"))
            s.execute(select(func.pg_advisory_xact_lock(_lock_key(client))))
        mine = EnrollAttempt.client == client
        s.execute(delete(EnrollAttempt).where(mine, EnrollAttempt.at <= cutoff))
        earliest, recent = s.execute(
            select(func.min(EnrollAttempt.at), func.count(EnrollAttempt.id)).where(mine)
        ).one()
        _clean_others(s, cutoff, postgres)
        if recent >= per_minute:
            return max(0.0, (earliest - cutoff).total_seconds())
        s.add(EnrollAttempt(client=client, at=now))
        return None


def _clean_others(s, cutoff, postgres: bool) -> None:
    expired = select(EnrollAttempt.id).where(EnrollAttempt.at <= cutoff).limit(CLEANUP_ROWS)
    if postgres:
        expired = expired.with_for_update(skip_locked=True)
    s.execute(delete(EnrollAttempt).where(EnrollAttempt.id.in_(expired)))
