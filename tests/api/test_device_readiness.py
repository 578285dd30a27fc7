"""On the server: a device's readiness (its agent's preflight verdict, sent with
heartbeats) in `GET /devices`, the warning of a job whose only device class has no ready
device, and the runner build of every measurement on the candidate page (with a warning
where one job's numbers on a class come from two builds)."""

from __future__ import annotations

from store import tasks as task_store
from store.artifacts import store_artifacts
from store.task_results import runner_builds

from .test_api import ADMIN, SPEC, enroll, measurement_report, seed_results

NOT_READY = {
    "ready": False,
    "reason": "/data/local/tmp/onnxruntime_perf_test does not answer `--help` as "
    "onnxruntime_perf_test 1.19 or newer does (exit 255: See "
    "'onnxruntime_perf_test --help'.)",
    "fix": "push a runner built as device_agent/README.md says",
}
RUNNER = {
    "name": "onnxruntime_perf_test",
    "sha256": "ab" * 32,
    "parser": "abseil",
    "per_run_format": "submission_total",
    "release_line": "1.24+",
    "onnxruntime_version": None,
}


def test_a_device_whose_preflight_fails_is_not_ready_with_the_reason_and_the_fix(client):
    spec = {
        **SPEC,
        "objectives": ["perplexity", "decode_ms@128[Pixel 9]"],
        "profiling": {"devices": ["Pixel 9"]},
    }
    job_id = client.post("/api/v1/jobs", json=spec, headers=ADMIN).json()["id"]
    device_id, auth = enroll(client, model="Pixel 9")
    [listed] = client.get("/api/v1/devices").json()
    assert listed["ready"] and listed["not_ready_reason"] is None  # no verdict yet
    beat = client.post("/api/v1/devices/heartbeat", headers=auth, json={"readiness": NOT_READY})
    assert beat.status_code == 200
    [listed] = client.get("/api/v1/devices").json()
    assert not listed["ready"] and listed["online"]
    assert listed["not_ready_reason"] == NOT_READY["reason"] and listed["fix"] == NOT_READY["fix"]
    [warning] = client.get(f"/api/v1/jobs/{job_id}").json()["warnings"]
    assert warning.startswith("no device of class 'Pixel 9' is ready to measure")
    assert f"device {device_id} (phone): {NOT_READY['reason']} (fix: {NOT_READY['fix']})" in warning
    assert client.post("/api/v1/devices/heartbeat", headers=auth).status_code == 200
    assert not client.get("/api/v1/devices").json()[0]["ready"]  # a bare beat keeps it
    client.post(
        "/api/v1/devices/heartbeat",
        headers=auth,
        json={"readiness": {"ready": True, "runner": RUNNER}},
    )
    [listed] = client.get("/api/v1/devices").json()
    assert listed["ready"] and listed["runner"]["release_line"] == "1.24+"
    assert client.get(f"/api/v1/jobs/{job_id}").json()["warnings"] == []
    client.post(f"/api/v1/devices/{device_id}/drain", headers=ADMIN)
    [listed] = client.get("/api/v1/devices").json()
    assert not listed["ready"] and listed["not_ready_reason"] == "the device is draining"
    assert listed["fix"].endswith(f"/api/v1/devices/{device_id}/enable")
    assert "is ready to measure" in client.get(f"/api/v1/jobs/{job_id}").json()["warnings"][0]


def test_a_bad_readiness_is_refused_naming_the_field(client):
    _, auth = enroll(client)
    bad = client.post(
        "/api/v1/devices/heartbeat",
        headers=auth,
        json={"readiness": {"ready": False, "runner": {"sha256": "nope"}}},
    )
    assert bad.status_code == 422 and "sha256" in str(bad.json()["detail"])


def report(runner: dict | None) -> dict:
    return measurement_report(**({"runner_identity": runner} if runner else {}))


def test_each_measurement_says_its_runner_and_two_builds_in_a_job_are_flagged(client, exported):
    job_id, parent_id, child_id = seed_results(client, exported)
    sessions = client.app.state.sessions
    store_artifacts(sessions, client.app.state.artifact_dir, "a" * 16, exported[1])
    for candidate in (parent_id, child_id):
        task_store.enqueue_task(
            sessions, job_id, candidate, "host", {"prefill_lengths": [16], "decode_contexts": [16]}
        )
    _, phone = enroll(client)
    older = {
        **RUNNER,
        "sha256": "cd" * 32,
        "parser": "getopt",
        "per_run_format": "time_cost",
        "release_line": "1.19-1.22",
    }
    for runner in (older, RUNNER):
        task = client.post("/api/v1/tasks/lease", headers=phone).json()["task"]
        done = client.post(
            f"/api/v1/tasks/{task['task_id']}/report", headers=phone, json=report(runner)
        )
        assert done.json()["state"] == "done", done.text
    page = client.get(f"/api/v1/jobs/{job_id}/candidates/{child_id}").json()
    [measured] = page["measurements"]
    assert measured["runner_identity"] == measured["report"]["runner_identity"]
    [warning] = page["runner_warnings"]
    assert warning.startswith("measurements on host in this job come from 2 runner builds")
    assert "onnxruntime_perf_test 1.19-1.22 sha256 cdcdcdcdcdcd" in warning
    assert "this candidate's: " in warning


def test_one_runner_build_or_none_recorded_gives_no_warning(client, exported):
    job_id, _, child_id = seed_results(client, exported)
    sessions = client.app.state.sessions
    task_store.enqueue_task(
        sessions, job_id, child_id, "host", {"prefill_lengths": [16], "decode_contexts": [16]}
    )
    _, phone = enroll(client)
    task = client.post("/api/v1/tasks/lease", headers=phone).json()["task"]
    client.post(f"/api/v1/tasks/{task['task_id']}/report", headers=phone, json=report(None))
    page = client.get(f"/api/v1/jobs/{job_id}/candidates/{child_id}").json()
    assert page["runner_warnings"] == [] and page["measurements"][0]["runner_identity"] is None
    assert runner_builds(sessions, job_id) == {"host": [None]}
