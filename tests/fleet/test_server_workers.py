"""`tailor serve --workers N`: several server processes on one port over PostgreSQL (one
process worked through a lab's bursts of lease calls under one interpreter lock:
bench/README, "Device lab under load"), refused on SQLite with a one-line error."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from sqlalchemy import text

from store.engine import make_engine, session_factory

from .jobs import enqueue_work, submit_jobs
from .server import ADMIN_KEY, ENROLL_TOKEN, ROOT, ServerProcess
from .test_fleet_fixes import PROPS


@pytest.fixture
def postgres_url(postgres_server):
    server, reason = postgres_server
    if server is None:
        pytest.skip(f"PostgreSQL run skipped: {reason}")
    admin = make_engine(server.url)
    with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("DROP DATABASE IF EXISTS workers"))
        conn.execute(text("CREATE DATABASE workers"))
    admin.dispose()
    return server.url.rsplit("/", 1)[0] + "/workers"


def test_two_workers_serve_one_port_share_the_queue_and_die_together(postgres_url, tmp_path):
    server = ServerProcess(tmp_path, postgres_url, {}, workers=2)
    server.start()
    try:
        assert len(server.processes()) >= 3  # the supervisor and its two workers
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
        time.sleep(0.5)
        assert server.processes() == []  # no worker outlives a killed server
        server.restart()
        assert httpx.get(f"{server.url}/api/v1/jobs", headers=admin).status_code == 200
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
