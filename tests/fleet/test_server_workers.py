"""`tailor serve --workers N`: several server processes on one port over PostgreSQL (one
process worked through a lab's bursts of lease calls under one interpreter lock:
bench/README, "Device lab under load"), refused on SQLite with a one-line error."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from store.engine import make_engine, session_factory

from .jobs import enqueue_work, submit_jobs
from .server import ADMIN_KEY, ENROLL_TOKEN, ROOT, ServerProcess
from .test_fleet_fixes import PROPS


def spawned_workers(server: ServerProcess) -> list[int]:
    """The pids of the server's worker processes (multiprocessing's spawned children)."""
    found = []
    for pid, _ in server.processes():
        try:
            command = open(f"/proc/{pid}/cmdline", "rb").read()
        except OSError:
            continue
        if b"spawn_main" in command:
            found.append(pid)
    return found


def server_log(workdir) -> str:
    return (workdir / "server.log").read_text(errors="replace")


def serving(workdir) -> list[int]:
    """The pids of the worker processes that said they serve (uvicorn's log line)."""
    return [int(p) for p in re.findall(r"Started server process \[(\d+)\]", server_log(workdir))]


@pytest.fixture
def postgres_url(postgres_database) -> str:
    return postgres_database[1]


def test_two_workers_serve_one_port_share_the_queue_and_die_together(postgres_url, tmp_path):
    server = ServerProcess(tmp_path, postgres_url, {}, workers=2)
    server.start()
    try:
        workers = spawned_workers(server)
        assert len(workers) == 2
        deadline = time.monotonic() + 60  # the API answered once one worker was up
        while len(started := serving(tmp_path)) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert sorted(started) == sorted(workers)  # each serving, not just alive
        jobs = submit_jobs(server.url, 1)
        engine = make_engine(postgres_url)
        enqueue_work(
            session_factory(engine), tmp_path / "server" / "artifacts", tmp_path, jobs, 6, ["h"]
        )
        engine.dispose()

        def lease_one(name: str) -> int:
            """A device of its own, on connections of its own (so both workers answer)."""
            with httpx.Client(base_url=f"{server.url}/api/v1", timeout=30) as http:
                body = {
                    "enroll_token": ENROLL_TOKEN,
                    "name": name,
                    "properties": {**PROPS, "model": "h"},
                }
                token = http.post("/devices/enroll", json=body).json()["device_token"]
                auth = {"Authorization": f"Bearer {token}"}
                assert http.post("/devices/heartbeat", headers=auth).status_code == 200
                return http.post("/tasks/lease", headers=auth).json()["task"]["task_id"]

        with ThreadPoolExecutor(6) as pool:
            leased = list(pool.map(lease_one, [f"d{i}" for i in range(6)]))
        assert sorted(leased) == sorted(set(leased)) and len(leased) == 6  # each once
        admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
        for _ in range(6):  # new connections, whichever worker takes them: one admin key
            assert httpx.get(f"{server.url}/api/v1/jobs", headers=admin).status_code == 200
        server.kill9()
        deadline = time.monotonic() + 10
        while server.processes() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert server.processes() == []  # no worker outlives a killed server
        server.restart()
        assert httpx.get(f"{server.url}/api/v1/jobs", headers=admin).status_code == 200
    finally:
        server.stop()


def test_workers_get_the_flags_settings_and_the_one_generated_admin_key(postgres_url, tmp_path):
    """Flags, not TAILOR_* variables, and no admin key: every worker must serve the same
    database, enrollment token and data folder (where the one admin key is generated)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TAILOR_", "RAY_"))}
    server = ServerProcess(tmp_path, postgres_url, {}, workers=2)  # for its port and log
    data = tmp_path / "data"
    flags = ["--database-url", postgres_url, "--enroll-token", "flag-token"]
    flags += ["--data-dir", str(data), "--port", str(server.port), "--workers", "2"]
    with open(tmp_path / "server.log", "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "cli.main", "serve", *flags],
            env=env,
            cwd=tmp_path,  # not the checkout: a worker falling back to ./data would differ
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server.proc = proc
    try:
        deadline = time.monotonic() + 60
        while len(serving(tmp_path)) < 2:
            assert proc.poll() is None and time.monotonic() < deadline, server_log(tmp_path)
            time.sleep(0.2)
        key = (data / "admin_key").read_text().strip()
        for i in range(8):  # fresh connections, whichever worker takes each
            answer = httpx.get(
                f"{server.url}/api/v1/jobs", headers={"Authorization": f"Bearer {key}"}
            )
            assert answer.status_code == 200, answer.text
            body = {"enroll_token": "flag-token", "name": f"p{i}", "properties": PROPS}
            enrolled = httpx.post(f"{server.url}/api/v1/devices/enroll", json=body)
            assert enrolled.status_code == 201, enrolled.text
    finally:
        server.stop()


def test_several_workers_on_sqlite_are_refused_in_one_line(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TAILOR_", "RAY_"))}
    run = subprocess.run(
        [sys.executable, "-m", "cli.main", "serve", "--workers", "2"],
        env={**env, "TAILOR_DATA_DIR": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert run.returncode == 2
    assert run.stderr.strip().splitlines() == [
        "error: --workers 2 needs PostgreSQL (--database-url): SQLite takes one writer at a "
        "time, and its writers queue in order only within one process"
    ]


def test_leases_run_their_length_from_when_a_worker_serves_again(postgres_url, tmp_path):
    """A server killed for longer than a lease, restarted with two workers: the lease is
    still its agent's, however long the workers took to import everything (seconds on a busy
    machine) after their supervisor started. Extended by the supervisor only, before that,
    a 2 s lease had run out by the time a worker answered (bench/README, tenth runs)."""
    server = ServerProcess(tmp_path, postgres_url, {"TAILOR_LEASE_SECONDS": "2"}, workers=2)
    server.start()
    try:
        jobs = submit_jobs(server.url, 1)
        engine = make_engine(postgres_url)
        enqueue_work(
            session_factory(engine), tmp_path / "server" / "artifacts", tmp_path, jobs, 1, ["h"]
        )
        engine.dispose()

        def call(path: str, token: str | None = None) -> httpx.Response:
            auth = {"Authorization": f"Bearer {token}"} if token else {}
            return httpx.post(f"{server.url}/api/v1{path}", headers=auth, timeout=30)

        def enroll(name: str) -> str:
            properties = {**PROPS, "model": "h"}
            body = {"enroll_token": ENROLL_TOKEN, "name": name, "properties": properties}
            answer = httpx.post(f"{server.url}/api/v1/devices/enroll", json=body, timeout=30)
            return answer.json()["device_token"]

        a, b = enroll("a"), enroll("b")
        assert call("/tasks/lease", a).json()["task"] is not None
        server.kill9()
        time.sleep(3.0)  # longer than the lease
        server.restart()  # returns when a worker answers
        assert call("/tasks/lease", b).json()["task"] is None  # a's lease ran again
        assert call("/devices/heartbeat", a).status_code == 200
    finally:
        server.stop()
