"""The storage layer on SQLite and PostgreSQL: idempotence, claims, leases, the cache."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from sqlalchemy import inspect

from store import Conflict, NotFound, jobs, leasing, results, tasks
from store import devices as dev
from store.task_results import task_results

ROOT = Path(__file__).resolve().parents[2]
PROPS = {"backend": "host", "model": "host", "cpu_count": 2, "ram_bytes": 1 << 30}


def test_migrations_create_every_table(sessions):
    names = set(inspect(sessions.kw["bind"]).get_table_names())
    assert {
        "jobs",
        "generations",
        "candidates",
        "evaluations",
        "artifacts",
        "devices",
        "profiling_tasks",
        "measurements",
        "events",
        "alembic_version",
    } <= names


def test_the_migrations_build_exactly_the_schema_the_models_describe(sessions):
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from store.models import Base

    with sessions.kw["bind"].connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    assert diff == []


def test_claims_are_exclusive_and_stale_jobs_are_reclaimed(sessions):
    job = jobs.create_job(sessions, "j", {"x": 1})
    with ThreadPoolExecutor(8) as pool:
        claims = list(pool.map(lambda i: jobs.claim_job(sessions, f"o{i}"), range(8)))
    winners = [c for c in claims if c is not None]
    assert len(winners) == 1 and winners[0].id == job.id
    owner = winners[0].owner
    assert jobs.heartbeat_job(sessions, job.id, owner, 1, 5)
    assert jobs.claim_job(sessions, "other", stale_after_s=60) is None
    again = jobs.claim_job(sessions, "other", stale_after_s=0)  # the owner went silent
    assert again is not None and again.owner == "other"
    assert not jobs.heartbeat_job(sessions, job.id, owner, 1, 5)  # the old owner lost it


def test_cancel_and_resume(sessions):
    queued = jobs.create_job(sessions, "q", {})
    assert jobs.request_cancel(sessions, queued.id).status == "cancelled"
    assert jobs.resume_job(sessions, queued.id).status == "queued"
    claimed = jobs.claim_job(sessions, "me")
    jobs.request_cancel(sessions, claimed.id)
    assert not jobs.heartbeat_job(sessions, claimed.id, "me", 0, 0)
    with pytest.raises(NotFound):
        jobs.get_job(sessions, 999)


def test_candidates_and_evaluations_are_stored_once(sessions):
    job = jobs.create_job(sessions, "j", {})
    items = [{"genome": {"g": i}, "genome_hash": f"{i:016x}"} for i in range(3)]
    first = results.add_candidates(sessions, job.id, 0, items)
    again = results.add_candidates(sessions, job.id, 0, items)
    assert [c.id for c in first] == [c.id for c in again]
    assert len(results.job_candidates(sessions, job.id)) == 3
    with ThreadPoolExecutor(6) as pool:
        stored = list(
            pool.map(
                lambda i: results.put_evaluation(sessions, "abc", "cfg", "quality", {"writer": i}),
                range(6),
            )
        )
    assert len({s["writer"] for s in stored}) == 1
    assert results.get_evaluation(sessions, "abc", "cfg", "quality") == stored[0]
    assert results.get_evaluation(sessions, "abc", "other", "quality") is None


def test_generations_are_idempotent_and_polled_incrementally(sessions):
    job = jobs.create_job(sessions, "j", {})
    c = results.add_candidates(sessions, job.id, 0, [{"genome": {}, "genome_hash": "aa"}])
    for index in range(3):
        results.write_generation(sessions, job.id, index, [c[0].id], [c[0].id], 0.5 + index, 4)
    results.write_generation(sessions, job.id, 1, [], [], 99.0, 0)  # a replay keeps the first
    since = results.generations_since(sessions, job.id, 1)
    assert [g.index for g in since] == [1, 2] and since[0].hypervolume == 1.5
    latest, front = results.pareto(sessions, job.id)
    assert latest.index == 2 and [f.id for f in front] == [c[0].id]


def _device(sessions, model="host"):
    """A new device each call (a device is its name and model: enrolling the same one
    again would give back its row)."""
    name = f"d{len(dev.list_devices(sessions))}"
    device, token = dev.enroll_device(sessions, name, {**PROPS, "model": model})
    return device, token


def test_device_tokens_are_hashed_and_authenticate(sessions):
    device, token = _device(sessions)
    assert device.token_hash != token and len(device.token_hash) == 64
    assert dev.authenticate_device(sessions, token).id == device.id
    assert dev.authenticate_device(sessions, token + "x") is None


def queue_tasks(sessions, count: int):
    """A job with `count` candidates, one queued host task each; the job."""
    job = jobs.create_job(sessions, "j", {})
    cands = results.add_candidates(
        sessions, job.id, 0, [{"genome": {}, "genome_hash": f"{i:08x}"} for i in range(count)]
    )
    for c in cands:
        tasks.enqueue_task(sessions, job.id, c.id, "host", {})
    return job


def test_leases_are_exclusive_under_concurrency(sessions):
    queue_tasks(sessions, 10)
    agents = [_device(sessions)[0] for _ in range(6)]
    leased: list[int] = []
    lock = threading.Lock()

    def agent(device):
        while True:
            task = leasing.lease_task(sessions, device, 60)
            if task is None:
                return
            with lock:
                leased.append(task.id)

    with ThreadPoolExecutor(6) as pool:
        list(pool.map(agent, agents))
    assert sorted(leased) == sorted(set(leased)) and len(leased) == 10


def test_lease_expiry_requeues_then_fails_and_reports_are_stored_once(sessions):
    job = jobs.create_job(sessions, "j", {})
    cand = results.add_candidates(sessions, job.id, 0, [{"genome": {}, "genome_hash": "ab"}])[0]
    task = tasks.enqueue_task(sessions, job.id, cand.id, "host", {}, max_attempts=2)
    a, b = _device(sessions)[0], _device(sessions)[0]
    phone = _device(sessions, model="SM-S928B")[0]
    assert leasing.lease_task(sessions, phone, 60) is None  # other device class
    first = leasing.lease_task(sessions, a, -1)  # already expired
    assert first.id == task.id and first.attempts == 1
    second = leasing.lease_task(sessions, b, 60)  # the expired lease went back to the queue
    assert second.id == task.id and second.attempts == 2
    with pytest.raises(Conflict):
        tasks.report_task(sessions, task.id, a, {"x": 1})  # a lost its lease
    tasks.report_task(sessions, task.id, b, {"x": 2})
    tasks.report_task(sessions, task.id, b, {"x": 3})  # a repeat does not store twice
    [row] = task_results(sessions, [cand.id])
    assert row["state"] == "done" and row["report"] == {"x": 2}


def test_failures_retry_until_attempts_run_out_and_release_does_not_count(sessions):
    job = jobs.create_job(sessions, "j", {})
    cand = results.add_candidates(sessions, job.id, 0, [{"genome": {}, "genome_hash": "cd"}])[0]
    tasks.enqueue_task(sessions, job.id, cand.id, "host", {}, max_attempts=2)
    d = _device(sessions)[0]
    t = leasing.lease_task(sessions, d, 60)
    assert tasks.release_task(sessions, t.id, d).attempts == 0
    t = leasing.lease_task(sessions, d, 60)
    assert tasks.fail_task(sessions, t.id, d, "phone unplugged", True).state == "queued"
    t = leasing.lease_task(sessions, d, 60)
    assert tasks.fail_task(sessions, t.id, d, "again", True).state == "failed"
    dev.set_device_state(sessions, d.id, "draining")
    tasks.enqueue_task(sessions, job.id, cand.id, "host-2", {})
    assert leasing.lease_task(sessions, dev.list_devices(sessions)[0], 60) is None


def _job_with_tasks(sessions, name, n, priority=0, model="host"):
    job = jobs.create_job(sessions, name, {})
    cands = results.add_candidates(
        sessions, job.id, 0, [{"genome": {}, "genome_hash": f"{name}{i}"} for i in range(n)]
    )
    return job, [
        tasks.enqueue_task(sessions, job.id, c.id, model, {}, priority=priority) for c in cands
    ]


def test_ended_jobs_take_their_tasks_and_leases_follow_priority_then_age(sessions):
    """A cancelled job's queued tasks and a finished job's leased ones are cancelled (an
    agent still measuring gets 409); live jobs lease by profiling.priority, then age."""
    old, old_tasks = _job_with_tasks(sessions, "old", 2)
    cancelled, cancelled_tasks = _job_with_tasks(sessions, "cancelled", 2)
    urgent, urgent_tasks = _job_with_tasks(sessions, "urgent", 1, priority=5)
    d = _device(sessions)[0]
    held = leasing.lease_task(sessions, d, 60)
    assert held.id == urgent_tasks[0].id  # higher priority first, though newest
    jobs.finish_job(sessions, urgent.id, "cancelled")  # (queued -> completed is illegal)
    with pytest.raises(Conflict, match="cancelled"):
        tasks.report_task(sessions, held.id, d, {"x": 1})
    jobs.request_cancel(sessions, cancelled.id)  # queued job: cancelled at once
    leased = [leasing.lease_task(sessions, d, 60) for _ in range(3)]
    assert [t.id if t else None for t in leased] == [old_tasks[0].id, old_tasks[1].id, None]
    states = {
        r["task_id"]: r["state"]
        for r in task_results(sessions, [t.candidate_id for t in cancelled_tasks + urgent_tasks])
    }
    assert set(states.values()) == {"cancelled"}
    # A running job asked to cancel leases nothing more, before its orchestrator notices.
    running, running_tasks = _job_with_tasks(sessions, "running", 1)
    assert jobs.claim_job(sessions, "me").id in (old.id, running.id)
    jobs.claim_job(sessions, "me")
    jobs.request_cancel(sessions, running.id)
    assert leasing.lease_task(sessions, d, 60) is None
    # Resuming a cancelled job opens its tasks again when the orchestrator re-enqueues them.
    jobs.resume_job(sessions, cancelled.id)
    again = tasks.enqueue_task(sessions, cancelled.id, cancelled_tasks[0].candidate_id, "host", {})
    assert again.id == cancelled_tasks[0].id and again.state == "queued" and again.attempts == 0
    assert tasks.cancel_tasks(sessions, "timed out", candidate_id=again.candidate_id) == 1


def test_device_errors_and_disconnects_do_not_spend_the_candidates_attempts(sessions):
    """A broken phone (runner missing) or a dropped one hands the task back uncounted; a
    device error pauses that device from leasing, another device takes the task."""
    _, [task] = _job_with_tasks(sessions, "j", 1)
    broken, healthy = _device(sessions)[0], _device(sessions)[0]
    for kind in ("disconnected", "device"):
        t = leasing.lease_task(sessions, broken, 60)
        assert t is not None and t.id == task.id
        back = tasks.fail_task(sessions, t.id, broken, "runner missing", True, kind)
        assert back.state == "queued" and back.attempts == 0
    broken = next(x for x in dev.list_devices(sessions) if x.id == broken.id)
    assert broken.paused_reason == "runner missing"
    assert leasing.lease_task(sessions, broken, 60) is None  # paused
    t = leasing.lease_task(sessions, healthy, 60)
    assert t.id == task.id and t.attempts == 1
    assert tasks.fail_task(sessions, t.id, healthy, "graph rejected", False).state == "failed"


def test_a_job_can_refuse_measurements_of_a_hot_phone(sessions):
    job = jobs.create_job(sessions, "j", {})
    cand = results.add_candidates(sessions, job.id, 0, [{"genome": {}, "genome_hash": "h"}])[0]
    tasks.enqueue_task(sessions, job.id, cand.id, "host", {"reject_hot": True})
    d = _device(sessions)[0]
    t = leasing.lease_task(sessions, d, 60)
    hot = {"above_thermal_limit": True, "thermal_limit_celsius": 45.0}
    back = tasks.report_task(sessions, t.id, d, hot)
    assert back.state == "queued" and back.attempts == 0 and "reject_hot" in back.last_error
    t = leasing.lease_task(sessions, d, 60)
    assert (
        tasks.report_task(sessions, t.id, d, {**hot, "above_thermal_limit": False}).state == "done"
    )


def test_a_device_is_ready_only_active_online_unpaused_and_fit(sessions):
    """store.devices.readiness: each "not ready" names why and what fixes it."""
    from datetime import timedelta

    from store.models import utcnow

    device, _ = dev.enroll_device(
        sessions, "phone", {"backend": "adb", "model": "Pixel 8", "serial": "S1", "board": "b"}
    )
    assert dev.readiness(device, 60) == dev.Readiness(True)
    assert not dev.readiness(device, 60, now=utcnow() + timedelta(seconds=61)).ready
    assert (
        "no heartbeat for over 60 s"
        in dev.readiness(device, 60, now=utcnow() + timedelta(seconds=61)).reason
    )
    device = dev.heartbeat_device(
        sessions,
        device.id,
        readiness={"ready": False, "reason": "only 50 MB free", "fix": "free storage"},
    )
    assert dev.readiness(device, 60) == dev.Readiness(False, "only 50 MB free", "free storage")
    device = dev.heartbeat_device(sessions, device.id, readiness={"ready": True})
    assert dev.readiness(device, 60).ready
    with sessions() as s:
        row = s.get(type(device), device.id)
        row.paused_until, row.paused_reason = utcnow() + timedelta(minutes=5), "runner gone"
        s.commit()
    [(paused, verdict)] = dev.fleet_readiness(sessions, 60)["Pixel 8"]
    assert paused.id == device.id and not verdict.ready
    assert verdict.reason.startswith("paused until ") and "runner gone" in verdict.reason
    dev.set_device_state(sessions, device.id, "disabled")
    [(_, verdict)] = dev.fleet_readiness(sessions, 60)["Pixel 8"]
    assert verdict.reason == "the device is disabled"


def test_sqlite_commits_in_wal_without_waiting_for_the_disk_and_survive_a_killed_writer(
    tmp_path,
):
    """WAL with synchronous=NORMAL (store/engine.py): a commit is in the file as soon as it
    returns, so a process killed right after it (as the fleet's server-kill fault does)
    loses nothing; only a power cut may lose the last commits."""
    from sqlalchemy import text

    from store.engine import make_engine

    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    engine = make_engine(url)
    with engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert conn.execute(text("PRAGMA synchronous")).scalar() == 1  # NORMAL
    engine.dispose()
    writer = (
        "import os, sys\n"
        "from sqlalchemy import text\n"
        "from store.engine import make_engine\n"
        f"engine = make_engine({url!r})\n"
        "with engine.begin() as conn:\n"
        "    conn.execute(text('CREATE TABLE t (x INTEGER)'))\n"
        "    conn.execute(text('INSERT INTO t VALUES (42)'))\n"
        "os.kill(os.getpid(), 9)\n"
    )
    killed = subprocess.run([sys.executable, "-c", writer], cwd=str(ROOT), timeout=60)
    assert killed.returncode == -9
    engine = make_engine(url)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT x FROM t")).scalar() == 42
    engine.dispose()


def test_an_expired_lease_is_requeued_by_a_call_that_ends_in_a_conflict(sessions):
    """A lease call puts expired leases back in a transaction of its own, so what it puts
    back stays back whatever the call then meets (here the Conflict of a device at its
    lease cap, which rolls the lease's own transaction back)."""
    queue_tasks(sessions, 2)
    a, b = (dev.enroll_device(sessions, n, {"model": "host"})[0] for n in ("a", "b"))
    lapsing = leasing.lease_task(sessions, b, 0.05, max_leases=1)
    assert leasing.lease_task(sessions, a, 300, max_leases=1) is not None
    time.sleep(0.2)  # b's lease runs out
    with pytest.raises(Conflict):
        leasing.lease_task(sessions, a, 300, max_leases=1)  # a is at its cap
    [row] = task_results(sessions, [lapsing.candidate_id])
    assert row["state"] == "queued"
