"""The enrollment rate limit holds over every server process (`tailor serve --workers N`):
attempts are counted in the database, so two apps over one database share one limit, and
concurrent attempts from several processes' connections never let more through."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

from fastapi.testclient import TestClient

from api.app import create_app
from api.auth import EnrollLimit, limit_key
from store import enrollment_limit, transaction
from store.engine import make_engine, session_factory
from store.models import EnrollAttempt, utcnow
from tests.database_work import count_database_work

from .test_hardening import PROPS, settings_for

BODY = {"enroll_token": "guess", "name": "x", "properties": PROPS}


def attempt(client: TestClient) -> int:
    return client.post("/api/v1/devices/enroll", json=BODY).status_code


def test_two_server_processes_share_one_enrollment_limit(database_url, tmp_path):
    settings = settings_for(database_url, tmp_path, enroll_attempts_per_minute=3)
    peer = ("10.1.2.3", 5000)
    with (
        TestClient(create_app(settings), client=peer) as one,
        TestClient(create_app(settings, migrate=False), client=peer) as two,
    ):
        assert [attempt(one), attempt(two), attempt(one)] == [403, 403, 403]  # wrong token
        assert attempt(two) == 429 and attempt(one) == 429  # the fourth, on either
    with TestClient(create_app(settings, migrate=False), client=("10.1.2.4", 5000)) as other:
        assert attempt(other) == 403  # another address counts apart


def test_attempts_leave_the_count_after_a_minute(sessions):
    for _ in range(2):
        assert enrollment_limit.take_attempt(sessions, "10.0.0.1", 2) is None
    wait = enrollment_limit.take_attempt(sessions, "10.0.0.1", 2)
    # until the earliest leaves the window: the three calls take milliseconds; 30 s of
    # slack covers a stalled CI machine without accepting a wrong window (0 or 120 s)
    assert enrollment_limit.WINDOW_S - 30 < wait <= enrollment_limit.WINDOW_S
    with transaction(sessions) as s:  # as if a minute had passed since both
        for row in s.query(EnrollAttempt):
            row.at = utcnow() - timedelta(seconds=enrollment_limit.WINDOW_S + 1)
    assert enrollment_limit.take_attempt(sessions, "10.0.0.1", 2) is None
    with transaction(sessions) as s:  # the old ones went as the new one was counted
        assert s.query(EnrollAttempt).count() == 1


def test_concurrent_attempts_over_several_connections_let_exactly_the_limit_through(
    database_url, sessions
):
    """Forty attempts from one address at once, over two engines (as two server processes):
    exactly the limit pass (PostgreSQL: the advisory lock; SQLite: the write lock)."""
    other = make_engine(database_url)
    try:
        factories = [sessions, session_factory(other)]
        with ThreadPoolExecutor(8) as pool:
            passed = list(
                pool.map(
                    lambda i: (
                        enrollment_limit.take_attempt(factories[i % 2], "10.0.0.9", 7) is None
                    ),
                    range(40),
                )
            )
    finally:
        other.dispose()
    assert sum(passed) == 7


def test_a_flood_over_several_processes_costs_each_one_transaction(database_url, tmp_path):
    """Once the database refused an address, the process refuses it by itself until the
    window frees (with that wait in Retry-After): a flood from one address, spread over
    the workers so that none let the limit through alone, costs each worker one
    transaction, not one per request (SQLite's one writer is what leases wait for)."""
    settings = settings_for(database_url, tmp_path, enroll_attempts_per_minute=2)
    peer = ("10.1.2.5", 5000)
    with (
        TestClient(create_app(settings), client=peer) as one,
        TestClient(create_app(settings, migrate=False), client=peer) as two,
    ):
        assert [attempt(one), attempt(two)] == [403, 403]
        seen = [count_database_work(app.app.state.engine) for app in (one, two)]
        assert [attempt(one), attempt(two)] == [429, 429]  # each asked the database once
        asked = [dict(s) for s in seen]
        assert [s["commits"] for s in asked] == [1, 1]
        flood = [one.post("/api/v1/devices/enroll", json=BODY) for _ in range(10)]
        flood += [two.post("/api/v1/devices/enroll", json=BODY) for _ in range(10)]
        assert {r.status_code for r in flood} == {429}
        assert all(1 <= int(r.headers["Retry-After"]) <= 60 for r in flood)
        assert [dict(s) for s in seen] == asked  # the flood: no statement, no commit


def test_ipv6_addresses_count_by_their_64():
    assert limit_key("2001:db8:1:2:aaaa::1") == limit_key("2001:db8:1:2:bbbb::2")
    assert limit_key("2001:db8:1:2::1") != limit_key("2001:db8:1:3::1")
    assert limit_key("::ffff:10.0.0.1") == limit_key("10.0.0.1") == "10.0.0.1"
    assert limit_key("testclient") == "testclient"


def test_the_process_forgets_addresses_whose_minute_is_over(sessions):
    limit = EnrollLimit(sessions, 2)
    limit.SWEEP_AT = 3
    for i in range(4):
        limit.check(f"10.0.1.{i}")
    limit.check("10.0.1.0")  # its second attempt: its newest is recent, its oldest is not
    for key, window in limit.passed.items():  # as if a minute had passed since each
        window[0] -= enrollment_limit.WINDOW_S + 1
        if key != "10.0.1.0":
            window[-1] -= enrollment_limit.WINDOW_S + 1
    limit.swept_at = -1e9
    limit.check("10.0.1.9")  # more than SWEEP_AT remembered: the expired ones go
    assert set(limit.passed) == {"10.0.1.0", "10.0.1.9"}
