"""The database: SQLAlchemy models (`models`), Alembic migrations (`migrations/`), engines
(`engine`) and the storage functions, plain functions over a session factory, one
transaction per call. Uses `core` only.

Used by the API routes and by the orchestrator (a Ray driver in another process) alike.
Races on unique keys are expected (two writers inserting the same candidate or cache
entry) and resolved by returning the row that won.

- jobs:      create_job, list_jobs, get_job, request_cancel, resume_job, claim_job,
             heartbeat_job, finish_job, add_event
- results:   add_candidates, set_candidate_result, get_evaluation, put_evaluation,
             write_generation, generations_since, pareto, candidate_detail
- polling:   poll_version, poll_version_if_unchanged (what every dashboard poll asks first)
- artifacts: store_artifacts, artifact_for
- devices:   enroll_device, authenticate_device, heartbeat_device, list_devices,
             set_device_state
- tasks:     enqueue_task, report_task, fail_task, release_task, cancel_tasks
- leasing:   lease_task, lease_with_files (with the candidate's files), expire_leases
- task_results: task_results, task_outcomes, runner_builds (reads only)
- enrollment_limit: take_attempt (enrollment attempts per address, over every process)
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

SessionFactory = sessionmaker[Session]


class NotFound(LookupError):
    pass


class Conflict(RuntimeError):
    pass


@contextmanager
def transaction(sessions: SessionFactory) -> Iterator[Session]:
    """One storage call = one transaction: committed on success, rolled back on error."""
    with sessions.begin() as session:
        yield session


@contextmanager
def single_read(sessions: SessionFactory) -> Iterator[Session]:
    """One read of one statement, outside a transaction (autocommit): on PostgreSQL one
    round trip instead of three (BEGIN, the read, COMMIT). Only for a single SELECT, which
    sees one snapshot anyway; what every agent request asks first (whose token is this)."""
    with sessions() as session:
        session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
        yield session


def insert_or_get(sessions: SessionFactory, row, lookup) -> object:
    """Insert `row`; if a unique key says it exists already, return the existing row."""
    try:
        with transaction(sessions) as session:
            session.add(row)
            session.flush()
            return row
    except IntegrityError:
        with transaction(sessions) as session:
            existing = lookup(session)
            if existing is None:
                raise
            return existing
