"""A real API server (uvicorn, SQLite) on loopback for agent tests, and seeding a job with
one candidate whose graphs wait to be profiled."""

from __future__ import annotations

import socket
import threading
import time
from contextlib import contextmanager
from pathlib import Path

ADMIN = {"Authorization": "Bearer admin-secret"}
ENROLL = "enroll-secret"


@contextmanager
def serve(tmp_path: Path):
    import uvicorn

    from api.app import create_app
    from api.settings import Settings
    from device_agent.agent import wait_for_server

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    settings = Settings(
        data_dir=tmp_path / "server",
        admin_key="admin-secret",
        enroll_token=ENROLL,
        database_url=f"sqlite:///{tmp_path / 'tailor.db'}",
    )
    (tmp_path / "server").mkdir(exist_ok=True)
    app = create_app(settings)
    uv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=uv.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    wait_for_server(url)
    try:
        yield url, app
    finally:
        uv.should_exit = True
        thread.join(10)


def seed(
    url,
    app,
    genome: dict,
    genome_hash: str,
    files: dict[str, bytes],
    spec: dict,
    device_class: str = "SM-S928B",
) -> int:
    """A submitted job with one candidate, its graphs, and a task for `device_class`."""
    import httpx

    from store import results as result_store
    from store import tasks as task_store
    from store.artifacts import store_artifacts

    sessions = app.state.sessions
    job = httpx.post(
        f"{url}/api/v1/jobs",
        headers=ADMIN,
        json={"name": "agent-test", "objectives": ["perplexity", "params"]},
        timeout=30,
    )
    assert job.status_code in (200, 201), job.text
    [candidate] = result_store.add_candidates(
        sessions, job.json()["id"], 0, [{"genome": genome, "genome_hash": genome_hash}]
    )
    store_artifacts(sessions, app.state.artifact_dir, genome_hash, files)
    task_store.enqueue_task(sessions, job.json()["id"], candidate.id, device_class, spec)
    return candidate.id


def tiny_genome() -> dict:
    from core import preset

    return preset("hyena-edge", width=32, layers=2, heads=2, kv_heads=1, ffn=64, vocab=97).to_json()


def wait_until(predicate, timeout_s=90.0, every_s=0.2):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every_s)
    raise AssertionError("condition not reached in time")
