"""Profiling tasks: a queue with leases.

Leasing is atomic on every backend: a candidate row is picked (with `FOR UPDATE SKIP
LOCKED` on PostgreSQL, so concurrent agents skip each other's rows) and taken with a
conditional UPDATE that only succeeds while the row is still queued — two agents never hold
the same task. Each lease counts an attempt; a lease that expires puts the task back in the
queue, or fails it once its attempts are spent. A measurement is stored once per task.
"""

from __future__ import annotations

from datetime import timedelta, timezone
from typing import Any

from sqlalchemy import select, update

from store.models import Candidate, Device, Measurement, ProfilingTask, utcnow

from . import Conflict, NotFound, SessionFactory, insert_or_get, transaction


def enqueue_task(sessions: SessionFactory, job_id: int, candidate_id: int, device_class: str,
                 spec: dict[str, Any], max_attempts: int = 3) -> ProfilingTask:
    """Idempotent on (candidate, device class)."""
    row = ProfilingTask(job_id=job_id, candidate_id=candidate_id, device_class=device_class,
                        spec=spec, state="queued", attempts=0, max_attempts=max_attempts)
    return insert_or_get(sessions, row, lambda s: s.scalar(
        select(ProfilingTask).where(ProfilingTask.candidate_id == candidate_id,
                                    ProfilingTask.device_class == device_class)))


def expire_leases(sessions: SessionFactory) -> int:
    """Return expired leases to the queue (or fail them when out of attempts)."""
    now = utcnow()
    with transaction(sessions) as s:
        base = update(ProfilingTask).where(ProfilingTask.state == "leased",
                                           ProfilingTask.lease_expires_at < now)
        failed = s.execute(base.where(ProfilingTask.attempts >= ProfilingTask.max_attempts)
                           .values(state="failed", lease_owner=None,
                                   last_error="lease expired on the last attempt")).rowcount
        requeued = s.execute(base.where(ProfilingTask.attempts < ProfilingTask.max_attempts)
                             .values(state="queued", lease_owner=None,
                                     last_error="lease expired")).rowcount
        return failed + requeued


def lease_task(sessions: SessionFactory, device: Device,
               lease_seconds: float) -> ProfilingTask | None:
    if device.state != "active":
        return None
    expire_leases(sessions)
    for _ in range(20):  # lost races retry with the next queued row
        with transaction(sessions) as s:
            query = (select(ProfilingTask.id)
                     .where(ProfilingTask.state == "queued",
                            ProfilingTask.device_class == device.model)
                     .order_by(ProfilingTask.id).limit(1))
            if s.bind.dialect.name == "postgresql":
                query = query.with_for_update(skip_locked=True)
            task_id = s.scalar(query)
            if task_id is None:
                return None
            taken = s.execute(
                update(ProfilingTask)
                .where(ProfilingTask.id == task_id, ProfilingTask.state == "queued")
                .values(state="leased", lease_owner=device.id,
                        lease_expires_at=utcnow() + timedelta(seconds=lease_seconds),
                        attempts=ProfilingTask.attempts + 1)).rowcount
            if taken == 1:
                return s.get(ProfilingTask, task_id)
    return None


def _held(s, task_id: int, device: Device) -> ProfilingTask:
    task = s.get(ProfilingTask, task_id, with_for_update=True)
    if task is None:
        raise NotFound(f"task {task_id} not found")
    expires = task.lease_expires_at
    if expires is not None and expires.tzinfo is None:
        expires = expires.replace(tzinfo=timezone.utc)
    if task.state != "leased" or task.lease_owner != device.id or \
            (expires is not None and expires < utcnow()):
        raise Conflict(f"device {device.id} does not hold the lease of task {task_id}")
    return task


def report_task(sessions: SessionFactory, task_id: int, device: Device,
                report: dict[str, Any]) -> ProfilingTask:
    with transaction(sessions) as s:
        existing = s.scalar(select(Measurement).where(Measurement.task_id == task_id))
        task = s.get(ProfilingTask, task_id)
        if existing is not None and task is not None and task.state == "done":
            return task  # a repeated report: stored once already
        task = _held(s, task_id, device)
        s.add(Measurement(task_id=task_id, device_id=device.id, report=report))
        task.state, task.lease_owner, task.last_error = "done", None, None
        return task


def fail_task(sessions: SessionFactory, task_id: int, device: Device, reason: str,
              retryable: bool) -> ProfilingTask:
    with transaction(sessions) as s:
        task = _held(s, task_id, device)
        out_of_attempts = task.attempts >= task.max_attempts
        task.state = "queued" if retryable and not out_of_attempts else "failed"
        task.lease_owner, task.last_error = None, reason[:4000]
        return task


def release_task(sessions: SessionFactory, task_id: int, device: Device) -> ProfilingTask:
    """An agent shutting down hands its task back; the attempt is not counted."""
    with transaction(sessions) as s:
        task = _held(s, task_id, device)
        task.state, task.lease_owner = "queued", None
        task.attempts = max(0, task.attempts - 1)
        return task


def task_results(sessions: SessionFactory, candidate_ids: list[int]) -> list[dict[str, Any]]:
    """State and measurement of every task of these candidates (for the orchestrator)."""
    with transaction(sessions) as s:
        rows = s.execute(select(ProfilingTask, Measurement)
                         .outerjoin(Measurement, Measurement.task_id == ProfilingTask.id)
                         .where(ProfilingTask.candidate_id.in_(candidate_ids))).all()
        return [{"task_id": t.id, "candidate_id": t.candidate_id,
                 "device_class": t.device_class, "state": t.state, "attempts": t.attempts,
                 "last_error": t.last_error, "report": m.report if m else None}
                for t, m in rows]


def task_candidate(sessions: SessionFactory, task: ProfilingTask) -> Candidate:
    with transaction(sessions) as s:
        return s.get(Candidate, task.candidate_id)
