"""Failure drills (#7), each bounded in time: a Ray worker killed mid-training, PostgreSQL
restarted under a running API, and 20 agents leasing concurrently on PostgreSQL."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import psutil
from fastapi.testclient import TestClient

from api.app import create_app
from api.settings import Settings
from store import devices, jobs, leasing, results, tasks
from store.engine import make_engine, session_factory, upgrade
from store.task_results import task_results


def test_a_ray_worker_killed_mid_training_is_retried_and_the_job_completes(tmp_path):
    import ray

    from core.job_spec import JobSpec
    from orchestrator.driver import JobRunner
    from orchestrator.ray_evaluator import connect

    engine = make_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    upgrade(engine)
    sessions = session_factory(engine)
    spec = JobSpec.model_validate(
        {
            "name": "worker-drill",
            "objectives": ["perplexity", "params"],
            "search_space": {"widths": [32], "depth_min": 2, "depth_max": 3, "vocab_size": 257},
            "evolution": {"population": 2, "generations": 1, "elitism": 1},
            "training": {"tokens": 150_000, "seq_len": 32, "tokenizer": {"kind": "byte"}},
        }
    )
    job = jobs.create_job(sessions, spec.name, spec.model_dump(mode="json"))
    jobs.claim_job(sessions, "drill")
    connect(num_cpus=2)
    outcome = {}
    try:
        runner = threading.Thread(
            target=lambda: outcome.update(
                status=JobRunner(sessions, tmp_path / "art", job.id, "drill").run()
            )
        )
        runner.start()
        killed = None
        deadline = time.monotonic() + 120
        while killed is None and time.monotonic() < deadline:
            # only this test's own Ray workers (descendants of this process): another pytest
            # worker's cluster runs quality tasks too
            for proc in psutil.Process().children(recursive=True):
                try:
                    cmdline = " ".join(proc.cmdline())
                except psutil.Error:
                    continue
                if "ray::quality_task" in cmdline:
                    time.sleep(1.0)  # let it get into the training loop
                    proc.kill()
                    killed = proc.pid
                    break
            time.sleep(0.2)
        assert killed, "no training task started"
        runner.join(timeout=400)
        assert outcome.get("status") == "completed"
        candidates = results.job_candidates(sessions, job.id)
        assert len(candidates) == 2
        assert all(c.status == "done" and "perplexity" in c.metrics for c in candidates)
    finally:
        ray.shutdown()
        engine.dispose()


def test_postgres_restart_under_a_running_api(postgres_database, tmp_path):
    server, url = postgres_database
    app = create_app(Settings(database_url=url, data_dir=tmp_path, admin_key="k"))
    with TestClient(app) as client:
        assert client.get("/api/v1/ready").status_code == 200
        server.stop()
        try:
            down = client.get("/api/v1/jobs")
            assert down.status_code == 503 and "database unavailable" in down.json()["detail"]
            assert client.get("/api/v1/health").status_code == 200  # the process keeps serving
        finally:
            server.start()
        for _ in range(50):
            if client.get("/api/v1/ready").status_code == 200:
                break
            time.sleep(0.2)
        assert client.get("/api/v1/jobs").status_code == 200  # same app, no restart
    app.state.engine.dispose()


def test_twenty_agents_lease_concurrently_on_postgres(postgres_database):
    _, url = postgres_database
    engine = make_engine(url)
    upgrade(engine)
    sessions = session_factory(engine)
    job = jobs.create_job(sessions, "drill", {})
    rows = results.add_candidates(
        sessions, job.id, 0, [{"genome": {}, "genome_hash": f"{i:08x}"} for i in range(60)]
    )
    for row in rows:
        tasks.enqueue_task(sessions, job.id, row.id, "host", {})
    agents = [devices.enroll_device(sessions, f"a{i}", {"model": "host"})[0] for i in range(20)]
    leased: list[int] = []
    lock = threading.Lock()
    start = threading.Barrier(20)

    def agent(device):
        start.wait()
        while (task := leasing.lease_task(sessions, device, 60)) is not None:
            with lock:
                leased.append(task.id)

    with ThreadPoolExecutor(20) as pool:
        list(pool.map(agent, agents))
    assert len(leased) == 60 and len(set(leased)) == 60  # every task leased exactly once
    engine.dispose()


def test_an_agent_killed_mid_task_loses_its_lease_and_another_agent_finishes(tmp_path):
    import os
    import signal
    import socket
    import subprocess
    import sys
    from pathlib import Path

    import uvicorn
    from sqlalchemy import select

    from core import preset
    from device_agent.agent import Agent, host_measure
    from device_agent.config import config_dir
    from device_agent.properties import host_properties
    from store import transaction
    from store.artifacts import store_artifacts
    from store.models import Measurement
    from workers.export.onnx_export import export_onnx

    app = create_app(
        Settings(
            data_dir=tmp_path,
            admin_key="k",
            enroll_token="e",
            database_url=f"sqlite:///{tmp_path / 'db.sqlite'}",
        )
    )
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    url = f"http://127.0.0.1:{port}"
    sessions = app.state.sessions
    genome = preset(
        "hyena-edge", width=32, layers=2, heads=2, kv_heads=1, ffn=64, vocab=97
    ).to_json()
    export_onnx(genome, tmp_path / "export", verify=False)
    job = jobs.create_job(sessions, "drill", {})
    row = results.add_candidates(
        sessions, job.id, 0, [{"genome": genome, "genome_hash": "ab" * 8}]
    )[0]
    store_artifacts(
        sessions,
        app.state.artifact_dir,
        row.genome_hash,
        {p.name: p.read_bytes() for p in (tmp_path / "export").iterdir()},
    )
    task = tasks.enqueue_task(
        sessions,
        job.id,
        row.id,
        "host",
        {"prefill_lengths": [1024, 2048], "decode_contexts": [1024], "repeats": 100, "warmup": 2},
    )  # seconds of work: killable

    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    first = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "cli.main",
            "agent",
            "--server",
            url,
            "--enroll-token",
            "e",
            "--host",
            "--lease-seconds",
            "3",
            "--poll-interval",
            "0.2",
            "--config-dir",
            str(tmp_path / "a"),
        ],
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=Path(__file__).resolve().parents[1],
    )
    try:
        deadline = time.monotonic() + 60
        while task_results(sessions, [row.id])[0]["state"] != "leased":
            assert time.monotonic() < deadline, "the first agent never leased the task"
            time.sleep(0.1)
        time.sleep(0.2)  # mid-measurement
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()

    second = Agent(
        url,
        "e",
        "second",
        host_properties("host"),
        host_measure,
        config_dir(tmp_path / "b"),
        poll_s=0.3,
    )
    runner = threading.Thread(target=second.run, kwargs={"max_tasks": 1}, daemon=True)
    runner.start()
    runner.join(timeout=120)
    server.should_exit = True
    [state] = task_results(sessions, [row.id])
    assert state["state"] == "done" and state["attempts"] == 2
    with transaction(sessions) as s:
        assert len(s.scalars(select(Measurement).where(Measurement.task_id == task.id)).all()) == 1
