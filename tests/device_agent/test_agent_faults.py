"""The agent with a real API server and the loopback phone when the phone misbehaves
(10): whose fault each failure is, heartbeats that go on while ADB
hangs, leases paused after a device fault, and the log lines a user reads."""

from __future__ import annotations

import logging
import threading
import time

import httpx
import pytest

from device_agent.adb_backend import AdbBackend, Reconnector
from device_agent.adb_device import Phone
from device_agent.agent import Agent
from device_agent.config import adb_key_path
from device_agent.defaults import DEFAULT_RUNNER, WORK_ROOT
from device_agent.preflight import Preflight
from device_agent.properties import phone_properties

from .serving import ENROLL, seed, serve, tiny_genome, wait_until

SPEC = {
    "prefill_lengths": [16],
    "decode_contexts": [24],
    "warmup": 1,
    "repeats": 2,
    "processes": 2,
    "threads": 1,
    "cooldown_celsius": 80,
}


@pytest.fixture
def server(tmp_path):
    with serve(tmp_path) as running:
        yield running


def seeded(server, graph_dir) -> int:
    url, app = server
    files = {p.name: p.read_bytes() for p in graph_dir.iterdir()}
    return seed(url, app, tiny_genome(), "f" * 16, files, SPEC)


def make_agent(server, standin, tmp_path, adb_timeout_s=10.0):
    url, _ = server
    phone = Phone(
        adb_key_path(tmp_path / "agent"),
        tcp=f"127.0.0.1:{standin.port}",
        auth_timeout_s=10,
        transport_timeout_s=adb_timeout_s,
    )
    phone.connect()
    ready = Reconnector(
        phone, max_backoff_s=0.5, preflight=Preflight(phone, DEFAULT_RUNNER, WORK_ROOT)
    )
    agent = Agent(
        url,
        ENROLL,
        "bench-phone",
        phone_properties(phone),
        AdbBackend(phone).measure,
        tmp_path / "agent",
        poll_s=0.2,
        ready=ready,
        device_backoff_s=(30.0, 60.0),
    )
    agent.ensure_enrolled()
    agent.heartbeat_s = agent._beat_every = 0.3
    return agent, phone


def task_row(app, candidate_id):
    from store.task_results import task_results

    [row] = task_results(app.state.sessions, [candidate_id])
    return row


def last_heartbeat(url) -> str:
    return httpx.get(f"{url}/api/v1/devices", timeout=10).json()[0]["last_heartbeat_at"]


def test_a_silent_phone_drop_fails_the_task_as_disconnected_while_heartbeats_go_on(
    server, standin, graph_dir, tmp_path, caplog
):
    url, app = server
    candidate_id = seeded(server, graph_dir)
    # ADB timeout above the 2 s keep-alive, so only the freeze (not a busy host) is a drop
    agent, phone = make_agent(server, standin, tmp_path, adb_timeout_s=3.0)
    (standin.sandbox / "runner_delay_s").write_text("3")
    standin.fault_during_first_run(standin.freeze)
    caplog.set_level(logging.INFO, "tailor.agent")
    runner = threading.Thread(target=agent.run, kwargs={"max_tasks": 1}, daemon=True)
    runner.start()
    row = wait_until(lambda: (r := task_row(app, candidate_id))["last_error"] and r, 60)
    assert row["state"] == "queued" and row["attempts"] == 0
    assert row["last_error"].startswith("phone disconnected: PhoneDisconnected: ")
    assert "lost during" in row["last_error"]
    assert agent.failures == [(agent.failures[0][0], "disconnected")]
    # Still frozen: ADB calls hang until their timeout, heartbeats go on regardless.
    before = last_heartbeat(url)
    time.sleep(1.5)
    assert last_heartbeat(url) > before and task_row(app, candidate_id)["state"] == "queued"
    (standin.sandbox / "runner_delay_s").unlink()
    standin.thaw()
    runner.join(120)
    assert not runner.is_alive()
    row = task_row(app, candidate_id)
    assert row["state"] == "done" and row["report"]["decode"][0]["n"] == 4
    assert row["report"]["method"] == (
        "warm: 1 warm-up + 2 timed runs in each of 2 processes, cpu execution provider"
    )
    task_id = agent.failures[0][0]
    text = caplog.text
    assert f"leased task {task_id} (candidate {candidate_id}, job " in text
    assert (
        f"measuring task {task_id}: prefill@16 decode@24 (float32 graphs, cpu execution "
        "provider; warm: 1 warm-up + 2 timed runs in each of 2 processes)"
    ) in text
    assert f"task {task_id} failed (phone disconnected): PhoneDisconnected: " in text
    assert "phone tcp:127.0.0.1" in text and "is back" in text
    assert f"task {task_id} done: prefill@16 median " in text and " MB" in text
    agent.shutdown()
    phone.close()


def test_a_runner_gone_mid_session_is_a_device_fault_that_pauses_leasing(
    server, standin, graph_dir, tmp_path, caplog
):
    url, app = server
    candidate_id = seeded(server, graph_dir)
    agent, phone = make_agent(server, standin, tmp_path)
    assert agent.ready()  # the preflight passed at start-up
    standin.remove_runner()  # then someone deleted it
    caplog.set_level(logging.INFO, "tailor.agent")
    runner = threading.Thread(target=agent.run, daemon=True)
    runner.start()
    row = wait_until(lambda: (r := task_row(app, candidate_id))["last_error"] and r, 60)
    assert row["state"] == "queued" and row["attempts"] == 0
    assert row["last_error"].startswith("device error: DeviceError: ")
    assert "--runner PATH" in row["last_error"]
    assert [kind for _, kind in agent.failures] == ["device"]
    time.sleep(1.0)
    assert agent.paused_until > time.monotonic()  # paused here (and by the server)
    assert "pausing leases for 30 s after a device failure" in caplog.text
    assert "phone not ready to measure:" in caplog.text
    assert task_row(app, candidate_id)["state"] == "queued" and len(agent.failures) == 1
    agent.shutdown()
    runner.join(10)
    phone.close()


def test_a_phone_with_an_unusable_runner_shows_as_not_ready_within_one_heartbeat(
    server, standin, graph_dir, tmp_path
):
    """Issue #22: a runner that cannot start (built with --build_shared_lib, its
    libonnxruntime.so not pushed: Android's linker refuses it) left the job `running` and
    nothing said why. Now GET /devices says not ready, with the reason and the fix, within
    one heartbeat, and the job whose only device class has no ready device says so."""
    import subprocess

    from .serving import ADMIN

    url, app = server
    job_id = httpx.post(
        f"{url}/api/v1/jobs",
        headers=ADMIN,
        timeout=30,
        json={
            "name": "waits-for-a-phone",
            "objectives": ["perplexity", "decode_ms@24[SM-S928B]"],
            "profiling": {
                "devices": ["SM-S928B"],
                "prefill_lengths": [16],
                "decode_contexts": [24],
            },
        },
    ).json()["id"]
    runner = standin.sandbox / "data/local/tmp/onnxruntime_perf_test"
    working = runner.read_text()
    # bionic's linker (linker/linker.cpp) when a needed library is missing, exit 1
    runner.write_text(
        "#!/bin/sh\necho 'CANNOT LINK EXECUTABLE \"/data/local/tmp/"
        'onnxruntime_perf_test": library "libonnxruntime.so" not found: '
        "needed by main executable' >&2\nexit 1\n"
    )
    agent, phone = make_agent(server, standin, tmp_path)
    agent.heartbeat_s = agent._beat_every = 15.0  # the server's default interval
    started = time.monotonic()
    thread = threading.Thread(target=agent.run, daemon=True)
    thread.start()
    device = wait_until(
        lambda: (
            (d := httpx.get(f"{url}/api/v1/devices", timeout=10).json()[0])["not_ready_reason"]
            and d
        ),
        timeout_s=agent.heartbeat_s,
    )
    assert time.monotonic() - started < agent.heartbeat_s
    assert device["online"] and not device["ready"]
    assert device["not_ready_reason"].startswith(
        f"{DEFAULT_RUNNER} does not answer `--help` as onnxruntime_perf_test 1.19 or newer "
        "does (exit 1: CANNOT LINK EXECUTABLE"
    )
    assert "push libonnxruntime.so beside it" in device["fix"]
    [warning] = httpx.get(f"{url}/api/v1/jobs/{job_id}", timeout=10).json()["warnings"]
    assert warning.startswith("no device of class 'SM-S928B' is ready to measure")
    assert "CANNOT LINK EXECUTABLE" in warning and "push libonnxruntime.so" in warning
    runner.write_text(working)  # the user pushes a working runner
    subprocess.run(["chmod", "755", str(runner)], check=True)
    device = wait_until(
        lambda: (d := httpx.get(f"{url}/api/v1/devices", timeout=10).json()[0])["ready"] and d,
        timeout_s=30,
    )
    assert device["not_ready_reason"] is None and device["runner"]["parser"] == "abseil"
    assert httpx.get(f"{url}/api/v1/jobs/{job_id}", timeout=10).json()["warnings"] == []
    agent.shutdown()
    thread.join(10)
    phone.close()
