"""The API against hostile and careless clients (issue 12), on SQLite and PostgreSQL.

Bodies are cut off at the limit while they stream in; a disabled device stays out (its
token downloads nothing, enrolling again is refused); forwarded addresses are believed only
from configured proxies; the dashboard carries security headers and no redirect trusts the
Host header; measurement reports must answer their task exactly, from the device that holds
the lease, within a per-device lease cap.
"""

from __future__ import annotations

import hashlib
import json
import os
import select
import socket
import threading
import time
from pathlib import Path

import psutil
import pytest
import uvicorn
from fastapi.testclient import TestClient

from api.app import create_app
from api.guards import SERVER_OPTIONS
from api.settings import Settings
from core.manifest import GraphManifest, GraphSpec, TensorSpec
from store import results as result_store
from store import tasks as task_store
from store import transaction
from store.artifacts import artifacts_of, store_artifacts
from store.models import Artifact, ProfilingTask
from store.task_results import task_results

ADMIN = {"Authorization": "Bearer admin-secret"}
PROPS = {"backend": "host", "model": "host", "cpu_count": 2, "ram_bytes": 1 << 30}
PHONE = {
    "backend": "adb",
    "model": "SM-S928B",
    "serial": "R5CX10",
    "board": "pineapple",
    "cpu_count": 8,
    "ram_bytes": 8 << 30,
}
SPEC = {"prefill_lengths": [16, 32], "decode_contexts": [16], "repeats": 2}


def settings_for(database_url, tmp_path, **extra) -> Settings:
    return Settings(
        database_url=database_url,
        data_dir=tmp_path,
        admin_key="admin-secret",
        enroll_token="enroll-secret",
        **extra,
    )


@pytest.fixture
def client(database_url, tmp_path):
    with TestClient(create_app(settings_for(database_url, tmp_path))) as test_client:
        yield test_client


def enroll(client, name="phone", properties=PROPS, expect=201):
    body = {"enroll_token": "enroll-secret", "name": name, "properties": properties}
    response = client.post("/api/v1/devices/enroll", json=body)
    assert response.status_code == expect, response.text
    if expect != 201:
        return response
    data = response.json()
    return data["device_id"], {"Authorization": f"Bearer {data['device_token']}"}


def fake_graphs(genome_hash: str) -> dict[str, bytes]:
    """Artifact files a task can point at (the API serves them, nothing runs them)."""
    files = {"prefill.onnx": b"prefill-bytes", "decode.onnx": b"decode-bytes"}
    ids = TensorSpec(name="input_ids", dtype="int64", shape=[1, "seq"], role="input_ids")
    logits = TensorSpec(name="logits", dtype="float32", shape=[1, "seq", 97], role="logits")
    graphs = {
        kind: GraphSpec(
            file=f"{kind}.onnx",
            sha256=hashlib.sha256(files[f"{kind}.onnx"]).hexdigest(),
            size_bytes=len(files[f"{kind}.onnx"]),
            inputs=[ids],
            outputs=[logits],
        )
        for kind in ("prefill", "decode")
    }
    manifest = GraphManifest(
        genome_hash=genome_hash,
        vocab_size=97,
        opset=18,
        dtype="float32",
        graphs=graphs,
        cache_pairs={},
        params=1,
        cache_bytes_per_token=0,
        cache_bytes_fixed=0,
    )
    return {**files, "manifest.json": manifest.model_dump_json().encode()}


def seed_tasks(client, count=1, spec=SPEC) -> tuple[list[int], list[int]]:
    """`count` candidates with graphs and one queued "host" task each: (candidates, tasks)."""
    sessions = client.app.state.sessions
    job_id = client.post(
        "/api/v1/jobs", headers=ADMIN, json={"name": "j", "objectives": ["perplexity", "params"]}
    ).json()["id"]
    rows = result_store.add_candidates(
        sessions, job_id, 0, [{"genome": {}, "genome_hash": f"{i:016x}"} for i in range(count)]
    )
    task_ids = []
    for row in rows:
        store_artifacts(
            sessions, client.app.state.artifact_dir, row.genome_hash, fake_graphs(row.genome_hash)
        )
        task_ids.append(task_store.enqueue_task(sessions, job_id, row.id, "host", spec).id)
    return [r.id for r in rows], task_ids


def stat(length, **patch):
    return {
        "length": length,
        "median_ms": 1.0,
        "p10_ms": 0.9,
        "p90_ms": 1.2,
        "n": 2,
        "samples_ms": [1.0, 1.1],
        **patch,
    }


def report(prefill=(16, 32), decode=(16,), **patch):
    """A report answering SPEC; lengths may be given as ints or as whole stats."""

    def stats(items):
        return [item if isinstance(item, dict) else stat(item) for item in items]

    return {
        "prefill": stats(prefill),
        "decode": stats(decode),
        "peak_memory_bytes": 1 << 20,
        "runner": "host onnxruntime",
        "wall_s": 1.0,
        **patch,
    }


# --------------------------------------------------------------- 1: bodies stop at the limit


@pytest.fixture
def served(database_url, tmp_path):
    """A real uvicorn server, run as `tailor serve` runs it, in this process."""
    app = create_app(settings_for(database_url, tmp_path, max_body_bytes=1 << 20))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error", **SERVER_OPTIONS)
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    yield app, port
    server.should_exit = True
    thread.join(timeout=10)


@pytest.mark.parametrize("path", ["/api/v1/devices/enroll", "/api/v1/tasks/lease"])
def test_a_chunked_body_past_the_limit_is_413_before_it_is_read(served, path):
    _, port = served
    process = psutil.Process()
    chunk = b" " * (64 << 10)
    total, limit = 50 << 20, 20 << 20
    baseline = peak = process.memory_info().rss
    sent, answer = 0, b""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as conn:
        conn.sendall(
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
        )
        try:
            while sent < total:
                if select.select([conn], [], [], 0)[0]:
                    break  # the server answered: stop sending
                conn.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                sent += len(chunk)
                peak = max(peak, process.memory_info().rss)
            else:
                conn.sendall(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server closed after answering
        try:
            while b"\r\n\r\n" not in answer:
                data = conn.recv(65536)
                if not data:
                    break
                answer += data
        except ConnectionResetError:
            pass
    peak = max(peak, process.memory_info().rss)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert sent < total  # answered while the body was still coming
    assert peak - baseline < limit, f"server grew by {(peak - baseline) >> 20} MB"


def test_declared_length_past_the_limit_and_deep_json_are_refused(client):
    limit = client.app.state.settings.max_body_bytes
    huge = client.post(
        "/api/v1/tasks/lease",
        content=b" " * (limit + 1),
        headers={"content-type": "application/json"},
    )
    assert huge.status_code == 413 and "max_body_bytes" in huge.json()["detail"]
    deep = client.post(
        "/api/v1/jobs",
        content=b"[" * 100 + b"]" * 100,
        headers={**ADMIN, "content-type": "application/json"},
    )
    assert deep.status_code == 400 and "nested" in deep.json()["detail"]
    assert client.get("/api/v1/health").status_code == 200


# ------------------------------------------------ 2, 3: a disabled device stays disabled


def test_a_disabled_device_token_downloads_nothing(client):
    candidates, _ = seed_tasks(client)
    device_id, auth = enroll(client)
    url = f"/api/v1/artifacts/{candidates[0]}/prefill.onnx"
    assert client.get(url, headers=auth).status_code == 200
    client.post(f"/api/v1/devices/{device_id}/disable", headers=ADMIN)
    for name in ("prefill.onnx", "manifest.json"):
        refused = client.get(f"/api/v1/artifacts/{candidates[0]}/{name}", headers=auth)
        assert refused.status_code == 403 and "disabled" in refused.json()["detail"]
    assert client.get(url, headers=ADMIN).status_code == 200


@pytest.mark.parametrize("properties, renamed", [(PHONE, "phone-renamed"), (PROPS, None)])
def test_the_same_device_enrolls_into_its_row_and_stays_out_while_disabled(
    client, properties, renamed
):
    device_id, first = enroll(client, "phone", properties)
    again_id, second = enroll(client, renamed or "phone", properties)
    assert again_id == device_id  # same serial and board (phone) or name and model (host)
    assert client.post("/api/v1/devices/heartbeat", headers=first).status_code == 403
    assert client.post("/api/v1/devices/heartbeat", headers=second).status_code == 200
    client.post(f"/api/v1/devices/{device_id}/disable", headers=ADMIN)
    refused = enroll(client, renamed or "phone", properties, expect=403)
    assert f"an admin must enable device {device_id}" in refused.json()["detail"]
    assert [d["id"] for d in client.get("/api/v1/devices").json()] == [device_id]
    client.post(f"/api/v1/devices/{device_id}/enable", headers=ADMIN)
    assert enroll(client, renamed or "phone", properties)[0] == device_id
    other_id, _ = enroll(client, "other", {**properties, "serial": "R5CX11"})
    assert other_id != device_id


def test_migration_keeps_a_disabled_device_disabled(database_url, tmp_path):
    """Rows enrolled before devices.identity existed get it: the disabled one keeps it."""
    from alembic import command
    from alembic.config import Config
    from sqlalchemy import text

    from store.engine import MIGRATIONS, make_engine

    engine = make_engine(database_url)
    with engine.begin() as connection:
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        config.attributes["connection"] = connection
        command.upgrade(config, "0002")
        for i, state in enumerate(["disabled", "active"]):
            connection.execute(
                text(
                    "INSERT INTO devices (name, model, properties, token_hash, state, created_at)"
                    " VALUES (:n, 'host', :p, :t, :s, CURRENT_TIMESTAMP)"
                ),
                {
                    "n": "phone",
                    "p": '{"backend": "host", "model": "host", "cpu_count": 2, "ram_bytes": 1}',
                    "t": f"{i:064x}",
                    "s": state,
                },
            )
        command.upgrade(config, "head")
    engine.dispose()
    with TestClient(create_app(settings_for(database_url, tmp_path))) as c:
        refused = enroll(c, "phone", PROPS, expect=403)
        assert "an admin must enable device 1" in refused.json()["detail"]


# ------------------------------------------------ 5: forwarded addresses


def test_forwarded_for_is_believed_only_from_a_configured_proxy(database_url, tmp_path):
    def attempts(**extra):
        app = create_app(
            settings_for(database_url, tmp_path, enroll_attempts_per_minute=3, **extra)
        )
        with TestClient(app, client=("127.0.0.1", 40000)) as c:
            return [
                c.post(
                    "/api/v1/devices/enroll",
                    headers={"X-Forwarded-For": f"10.9.0.{i}"},
                    json={"enroll_token": "guess", "name": "x", "properties": PROPS},
                ).status_code
                for i in range(5)
            ]

    assert 429 in attempts()  # loopback is no proxy unless configured: its peer is counted
    assert 429 not in attempts(trusted_proxies=["127.0.0.1"])  # each forwarded client counted


def test_a_real_server_counts_the_peer_not_its_forwarded_for(served):
    """Run with SERVER_OPTIONS, uvicorn leaves X-Forwarded-For to the app (it would
    otherwise rewrite the peer from it for every loopback connection)."""
    app, port = served
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        for i in range(app.state.settings.enroll_attempts_per_minute + 1):
            body = json.dumps({"enroll_token": "guess", "name": "x", "properties": PROPS}).encode()
            conn.sendall(
                b"POST /api/v1/devices/enroll HTTP/1.1\r\nHost: x\r\n"
                b"X-Forwarded-For: 10.9.0.%d\r\nContent-Type: application/json\r\n"
                b"Content-Length: %d\r\n\r\n%s" % (i, len(body), body)
            )
            head = b""
            while b"\r\n\r\n" not in head:
                head += conn.recv(65536)
            status = head.split(b" ", 2)[1]
            length = int(head.split(b"content-length: ", 1)[1].split(b"\r\n", 1)[0])
            rest = head.split(b"\r\n\r\n", 1)[1]
            while len(rest) < length:
                rest += conn.recv(65536)
    assert status == b"429"


def test_tailor_serve_runs_uvicorn_with_the_apps_server_options(monkeypatch, tmp_path):
    import api.app
    import cli.serve

    seen = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **options: seen.update(options))
    frozen = []  # not this test process's objects: they would never be collected
    monkeypatch.setattr(api.app, "freeze_startup_objects", lambda: frozen.append(1))
    cli.serve.serve(
        host="127.0.0.1",
        port=1,
        database_url=f"sqlite:///{tmp_path / 'db'}",
        admin_key="k",
        enroll_token=None,
        artifact_dir=None,
        data_dir=tmp_path,
        workers=1,
    )
    assert frozen == [1]  # what it serves keeps its startup objects out of collections
    assert seen["proxy_headers"] is False and SERVER_OPTIONS.items() <= seen.items()


def test_trusted_proxies_must_be_addresses(tmp_path):
    with pytest.raises(ValueError, match="trusted_proxies"):
        Settings(data_dir=tmp_path, trusted_proxies=["proxy.local"])


# ------------------------------------------------ 7: dashboard headers, no Host redirects


def test_dashboard_security_headers_and_no_host_built_redirect(client):
    page = client.get("/")
    assert page.headers["x-content-type-options"] == "nosniff"
    policy = page.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in policy and "script-src 'self'" in policy
    assert "unsafe-eval" not in policy
    for path in ("/static/app.js", "/static/plotly.min.js", "/static/style.css", "/api/v1/health"):
        assert client.get(path).headers["x-content-type-options"] == "nosniff"
    assert "frame-ancestors 'none'" in client.get("/docs").headers["content-security-policy"]
    moved = client.get("/api/v1/jobs/", headers={"Host": "evil.example"}, follow_redirects=False)
    assert "evil.example" not in moved.headers.get("location", "")
    assert moved.status_code == 404


# ------------------------------------------------ 12, 13, 14: reports and leases


@pytest.mark.parametrize(
    "bad, field",
    [
        ({"decode": [stat(16, median_ms=-5, p10_ms=-6)]}, "decode.0.median_ms"),
        ({"decode": [stat(16, median_ms=-1e308, p10_ms=-1e308)]}, "decode.0.median_ms"),
        ({"decode": [stat(16, p10_ms=2.0)]}, "decode.0"),
        ({"decode": [stat(16, n=3)]}, "decode.0"),
        ({"decode": [stat(16, n=3, samples_ms=[])]}, "decode.0.samples_ms"),
        ({"decode": [stat(16, n=100_000, samples_ms=[1.0] * 100_000)]}, "decode.0"),
        ({"decode": [stat(16), stat(16)]}, "decode"),
        ({"decode": [stat(16, reference_ratio=0.8)]}, "decode.0"),  # without its median
        (
            {"decode": [stat(16, reference_ratio=0.0, reference_median_ms=1.0)]},
            "decode.0.reference_ratio",
        ),
        (
            {"prefill": [stat(16, reference_ratio=0.8, reference_median_ms=float("nan"))]},
            "prefill.0.reference_median_ms",
        ),
        ({"decode": [stat(64)]}, "decode"),
        ({"prefill": [stat(16)]}, "prefill"),
        ({"wall_s": float("inf")}, "wall_s"),
    ],
)
def test_bad_reports_are_422_naming_the_field_and_keep_the_lease(client, bad, field):
    seed_tasks(client)
    _, auth = enroll(client)
    task = client.post("/api/v1/tasks/lease", headers=auth).json()["task"]
    body = json.dumps(report(**bad), allow_nan=True)  # NaN/Infinity as Python writes them
    refused = client.post(
        f"/api/v1/tasks/{task['task_id']}/report",
        headers={**auth, "content-type": "application/json"},
        content=body,
    )
    assert refused.status_code == 422, refused.text
    assert refused.json()["detail"].startswith(field), refused.json()["detail"]
    kept = client.post(f"/api/v1/tasks/{task['task_id']}/report", headers=auth, json=report())
    assert kept.status_code == 200 and kept.json()["state"] == "done"


def test_a_report_with_a_reference_ratio_is_stored_with_it(client):
    seed_tasks(client)
    _, auth = enroll(client)
    task = client.post("/api/v1/tasks/lease", headers=auth).json()["task"]
    paired = stat(16, reference_ratio=0.8, reference_median_ms=1.25)
    body = report(decode=(paired,))
    done = client.post(f"/api/v1/tasks/{task['task_id']}/report", headers=auth, json=body)
    assert done.status_code == 200 and done.json()["state"] == "done"


def test_a_task_finished_by_another_device_is_409_for_it(client):
    candidates, _ = seed_tasks(client)
    _, a = enroll(client, "a")
    _, b = enroll(client, "b")
    task = client.post("/api/v1/tasks/lease", headers=a).json()["task"]
    assert (
        client.post(f"/api/v1/tasks/{task['task_id']}/report", headers=a, json=report()).status_code
        == 200
    )
    assert (
        client.post(f"/api/v1/tasks/{task['task_id']}/report", headers=a, json=report()).status_code
        == 200
    )  # its own repeat: acknowledged
    other = client.post(f"/api/v1/tasks/{task['task_id']}/report", headers=b, json=report())
    assert other.status_code == 409
    [row] = task_results(client.app.state.sessions, candidates)
    assert row["report"]["runner"] == "host onnxruntime"


@pytest.mark.parametrize("lost", ["file", "row", "garbage"])
def test_a_task_whose_manifest_storage_lost_fails_saying_why_and_is_not_handed_out(client, lost):
    """The lease is committed before the assignment is read from storage: when the candidate's
    manifest is gone (its row, its file) or is not a manifest, the task fails with the reason
    and the device gets no task, instead of a 500 that left the task leased to a device that
    never learnt its id (and, handed back, would be handed out again)."""
    sessions = client.app.state.sessions
    [candidate], [task_id] = seed_tasks(client)
    [manifest] = [a for a in artifacts_of(sessions, f"{0:016x}") if a.name == "manifest.json"]
    if lost == "file":
        os.remove(manifest.path)
    elif lost == "garbage":
        Path(manifest.path).write_text("{not a manifest")
    else:
        with transaction(sessions) as s:
            s.delete(s.get(Artifact, manifest.id))
    _, auth = enroll(client)
    answer = client.post("/api/v1/tasks/lease", headers=auth)
    assert answer.status_code == 200 and answer.json() == {"task": None}, answer.text
    with transaction(sessions) as s:
        task = s.get(ProfilingTask, task_id)
        assert task.state == "failed" and task.lease_owner is None
        assert task.last_error.startswith("server storage: ") and "manifest.json" in task.last_error
    again = client.post("/api/v1/tasks/lease", headers=auth)
    assert again.status_code == 200 and again.json() == {"task": None}


def test_leases_per_device_and_lease_length_are_capped(database_url, tmp_path):
    settings = settings_for(database_url, tmp_path, max_leases_per_device=2, max_lease_seconds=600)
    with TestClient(create_app(settings)) as c:
        seed_tasks(c, count=4)
        _, a = enroll(c, "a")
        _, b = enroll(c, "b")
        first = c.post("/api/v1/tasks/lease", headers=a, json={"lease_seconds": 86_400})
        from datetime import datetime, timezone

        expires = datetime.fromisoformat(first.json()["task"]["lease_expires_at"])
        if expires.tzinfo is None:
            expires = expires.replace(tzinfo=timezone.utc)
        assert (expires - datetime.now(timezone.utc)).total_seconds() <= 600
        assert c.post("/api/v1/tasks/lease", headers=a).json()["task"] is not None
        third = c.post("/api/v1/tasks/lease", headers=a)
        assert third.status_code == 409 and "max_leases_per_device" in third.json()["detail"]
        assert c.post("/api/v1/tasks/lease", headers=b).json()["task"] is not None
        done = first.json()["task"]["task_id"]
        c.post(f"/api/v1/tasks/{done}/report", headers=a, json=report())
        assert c.post("/api/v1/tasks/lease", headers=a).json()["task"] is not None


def test_default_is_one_lease_per_device_and_concurrent_leases_cannot_pass_it(client):
    from concurrent.futures import ThreadPoolExecutor

    seed_tasks(client, count=6)
    _, auth = enroll(client)
    with ThreadPoolExecutor(6) as pool:
        codes = list(pool.map(lambda _: client.post("/api/v1/tasks/lease", headers=auth), range(6)))
    granted = [r for r in codes if r.status_code == 200 and r.json()["task"] is not None]
    assert len(granted) == 1
    assert {r.status_code for r in codes} <= {200, 409}


def test_lease_settings_are_bounded(tmp_path):
    with pytest.raises(ValueError, match="max_lease_seconds"):
        Settings(data_dir=tmp_path, lease_seconds=7200, max_lease_seconds=3600)
    with pytest.raises(ValueError, match="max_leases_per_device"):
        Settings(data_dir=tmp_path, max_leases_per_device=0)


def test_openapi_declares_bearer_schemes_and_every_error_status(tmp_path):
    from api.app import create_app
    from api.settings import Settings

    app = create_app(
        Settings(
            data_dir=tmp_path,
            admin_key="a",
            enroll_token="e",
            database_url=f"sqlite:///{tmp_path / 'db.sqlite'}",
        )
    )
    spec = app.openapi()
    schemes = spec["components"]["securitySchemes"]
    assert {k: (v["type"], v["scheme"]) for k, v in schemes.items()} == {
        "AdminKey": ("http", "bearer"),
        "DeviceToken": ("http", "bearer"),
    }
    assert spec["paths"]["/api/v1/jobs"]["post"]["security"] == [{"AdminKey": []}]
    assert spec["paths"]["/api/v1/tasks/lease"]["post"]["security"] == [{"DeviceToken": []}]
    artifact = spec["paths"]["/api/v1/artifacts/{candidate_id}/{name}"]["get"]
    assert artifact["security"] == [{"AdminKey": []}, {"DeviceToken": []}]  # either one
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            declared = set(operation["responses"])
            assert {"401", "403", "404", "409", "413", "422", "429", "503"} <= declared, (
                method,
                path,
            )
    body = spec["paths"]["/api/v1/jobs"]["post"]["responses"]["422"]["content"]["application/json"][
        "schema"
    ]["$ref"]
    assert body.endswith("/ValidationErrorBody")


def test_timestamps_carry_their_zone_on_sqlite(tmp_path):
    from fastapi.testclient import TestClient

    from api.app import create_app
    from api.settings import Settings

    settings = Settings(
        data_dir=tmp_path,
        admin_key="a",
        enroll_token="e",
        database_url=f"sqlite:///{tmp_path / 'db.sqlite'}",
    )
    with TestClient(create_app(settings)) as client:
        created = client.post(
            "/api/v1/jobs",
            headers={"Authorization": "Bearer a"},
            json={"name": "t", "objectives": ["params"]},
        ).json()
        job = client.get(f"/api/v1/jobs/{created['id']}").json()
    assert job["created_at"].endswith(("Z", "+00:00")), job["created_at"]
