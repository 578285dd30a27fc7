"""An agent's requests cost the database few round trips: a lease call is its token read
and a look whether there is anything to lease (single statements outside a transaction),
then, if there is, one transaction that leases in one UPDATE (after the device's row lock
on PostgreSQL) and one read of what the answer needs; heartbeats:
tests/fleet/test_fleet_fixes.py. On PostgreSQL every transaction is a BEGIN and a COMMIT
round trip more, and a lab's lease calls were five transactions each, then one of nine
round trips, every round trip waiting for the database's process on a busy machine
(bench/README, "Device lab under load")."""

from __future__ import annotations

from datetime import datetime

from store import tasks as task_store
from store.models import ProfilingTask
from tests.database_work import count_database_work

from .test_api import enroll, seed_results


def test_a_lease_call_is_one_transaction_between_reads_or_none_without_work(client, exported):
    job_id, _, child_id = seed_results(client, exported)
    sessions = client.app.state.sessions
    task_store.enqueue_task(sessions, job_id, child_id, "host", {"prefill_lengths": [16]})
    device_id, auth = enroll(client)
    _, idle = enroll(client, model="SM-S928B", name="idle")  # nothing queued for its class
    seen = count_database_work(client.app.state.engine)
    task = client.post("/api/v1/tasks/lease", headers=auth).json()["task"]
    # token, look, [device lock on PostgreSQL], the UPDATE that leases, candidate and files
    locks = 1 if client.app.state.engine.dialect.name == "postgresql" else 0
    assert seen == {"checkouts": 4, "statements": 4 + locks, "commits": 1}
    assert task["candidate_id"] == child_id and task["artifacts"]
    # what the UPDATE returned is what was stored: the first attempt, leased to this device
    with sessions() as s:
        stored = s.get(ProfilingTask, task["task_id"])
    assert task["attempt"] == stored.attempts == 1 and stored.state == task_store.LEASED
    assert stored.lease_owner == device_id
    assert datetime.fromisoformat(task["lease_expires_at"]) == stored.lease_expires_at
    seen.clear()
    assert client.post("/api/v1/tasks/lease", headers=idle).json() == {"task": None}
    # nothing queued for its class: two reads, no transaction
    assert seen == {"checkouts": 2, "statements": 2}
    seen.clear()
    # at its lease cap (max_leases_per_device=1) with nothing queued: still the Conflict
    # that tells an agent which forgot its lease to hand it back
    held = client.post("/api/v1/tasks/lease", headers=auth)
    assert held.status_code == 409 and "already holds 1 lease" in held.json()["detail"]
    # the cap is counted before anything is written: no UPDATE (on SQLite it would take the
    # database's one write lock), nothing committed
    assert seen["commits"] == 0 and seen["statements"] == 3 + locks
