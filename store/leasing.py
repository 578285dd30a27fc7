"""Leasing a profiling task (the queue itself, its states and what a lease guarantees:
store/tasks.py). A lease call looks for work in one read outside a transaction, puts
expired leases back in a transaction of its own when it saw any, takes the first task in
line in one UPDATE (after the device's row lock on PostgreSQL), and reads what its agent is
handed in one read after the commit: an agent's lease call was five transactions, then
eleven round trips with work (seven now), and on PostgreSQL each round trip waited for the
database's process on a busy machine (bench/README, "Device lab under load")."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, aliased

from store.models import Artifact, Candidate, Device, Job, ProfilingTask, utcnow
from store.tasks import FAILED, LEASED, LIVE_JOB_STATES, QUEUED, release_task

from . import Conflict, NotFound, SessionFactory, single_read, transaction


def expire_leases(sessions: SessionFactory) -> int:
    """Return expired leases to the queue (or fail them when out of attempts), in a short
    transaction of its own: a lease call runs this when its look for work saw an expired
    lease, and what it puts back stays back whatever the lease call then meets (a Conflict
    rolls the lease's transaction back). Looks before it writes: on SQLite an UPDATE, even
    of no row, takes the database's one write lock. Returns how many."""
    now = utcnow()
    with transaction(sessions) as s:
        expired = select(ProfilingTask.id).where(
            ProfilingTask.state == LEASED, ProfilingTask.lease_expires_at < now
        )
        if s.scalar(expired.limit(1)) is None:
            return 0
        base = update(ProfilingTask).where(
            ProfilingTask.state == LEASED, ProfilingTask.lease_expires_at < now
        )
        failed = s.execute(
            base.where(ProfilingTask.attempts >= ProfilingTask.max_attempts).values(
                state=FAILED, lease_owner=None, last_error="lease expired on the last attempt"
            )
        ).rowcount
        requeued = s.execute(
            base.where(ProfilingTask.attempts < ProfilingTask.max_attempts).values(
                state=QUEUED, lease_owner=None, last_error="lease expired"
            )
        ).rowcount
        return failed + requeued


@dataclass(frozen=True)
class Lease:
    """A leased task with what its agent is handed: the candidate it measures and every
    file stored for that candidate's genome (the API picks the variant's graphs)."""

    task: ProfilingTask
    candidate: Candidate
    files: list[Artifact]


def lease_task(
    sessions: SessionFactory, device: Device, lease_seconds: float, max_leases: int | None = None
) -> ProfilingTask | None:
    """The oldest queued task of the device's class, or None; Conflict when the device
    already holds `max_leases` tasks (the API passes `max_leases_per_device`; None: no cap,
    for callers that play many agents). A look for work (one read outside a transaction),
    expired leases back to the queue if it saw any, then the lease in one transaction (on
    PostgreSQL the device's row lock, then one UPDATE that picks, checks the cap and
    returns the task)."""
    if device.state != "active":
        return None
    if device.pause() is not None:
        return None
    queued, lapsed, holds = _look_for_work(sessions, device)
    at_cap = max_leases is not None and holds >= max_leases
    if not (queued or lapsed or at_cap):
        return None  # the answer without a transaction (at the cap: the Conflict below)
    if lapsed:
        expire_leases(sessions)
    with transaction(sessions) as s:
        return _lease_in(s, device, lease_seconds, max_leases, at_cap)


def lease_with_files(
    sessions: SessionFactory, device: Device, lease_seconds: float, max_leases: int | None = None
) -> Lease | None:
    """lease_task with the candidate and its files, read in one read after the lease's
    commit. A task whose candidate is gone (its rows deleted by hand meanwhile) goes back,
    uncounted, and the call answers None: no lease is left that nobody was told of."""
    task = lease_task(sessions, device, lease_seconds, max_leases)
    if task is None:
        return None
    lease = _handed(sessions, task)
    if lease is None:
        try:
            release_task(sessions, task.id, device)
        except (Conflict, NotFound):
            pass  # the task is gone with its candidate
    return lease


def _queued_for(device: Device):
    """The ids of the queued tasks a device may lease: its class's, of live jobs, first in
    line first."""
    return (
        select(ProfilingTask.id)
        .join(Job, Job.id == ProfilingTask.job_id)
        .where(
            ProfilingTask.state == QUEUED,
            ProfilingTask.device_class == device.model,
            Job.status.in_(LIVE_JOB_STATES),
            Job.cancel_requested.is_(False),
        )
        .order_by(ProfilingTask.priority.desc(), ProfilingTask.job_id, ProfilingTask.id)
    )


def _look_for_work(sessions: SessionFactory, device: Device) -> tuple[bool, bool, int]:
    """(anything queued for the device's class, any lease expired, how many leases the
    device holds): one read outside a transaction, no locks. Why: an idle lab's agents poll
    for work every half second, and when a run's queue ran dry fifty of them doubled the
    server's requests, each a transaction that locked its device row to find nothing
    (bench/README, "Device lab under load"); at its lease cap a device still gets the
    Conflict that tells an agent which forgot a lease to hand it back."""
    held = (
        select(func.count(ProfilingTask.id))
        .where(ProfilingTask.state == LEASED, ProfilingTask.lease_owner == device.id)
        .scalar_subquery()
    )
    expired = select(ProfilingTask.id).where(
        ProfilingTask.state == LEASED, ProfilingTask.lease_expires_at < utcnow()
    )
    with single_read(sessions) as s:
        queued, lapsed, holds = s.execute(
            select(_queued_for(device).limit(1).exists(), expired.exists(), held)
        ).one()
    return bool(queued), bool(lapsed), int(holds)


# the tasks a device holds, counted in the statement that leases (not correlated with the
# row being updated)
_MINE = aliased(ProfilingTask)


def _held(device: Device):
    return (
        select(func.count(_MINE.id))
        .where(_MINE.state == LEASED, _MINE.lease_owner == device.id)
        .scalar_subquery()
    )


def _lease_in(
    s: Session, device: Device, lease_seconds: float, max_leases: int | None, at_cap: bool
) -> ProfilingTask | None:
    """Inside the caller's transaction: lease the first task in line for the device, or
    None when none is free; Conflict at the device's cap. One UPDATE picks the row (on
    PostgreSQL skipping rows other lease calls hold; on SQLite under the file's one write
    lock), checks the cap and returns the task, so no other agent can take it in between.
    `at_cap`: the look for work saw the device at its cap, so the cap is counted first (on
    SQLite an UPDATE, even of no row, takes the database's one write lock)."""
    held = _held(device)

    def conflict() -> Conflict:
        return Conflict(
            f"device {device.id} already holds {max_leases} lease(s), the "
            f"most allowed (max_leases_per_device={max_leases}): report, "
            "fail or release a task first"
        )

    if s.bind.dialect.name == "postgresql":  # one lease call per device at a time: the
        # cap counted in the UPDATE below sees every lease this device committed
        s.execute(select(Device.id).where(Device.id == device.id).with_for_update())
        # lock the task row only: a plain FOR UPDATE also locks the joined job row, and
        # every other agent's SKIP LOCKED then skips all of that job's tasks
        pick = _queued_for(device).limit(1).with_for_update(skip_locked=True, of=ProfilingTask)
    else:
        pick = _queued_for(device).limit(1)
    if at_cap and s.scalar(select(held)) >= max_leases:
        raise conflict()
    leased = s.scalars(
        update(ProfilingTask)
        .where(
            ProfilingTask.id == pick.correlate(None).scalar_subquery(),
            ProfilingTask.state == QUEUED,
            *([] if max_leases is None else [held < max_leases]),
        )
        .values(
            state=LEASED,
            lease_owner=device.id,
            lease_expires_at=utcnow() + timedelta(seconds=lease_seconds),
            lease_seconds=lease_seconds,
            attempts=ProfilingTask.attempts + 1,
        )
        .returning(ProfilingTask)
        # populate_existing: the returned row's values, even if this session held the task
        .execution_options(synchronize_session=False, populate_existing=True)
    ).first()
    if leased is None and max_leases is not None and s.scalar(select(held)) >= max_leases:
        raise conflict()
    return leased


def _handed(sessions: SessionFactory, task: ProfilingTask) -> Lease | None:
    """The Lease of a task just leased: its candidate and files in one read outside the
    lease's transaction (they were stored before the task was queued and do not change;
    on SQLite the read then holds no write lock). None if its candidate is gone."""
    query = (
        select(Candidate, Artifact)
        .outerjoin(Artifact, Artifact.genome_hash == Candidate.genome_hash)
        .where(Candidate.id == task.candidate_id)
        .order_by(Artifact.name)
    )
    with single_read(sessions) as s:
        rows = s.execute(query).all()
    if not rows:
        return None
    return Lease(task, rows[0][0], [artifact for _, artifact in rows if artifact is not None])
