"""A lease call puts expired leases back in the queue in a transaction of its own, so what
it puts back stays back whatever the call then meets (here the Conflict of a device at its
lease cap, which rolls the lease's own transaction back)."""

from __future__ import annotations

import time

import pytest

from store import Conflict, devices, jobs, leasing, results, tasks, transaction
from store.models import ProfilingTask


def test_an_expired_lease_is_requeued_by_a_call_that_ends_in_a_conflict(sessions):
    job = jobs.create_job(sessions, "expiry", {})
    rows = results.add_candidates(
        sessions, job.id, 0, [{"genome": {}, "genome_hash": f"{i:08x}"} for i in range(2)]
    )
    for row in rows:
        tasks.enqueue_task(sessions, job.id, row.id, "host", {})
    a, b = (devices.enroll_device(sessions, n, {"model": "host"})[0] for n in ("a", "b"))
    lapsing = leasing.lease_task(sessions, b, 0.05, max_leases=1)
    assert leasing.lease_task(sessions, a, 300, max_leases=1) is not None
    time.sleep(0.2)  # b's lease runs out
    with pytest.raises(Conflict):
        leasing.lease_task(sessions, a, 300, max_leases=1)  # a is at its cap
    with transaction(sessions) as s:
        assert s.get(ProfilingTask, lapsing.id).state == "queued"
