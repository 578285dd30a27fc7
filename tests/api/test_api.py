"""The REST API through HTTP (FastAPI's test client), on SQLite and PostgreSQL."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.settings import Settings
from core.manifest import GraphManifest
from store import results as result_store
from store import tasks as task_store
from store.artifacts import store_artifacts
from store.task_results import task_results

ADMIN = {"Authorization": "Bearer admin-secret"}
SPEC = {
    "name": "tiny",
    "objectives": ["perplexity", "params"],
    "evolution": {"population": 4, "generations": 2},
}


def measurement_report(runner: str = "onnxruntime_perf_test", **fields) -> dict:
    """A valid MeasurementReport body for lengths 16 (three timed runs), plus `fields`."""
    stat = {
        "length": 16,
        "median_ms": 1.0,
        "p10_ms": 0.9,
        "p90_ms": 1.2,
        "n": 3,
        "samples_ms": [1.0, 0.9, 1.2],
    }
    body = {"prefill": [stat], "decode": [stat], "peak_memory_bytes": 1 << 20, "wall_s": 1.0}
    return {**body, "runner": runner, **fields}


PROPS = {"backend": "host", "model": "host", "cpu_count": 2, "ram_bytes": 1 << 30}


def test_health_ready_metrics(client):
    assert client.get("/api/v1/health").json() == {"status": "ok"}
    assert client.get("/api/v1/ready").json() == {"status": "ready"}
    assert "tailor_devices_online 0" in client.get("/api/v1/metrics").text


def test_job_submission_needs_the_admin_key(client):
    assert client.post("/api/v1/jobs", json=SPEC).status_code == 401
    wrong = client.post("/api/v1/jobs", json=SPEC, headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 403
    created = client.post("/api/v1/jobs", json=SPEC, headers=ADMIN)
    assert created.status_code == 201 and created.json()["status"] == "queued"


@pytest.mark.parametrize(
    "patch,field",
    [
        ({"colour": "red"}, "colour"),
        ({"objectives": ["latency"]}, "objectives"),
        ({"objectives": ["decode_ms@128[SM-S928B]"]}, "profiling.devices"),
        ({"search_space": {"classes": ["lstm"]}}, "search_space.classes"),
        ({"training": {"tokens": -1}}, "training.tokens"),
        ({"evolution": {"population": 16, "elitism": 16}}, "elitism"),
        ({"constraints": [{"metric": "params", "op": "==", "value": 1}]}, "constraints.0.op"),
    ],
)
def test_invalid_specs_get_422_naming_the_field(client, patch, field):
    response = client.post("/api/v1/jobs", json={**SPEC, **patch}, headers=ADMIN)
    assert response.status_code == 422
    assert field in response.json()["detail"]


@pytest.mark.parametrize(
    "search_space, tokenizer",
    [
        ({"vocab_size": 50_000}, {"kind": "byte"}),
        ({"vocab_size": 8192}, {"kind": "bpe", "vocab_size": 4096}),
    ],
)
def test_mismatched_vocabularies_get_422_naming_both_fields(client, search_space, tokenizer):
    spec = {**SPEC, "search_space": search_space, "training": {"tokenizer": tokenizer}}
    response = client.post("/api/v1/jobs", json=spec, headers=ADMIN)
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert "search_space.vocab_size" in detail and "training.tokenizer" in detail


@pytest.mark.parametrize(
    "search_space, tokenizer, vocab",
    [
        ({}, {"kind": "byte"}, 257),  # the byte tokenizer fixes it
        ({"vocab_size": 8192}, {}, 8192),  # the search space's value is the tokenizer's too
        ({}, {"vocab_size": 2048}, 2048),  # and the other way round
    ],
)
def test_one_vocabulary_is_derived_and_stored(client, search_space, tokenizer, vocab):
    spec = {**SPEC, "search_space": search_space, "training": {"tokenizer": tokenizer}}
    job_id = client.post("/api/v1/jobs", json=spec, headers=ADMIN).json()["id"]
    stored = client.get(f"/api/v1/jobs/{job_id}").json()["spec"]
    assert stored["search_space"]["vocab_size"] == vocab
    if stored["training"]["tokenizer"]["kind"] == "bpe":
        assert stored["training"]["tokenizer"]["vocab_size"] == vocab


def test_catalog_lists_every_registered_operator_with_its_colour(client):
    from core import PRESETS, catalog

    body = client.get("/api/v1/catalog").json()
    assert [o["name"] for o in body["operators"]] == [s.name for s in catalog.ordered()]
    for entry in body["operators"]:
        spec = catalog.REGISTRY[entry["name"]]
        assert entry["colour"] == spec.colour and entry["kind"] == spec.kind
        assert [g["name"] for g in entry["genes"]] == [g.name for g in spec.genes]
    assert len({o["colour"] for o in body["operators"]}) == len(body["operators"])
    assert set(body["presets"]) == set(PRESETS)


def test_list_get_cancel_resume(client):
    ids = [
        client.post("/api/v1/jobs", json={**SPEC, "name": f"j{i}"}, headers=ADMIN).json()["id"]
        for i in range(3)
    ]
    page = client.get("/api/v1/jobs", params={"limit": 2}).json()
    assert page["count"] == 3 and len(page["items"]) == 2
    assert page["items"][0]["id"] == ids[-1]  # newest first
    job = client.get(f"/api/v1/jobs/{ids[0]}").json()
    assert job["generations_total"] == 2 and job["spec"]["training"]["tokens"] == 200_000
    assert client.post(f"/api/v1/jobs/{ids[0]}/cancel").status_code == 401
    assert (
        client.post(f"/api/v1/jobs/{ids[0]}/cancel", headers=ADMIN).json()["status"] == "cancelled"
    )
    assert client.post(f"/api/v1/jobs/{ids[0]}/resume", headers=ADMIN).json()["status"] == "queued"
    assert client.get("/api/v1/jobs/999").status_code == 404


def seed_results(client, exported):
    sessions = client.app.state.sessions
    job_id = client.post("/api/v1/jobs", json=SPEC, headers=ADMIN).json()["id"]
    genome, files = exported
    parent, child = (
        result_store.add_candidates(
            sessions, job_id, 0, [{"genome": genome, "genome_hash": "a" * 16}]
        )[0],
        None,
    )
    child = result_store.add_candidates(
        sessions,
        job_id,
        1,
        [{"genome": genome, "genome_hash": "b" * 16, "parents": ["a" * 16], "origin": "mutation"}],
    )[0]
    result_store.set_candidate_result(
        sessions, parent.id, "done", {"perplexity": 9.5, "params": 1000}
    )
    result_store.set_candidate_result(
        sessions, child.id, "done", {"perplexity": 8.5, "params": 1200}
    )
    result_store.write_generation(sessions, job_id, 0, [parent.id], [parent.id], 0.4, 1)
    result_store.write_generation(
        sessions, job_id, 1, [parent.id, child.id], [parent.id, child.id], 0.7, 2
    )
    store_artifacts(sessions, client.app.state.artifact_dir, "b" * 16, files)
    return job_id, parent.id, child.id


def test_generations_pareto_candidate_and_artifacts(client, exported):
    job_id, parent_id, child_id = seed_results(client, exported)
    everything = client.get(f"/api/v1/jobs/{job_id}/generations").json()
    assert [g["index"] for g in everything["generations"]] == [0, 1]
    newer = client.get(f"/api/v1/jobs/{job_id}/generations", params={"since": 1}).json()
    assert [g["index"] for g in newer["generations"]] == [1]
    assert {c["id"] for c in newer["candidates"]} == {parent_id, child_id}
    front = client.get(f"/api/v1/jobs/{job_id}/pareto").json()
    assert front["generation"] == 1 and front["objectives"] == ["perplexity", "params"]
    assert {c["metrics"]["perplexity"] for c in front["candidates"]} == {9.5, 8.5}
    detail = client.get(f"/api/v1/jobs/{job_id}/candidates/{child_id}").json()
    assert [p["id"] for p in detail["parents"]] == [parent_id]
    assert {"prefill.onnx", "decode.onnx", "manifest.json"} <= {
        a["name"] for a in detail["artifacts"]
    }
    parent_detail = client.get(f"/api/v1/jobs/{job_id}/candidates/{parent_id}").json()
    assert [c["id"] for c in parent_detail["children"]] == [child_id]

    url = f"/api/v1/artifacts/{child_id}/decode.onnx"
    assert client.get(url).status_code == 401
    downloaded = client.get(url, headers=ADMIN)
    assert downloaded.status_code == 200 and downloaded.content == exported[1]["decode.onnx"]
    assert client.get(f"/api/v1/artifacts/{child_id}/..%2Fsecrets", headers=ADMIN).status_code in (
        400,
        404,
    )
    assert client.get(f"/api/v1/artifacts/{child_id}/.hidden", headers=ADMIN).status_code == 400
    assert client.get(f"/api/v1/artifacts/{child_id}/other.onnx", headers=ADMIN).status_code == 404


def enroll(client, model="host", name="phone"):
    body = {"enroll_token": "enroll-secret", "name": name, "properties": {**PROPS, "model": model}}
    response = client.post("/api/v1/devices/enroll", json=body)
    assert response.status_code == 201, response.text
    data = response.json()
    return data["device_id"], {"Authorization": f"Bearer {data['device_token']}"}


def test_enrollment_heartbeat_listing_and_administration(client):
    bad = client.post(
        "/api/v1/devices/enroll", json={"enroll_token": "guess", "name": "x", "properties": PROPS}
    )
    assert bad.status_code == 403
    device_id, auth = enroll(client)
    assert client.post("/api/v1/devices/heartbeat", headers=auth).json()["state"] == "active"
    listed = client.get("/api/v1/devices").json()
    assert listed[0]["online"] and listed[0]["model"] == "host"
    assert client.post(f"/api/v1/devices/{device_id}/drain").status_code == 401
    assert (
        client.post(f"/api/v1/devices/{device_id}/drain", headers=ADMIN).json()["state"]
        == "draining"
    )
    assert client.post("/api/v1/tasks/lease", headers=auth).json() == {"task": None}
    client.post(f"/api/v1/devices/{device_id}/disable", headers=ADMIN)
    assert client.post("/api/v1/devices/heartbeat", headers=auth).status_code == 403
    # Enrollment attempts are rate-limited (5 a minute in this app).
    codes = [
        client.post(
            "/api/v1/devices/enroll",
            json={"enroll_token": "guess", "name": "x", "properties": PROPS},
        ).status_code
        for _ in range(6)
    ]
    assert 429 in codes


def test_agents_lease_report_fail_release_over_http(client, exported):
    job_id, _, child_id = seed_results(client, exported)
    sessions = client.app.state.sessions
    task_store.enqueue_task(
        sessions,
        job_id,
        child_id,
        "host",
        {"prefill_lengths": [16], "decode_contexts": [16], "repeats": 2},
    )
    _, phone = enroll(client, model="SM-S928B")
    _, host = enroll(client)
    assert client.post("/api/v1/tasks/lease", headers=phone).json() == {"task": None}
    task = client.post("/api/v1/tasks/lease", headers=host).json()["task"]
    manifest = GraphManifest.model_validate(task["manifest"])
    # the graphs profiling runs and the one weights file they share, nothing else (the
    # full-logit prefill graph serves perplexity on the host)
    assert set(manifest.files) == {"prefill.onnx", "prefill_last.onnx", "decode.onnx"} | (
        {manifest.weights.file} if manifest.weights else set()
    )
    assert {a["name"] for a in task["artifacts"]} == set(manifest.phone_files)
    assert set(manifest.phone_files) == {"prefill_last.onnx", "decode.onnx"} | (
        {manifest.weights.file} if manifest.weights else set()
    )
    assert client.get(task["artifacts"][0]["url"], headers=host).status_code == 200
    released = client.post(f"/api/v1/tasks/{task['task_id']}/release", headers=host).json()
    assert released["state"] == "queued"
    task = client.post("/api/v1/tasks/lease", headers=host).json()["task"]
    failed = client.post(
        f"/api/v1/tasks/{task['task_id']}/fail",
        headers=host,
        json={"reason": "phone unplugged", "retryable": True},
    ).json()
    assert failed["state"] == "queued"
    task = client.post("/api/v1/tasks/lease", headers=host).json()["task"]
    stat = {
        "length": 16,
        "median_ms": 1.0,
        "p10_ms": 0.9,
        "p90_ms": 1.2,
        "n": 2,
        "samples_ms": [1.0, 1.1],
    }
    report = {
        "prefill": [stat],
        "decode": [stat],
        "peak_memory_bytes": 1 << 20,
        "runner": "host onnxruntime",
        "wall_s": 1.0,
    }
    assert (
        client.post(
            f"/api/v1/tasks/{task['task_id']}/report", headers=phone, json=report
        ).status_code
        == 409
    )  # not its lease
    done = client.post(f"/api/v1/tasks/{task['task_id']}/report", headers=host, json=report)
    assert done.json()["state"] == "done"
    assert (
        client.post(
            f"/api/v1/tasks/{task['task_id']}/report", headers=host, json={**report, "runner": "x"}
        ).json()["state"]
        == "done"
    )
    [row] = task_results(sessions, [child_id])
    assert row["report"]["runner"] == "host onnxruntime"
    bad = client.post(
        f"/api/v1/tasks/{task['task_id']}/report", headers=host, json={**report, "extra": 1}
    )
    assert bad.status_code == 422 and "extra" in bad.json()["detail"]


def test_bad_bodies_are_4xx_and_the_server_keeps_serving(client):
    huge = client.post(
        "/api/v1/jobs",
        content=b"{" + b" " * 300_000 + b"}",
        headers={**ADMIN, "content-type": "application/json"},
    )
    assert huge.status_code == 413
    deep = "[" * 5000 + "]" * 5000
    nested = client.post(
        "/api/v1/jobs", content=deep.encode(), headers={**ADMIN, "content-type": "application/json"}
    )
    assert nested.status_code == 400
    garbage = client.post(
        "/api/v1/jobs", content=b"{not json", headers={**ADMIN, "content-type": "application/json"}
    )
    assert garbage.status_code == 422
    assert client.get("/api/v1/health").status_code == 200


def test_database_outage_is_503_not_500(tmp_path):
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'db.sqlite'}",
        data_dir=tmp_path,
        admin_key="admin-secret",
    )
    app = create_app(settings)
    with TestClient(app) as client:
        assert client.get("/api/v1/ready").status_code == 200
        (tmp_path / "db.sqlite").unlink()
        (tmp_path / "db.sqlite").mkdir()  # the database file is gone and cannot be reopened
        app.state.engine.dispose()
        response = client.get("/api/v1/jobs")
        assert response.status_code == 503 and "database unavailable" in response.json()["detail"]


def test_api_imports_neither_torch_nor_ray():
    code = "import sys, api.app, cli.serve; print('torch' in sys.modules, 'ray' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=Path(__file__).parents[2],
        timeout=120,
    )
    assert out.stdout.split() == ["False", "False"], out.stderr


def test_latency_model_reports_prediction_accuracy_per_device_class(client):
    from store import jobs as job_store

    sessions = client.app.state.sessions
    job = job_store.create_job(sessions, "fleet", {"objectives": ["params"]})
    measured = [1.0, 2.0, 3.0, 4.0, 5.0]
    predicted = [1.1, 1.8, 3.3, 3.9, 6.0]  # same order: tau 1; errors 10%, 10%, 10%, 2.5%, 20%
    rows = result_store.add_candidates(
        sessions,
        job.id,
        1,
        [
            {
                "genome": {},
                "genome_hash": f"{i:016x}",
                "predictions": {"decode_ms@128[Pixel 8]": {"mean": p, "log_std": 0.1}},
            }
            for i, p in enumerate(predicted)
        ],
    )
    for row, value in zip(rows, measured):
        result_store.set_candidate_result(
            sessions, row.id, "done", {"decode_ms@128[Pixel 8]": value, "params": 10}
        )
    other = result_store.add_candidates(
        sessions, job.id, 0, [{"genome": {}, "genome_hash": "f" * 16}]
    )
    result_store.set_candidate_result(
        sessions, other[0].id, "done", {"decode_ms@128[Pixel 8]": 9.0}
    )
    body = client.get("/api/v1/device-classes/Pixel 8/latency-model").json()
    assert body["device_class"] == "Pixel 8" and body["measured_candidates"] == 6
    accuracy = body["metrics"]["decode_ms@128[Pixel 8]"]
    assert accuracy["n"] == 5 and accuracy["kendall_tau"] == pytest.approx(1.0)
    assert accuracy["mdape"] == pytest.approx(0.10)
    assert client.get("/api/v1/device-classes/SM-S928B/latency-model").json()["metrics"] == {}


def test_a_retried_submission_with_its_idempotency_key_gets_the_same_job(client):
    key = {**ADMIN, "Idempotency-Key": "retry-7f3a"}
    first = client.post("/api/v1/jobs", json=SPEC, headers=key)
    again = client.post("/api/v1/jobs", json=SPEC, headers=key)
    assert first.status_code == again.status_code == 201
    assert first.json()["id"] == again.json()["id"]
    assert client.get("/api/v1/jobs").json()["count"] == 1
    other = client.post("/api/v1/jobs", json={**SPEC, "name": "else"}, headers=key)
    assert other.status_code == 409 and "Idempotency-Key" in other.json()["detail"]
    bad = client.post("/api/v1/jobs", json=SPEC, headers={**ADMIN, "Idempotency-Key": "x" * 129})
    assert bad.status_code == 422 and "idempotency-key" in bad.json()["detail"].lower()
    assert client.post("/api/v1/jobs", json=SPEC, headers=ADMIN).json()["id"] != first.json()["id"]


def test_concurrent_submissions_with_one_key_make_one_job(client):
    from concurrent.futures import ThreadPoolExecutor

    key = {**ADMIN, "Idempotency-Key": "race-1"}
    with ThreadPoolExecutor(6) as pool:
        answers = list(
            pool.map(lambda _: client.post("/api/v1/jobs", json=SPEC, headers=key), range(6))
        )
    assert {a.status_code for a in answers} == {201}
    assert len({a.json()["id"] for a in answers}) == 1
    assert client.get("/api/v1/jobs").json()["count"] == 1


def test_device_errors_pause_the_device_and_measurements_show_on_the_candidate(client, exported):
    """A device error (kind "device") goes back uncounted and pauses the phone (heartbeat and
    device list say why); colour codes are stripped; the candidate endpoint then carries the
    whole report: samples, p10/p90, method, thermals, which device."""
    job_id, _, child_id = seed_results(client, exported)
    sessions = client.app.state.sessions
    task_store.enqueue_task(
        sessions, job_id, child_id, "host", {"prefill_lengths": [16], "decode_contexts": [16]}
    )
    broken_id, broken = enroll(client)
    task = client.post("/api/v1/tasks/lease", headers=broken).json()["task"]
    failed = client.post(
        f"/api/v1/tasks/{task['task_id']}/fail",
        headers=broken,
        json={"reason": "\x1b[31monnxruntime_perf_test: not found\x1b[0m", "kind": "device"},
    ).json()
    assert failed["state"] == "queued"
    beat = client.post("/api/v1/devices/heartbeat", headers=broken).json()
    assert beat["paused_until"] and beat["paused_reason"] == "onnxruntime_perf_test: not found"
    listed = {d["id"]: d for d in client.get("/api/v1/devices").json()}
    assert listed[broken_id]["paused_reason"] == "onnxruntime_perf_test: not found"
    assert client.post("/api/v1/tasks/lease", headers=broken).json() == {"task": None}
    bad_kind = client.post(
        f"/api/v1/tasks/{task['task_id']}/fail",
        headers=broken,
        json={"reason": "x", "kind": "cosmic rays"},
    )
    assert bad_kind.status_code == 422 and "kind" in bad_kind.json()["detail"]

    healthy_id, healthy = enroll(client, model="host", name="second phone")
    task = client.post("/api/v1/tasks/lease", headers=healthy).json()["task"]
    assert task["attempt"] == 1  # the device error did not spend an attempt
    report = measurement_report(
        runner="host onnxruntime",
        method="warm: 2 warm-up + 3 timed runs in each of 1 process",
        thermal_before=[{"zone": "cpu", "celsius": 41.0}],
        thermal_limit_celsius=45.0,
        above_thermal_limit=False,
    )
    client.post(f"/api/v1/tasks/{task['task_id']}/report", headers=healthy, json=report)
    detail = client.get(f"/api/v1/jobs/{job_id}/candidates/{child_id}").json()
    [measured] = detail["measurements"]
    assert measured["device_id"] == healthy_id and measured["state"] == "done"
    assert measured["report"]["decode"][0]["samples_ms"] == [1.0, 0.9, 1.2]
    assert measured["report"]["method"].startswith("warm")
    assert measured["report"]["thermal_before"][0]["celsius"] == 41.0


def test_a_job_naming_an_unenrolled_device_class_is_accepted_with_a_warning(client):
    spec = {
        **SPEC,
        "objectives": ["perplexity", "decode_ms@128[Pixel 9]"],
        "profiling": {"devices": ["Pixel 9"]},
    }
    created = client.post("/api/v1/jobs", json=spec, headers=ADMIN)
    assert created.status_code == 201
    [warning] = created.json()["warnings"]
    assert "'Pixel 9'" in warning
    assert client.get(f"/api/v1/jobs/{created.json()['id']}").json()["warnings"] == [warning]
    enroll(client, model="Pixel 9")
    assert client.get(f"/api/v1/jobs/{created.json()['id']}").json()["warnings"] == []


def test_polled_views_are_conditional_and_built_once_per_version(client, exported):
    """generations?since and pareto carry an ETag; If-None-Match with it is 304 (no body)
    until a generation is written; the body of one version is built once for all pollers."""
    job_id, parent_id, child_id = seed_results(client, exported)
    url = f"/api/v1/jobs/{job_id}/generations"
    first = client.get(url, params={"since": 0})
    etag = first.headers["etag"]
    assert first.status_code == 200 and first.headers["cache-control"] == "no-cache"
    cache = client.app.state.poll_cache
    misses = cache.misses
    for _ in range(5):
        again = client.get(url, params={"since": 0})
        assert again.content == first.content and again.headers["etag"] == etag
    assert cache.misses == misses  # served from the cache
    unchanged = client.get(url, params={"since": 0}, headers={"If-None-Match": etag})
    assert unchanged.status_code == 304 and unchanged.content == b""
    assert (
        client.get(
            url, params={"since": 0}, headers={"If-None-Match": f'"other", W/{etag}'}
        ).status_code
        == 304
    )
    assert client.get(url, params={"since": 2}).headers["etag"] != etag  # another view
    pareto = client.get(f"/api/v1/jobs/{job_id}/pareto")
    pareto_tag = pareto.headers["etag"]
    result_store.write_generation(
        client.app.state.sessions, job_id, 2, [parent_id], [child_id], 0.9, 3
    )
    changed = client.get(url, params={"since": 0}, headers={"If-None-Match": etag})
    assert changed.status_code == 200 and changed.headers["etag"] != etag
    assert [g["index"] for g in changed.json()["generations"]] == [0, 1, 2]
    newer = client.get(f"/api/v1/jobs/{job_id}/pareto", headers={"If-None-Match": pareto_tag})
    assert newer.status_code == 200 and newer.json()["generation"] == 2
    assert client.get(f"/api/v1/jobs/{job_id + 999}/generations").status_code == 404


def test_a_restarted_agent_refreshes_its_device_properties_with_a_heartbeat(client):
    device_id, auth = enroll(client, name="refresh")
    newer = {**PROPS, "cpu_count": 8, "ram_bytes": 1 << 33, "android_release": "15"}
    beat = client.post("/api/v1/devices/heartbeat", headers=auth, json={"properties": newer})
    assert beat.status_code == 200
    listed = {d["id"]: d for d in client.get("/api/v1/devices").json()}
    assert listed[device_id]["properties"]["cpu_count"] == 8
    assert client.post("/api/v1/devices/heartbeat", headers=auth).status_code == 200  # no body
    other = client.post(
        "/api/v1/devices/heartbeat",
        headers=auth,
        json={"properties": {**PROPS, "model": "SM-S928B"}},
    )
    assert other.status_code == 409 and "another device" in other.json()["detail"]
    bad = client.post(
        "/api/v1/devices/heartbeat", headers=auth, json={"properties": {**PROPS, "cpu_count": 0}}
    )
    assert bad.status_code == 422 and "properties.cpu_count" in bad.json()["detail"]


def test_generation_views_from_cached_fragments_equal_a_fresh_build(client, exported):
    """The assembled bytes are what GenerationsResponse gives when built from the database,
    for every `since`, with survivors from older generations, candidates still being
    evaluated, and after new generations are written."""
    import json

    from api.generation_views import GenerationViews, summary
    from api.schemas.public import GenerationPublic, GenerationsResponse
    from store import jobs as job_store

    sessions = client.app.state.sessions
    job_id = client.post("/api/v1/jobs", json=SPEC, headers=ADMIN).json()["id"]
    views = GenerationViews()

    def fresh(since):
        rows = result_store.generations_since(sessions, job_id, since)
        wanted = {i for g in rows for i in g.population + g.pareto}
        cands = [
            summary(c)
            for c in result_store.candidates_for(
                sessions, job_id, wanted, min_generation=since if rows else None
            )
        ]
        return GenerationsResponse(
            job_id=job_id,
            status=job_store.get_job(sessions, job_id).status,
            generations=[
                GenerationPublic(
                    index=g.index,
                    population=g.population,
                    pareto=g.pareto,
                    hypervolume=g.hypervolume,
                    evaluations=g.evaluations,
                    stats=g.stats,
                    created_at=g.created_at,
                )
                for g in rows
            ],
            candidates=cands,
        ).model_dump()

    survivors: list[int] = []
    for g in range(4):
        rows = result_store.add_candidates(
            sessions, job_id, g, [{"genome": {}, "genome_hash": f"v{g}-{i}"} for i in range(3)]
        )
        for row in rows:
            result_store.set_candidate_result(sessions, row.id, "done", {"params": row.id})
        population = survivors + [r.id for r in rows]
        result_store.write_generation(sessions, job_id, g, population, population[:2], 0.1, g)
        survivors = population[:2]
        pending = result_store.add_candidates(
            sessions, job_id, g + 1, [{"genome": {}, "genome_hash": f"p{g}"}]
        )  # being evaluated
        for since in range(g + 2):
            status = job_store.get_job(sessions, job_id).status
            body = json.loads(views.body(sessions, job_id, since, status))
            assert GenerationsResponse.model_validate(body).model_dump() == fresh(since), since
        result_store.set_candidate_result(sessions, pending[0].id, "done", {"params": 1})
