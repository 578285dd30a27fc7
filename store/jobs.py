"""Jobs: submission, listing, cancellation and resumption, and orchestrator claims."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import func, or_, select, update
from sqlalchemy.exc import IntegrityError

from core.states import TERMINAL_JOB, JobStatus, check_move
from store.models import Event, Job, utcnow

from . import Conflict, NotFound, SessionFactory, transaction
from .tasks import cancel_statement


def _job(s, job_id: int, for_update: bool = False) -> Job:
    """The job row, or NotFound naming it."""
    job = s.get(Job, job_id, with_for_update=for_update)
    if job is None:
        raise NotFound(f"job {job_id} not found")
    return job


def create_job(
    sessions: SessionFactory, name: str, spec: dict[str, Any], idempotency_key: str | None = None
) -> Job:
    """A queued job. With an `idempotency_key`, a second call with the same key returns the
    first call's job (of two racing calls one insert wins); the same key with another spec
    is a Conflict."""

    def existing(s) -> Job | None:
        return s.scalar(select(Job).where(Job.idempotency_key == idempotency_key))

    if idempotency_key is not None:
        with transaction(sessions) as s:
            found = existing(s)
        if found is not None:
            return _same_request(found, spec)
    try:
        with transaction(sessions) as s:
            job = Job(
                name=name, spec=spec, status=JobStatus.QUEUED.value, idempotency_key=idempotency_key
            )
            s.add(job)
            s.flush()
            s.add(Event(job_id=job.id, kind="submitted", message=f"job {job.id} queued"))
            return job
    except IntegrityError:
        if idempotency_key is None:
            raise
        with transaction(sessions) as s:
            return _same_request(existing(s), spec)


def _same_request(job: Job, spec: dict[str, Any]) -> Job:
    if job.spec != spec:
        raise Conflict(f"Idempotency-Key was already used for job {job.id} with another spec")
    return job


def list_jobs(sessions: SessionFactory, offset: int, limit: int) -> tuple[list[Job], int]:
    with transaction(sessions) as s:
        total = s.scalar(select(func.count(Job.id))) or 0
        rows = s.scalars(select(Job).order_by(Job.id.desc()).offset(offset).limit(limit)).all()
        return list(rows), total


def get_job(sessions: SessionFactory, job_id: int) -> Job:
    with transaction(sessions) as s:
        return _job(s, job_id)


def request_cancel(sessions: SessionFactory, job_id: int) -> Job:
    """Queued jobs are cancelled at once; a running one when its orchestrator notices."""
    with transaction(sessions) as s:
        job = _job(s, job_id, for_update=True)
        if job.status == JobStatus.QUEUED:
            job.status = check_move(job.status, JobStatus.CANCELLED).value
            job.finished_at = utcnow()
            _cancel_open_tasks(s, job_id, "job cancelled")
        elif job.status == JobStatus.RUNNING:
            job.cancel_requested = True
        s.add(Event(job_id=job_id, kind="cancel", message="cancellation requested"))
        return job


def resume_job(sessions: SessionFactory, job_id: int) -> Job:
    """A cancelled or failed job goes back to the queue; its evaluations are kept."""
    with transaction(sessions) as s:
        job = _job(s, job_id, for_update=True)
        if job.status in (JobStatus.CANCELLED, JobStatus.FAILED):
            job.status = check_move(job.status, JobStatus.QUEUED).value
            job.cancel_requested, job.error = False, None
            job.owner, job.finished_at = None, None
            s.add(Event(job_id=job_id, kind="resume", message="job re-queued"))
        return job


def claim_job(sessions: SessionFactory, owner: str, stale_after_s: float = 60.0) -> Job | None:
    """Atomically take a queued job, or a running one whose orchestrator stopped
    heartbeating (it crashed): the conditional UPDATE lets only one claimant win."""
    stale = utcnow() - timedelta(seconds=stale_after_s)
    claimable = or_(
        Job.status == JobStatus.QUEUED.value,
        (Job.status == JobStatus.RUNNING.value) & (Job.owner_heartbeat_at < stale),
    )
    with transaction(sessions) as s:
        candidates = s.scalars(select(Job.id).where(claimable).order_by(Job.id).limit(5)).all()
    for job_id in candidates:
        with transaction(sessions) as s:
            now = utcnow()
            claimed = s.execute(
                update(Job)
                .where(Job.id == job_id)
                .where(claimable)
                .values(
                    status=JobStatus.RUNNING.value,
                    owner=owner,
                    owner_heartbeat_at=now,
                    started_at=func.coalesce(Job.started_at, now),
                )
            ).rowcount
            if claimed == 1:
                s.add(Event(job_id=job_id, kind="claimed", message=f"claimed by {owner}"))
                return s.get(Job, job_id)
    return None


def heartbeat_job(
    sessions: SessionFactory, job_id: int, owner: str, generations_done: int, evaluations_done: int
) -> bool:
    """Record progress; returns False when the job was cancelled or claimed by another."""
    with transaction(sessions) as s:
        job = s.get(Job, job_id)
        if job is None or job.owner != owner or job.status != JobStatus.RUNNING:
            return False
        job.owner_heartbeat_at = utcnow()
        job.generations_done, job.evaluations_done = generations_done, evaluations_done
        return not job.cancel_requested


def finish_job(
    sessions: SessionFactory, job_id: int, status: JobStatus | str, error: str | None = None
) -> None:
    """The orchestrator running the job ends it (completed, failed or cancelled)."""
    status = JobStatus(status)
    with transaction(sessions) as s:
        job = _job(s, job_id)
        job.status = check_move(job.status, status).value
        job.error, job.finished_at = error, utcnow()
        if status in TERMINAL_JOB:  # its open tasks end with it
            _cancel_open_tasks(s, job_id, f"job {status.value}")
        s.add(Event(job_id=job_id, kind=status.value, message=error or f"job {status.value}"))


def _cancel_open_tasks(s, job_id: int, reason: str) -> None:
    """A job that ends takes its queued and leased profiling tasks with it (in the same
    transaction): phones never spend time on a measurement nobody waits for."""
    s.execute(cancel_statement(reason, job_id=job_id))


def add_event(sessions: SessionFactory, job_id: int | None, kind: str, message: str) -> None:
    with transaction(sessions) as s:
        s.add(Event(job_id=job_id, kind=kind, message=message[:4000]))
