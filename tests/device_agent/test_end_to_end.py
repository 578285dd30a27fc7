"""End to end: API server (uvicorn, SQLite) + agent + loopback phone -> measurements stored.

The candidate's graphs are a real export of a tiny genome by workers.export; the agent speaks
HTTP to the server and ADB (adb-shell over TCP) to the stand-in phone, exactly as it would to
a phone on Wi-Fi ADB.
"""

from __future__ import annotations

import threading
import time

import pytest

from device_agent.adb_backend import AdbBackend, Reconnector
from device_agent.adb_device import Phone
from device_agent.agent import Agent
from device_agent.config import adb_key_path
from device_agent.properties import phone_properties

from .serving import seed, serve, wait_until

SPEC = {
    "prefill_lengths": [16],
    "decode_contexts": [24],
    "warmup": 0,
    "repeats": 2,
    "threads": 1,
    "cooldown_celsius": 80,
}


@pytest.fixture
def server(tmp_path):
    with serve(tmp_path) as running:
        yield running


def seed_task(url, app, exported, device_class: str = "SM-S928B") -> int:
    """A submitted job with one candidate, its exported graphs, and a task for the phone."""
    genome, files = exported
    return seed(url, app, genome, "e" * 16, files, SPEC, device_class)


def test_phone_agent_measures_a_candidate_and_survives_an_unplug(
    server, standin, exported, tmp_path
):
    from store.task_results import task_results

    url, app = server
    candidate_id = seed_task(url, app, exported)
    phone = Phone(
        adb_key_path(tmp_path / "agent"), tcp=f"127.0.0.1:{standin.port}", auth_timeout_s=10
    )
    phone.connect()
    backend = AdbBackend(phone)
    agent = Agent(
        url,
        "enroll-secret",
        "bench-phone",
        phone_properties(phone),
        backend.measure,
        tmp_path / "agent",
        poll_s=0.2,
        ready=Reconnector(phone, max_backoff_s=0.5),
    )
    agent.ensure_enrolled()

    # The cable is pulled while the runner works on the first attempt.
    standin.fault_during_first_run(standin.unplug)
    runner = threading.Thread(target=agent.run, kwargs={"max_tasks": 1}, daemon=True)
    runner.start()
    sessions = app.state.sessions
    row = wait_until(
        lambda: next((r for r in task_results(sessions, [candidate_id]) if r["last_error"]), None)
    )
    assert row["state"] == "queued" and "PhoneDisconnected" in row["last_error"]
    assert (
        row["last_error"].startswith("phone disconnected: ")
        and agent.failures[0][1] == "disconnected"
    )
    time.sleep(1.0)  # unplugged: the agent leases nothing meanwhile
    assert task_results(sessions, [candidate_id])[0]["state"] == "queued"
    standin.replug()
    runner.join(120)
    assert not runner.is_alive()
    [row] = task_results(sessions, [candidate_id])
    assert row["state"] == "done" and row["device_class"] == "SM-S928B"
    report = row["report"]
    assert [s["length"] for s in report["prefill"]] == [16]
    assert [s["length"] for s in report["decode"]] == [24]
    assert report["decode"][0]["n"] == 2 and len(report["decode"][0]["samples_ms"]) == 2
    assert report["peak_memory_bytes"] > 10 << 20
    assert report["runner"].startswith("onnxruntime_perf_test")
    assert report["thermal_before"] and report["thermal_after"]
    agent.shutdown()


def test_cli_agent_enrolls_the_phone_and_releases_its_task_on_sigterm(
    server, standin, exported, tmp_path
):
    import os
    import signal
    import subprocess
    import sys

    from store.task_results import task_results

    url, app = server
    candidate_id = seed_task(url, app, exported)
    with app.state.sessions() as s:  # a long task, so SIGTERM lands in the middle of it
        from store.models import ProfilingTask as TaskRow

        row = s.query(TaskRow).one()
        row.spec = {**SPEC, "repeats": 200}
        s.commit()
    code = (
        "import typer; from cli.agent import register; app = typer.Typer(); "
        "register(app); app.command('noop')(lambda: None); app()"
    )
    agent = subprocess.Popen(
        [
            sys.executable,
            "-c",
            code,
            "agent",
            "--server",
            url,
            "--enroll-token",
            "enroll-secret",
            "--tcp",
            f"127.0.0.1:{standin.port}",
            "--config-dir",
            str(tmp_path / "cli-agent"),
            "--poll-interval",
            "0.2",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=os.getcwd(),
    )
    try:
        wait_until(
            lambda: any("onnxruntime_perf_test -e cpu" in c for c in standin.commands), timeout_s=60
        )
        [row] = task_results(app.state.sessions, [candidate_id])
        assert row["state"] == "leased"
        agent.send_signal(signal.SIGTERM)
        output, _ = agent.communicate(timeout=30)
    finally:
        if agent.poll() is None:
            agent.kill()
    assert agent.returncode == 0, output
    assert "SM-S928B" in output
    [row] = task_results(app.state.sessions, [candidate_id])
    assert row["state"] == "queued" and row["attempts"] == 0 and row["report"] is None
    import httpx

    devices = httpx.get(f"{url}/api/v1/devices", timeout=10).json()
    assert devices[0]["model"] == "SM-S928B"
    # the zones it watches, chosen by type: the CPU zone, not the battery or the PMIC
    assert devices[0]["properties"]["thermal_zones"] == ["cpu-1-0-0"]
    assert (tmp_path / "cli-agent" / "adbkey").exists()


def test_host_agent_measures_over_the_same_protocol_and_heartbeats_while_busy(
    server, exported, tmp_path
):
    import httpx

    from device_agent.agent import host_measure
    from device_agent.properties import host_properties
    from store.task_results import task_results

    url, app = server
    candidate_id = seed_task(url, app, exported, device_class="host")
    beats = []

    def slow_measure(graph_dir, task):
        report = host_measure(graph_dir, task)
        time.sleep(0.6)  # long enough for a few heartbeats at 0.1 s
        beats.append(httpx.get(f"{url}/api/v1/devices", timeout=10).json()[0]["last_heartbeat_at"])
        return report

    agent = Agent(
        url,
        "enroll-secret",
        "laptop",
        host_properties("host"),
        slow_measure,
        tmp_path / "host-agent",
        poll_s=0.2,
    )
    agent.ensure_enrolled()
    agent.heartbeat_s = 0.1
    started = httpx.get(f"{url}/api/v1/devices", timeout=10).json()[0]["last_heartbeat_at"]
    agent.run(max_tasks=1)
    [row] = task_results(app.state.sessions, [candidate_id])
    assert row["state"] == "done" and row["report"]["runner"].startswith("host onnxruntime")
    assert row["report"]["runner_identity"]["name"] == "host onnxruntime"
    assert row["report"]["runner_identity"]["onnxruntime_version"]
    assert row["report"]["prefill"][0]["n"] == 2 and row["report"]["peak_memory_bytes"] > 0
    assert beats[0] > started


def test_a_measurement_three_times_longer_than_its_lease_completes_once(server, exported, tmp_path):
    """Heartbeats renew the leases the agent holds: a task that takes 3x
    its lease is reported once, on its first attempt, and nobody else leased it meanwhile."""
    from device_agent.agent import host_measure
    from device_agent.properties import host_properties
    from store.task_results import task_results

    url, app = server
    candidate_id = seed_task(url, app, exported, device_class="host")
    # heartbeats come every third of the lease left: 1 s apart here, so a server or a machine
    # busy for 2 s (a loaded 2-core CI runner) does not lose the lease
    lease_s = 3.0

    def slow_measure(graph_dir, task):
        time.sleep(3 * lease_s)
        return host_measure(graph_dir, task)

    agent = Agent(
        url,
        "enroll-secret",
        "slow-host",
        host_properties("host"),
        slow_measure,
        tmp_path / "agent",
        poll_s=0.2,
        lease_seconds=lease_s,
    )
    agent.ensure_enrolled()
    rival = Agent(
        url,
        "enroll-secret",
        "rival-host",
        host_properties("host"),
        host_measure,
        tmp_path / "rival",
        poll_s=0.2,
        lease_seconds=lease_s,
    )
    rival.ensure_enrolled()
    threading.Thread(target=agent.run, kwargs={"max_tasks": 1}, daemon=True).start()
    time.sleep(0.5)
    threading.Thread(target=rival.run, daemon=True).start()  # waits for any lease to lapse
    [row] = wait_until(
        lambda: [
            r for r in task_results(app.state.sessions, [candidate_id]) if r["state"] == "done"
        ],
        timeout_s=120,
    )
    rival.shutdown()
    agent.shutdown()
    assert row["attempts"] == 1 and rival.completed == 0 and agent.completed == 1
    assert [s["length"] for s in row["report"]["decode"]] == [24]


@pytest.fixture(scope="module")
def exported_three(tmp_path_factory):
    """Three real exports of tiny genomes (feed-forward widths 64, 96, 128)."""
    from core import preset
    from workers.export.onnx_export import export_onnx

    found = []
    for ffn in (64, 96, 128):
        genome = preset(
            "hyena-edge", width=32, layers=2, heads=2, kv_heads=1, ffn=ffn, vocab=97
        ).to_json()
        out = tmp_path_factory.mktemp(f"export{ffn}")
        export_onnx(genome, out, verify=False)
        found.append((genome, {p.name: p.read_bytes() for p in out.iterdir()}))
    return found


def seed_job(url, app, exported: list, spec: dict) -> list[int]:
    """One submitted job whose candidates (one per export) each wait for the phone."""
    import httpx

    from store import results as result_store
    from store import tasks as task_store
    from store.artifacts import store_artifacts

    from .serving import ADMIN

    sessions = app.state.sessions
    job = httpx.post(
        f"{url}/api/v1/jobs",
        headers=ADMIN,
        timeout=30,
        json={
            "name": "every-candidate",
            "objectives": ["perplexity", "decode_ms@24[SM-S928B]"],
            "profiling": {
                "devices": ["SM-S928B"],
                "prefill_lengths": [16],
                "decode_contexts": [24],
            },
        },
    ).json()
    rows = result_store.add_candidates(
        sessions,
        job["id"],
        0,
        [
            {"genome": genome, "genome_hash": f"{i:x}" * 16}
            for i, (genome, _) in enumerate(exported, 10)
        ],
    )
    for row, (_, files) in zip(rows, exported):
        store_artifacts(sessions, app.state.artifact_dir, row.genome_hash, files)
        task_store.enqueue_task(sessions, job["id"], row.id, "SM-S928B", spec)
    return [row.id for row in rows]


def printed_processes(standin) -> list[list[float]]:
    """The per-run times (ms) the stand-in runner printed, one list per runner process."""
    processes: list[list[float]] = []
    for line in (standin.sandbox / "runner_printed.log").read_text().splitlines():
        if line.startswith("iteration:1,"):
            processes.append([])
        processes[-1].append(float(line.rsplit(":", 1)[1]) * 1000)
    return processes


@pytest.mark.parametrize("line", ["main", "1.20"])
def test_a_job_is_measured_on_the_phone_whatever_the_runners_release_line(
    server, standin, exported_three, tmp_path, line
):
    """Issue #22: with today's onnxruntime_perf_test (main) the agent measured nothing; with
    it and with 1.20's, every candidate of the job is measured, and the samples stored are
    the timed runs the runner printed (warm-up dropped), not its averages."""
    import httpx

    from store.task_results import task_results

    standin.set_runner_line(line)
    url, app = server
    spec = {**SPEC, "warmup": 1, "repeats": 3, "processes": 2}
    candidate_ids = seed_job(url, app, exported_three, spec)
    phone = Phone(
        adb_key_path(tmp_path / "agent"), tcp=f"127.0.0.1:{standin.port}", auth_timeout_s=10
    )
    phone.connect()
    backend = AdbBackend(phone)
    ready = Reconnector(phone, max_backoff_s=0.5, preflight=backend.preflight())
    agent = Agent(
        url,
        "enroll-secret",
        "bench-phone",
        phone_properties(phone),
        backend.measure,
        tmp_path / "agent",
        poll_s=0.2,
        ready=ready,
    )
    agent.run(max_tasks=len(candidate_ids))
    rows = task_results(app.state.sessions, candidate_ids)
    assert [r["state"] for r in rows] == ["done"] * 3 and agent.failures == []
    timed = sorted(ms for process in printed_processes(standin) for ms in process[1:])
    stored = sorted(
        ms
        for r in rows
        for kind in ("prefill", "decode")
        for ms in r["report"][kind][0]["samples_ms"]
    )
    assert len(stored) == 3 * 2 * 2 * 3 and stored == pytest.approx(timed)
    release = {"main": "1.24+", "1.20": "1.19-1.22"}[line]
    assert {r["report"]["runner_identity"]["release_line"] for r in rows} == {release}
    job_id = httpx.get(f"{url}/api/v1/jobs", timeout=10).json()["items"][0]["id"]
    page = httpx.get(f"{url}/api/v1/jobs/{job_id}/candidates/{candidate_ids[0]}", timeout=10).json()
    assert page["measurements"][0]["runner_identity"]["release_line"] == release
    assert page["runner_warnings"] == []  # one runner build measured them all
    device = httpx.get(f"{url}/api/v1/devices", timeout=10).json()[0]
    assert device["ready"] and device["runner"]["parser"] == (
        "getopt" if line == "1.20" else "abseil"
    )
    phone.close()
