"""The fixes the fleet runs forced, each pinned by a fast test of its own:

- a restarted agent's first heartbeat (the one carrying its properties) and a re-enrollment
  hand back, uncounted, the leases its dead process held (the restart storm lost them:
  the new process's heartbeats renewed them forever);
- an agent sends a task's outcome until the server answers (a cut link or a killed server
  lost reports: the task stayed leased to a live agent), and stops at a final 4xx;
- the runner loop's keep-alive no longer holds the phone's shell open after the runner
  ends (every (graph, L) case idled up to 2 s);
- a server that restarts gives every open lease its length again, and a lease whose clock
  ran out while its agent could not reach the server stays its agent's until someone else
  takes it (5 tasks were measured twice on PostgreSQL with every fault: their leases ran
  out while the server was down and went to other devices at its first lease call);
- every answer says how long the server held it (`Server-Timing`), so the fleet's latency
  tails split into the server's share and the rest;
- a heartbeat is one transaction besides its token's lookup (it was three, each queued on
  SQLite's one writer: half a lab's requests are heartbeats);
- a lease whose answer the agent never got is handed back and measured once (the agent's
  heartbeats renewed it forever and every later lease call got 409: never measured).
"""

from __future__ import annotations

import re
import subprocess
import threading
import time
from datetime import timedelta

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, update

from api.app import create_app
from core.protocol import DeviceProperties, MeasurementReport
from device_agent.agent import Agent
from device_agent.client import ServerError
from device_agent.delivery import Undelivered, deliver
from device_agent.perf_command import ALIVE_EVERY_S, loop_command
from store import results as result_store
from store import tasks as task_store
from store import transaction
from store.artifacts import store_artifacts
from store.models import Measurement, ProfilingTask, as_utc, utcnow
from store.task_results import task_results
from tests.api.conftest import client  # noqa: F401  (the API fixture, SQLite and PostgreSQL)
from tests.api.test_api import measurement_report
from tests.database_work import count_database_work
from tests.device_agent.graphs import write_graphs

from .proxy import SERVER_TIMING, server_parts

ADMIN = {"Authorization": "Bearer admin-secret"}
PROPS = {"backend": "host", "model": "host", "cpu_count": 2, "ram_bytes": 1 << 30}
READY = {"ready": True}


def enroll(api, name="phone"):
    body = {"enroll_token": "enroll-secret", "name": name, "properties": PROPS}
    answer = api.post("/api/v1/devices/enroll", json=body)
    assert answer.status_code == 201, answer.text
    return {"Authorization": f"Bearer {answer.json()['device_token']}"}


def seed_task(api, tmp_path) -> int:
    """A job with one candidate whose graphs wait for a `host` device; its candidate id."""
    sessions = api.app.state.sessions
    spec = {"name": "fleet", "objectives": ["perplexity", "params"]}
    job_id = api.post("/api/v1/jobs", json=spec, headers=ADMIN).json()["id"]
    write_graphs(tmp_path / "graphs", "c" * 16)
    files = {p.name: p.read_bytes() for p in (tmp_path / "graphs").iterdir()}
    [candidate] = result_store.add_candidates(
        sessions, job_id, 0, [{"genome": {"layers": []}, "genome_hash": "c" * 16}]
    )
    store_artifacts(sessions, api.app.state.artifact_dir, "c" * 16, files)
    task_store.enqueue_task(
        sessions, job_id, candidate.id, "host", {"prefill_lengths": [16], "decode_contexts": [16]}
    )
    return candidate.id


def test_a_restarted_agent_hands_back_the_leases_its_dead_process_held(client, tmp_path):  # noqa: F811
    candidate_id = seed_task(client, tmp_path)
    auth = enroll(client)
    sessions = client.app.state.sessions
    assert client.post("/api/v1/tasks/lease", headers=auth).json()["task"] is not None
    assert client.post("/api/v1/devices/heartbeat", headers=auth).status_code == 200
    [row] = task_results(sessions, [candidate_id])
    assert row["state"] == "leased" and row["attempts"] == 1  # a plain beat renews it

    restarted = client.post("/api/v1/devices/heartbeat", headers=auth, json={"properties": PROPS})
    assert restarted.status_code == 200
    [row] = task_results(sessions, [candidate_id])
    assert row["state"] == "queued" and row["attempts"] == 0
    assert "agent restarted" in row["last_error"]

    assert client.post("/api/v1/tasks/lease", headers=auth).json()["task"] is not None
    again = enroll(client)  # a lost token: enrolling again is a restart too
    [row] = task_results(sessions, [candidate_id])
    assert row["state"] == "queued" and row["attempts"] == 0
    task = client.post("/api/v1/tasks/lease", headers=again).json()["task"]
    assert task["attempt"] == 1


def lease_ran_out(sessions, candidate_id: int) -> None:
    """The task's lease clock ran out a second ago (its agent was silent a whole lease)."""
    with transaction(sessions) as s:
        s.execute(
            update(ProfilingTask)
            .where(ProfilingTask.candidate_id == candidate_id)
            .values(lease_expires_at=utcnow() - timedelta(seconds=1))
        )


def test_a_server_restart_gives_every_lease_its_length_again(client, tmp_path):  # noqa: F811
    """Phone A holds a task when the server goes down for longer than the lease; B asks for
    work first once it is back. B gets nothing (A could not renew while the server was
    away) until A has been silent for a whole lease since the restart."""
    candidate_id = seed_task(client, tmp_path)
    a, b = enroll(client, "a"), enroll(client, "b")
    assert client.post("/api/v1/tasks/lease", headers=a).json()["task"] is not None
    sessions = client.app.state.sessions
    lease_ran_out(sessions, candidate_id)  # the server is down longer than the lease

    with TestClient(create_app(client.app.state.settings)) as restarted:
        assert restarted.post("/api/v1/tasks/lease", headers=b).json()["task"] is None
        [row] = task_results(sessions, [candidate_id])
        assert row["state"] == "leased" and row["attempts"] == 1

        lease_ran_out(sessions, candidate_id)  # A silent for a whole lease after the restart
        task = restarted.post("/api/v1/tasks/lease", headers=b).json()["task"]
        assert task is not None and task["attempt"] == 2  # handed on: A is gone
        late = restarted.post(
            f"/api/v1/tasks/{task['task_id']}/report", headers=a, json=measurement_report()
        )
        assert late.status_code == 409


def test_a_lapsed_lease_nobody_took_is_still_its_agents(client, tmp_path):  # noqa: F811
    """A's link was down longer than the lease, and no lease call came in between: its next
    heartbeat renews the lease, B gets nothing, and A's measurement is the one stored."""
    candidate_id = seed_task(client, tmp_path)
    a, b = enroll(client, "a"), enroll(client, "b")
    task = client.post("/api/v1/tasks/lease", headers=a).json()["task"]
    lease_ran_out(client.app.state.sessions, candidate_id)

    assert client.post("/api/v1/devices/heartbeat", headers=a).status_code == 200
    assert client.post("/api/v1/tasks/lease", headers=b).json()["task"] is None
    done = client.post(
        f"/api/v1/tasks/{task['task_id']}/report", headers=a, json=measurement_report()
    )
    assert done.status_code == 200 and done.json()["state"] == "done"


def test_a_lease_outlives_a_server_killed_for_longer_than_the_lease(tmp_path):
    """The same with the real `tailor serve` killed with SIGKILL (3 s leases, down 4 s)."""
    from store.engine import make_engine, session_factory

    from .jobs import enqueue_work, submit_jobs
    from .server import ENROLL_TOKEN, ServerProcess

    url = f"sqlite:///{tmp_path / 'tailor.db'}"
    server = ServerProcess(tmp_path, url, {"TAILOR_LEASE_SECONDS": "3"})
    server.start()
    engine = make_engine(url)
    try:
        jobs = submit_jobs(server.url, 1)
        artifacts = tmp_path / "server" / "artifacts"
        enqueue_work(session_factory(engine), artifacts, tmp_path, jobs, 1, ["host"])

        def call(path: str, token: str | None = None, body: dict | None = None) -> httpx.Response:
            auth = {"Authorization": f"Bearer {token}"} if token else {}
            return httpx.post(f"{server.url}/api/v1{path}", headers=auth, json=body, timeout=30)

        a, b = (
            call(
                "/devices/enroll",
                body={"enroll_token": ENROLL_TOKEN, "name": n, "properties": PROPS},
            ).json()["device_token"]
            for n in ("a", "b")
        )
        task = call("/tasks/lease", a).json()["task"]
        server.kill9()
        time.sleep(4.0)  # longer than the lease
        server.restart()
        assert call("/tasks/lease", b).json()["task"] is None
        assert call("/devices/heartbeat", a).status_code == 200
        stat = measurement_report()["prefill"][0]
        report = measurement_report(decode=[{**stat, "length": 24}])
        done = call(f"/tasks/{task['task_id']}/report", a, report)
        assert done.status_code == 200 and done.json()["state"] == "done", done.text
    finally:
        server.stop()
        engine.dispose()


def test_every_answer_says_how_long_the_server_held_it_and_where(client):  # noqa: F811
    """What bench.fleet reads as the server's share of a lease's or heartbeat's latency, and
    the parts of it: the wait for the request's body, for a request thread, SQL time,
    SQLite's write-lock queue."""
    timing = client.get("/api/v1/health").headers["server-timing"]
    assert re.match(r"app;dur=\d+\.\d\d(, [a-z]+;dur=\d+\.\d\d)*$", timing), timing
    assert SERVER_TIMING.search(b"HTTP/1.1 200 OK\r\nServer-Timing: " + timing.encode())
    device = enroll(client)
    answer = client.post("/api/v1/devices/heartbeat", json={"readiness": READY}, headers=device)
    assert answer.status_code == 200, answer.text
    head = b"HTTP/1.1 200 OK\r\nServer-Timing: " + answer.headers["server-timing"].encode()
    parts = server_parts(head, SERVER_TIMING.search(head).start())
    assert {"app", "body", "thread", "db"} <= set(parts), parts
    assert parts["thread"] <= parts["app"] and 0 < parts["db"] <= parts["app"]
    assert parts["body"] <= parts["app"]
    sqlite = client.app.state.sessions.kw["bind"].dialect.name == "sqlite"
    assert ("dblock" in parts) == sqlite  # a heartbeat writes: on SQLite it queued first


def test_an_outcome_is_sent_until_the_server_answers():
    answers = [httpx.ConnectError("refused"), ServerError(503, "starting"), "ack"]

    def send():
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    assert deliver(send, "report", threading.Event(), backoff_s=(0.01, 0.02)) == "ack"
    assert answers == []


def test_a_final_answer_or_a_stop_ends_the_delivery():
    def conflict():
        raise ServerError(409, "device 3 does not hold the lease of task 9")

    with pytest.raises(ServerError) as refused:
        deliver(conflict, "report", threading.Event(), backoff_s=(0.01, 0.02))
    assert refused.value.status == 409

    stop = threading.Event()

    def unreachable():
        stop.set()  # the agent is told to stop while the server is away
        raise httpx.ConnectError("refused")

    with pytest.raises(Undelivered):
        deliver(unreachable, "report", stop, backoff_s=(0.01, 0.02))


def test_the_runner_loop_ends_when_its_runner_does(tmp_path):
    """Its keep-alive's sleep held the shell's output open: every case waited out up to
    ALIVE_EVERY_S after the runner had finished."""
    command = loop_command("/bin/true", str(tmp_path), "model.onnx", 2, 1, 1, None)
    started = time.monotonic()
    out = subprocess.run(["sh", "-c", command], capture_output=True, text=True, timeout=30)
    assert out.stdout.count("rc=0") == 2
    assert time.monotonic() - started < ALIVE_EVERY_S  # two runner processes, no idle wait


def commits(api: TestClient, path: str, auth: dict, body: dict) -> int:
    """How many transactions the request committed."""
    seen = count_database_work(api.app.state.engine)
    assert api.post(path, headers=auth, json=body).status_code == 200
    return seen["commits"]


def test_a_heartbeat_is_one_transaction(client, tmp_path):  # noqa: F811
    """Last seen, readiness, the renewal and (with properties) the hand-back in one commit;
    the token is looked up outside any transaction (store.single_read)."""
    candidate_id = seed_task(client, tmp_path)
    auth = enroll(client)
    assert client.post("/api/v1/tasks/lease", headers=auth).json()["task"] is not None
    lease_ran_out(client.app.state.sessions, candidate_id)
    beat = "/api/v1/devices/heartbeat"
    assert commits(client, beat, auth, {"readiness": READY}) == 1
    with transaction(client.app.state.sessions) as s:
        task = s.scalar(select(ProfilingTask).where(ProfilingTask.candidate_id == candidate_id))
        assert task.state == "leased" and as_utc(task.lease_expires_at) > utcnow()  # renewed
    assert commits(client, beat, auth, {"properties": PROPS, "readiness": READY}) == 1
    [row] = task_results(client.app.state.sessions, [candidate_id])
    assert row["state"] == "queued" and row["attempts"] == 0  # handed back, uncounted
    [device] = client.get("/api/v1/devices").json()
    assert device["ready"] and device["online"]


class LeaseAnswerLost:
    """The agent's link to the app: the first lease call reaches the server and is
    committed, and its answer is lost (`cut`: the link breaks, as a server killed right
    after the commit or a cut cable does) or never comes back before the next call does
    (`late`: that call is refused with 409, the device already holding its one lease)."""

    def __init__(self, api: TestClient, how: str):
        self.api, self.how, self.lost = api, how, False

    def post(self, path: str, **kwargs) -> httpx.Response:
        kwargs.pop("timeout", None)
        answer = self.api.post(path, **kwargs)
        if path.endswith("/tasks/lease") and not self.lost:
            self.lost = True
            if self.how == "cut":
                raise httpx.ReadError("the link was cut before the answer arrived")
            answer = self.api.post(path, **kwargs)
        return answer

    def get(self, url: str, **kwargs) -> httpx.Response:
        return self.api.get(url, **kwargs)


@pytest.mark.parametrize("how", ["cut", "late"])
def test_a_lease_whose_answer_was_lost_is_measured_once(client, tmp_path, how):  # noqa: F811
    candidate_id = seed_task(client, tmp_path)
    agent = Agent(
        "http://testserver",
        "enroll-secret",
        "phone",
        DeviceProperties(**PROPS),
        lambda _graphs, _task: MeasurementReport.model_validate(measurement_report()),
        tmp_path / "agent",
        poll_s=0.05,
    )
    agent.client.http = LeaseAnswerLost(client, how)
    timer = threading.Timer(15.0, agent.stop.set)  # before the fix: 409 until stopped
    timer.start()
    try:
        agent.run(max_tasks=1)
    finally:
        timer.cancel()
    assert agent.completed == 1
    [row] = task_results(client.app.state.sessions, [candidate_id])
    assert row["state"] == "done" and row["attempts"] == 1  # the lost lease went uncounted
    with transaction(client.app.state.sessions) as s:
        assert s.scalar(select(func.count(Measurement.id))) == 1


def test_synchronous_routes_run_on_the_configured_number_of_threads(client):  # noqa: F811
    """`request_threads` (default 8, not anyio's 40): fifty agents' burst of lease calls
    thrashed 40 threads on one interpreter lock, and each write-lock holder waited its turns
    (a lease p99 of about 1 s in the fleet run, nearly all of it queued for SQLite's writer)."""
    import anyio.to_thread

    from api.settings import Settings

    def tokens() -> float:
        return anyio.to_thread.current_default_thread_limiter().total_tokens

    assert client.portal.call(tokens) == client.app.state.settings.request_threads == 8
    with pytest.raises(ValueError, match="request_threads"):
        Settings(request_threads=0)
