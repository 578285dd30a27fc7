"""Profiling tasks: a queue with leases (taken in store/leasing.py).

Leasing is atomic on every backend: a candidate row is picked (with `FOR UPDATE SKIP
LOCKED` on PostgreSQL, so concurrent agents skip each other's rows) and taken with a
conditional UPDATE that only succeeds while the row is still queued — two agents never hold
the same task. Each lease counts an attempt; a lease that expires puts the task back in the
queue, or fails it once its attempts are spent. A lease is lost only when it is handed on
(a lapsed lease nobody took is still its holder's), and a server that starts gives every
open lease its length again: what that guarantees is in docs/devices.md. A device holds at
most `max_leases` tasks at once (checked inside the same conditional UPDATE, with the device
row locked on PostgreSQL, so concurrent calls cannot pass it together).

Only live jobs' tasks are leased (queued or running, not being cancelled), highest
`profiling.priority` first, then the oldest job's, then the oldest task. A job that ends
(completed, failed, cancelled) cancels its open tasks, and so does a candidate whose
profiling timed out; an agent still measuring one gets 409 when it reports.

A failure says whose fault it was (`FailureReport.kind`): the candidate's counts one of its
attempts; a device error or a disconnect hands the task back uncounted, and a device error
pauses the device from leasing for `DEVICE_PAUSE_S`.

A measurement is stored once per task, from the device that held the lease, and only when
it measured exactly the lengths the task asked for, each once; a report that does not is
refused (`BadReport`) and the lease is kept, so the agent may still send a correct one.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from core.states import LIVE_JOB, OPEN_TASK, TaskState, check_move
from store.models import Device, Measurement, ProfilingTask, as_utc, utcnow

from . import Conflict, NotFound, SessionFactory, insert_or_get, transaction


class BadReport(ValueError):
    """A measurement report that does not answer its task; `field` names the part."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


DEVICE_PAUSE_S = 120.0  # no leases for a device this long after it reports a device error
# Every state change below is a move of core.states.TASK_MOVES: checked with check_move where
# a row is changed in Python, written as a conditional UPDATE on the state it moves from
# where many rows move at once.
QUEUED, LEASED, DONE, FAILED, CANCELLED = (s.value for s in TaskState)
OPEN_TASK_STATES = tuple(s.value for s in OPEN_TASK)
LIVE_JOB_STATES = tuple(s.value for s in LIVE_JOB)  # the others end a job: they lease nothing


def enqueue_task(
    sessions: SessionFactory,
    job_id: int,
    candidate_id: int,
    device_class: str,
    spec: dict[str, Any],
    max_attempts: int = 3,
    priority: int = 0,
    variant: str = "",
    graph_revision: int | None = None,
) -> ProfilingTask:
    """Idempotent on (candidate, device class, export variant); a task cancelled with its
    job opens again (fresh attempts) when the resumed job asks for it. `graph_revision`: the
    revision of the graphs it is queued for (the caller stores that export first); asked
    again under another revision, a task not yet leased (queued, or reopened) takes the new
    one, while one leased or measured keeps the revision it was queued for. The label can
    only err old (a task leased under the old label, then requeued, measures the new files),
    which keeps such a measurement out of other jobs' priors, never an old one in."""
    row = ProfilingTask(
        job_id=job_id,
        candidate_id=candidate_id,
        device_class=device_class,
        spec=spec,
        state=QUEUED,
        attempts=0,
        max_attempts=max_attempts,
        priority=priority,
        variant=variant,
        graph_revision=graph_revision,
    )
    task = insert_or_get(
        sessions,
        row,
        lambda s: s.scalar(
            select(ProfilingTask).where(
                ProfilingTask.candidate_id == candidate_id,
                ProfilingTask.device_class == device_class,
                ProfilingTask.variant == variant,
            )
        ),
    )
    if task.state == CANCELLED:
        with transaction(sessions) as s:
            s.execute(
                update(ProfilingTask)
                .where(ProfilingTask.id == task.id, ProfilingTask.state == CANCELLED)
                .values(
                    state=QUEUED,
                    attempts=0,
                    last_error=None,
                    priority=priority,
                    graph_revision=graph_revision,
                )
            )
            return s.get(ProfilingTask, task.id)
    if task.state == QUEUED and graph_revision not in (None, task.graph_revision):
        with transaction(sessions) as s:  # only while no agent has leased it meanwhile
            s.execute(
                update(ProfilingTask)
                .where(ProfilingTask.id == task.id, ProfilingTask.state == QUEUED)
                .values(graph_revision=graph_revision)
            )
            return s.get(ProfilingTask, task.id)
    return task


def renew_leases(s: Session, device_id: int) -> int:
    """A heartbeat (inside its one transaction, store.devices.heartbeat_device): every
    lease the device still holds runs again for the length it was granted, so a measurement
    longer than its lease keeps it while the agent is alive; so does one whose clock ran out
    that nobody took yet (handing it on now would only measure it twice). Returns how many
    were renewed."""
    return _run_again(s, ProfilingTask.lease_owner == device_id)


def extend_leases(sessions: SessionFactory) -> int:
    """A server that starts gives every open lease at least its own length from now, as
    etcd's lessor does on a leader change: no heartbeat could renew a lease while the
    server was down, and expiring them at its first lease call handed tasks still being
    measured to other devices (measured twice). A dead holder's task waits one lease
    longer. Returns how many leases are open."""
    with transaction(sessions) as s:
        return _run_again(s)


def _run_again(s: Session, *where) -> int:
    """Every open lease matching `where` runs at least the length it was granted from now
    (rows from before that length was stored keep what they had left)."""
    now = utcnow()
    held = s.scalars(
        select(ProfilingTask).where(ProfilingTask.state == LEASED, *where).with_for_update()
    ).all()
    for task in held:
        again = now + timedelta(seconds=task.lease_seconds or 0)
        task.lease_expires_at = max(as_utc(task.lease_expires_at) or now, again)
    return len(held)


def release_device_leases(s: Session, device_id: int, reason: str) -> int:
    """Every lease the device holds back to the queue, uncounted, inside the caller's
    transaction (an enrollment, or a heartbeat with properties): its agent just started
    (power cut, crash, `kill -9`) or never got its lease call's answer, and holds no task,
    but those leases would otherwise be renewed by its heartbeats forever and never
    measured. Returns how many."""
    held = s.scalars(
        select(ProfilingTask)
        .where(ProfilingTask.state == LEASED, ProfilingTask.lease_owner == device_id)
        .with_for_update()
    ).all()
    for task in held:
        _requeue_uncounted(task, reason)
    return len(held)


def _held(s, task_id: int, device: Device) -> ProfilingTask:
    task = s.get(ProfilingTask, task_id, with_for_update=True)
    if task is None:
        raise NotFound(f"task {task_id} not found")
    if task.state == CANCELLED:
        raise Conflict(
            f"task {task_id} was cancelled ({task.last_error or 'its job ended'}); "
            "its measurement is no longer wanted"
        )
    if task.state != LEASED or task.lease_owner != device.id:  # a lapsed lease nobody took
        raise Conflict(f"device {device.id} does not hold the lease of task {task_id}")
    return task  # is still the device's: its outcome is the one measurement of the task


def _requeue_uncounted(task: ProfilingTask, last_error: str | None = None) -> None:
    """Back to the queue without spending an attempt: the candidate was not at fault.
    `last_error`, when given, says why (else the previous one stays)."""
    task.state, task.lease_owner = check_move(task.state, TaskState.QUEUED).value, None
    task.attempts = max(0, task.attempts - 1)
    if last_error is not None:
        task.last_error = last_error[:4000]


def _check_lengths(spec: dict[str, Any], report: dict[str, Any]) -> None:
    for field, asked in (("prefill", "prefill_lengths"), ("decode", "decode_contexts")):
        wanted = sorted(set(spec.get(asked, [])))
        got = [stat["length"] for stat in report.get(field, [])]
        if sorted(got) != wanted:
            raise BadReport(
                field,
                f"the task asks for lengths {wanted} ({asked}), each once; the report has {got}",
            )


def _check_variant(task: ProfilingTask, report: dict[str, Any]) -> None:
    """A report of another precision or execution provider than the task asked for would
    put, say, a float latency under an int4 metric: refuse it, naming the field."""
    from core.precision import Variant

    precision = Variant.from_tag(task.variant).precision
    if report.get("precision", "float32") != precision:
        raise BadReport(
            "precision",
            f"task {task.id} measures the {precision} graphs; the "
            f"report says {report.get('precision', 'float32')}",
        )
    provider = task.spec.get("execution_provider", "cpu")
    if report.get("execution_provider", "cpu") != provider:
        raise BadReport(
            "execution_provider",
            f"task {task.id} asks for execution provider "
            f"{provider}; the report says {report.get('execution_provider', 'cpu')}",
        )


def report_task(
    sessions: SessionFactory, task_id: int, device: Device, report: dict[str, Any]
) -> ProfilingTask:
    """Store the measurement of a task this device holds. A repeat by the device that
    reported it is acknowledged (stored once); from any other device it is a Conflict."""
    with transaction(sessions) as s:
        existing = s.scalar(select(Measurement).where(Measurement.task_id == task_id))
        task = s.get(ProfilingTask, task_id)
        if existing is not None and task is not None and task.state == DONE:
            if existing.device_id != device.id:
                raise Conflict(
                    f"task {task_id} was measured by device {existing.device_id}; "
                    f"device {device.id} does not hold its lease"
                )
            return task  # a repeated report: stored once already
        task = _held(s, task_id, device)
        _check_lengths(task.spec, report)
        _check_variant(task, report)
        if task.spec.get("reject_hot") and report.get("above_thermal_limit"):
            _requeue_uncounted(
                task,
                f"device {device.id} measured above its thermal limit "
                f"({report.get('thermal_limit_celsius')} °C) and the job "
                "rejects hot measurements (profiling.reject_hot)",
            )
            return task
        s.add(Measurement(task_id=task_id, device_id=device.id, report=report))
        task.state = check_move(task.state, TaskState.DONE).value
        task.lease_owner, task.last_error = None, None
        return task


def fail_task(
    sessions: SessionFactory,
    task_id: int,
    device: Device,
    reason: str,
    retryable: bool,
    kind: str = "candidate",
) -> ProfilingTask:
    """`kind` "candidate": the attempt counts (the task fails when they are spent or it is
    not retryable). "device" or "disconnected": the task goes back to the queue uncounted
    for another device (or this one later); "device" also pauses this device."""
    with transaction(sessions) as s:
        task = _held(s, task_id, device)
        if kind == "candidate":
            out_of_attempts = task.attempts >= task.max_attempts
            task.state = check_move(
                task.state,
                TaskState.QUEUED if retryable and not out_of_attempts else TaskState.FAILED,
            ).value
            task.lease_owner, task.last_error = None, reason[:4000]
        else:
            label = "device error: " if kind == "device" else "phone disconnected: "
            _requeue_uncounted(task, label + reason)
        if kind == "device":
            row = s.get(Device, device.id, with_for_update=True)
            row.paused_until = utcnow() + timedelta(seconds=DEVICE_PAUSE_S)
            row.paused_reason = reason[:4000]
        return task


def cancel_statement(reason: str, job_id: int | None = None, candidate_id: int | None = None):
    """The UPDATE that cancels the open (queued or leased) tasks of a job or a candidate."""
    if job_id is None and candidate_id is None:
        raise ValueError("cancelling tasks needs a job_id or a candidate_id")
    query = update(ProfilingTask).where(ProfilingTask.state.in_(OPEN_TASK_STATES))
    if job_id is not None:
        query = query.where(ProfilingTask.job_id == job_id)
    if candidate_id is not None:
        query = query.where(ProfilingTask.candidate_id == candidate_id)
    return query.values(
        state=CANCELLED, lease_owner=None, last_error=reason[:4000]
    ).execution_options(synchronize_session=False)


def cancel_tasks(
    sessions: SessionFactory,
    reason: str,
    job_id: int | None = None,
    candidate_id: int | None = None,
) -> int:
    """Cancel a job's or a candidate's open tasks: nobody waits for their measurements any
    more. Returns how many."""
    with transaction(sessions) as s:
        return s.execute(cancel_statement(reason, job_id, candidate_id)).rowcount


def release_task(sessions: SessionFactory, task_id: int, device: Device) -> ProfilingTask:
    """An agent shutting down hands its task back; the attempt is not counted."""
    with transaction(sessions) as s:
        task = _held(s, task_id, device)
        _requeue_uncounted(task)
        return task
