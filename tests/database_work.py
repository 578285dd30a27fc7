"""Counting what requests cost the database, for tests that pin round trips and commits."""

from __future__ import annotations

from collections import Counter

from sqlalchemy import event


def count_database_work(engine) -> Counter:
    """Connections taken from the pool, statements sent and transactions committed, counted
    from now."""
    seen: Counter = Counter()
    event.listen(engine, "checkout", lambda *_: seen.update(["checkouts"]))
    event.listen(engine, "before_cursor_execute", lambda *_: seen.update(["statements"]))
    event.listen(engine, "commit", lambda *_: seen.update(["commits"]))
    return seen
