"""Profiling tasks: a queue with leases.

Leasing is atomic on every backend: a candidate row is picked (with `FOR UPDATE SKIP
LOCKED` on PostgreSQL, so concurrent agents skip each other's rows) and taken with a
conditional UPDATE that only succeeds while the row is still queued — two agents never hold
the same task. Each lease counts an attempt; a lease that expires puts the task back in the
queue, or fails it once its attempts are spent. A device holds at most
`max_leases` tasks at once (checked inside the same conditional UPDATE, with the device row
locked on PostgreSQL, so concurrent calls cannot pass it together).

A measurement is stored once per task, from the device that held the lease, and only when
it measured exactly the lengths the task asked for, each once; a report that does not is
refused (`BadReport`) and the lease is kept, so the agent may still send a correct one.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import aliased

from store.models import Candidate, Device, Measurement, ProfilingTask, as_utc, utcnow

from . import Conflict, NotFound, SessionFactory, insert_or_get, transaction


class BadReport(ValueError):
    """A measurement report that does not answer its task; `field` names the part."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


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


def lease_task(sessions: SessionFactory, device: Device, lease_seconds: float,
               max_leases: int | None = None) -> ProfilingTask | None:
    """The oldest queued task of the device's class, or None; Conflict when the device
    already holds `max_leases` tasks (the API passes `max_leases_per_device`; None: no cap,
    for callers that play many agents)."""
    if device.state != "active":
        return None
    expire_leases(sessions)
    for _ in range(20):  # lost races retry with the next queued row
        with transaction(sessions) as s:
            postgres = s.bind.dialect.name == "postgresql"
            if postgres:  # one lease call per device at a time: the count below holds
                s.execute(select(Device.id).where(Device.id == device.id).with_for_update())
            mine = aliased(ProfilingTask)  # not correlated with the row being updated
            held = (select(func.count(mine.id))
                    .where(mine.state == "leased", mine.lease_owner == device.id)
                    .scalar_subquery())
            if max_leases is not None and s.scalar(select(held)) >= max_leases:
                raise Conflict(f"device {device.id} already holds {max_leases} lease(s), the "
                               f"most allowed (max_leases_per_device={max_leases}): report, "
                               "fail or release a task first")
            query = (select(ProfilingTask.id)
                     .where(ProfilingTask.state == "queued",
                            ProfilingTask.device_class == device.model)
                     .order_by(ProfilingTask.id).limit(1))
            if postgres:
                query = query.with_for_update(skip_locked=True)
            task_id = s.scalar(query)
            if task_id is None:
                return None
            taken = s.execute(
                update(ProfilingTask)
                .where(ProfilingTask.id == task_id, ProfilingTask.state == "queued",
                       *([] if max_leases is None else [held < max_leases]))
                .values(state="leased", lease_owner=device.id,
                        lease_expires_at=utcnow() + timedelta(seconds=lease_seconds),
                        lease_seconds=lease_seconds, attempts=ProfilingTask.attempts + 1)
                .execution_options(synchronize_session=False)).rowcount
            if taken == 1:
                return s.get(ProfilingTask, task_id)
    return None


def renew_leases(sessions: SessionFactory, device: Device) -> int:
    """A heartbeat: every lease the device still holds runs again for the length it was
    granted, so a measurement longer than its lease keeps it while the agent is alive; a
    lease is lost only when the agent stops heartbeating. Returns how many were renewed."""
    now = utcnow()
    with transaction(sessions) as s:
        held = s.scalars(select(ProfilingTask).where(ProfilingTask.state == "leased",
                                                     ProfilingTask.lease_owner == device.id)
                         .with_for_update()).all()
        renewed = 0
        for task in held:
            expires = as_utc(task.lease_expires_at)
            if expires is not None and expires < now:
                continue  # already lost: expire_leases hands it to another device
            length = task.lease_seconds or (expires - now).total_seconds()
            task.lease_expires_at = now + timedelta(seconds=length)
            renewed += 1
        return renewed


def _held(s, task_id: int, device: Device) -> ProfilingTask:
    task = s.get(ProfilingTask, task_id, with_for_update=True)
    if task is None:
        raise NotFound(f"task {task_id} not found")
    expires = as_utc(task.lease_expires_at)
    if task.state != "leased" or task.lease_owner != device.id or \
            (expires is not None and expires < utcnow()):
        raise Conflict(f"device {device.id} does not hold the lease of task {task_id}")
    return task


def _check_lengths(spec: dict[str, Any], report: dict[str, Any]) -> None:
    for field, asked in (("prefill", "prefill_lengths"), ("decode", "decode_contexts")):
        wanted = sorted(set(spec.get(asked, [])))
        got = [stat["length"] for stat in report.get(field, [])]
        if sorted(got) != wanted:
            raise BadReport(field, f"the task asks for lengths {wanted} ({asked}), each "
                            f"once; the report has {got}")


def report_task(sessions: SessionFactory, task_id: int, device: Device,
                report: dict[str, Any]) -> ProfilingTask:
    """Store the measurement of a task this device holds. A repeat by the device that
    reported it is acknowledged (stored once); from any other device it is a Conflict."""
    with transaction(sessions) as s:
        existing = s.scalar(select(Measurement).where(Measurement.task_id == task_id))
        task = s.get(ProfilingTask, task_id)
        if existing is not None and task is not None and task.state == "done":
            if existing.device_id != device.id:
                raise Conflict(f"task {task_id} was measured by device {existing.device_id}; "
                               f"device {device.id} does not hold its lease")
            return task  # a repeated report: stored once already
        task = _held(s, task_id, device)
        _check_lengths(task.spec, report)
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
