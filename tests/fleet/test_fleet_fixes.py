"""The fixes the fleet runs forced, each pinned by a fast test of its own:

- a restarted agent's first heartbeat (the one carrying its properties) and a re-enrollment
  hand back, uncounted, the leases its dead process held (the restart storm lost them:
  the new process's heartbeats renewed them forever);
- an agent sends a task's outcome until the server answers (a cut link or a killed server
  lost reports: the task stayed leased to a live agent), and stops at a final 4xx;
- the runner loop's keep-alive no longer holds the phone's shell open after the runner
  ends (every (graph, L) case idled up to 2 s).
"""

from __future__ import annotations

import subprocess
import threading
import time

import httpx
import pytest

from device_agent.client import ServerError
from device_agent.delivery import Undelivered, deliver
from device_agent.perf_command import ALIVE_EVERY_S, loop_command
from store import results as result_store
from store import tasks as task_store
from store.artifacts import store_artifacts
from store.task_results import task_results
from tests.api.conftest import client  # noqa: F401  (the API fixture, SQLite and PostgreSQL)
from tests.device_agent.graphs import write_graphs

ADMIN = {"Authorization": "Bearer admin-secret"}
PROPS = {"backend": "host", "model": "host", "cpu_count": 2, "ram_bytes": 1 << 30}


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
