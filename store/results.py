"""Candidates, the evaluation cache, and generations: what a job produces."""

from __future__ import annotations

import os
import sqlite3
import threading
import weakref
from collections import OrderedDict
from datetime import datetime
from typing import Any
from urllib.parse import quote

from sqlalchemy import bindparam, case, func, select, true
from sqlalchemy.engine import Engine

from store.models import Candidate, Evaluation, Generation, Job

from . import NotFound, SessionFactory, insert_or_get, transaction


def add_candidates(sessions: SessionFactory, job_id: int, generation: int,
                   items: list[dict[str, Any]]) -> list[Candidate]:
    """Insert candidates (genome, genome_hash, parents, origin, predictions); idempotent on
    (job, genome_hash): a candidate already stored is returned as it is."""
    out = []
    for item in items:
        row = Candidate(job_id=job_id, generation=generation, genome=item["genome"],
                        genome_hash=item["genome_hash"], parents=item.get("parents", []),
                        origin=item.get("origin", "random"), status="pending", metrics={},
                        predictions=item.get("predictions", {}))
        out.append(insert_or_get(sessions, row, lambda s, h=item["genome_hash"]: s.scalar(
            select(Candidate).where(Candidate.job_id == job_id,
                                    Candidate.genome_hash == h))))
    return out


def job_candidates(sessions: SessionFactory, job_id: int) -> list[Candidate]:
    with transaction(sessions) as s:
        return list(s.scalars(select(Candidate).where(Candidate.job_id == job_id)
                              .order_by(Candidate.id)).all())


def candidates_for(sessions: SessionFactory, job_id: int, ids: set[int],
                   min_generation: int | None = None) -> list[Candidate]:
    """Candidates with these ids, plus (optionally) every one born at `min_generation` or
    later: what an incremental poll needs, without reading the whole job."""
    with transaction(sessions) as s:
        condition = Candidate.id.in_(ids) if ids else None
        if min_generation is not None:
            newer = Candidate.generation >= min_generation
            condition = newer if condition is None else (condition | newer)
        if condition is None:
            return []
        return list(s.scalars(select(Candidate).where(Candidate.job_id == job_id, condition)
                              .order_by(Candidate.id)).all())


def set_candidate_result(sessions: SessionFactory, candidate_id: int, status: str,
                         metrics: dict[str, Any] | None = None,
                         failure: str | None = None) -> Candidate:
    with transaction(sessions) as s:
        row = s.get(Candidate, candidate_id)
        if row is None:
            raise NotFound(f"candidate {candidate_id} not found")
        row.status = status
        if metrics is not None:
            row.metrics = {**(row.metrics or {}), **metrics}
        row.failure = failure
        return row


def get_evaluation(sessions: SessionFactory, genome_hash: str, config_key: str,
                   kind: str) -> dict[str, Any] | None:
    with transaction(sessions) as s:
        row = s.scalar(select(Evaluation).where(Evaluation.genome_hash == genome_hash,
                                                Evaluation.config_key == config_key,
                                                Evaluation.kind == kind))
        return None if row is None else row.result


def put_evaluation(sessions: SessionFactory, genome_hash: str, config_key: str, kind: str,
                   result: dict[str, Any]) -> dict[str, Any]:
    """Store once; a concurrent writer's earlier row wins and is returned."""
    row = Evaluation(genome_hash=genome_hash, config_key=config_key, kind=kind, result=result)
    stored = insert_or_get(sessions, row, lambda s: s.scalar(
        select(Evaluation).where(Evaluation.genome_hash == genome_hash,
                                 Evaluation.config_key == config_key,
                                 Evaluation.kind == kind)))
    return stored.result


def write_generation(sessions: SessionFactory, job_id: int, index: int, population: list[int],
                     pareto: list[int], hypervolume: float, evaluations: int,
                     stats: dict[str, Any] | None = None) -> Generation:
    """Idempotent on (job, index): writing the same generation twice keeps the first."""
    row = Generation(job_id=job_id, index=index, population=population, pareto=pareto,
                     hypervolume=hypervolume, evaluations=evaluations, stats=stats or {})
    return insert_or_get(sessions, row, lambda s: s.scalar(
        select(Generation).where(Generation.job_id == job_id, Generation.index == index)))


def generations_since(sessions: SessionFactory, job_id: int, since: int) -> list[Generation]:
    """Generations with index >= since, for incremental polling."""
    with transaction(sessions) as s:
        if s.get(Job, job_id) is None:
            raise NotFound(f"job {job_id} not found")
        return list(s.scalars(select(Generation).where(Generation.job_id == job_id,
                                                       Generation.index >= since)
                              .order_by(Generation.index)).all())


def _poll_version_query():
    """The statement `poll_version` runs, built once: bound parameters `job_id`, `since`."""
    job_id, since = bindparam("job_id"), bindparam("since")
    newest_any = (select(func.max(Generation.index)).where(Generation.job_id == job_id)
                  .scalar_subquery())
    born = (select(func.count(Candidate.id).label("born"),
                   func.count(case((Candidate.status != "pending", 1))).label("finished"))
            .where(Candidate.job_id == job_id,
                   Candidate.generation > func.coalesce(newest_any, -1)).subquery())
    return (select(
        Job.status,
        select(func.count(Generation.id)).where(Generation.job_id == job_id,
                                                Generation.index >= since).scalar_subquery(),
        select(func.coalesce(func.max(Generation.index), -1))
        .where(Generation.job_id == job_id, Generation.index >= since).scalar_subquery(),
        born.c.born, born.c.finished)
        .select_from(Job).join(born, true()).where(Job.id == job_id))


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
                        f"file:{quote(self.path)}?mode=ro", uri=True, check_same_thread=False,
                        timeout=0)  # busy: no marker, never a wait
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
            if not path or path == ":memory:" or path.startswith("file:") \
                    or "memory" in str(url.query.get("mode", "")):
                _changes[engine] = None
            else:
                _changes[engine] = _SqliteChanges(os.path.abspath(path))
        return _changes[engine]


def poll_version(sessions: SessionFactory, job_id: int,
                 since: int = 0) -> tuple[str, int, int, int, int]:
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
            return _version_row(s.execute(_POLL_VERSION, {"job_id": job_id, "since": since})
                                .one_or_none(), job_id)
    changes = _changes_of(bind)
    marker = None if changes is None else changes.marker()  # taken before the read
    if marker is not None:
        hit = _memoised(bind, job_id, since, marker)
        if hit is not None:
            return hit
    with bind.connect() as connection:  # read only: closing it rolls back
        version = _version_row(connection.execute(
            _POLL_VERSION, {"job_id": job_id, "since": since}).one_or_none(), job_id)
    if marker is not None:  # a commit after `marker` changes the marker: read again then
        with _memo_lock:
            memo = _memo.setdefault(bind, OrderedDict())
            memo[(job_id, since)] = (marker, version)
            memo.move_to_end((job_id, since))
            while len(memo) > _MEMO_KEYS:
                memo.popitem(last=False)
    return version


def poll_version_if_unchanged(sessions: SessionFactory, job_id: int,
                              since: int = 0) -> tuple[str, int, int, int, int] | None:
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


def candidates_born(sessions: SessionFactory, job_id: int, generations: list[int] | None = None,
                    after: int | None = None) -> list[Candidate]:
    """Candidates born in these generations, or after generation `after`."""
    with transaction(sessions) as s:
        query = select(Candidate).where(Candidate.job_id == job_id)
        if generations is not None:
            query = query.where(Candidate.generation.in_(generations))
        if after is not None:
            query = query.where(Candidate.generation > after)
        return list(s.scalars(query.order_by(Candidate.id)).all())


def pareto(sessions: SessionFactory, job_id: int) -> tuple[Generation | None, list[Candidate]]:
    """The newest generation's Pareto front, as candidates."""
    with transaction(sessions) as s:
        if s.get(Job, job_id) is None:
            raise NotFound(f"job {job_id} not found")
        latest = s.scalar(select(Generation).where(Generation.job_id == job_id)
                          .order_by(Generation.index.desc()).limit(1))
        if latest is None:
            return None, []
        rows = s.scalars(select(Candidate).where(Candidate.id.in_(latest.pareto))).all()
        return latest, sorted(rows, key=lambda c: c.id)


def candidate_detail(sessions: SessionFactory, job_id: int,
                     candidate_id: int) -> tuple[Candidate, list[Candidate], list[Candidate]]:
    """The candidate, its parents and its children within the job (lineage)."""
    with transaction(sessions) as s:
        row = s.get(Candidate, candidate_id)
        if row is None or row.job_id != job_id:
            raise NotFound(f"candidate {candidate_id} not found in job {job_id}")
        parents = list(s.scalars(select(Candidate).where(
            Candidate.job_id == job_id, Candidate.genome_hash.in_(row.parents or []))).all())
        later = s.scalars(select(Candidate).where(Candidate.job_id == job_id,
                                                  Candidate.generation > row.generation)).all()
        children = [c for c in later if row.genome_hash in (c.parents or [])]
        return row, parents, children


def generation_written_at(sessions: SessionFactory, job_id: int, index: int) -> datetime | None:
    with transaction(sessions) as s:
        return s.scalar(select(Generation.created_at).where(Generation.job_id == job_id,
                                                            Generation.index == index))


def quality_observations(sessions: SessionFactory, config_key: str, before: datetime,
                         exclude_job: int) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(genome JSON, quality record) of every successful quality evaluation with this
    training config stored before `before`, for genomes of jobs other than `exclude_job`
    (the evaluation cache is keyed by genome hash; the genome comes from any job's row)."""
    with transaction(sessions) as s:
        rows = s.execute(
            select(Evaluation.genome_hash, Evaluation.result)
            .where(Evaluation.config_key == config_key, Evaluation.kind == "quality",
                   Evaluation.created_at <= before)
            .order_by(Evaluation.id)).all()
        own = set(s.scalars(select(Candidate.genome_hash).where(Candidate.job_id == exclude_job)))
        wanted = [(h, r) for h, r in rows if h not in own and r.get("status") == "ok"]
        genomes = dict(s.execute(
            select(Candidate.genome_hash, Candidate.genome)
            .where(Candidate.genome_hash.in_([h for h, _ in wanted]))
            .order_by(Candidate.id.desc())).all())
        return [(genomes[h], r) for h, r in wanted if h in genomes]


def measured_candidates(sessions: SessionFactory, metric_names: list[str], before: datetime,
                        exclude_job: int) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(genome JSON, metrics among `metric_names`) of other jobs' evaluated candidates last
    updated before `before` that hold at least one of those metrics, oldest first."""
    wanted = set(metric_names)
    with transaction(sessions) as s:
        rows = s.execute(
            select(Candidate.genome, Candidate.metrics)
            .where(Candidate.job_id != exclude_job, Candidate.status.in_(("done", "failed")),
                   Candidate.updated_at <= before)
            .order_by(Candidate.id)).all()
    out = []
    for genome, metrics in rows:
        found = {k: v for k, v in (metrics or {}).items() if k in wanted}
        if found:
            out.append((genome, found))
    return out


def device_class_predictions(sessions: SessionFactory, device_class: str
                             ) -> tuple[int, dict[str, list[tuple[float, float]]]]:
    """For one device class, across jobs: how many candidates hold a measurement of it, and
    per metric of that class the (predicted, measured) pairs of candidates that a surrogate
    predicted before they were measured."""
    suffix = f"[{device_class}]"
    measured, pairs = 0, {}
    with transaction(sessions) as s:
        rows = s.execute(select(Candidate.metrics, Candidate.predictions)
                         .where(Candidate.status.in_(("done", "failed")))).all()
    for metrics, predictions in rows:
        mine = {k: v for k, v in (metrics or {}).items() if k.endswith(suffix)}
        measured += bool(mine)
        for metric, predicted in (predictions or {}).items():
            if metric in mine:
                pairs.setdefault(metric, []).append((predicted["mean"], mine[metric]))
    return measured, pairs
