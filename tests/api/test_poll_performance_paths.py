"""The cheap paths of dashboard polling (`api.poll_cache`, `store.polling.poll_version`):
shared version reads, the memo window, the SQLite change marker, and that none of them
hides a change from a poller."""

from __future__ import annotations

import asyncio
import threading

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.poll_cache import VersionFlights
from api.settings import Settings
from store import jobs as job_store
from store import polling
from store import results as result_store
from store.engine import make_engine, session_factory

ADMIN = {"Authorization": "Bearer admin-secret"}
SPEC = {
    "name": "tiny",
    "objectives": ["perplexity", "params"],
    "evolution": {"population": 4, "generations": 2},
}


@pytest.fixture
def client(database_url, tmp_path):
    settings = Settings(database_url=database_url, data_dir=tmp_path, admin_key="admin-secret")
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def test_a_burst_shares_reads_and_each_request_gets_a_read_begun_after_it_arrived():
    flights = VersionFlights()
    state = {"value": 0}
    started: list[int] = []
    gate = threading.Event()

    def read():
        seen = state["value"]  # what the database holds when the read begins
        started.append(seen)
        gate.wait(5)
        return seen

    async def burst():
        first = asyncio.ensure_future(flights.get("job", read))
        while not started:  # the first read is in flight
            await asyncio.sleep(0.001)
        state["value"] = 1  # a change after that read began
        later = [asyncio.ensure_future(flights.get("job", read)) for _ in range(20)]
        await asyncio.sleep(0.01)
        gate.set()
        return await first, await asyncio.gather(*later)

    first, later = asyncio.run(burst())
    assert first == 0
    assert later == [1] * 20  # none of them was answered by the read begun before it came
    assert flights.reads == 2 and flights.requests == 21


def test_a_failed_read_is_raised_to_every_request_it_answers_and_not_remembered():
    flights = VersionFlights(ttl_s=60)
    calls = []

    def read():
        calls.append(1)
        if len(calls) == 1:
            raise LookupError("gone")
        return "v"

    async def run():
        with pytest.raises(LookupError):
            await flights.get("job", read)
        return await flights.get("job", read)

    assert asyncio.run(run()) == "v" and len(calls) == 2


def test_the_memo_window_delays_a_change_by_at_most_its_length():
    flights = VersionFlights(ttl_s=0.2)
    state = {"value": 0}

    async def run():
        assert await flights.get("job", lambda: state["value"]) == 0
        state["value"] = 1
        assert await flights.get("job", lambda: state["value"]) == 0  # within the window
        await asyncio.sleep(0.25)
        assert await flights.get("job", lambda: state["value"]) == 1  # after it

    asyncio.run(run())
    exact = VersionFlights()  # the default: no window

    async def run_exact():
        state["value"] = 2
        assert await exact.get("job", lambda: state["value"]) == 2
        state["value"] = 3
        assert await exact.get("job", lambda: state["value"]) == 3

    asyncio.run(run_exact())


def test_poll_version_is_memoised_until_anything_commits(sessions):
    job = job_store.create_job(sessions, "memo", {"objectives": ["params"]})
    first = polling.poll_version(sessions, job.id)
    sqlite = sessions.kw["bind"].url.get_backend_name() == "sqlite"
    unchanged = polling.poll_version_if_unchanged(sessions, job.id)
    assert unchanged == (first if sqlite else None)  # PostgreSQL: no marker, always a query
    # Another engine (as the orchestrator, another process) commits: seen at once.
    other_engine = make_engine(str(sessions.kw["bind"].url.render_as_string(False)))
    other = session_factory(other_engine)
    [c] = result_store.add_candidates(other, job.id, 0, [{"genome": {}, "genome_hash": "x"}])
    assert polling.poll_version_if_unchanged(sessions, job.id) is None
    born = polling.poll_version(sessions, job.id)
    assert born[3:] == (1, 0) and born != first
    result_store.set_candidate_result(other, c.id, "done", {"params": 1})
    assert polling.poll_version(sessions, job.id)[3:] == (1, 1)
    result_store.write_generation(other, job.id, 0, [c.id], [c.id], 0.1, 1)
    assert polling.poll_version(sessions, job.id)[1:] == (1, 0, 0, 0)
    job_store.request_cancel(other, job.id)
    assert polling.poll_version(sessions, job.id)[0] != "queued"
    other_engine.dispose()


def test_a_replaced_database_file_is_not_taken_for_an_unchanged_one(tmp_path):
    from store.engine import upgrade

    path = tmp_path / "db.sqlite"
    engine = make_engine(f"sqlite:///{path}")
    upgrade(engine)
    sessions = session_factory(engine)
    job = job_store.create_job(sessions, "replaced", {"objectives": ["params"]})
    polling.poll_version(sessions, job.id)
    assert polling.poll_version_if_unchanged(sessions, job.id) is not None
    engine.dispose()
    copy = tmp_path / "copy.sqlite"
    copy.write_bytes(path.read_bytes())
    path.unlink()
    copy.rename(path)  # the same content in a new file
    assert polling.poll_version_if_unchanged(sessions, job.id) is None
    engine.dispose()


def test_pollers_see_every_candidate_born_and_finished_and_every_generation(client):
    """Through the API, with the writer on another engine: each change is a new ETag at
    once (no memo window by default), and the body then carries it."""
    sessions = client.app.state.sessions
    job_id = client.post("/api/v1/jobs", json=SPEC, headers=ADMIN).json()["id"]
    other_engine = make_engine(sessions.kw["bind"].url.render_as_string(False))
    other = session_factory(other_engine)
    url = f"/api/v1/jobs/{job_id}/generations"
    tags = {"g": None, "p": None}

    def poll(since):
        headers = {"If-None-Match": tags["g"]} if tags["g"] else {}
        r = client.get(url, params={"since": since}, headers=headers)
        assert r.status_code in (200, 304)
        tags["g"] = r.headers["etag"]
        return r

    assert poll(0).json()["generations"] == []
    assert poll(0).status_code == 304
    [a] = result_store.add_candidates(other, job_id, 0, [{"genome": {}, "genome_hash": "a"}])
    assert poll(0).status_code == 200  # a new ETag (candidates show with a generation)
    assert poll(0).status_code == 304
    result_store.set_candidate_result(other, a.id, "done", {"params": 3})
    assert poll(0).status_code == 200
    pareto = client.get(f"/api/v1/jobs/{job_id}/pareto")
    result_store.write_generation(other, job_id, 0, [a.id], [a.id], 0.5, 1)
    written = poll(0)
    assert written.status_code == 200 and [g["index"] for g in written.json()["generations"]] == [0]
    assert [(c["id"], c["status"]) for c in written.json()["candidates"]] == [(a.id, "done")]
    newer = client.get(
        f"/api/v1/jobs/{job_id}/pareto", headers={"If-None-Match": pareto.headers["etag"]}
    )
    assert newer.status_code == 200 and newer.json()["generation"] == 0
    assert (
        client.get(
            f"/api/v1/jobs/{job_id}/pareto", headers={"If-None-Match": newer.headers["etag"]}
        ).status_code
        == 304
    )
    # The next generation's candidates, then the generation: incremental polls get both.
    [b] = result_store.add_candidates(other, job_id, 1, [{"genome": {}, "genome_hash": "b"}])
    # Born after the newest generation: shown (with a generation in the view) while evaluated.
    pending = {c["id"]: c["status"] for c in poll(0).json()["candidates"]}
    assert pending == {a.id: "done", b.id: "pending"}
    result_store.set_candidate_result(other, b.id, "done", {"params": 4})
    assert {c["id"]: c["status"] for c in poll(0).json()["candidates"]}[b.id] == "done"
    result_store.write_generation(other, job_id, 1, [a.id, b.id], [b.id], 0.6, 2)
    last = poll(1).json()
    assert [g["index"] for g in last["generations"]] == [1]
    assert {c["id"] for c in last["candidates"]} == {a.id, b.id}
    assert poll(1).status_code == 304
    job_store.request_cancel(other, job_id)
    assert poll(1).json()["status"] != "queued"
    assert client.get(f"/api/v1/jobs/{job_id + 999}/generations").status_code == 404
    assert client.get(f"/api/v1/jobs/{job_id + 999}/pareto").status_code == 404
    other_engine.dispose()


def test_a_burst_of_unchanged_polls_costs_no_version_query(client, monkeypatch):
    """On SQLite, polls with nothing committed in between are answered from the memo."""
    sessions = client.app.state.sessions
    if sessions.kw["bind"].url.get_backend_name() != "sqlite":
        pytest.skip("the change marker is SQLite's")
    job_id = client.post("/api/v1/jobs", json=SPEC, headers=ADMIN).json()["id"]
    url = f"/api/v1/jobs/{job_id}/generations"
    etag = client.get(url).headers["etag"]
    queries = []
    real = polling.poll_version
    monkeypatch.setattr(polling, "poll_version", lambda *a, **k: queries.append(1) or real(*a, **k))
    for _ in range(20):
        assert client.get(url, headers={"If-None-Match": etag}).status_code == 304
    assert queries == []


def test_concurrent_first_loads_serialise_each_written_candidate_once(sessions, monkeypatch):
    """Dashboards opened together each ask for the whole job, usually at different versions
    (a writer commits in between), so no response cache can share the work: the written
    generations' fragments are filled once, under the job's lock, and the bodies agree."""
    import api.generation_views as views_module
    from api.generation_views import GenerationViews

    job = job_store.create_job(sessions, "burst", SPEC)
    for g in range(4):
        rows = result_store.add_candidates(
            sessions, job.id, g, [{"genome": {}, "genome_hash": f"{g}-{i}"} for i in range(50)]
        )
        for row in rows:
            result_store.set_candidate_result(sessions, row.id, "done", {"params": row.id})
        ids = [r.id for r in rows]
        result_store.write_generation(sessions, job.id, g, ids, ids[:5], 0.5, (g + 1) * 50)
    calls, real = [], views_module._candidate_json

    def slow_json(c):  # widen the window two requests would race in
        calls.append(c.id)
        threading.Event().wait(0.002)
        return real(c)

    monkeypatch.setattr(views_module, "_candidate_json", slow_json)
    views = GenerationViews()
    start = threading.Barrier(6)
    bodies = []

    def first_load():
        start.wait()
        bodies.append(views.body(sessions, job.id, 0, "running", 0))

    threads = [threading.Thread(target=first_load) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(bodies) == 6 and len(set(bodies)) == 1
    assert sorted(calls) == sorted(set(calls)) and len(calls) == 200
