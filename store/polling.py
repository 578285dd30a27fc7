"""The version of a job's polled views (`generations?since` and `pareto`), read cheaply:
`poll_version` is what every dashboard poll asks first (`api.poll_cache` turns it into an
ETag), so it is one statement built once, on a plain connection, and on a SQLite file
memoised until the next commit to the database (`PRAGMA data_version`)."""

from __future__ import annotations

import os
import sqlite3
import threading
import weakref
from collections import OrderedDict
from urllib.parse import quote

from sqlalchemy import bindparam, case, func, select, true
from sqlalchemy.engine import Engine

from store.models import Candidate, Generation, Job

from . import NotFound, SessionFactory, transaction


def _poll_version_query():
    """The statement `poll_version` runs, built once: bound parameters `job_id`, `since`."""
    job_id, since = bindparam("job_id"), bindparam("since")
    newest_any = (
        select(func.max(Generation.index)).where(Generation.job_id == job_id).scalar_subquery()
    )
    born = (
        select(
            func.count(Candidate.id).label("born"),
            func.count(case((Candidate.status != "pending", 1))).label("finished"),
        )
        .where(Candidate.job_id == job_id, Candidate.generation > func.coalesce(newest_any, -1))
        .subquery()
    )
    return (
        select(
            Job.status,
            select(func.count(Generation.id))
            .where(Generation.job_id == job_id, Generation.index >= since)
            .scalar_subquery(),
            select(func.coalesce(func.max(Generation.index), -1))
            .where(Generation.job_id == job_id, Generation.index >= since)
            .scalar_subquery(),
            born.c.born,
            born.c.finished,
        )
        .select_from(Job)
        .join(born, true())
        .where(Job.id == job_id)
    )


_POLL_VERSION = _poll_version_query()


class _SqliteChanges:
    """Whether anything was committed to a SQLite file since the last look, in microseconds.

    `PRAGMA data_version` on a connection of its own (which never writes) changes whenever
    any other connection, in this process or another, commits to the database file. The file's
    identity (device, inode) is checked too, so a database replaced on disk is not mistaken
    for an unchanged one."""

    def __init__(self, path: str):
        self.path = path
        self._lock = threading.Lock()
        self._connection: sqlite3.Connection | None = None
        self._identity: tuple[int, int] | None = None

    def marker(self) -> tuple[int, int, int] | None:
        """A value that is the same only if nothing was committed in between; None if the
        file cannot be looked at (then nothing is memoised)."""
        try:
            st = os.stat(self.path)
            identity = (st.st_dev, st.st_ino)
            with self._lock:
                if self._connection is None or identity != self._identity:
                    if self._connection is not None:
                        self._connection.close()
                    self._connection = sqlite3.connect(
                        f"file:{quote(self.path)}?mode=ro",
                        uri=True,
                        check_same_thread=False,
                        timeout=0,
                    )  # busy: no marker, never a wait
                    self._identity = identity
                (version,) = self._connection.execute("PRAGMA data_version").fetchone()
                return (*identity, int(version))
        except (OSError, sqlite3.Error):
            return None


_changes: "weakref.WeakKeyDictionary[Engine, _SqliteChanges | None]" = weakref.WeakKeyDictionary()
_memo: "weakref.WeakKeyDictionary[Engine, OrderedDict]" = weakref.WeakKeyDictionary()
_memo_lock = threading.Lock()
_MEMO_KEYS = 1024


def _changes_of(engine: Engine) -> _SqliteChanges | None:
    """The change detector of a SQLite file engine; None for other databases (and for an
    in-memory SQLite, whose one connection never sees a change as another's)."""
    with _memo_lock:
        if engine not in _changes:
            url = engine.url
            path = url.database if url.get_backend_name() == "sqlite" else None
            if (
                not path
                or path == ":memory:"
                or path.startswith("file:")
                or "memory" in str(url.query.get("mode", ""))
            ):
                _changes[engine] = None
            else:
                _changes[engine] = _SqliteChanges(os.path.abspath(path))
        return _changes[engine]


def poll_version(
    sessions: SessionFactory, job_id: int, since: int = 0
) -> tuple[str, int, int, int, int]:
    """What polled views of a job depend on: (job status, generations with index >= since,
    the newest index or -1, candidates born after the newest generation, how many of those
    are finished). Written generations and their candidates are immutable, so an unchanged
    version means an unchanged `generations?since` (and `pareto`); with `since=0` it is the
    version of the whole job, a valid (if conservative) version of every `since`.

    One round trip of one statement built once, on a plain connection (no ORM session): it
    is what every poll asks first. The candidates born after the newest generation are
    counted in one pass (both counts from the same rows); without an index on
    (job_id, generation) that pass walks the job's candidates through the job_id index,
    a few ms for 10,000 candidates on SQLite, where such an index makes it microseconds.

    On a SQLite file the answer is also memoised until the next commit to the database (by
    anyone): `PRAGMA data_version` says in microseconds that nothing changed, so polls
    between writes cost no query, and nothing is ever stale."""
    bind = sessions.kw.get("bind")
    if bind is None:  # a factory without an engine: go through a session
        with transaction(sessions) as s:
            return _version_row(
                s.execute(_POLL_VERSION, {"job_id": job_id, "since": since}).one_or_none(), job_id
            )
    changes = _changes_of(bind)
    marker = None if changes is None else changes.marker()  # taken before the read
    if marker is not None:
        hit = _memoised(bind, job_id, since, marker)
        if hit is not None:
            return hit
    with bind.connect() as connection:  # read only: closing it rolls back
        version = _version_row(
            connection.execute(_POLL_VERSION, {"job_id": job_id, "since": since}).one_or_none(),
            job_id,
        )
    if marker is not None:  # a commit after `marker` changes the marker: read again then
        with _memo_lock:
            memo = _memo.setdefault(bind, OrderedDict())
            memo[(job_id, since)] = (marker, version)
            memo.move_to_end((job_id, since))
            while len(memo) > _MEMO_KEYS:
                memo.popitem(last=False)
    return version


def poll_version_if_unchanged(
    sessions: SessionFactory, job_id: int, since: int = 0
) -> tuple[str, int, int, int, int] | None:
    """`poll_version`'s memoised answer if nothing was committed since it was read, else
    None. Never waits: no query, a look at the file and a pragma on a connection without a
    busy timeout (busy means None), so it may be called on an event loop."""
    bind = sessions.kw.get("bind")
    changes = None if bind is None else _changes_of(bind)
    marker = None if changes is None else changes.marker()
    return None if marker is None else _memoised(bind, job_id, since, marker)


def _memoised(bind: Engine, job_id: int, since: int, marker) -> tuple | None:
    with _memo_lock:
        memo = _memo.get(bind)
        hit = None if memo is None else memo.get((job_id, since))
        if hit is None or hit[0] != marker:
            return None
        memo.move_to_end((job_id, since))
        return hit[1]


def _version_row(row, job_id: int) -> tuple[str, int, int, int, int]:
    if row is None:
        raise NotFound(f"job {job_id} not found")
    status, count, newest, born_count, finished = row
    return status, int(count), int(newest), int(born_count or 0), int(finished or 0)
