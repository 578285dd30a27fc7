"""An agent's requests cost the database few transactions: a lease call is its token read
and a look whether there is anything to lease (single statements outside a transaction),
then, if there is, one transaction (expired leases, the lease and what the answer needs);
heartbeats: tests/fleet/test_fleet_fixes.py. On PostgreSQL every transaction is a
BEGIN and a COMMIT round trip more, and a lab's lease calls were five transactions each,
every round trip waiting for the database's process on a busy machine (bench/README,
"Device lab under load")."""

from __future__ import annotations

from collections import Counter

from sqlalchemy import event

from store import tasks as task_store

from .test_api import enroll, seed_results


def count_database_work(engine) -> Counter:
    """Connections taken from the pool and transactions committed, counted from now."""
    seen: Counter = Counter()
    event.listen(engine, "checkout", lambda *_: seen.update(["checkouts"]))
    event.listen(engine, "commit", lambda *_: seen.update(["commits"]))
    return seen


def test_a_lease_call_is_one_transaction_after_two_reads_or_none_without_work(client, exported):
    job_id, _, child_id = seed_results(client, exported)
    sessions = client.app.state.sessions
    task_store.enqueue_task(sessions, job_id, child_id, "host", {"prefill_lengths": [16]})
    _, auth = enroll(client)
    _, idle = enroll(client, model="SM-S928B", name="idle")  # nothing queued for its class
    seen = count_database_work(client.app.state.engine)
    task = client.post("/api/v1/tasks/lease", headers=auth).json()["task"]
    assert task["candidate_id"] == child_id and task["artifacts"]
    assert seen == {"checkouts": 3, "commits": 1}
    seen.clear()
    assert client.post("/api/v1/tasks/lease", headers=idle).json() == {"task": None}
    assert seen == {"checkouts": 2}  # nothing queued for its class: two reads, no transaction
    seen.clear()
    # at its lease cap (max_leases_per_device=1) with nothing queued: still the Conflict
    # that tells an agent which forgot its lease to hand it back
    held = client.post("/api/v1/tasks/lease", headers=auth)
    assert held.status_code == 409 and "already holds 1 lease" in held.json()["detail"]
