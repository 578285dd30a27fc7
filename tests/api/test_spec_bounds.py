"""Every number and string of a job spec has a bound the code and the database can hold, and
non-finite numbers are refused: each case is a 422 naming the field, at submission, on
SQLite and PostgreSQL."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.settings import Settings

ADMIN = {"Authorization": "Bearer admin-secret", "Content-Type": "application/json"}
SPEC = {
    "name": "bounds",
    "objectives": ["perplexity", "params"],
    "constraints": [{"metric": "params", "op": "<=", "value": 1e6}],
    "profiling": {"devices": ["host"]},
}


@pytest.fixture
def client(database_url, tmp_path):
    settings = Settings(
        database_url=database_url,
        data_dir=tmp_path,
        admin_key="admin-secret",
        enroll_token="enroll-secret",
    )
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def with_value(path: str, value):
    spec = json.loads(json.dumps(SPEC))
    *parents, leaf = path.split(".")
    node = spec
    for key in parents:
        node = node[int(key)] if key.isdigit() else node.setdefault(key, {})
    node[leaf] = value
    return spec


NON_FINITE = ["NaN", "Infinity", "-Infinity", "1e999"]
FLOAT_FIELDS = [
    "constraints.0.value",
    "training.timeout_s",
    "training.grad_clip",
    "profiling.timeout_s",
]


@pytest.mark.parametrize("field", FLOAT_FIELDS)
@pytest.mark.parametrize("literal", NON_FINITE)
def test_non_finite_numbers_are_422_naming_the_field(client, field, literal):
    body = json.dumps(with_value(field, "@@")).replace('"@@"', literal)
    response = client.post("/api/v1/jobs", content=body, headers=ADMIN)
    assert response.status_code == 422, response.text
    assert field in response.json()["detail"]


@pytest.mark.parametrize(
    "field, value",
    [
        ("training.seed", 2**100),
        ("evolution.seed", 2**64),
        ("training.eval_width", 10**9),
        ("training.tokens", 10**30),
        ("training.eval_tokens", 10**30),
        ("training.log_every", 10**30),
        ("profiling.devices", [f"phone{i}" for i in range(20_000)]),
        ("profiling.devices", [""]),
        ("profiling.devices", ["x" * 100_000]),
        ("search_space.widths", list(range(8, 4000, 2))),
        ("name", "n" * 201),
    ],
)
def test_oversized_values_are_422_naming_the_field(client, field, value):
    response = client.post("/api/v1/jobs", json=with_value(field, value), headers=ADMIN)
    assert response.status_code == 422, response.text
    assert field.split(".")[-1] in response.json()["detail"]


def test_the_largest_allowed_values_are_stored_and_read_back(client):
    spec = with_value("training.seed", 2**63 - 1)
    spec = {**spec, "evolution": {"seed": 2**63 - 1}}
    created = client.post("/api/v1/jobs", json=spec, headers=ADMIN)
    assert created.status_code == 201, created.text
    stored = client.get(f"/api/v1/jobs/{created.json()['id']}").json()["spec"]
    assert stored["training"]["seed"] == 2**63 - 1 and stored["evolution"]["seed"] == 2**63 - 1


def test_validation_cost_is_bounded_by_counting_not_enumerating(client):
    """The probe's 1 kB spec took 8.4 s to refuse, blocking /health; counting the gene-value
    combinations refuses it at once, and the most expensive spec allowed stays quick."""
    import time

    probe = {
        **SPEC,
        "search_space": {
            "classes": ["attention"],
            "widths": [2**i for i in range(3, 15)],
            "operator_genes": {
                "attention": {
                    "heads": list(range(3, 64, 2)),
                    "kv_heads": list(range(1, 65)),
                    "window": list(range(0, 64)),
                    "qk_norm": [0, 1],
                }
            },
        },
    }
    # The first request pays the app's lazy imports: not what is timed here.
    assert client.post("/api/v1/jobs", json=SPEC, headers=ADMIN).status_code == 201
    # Bounds with room for a loaded CI machine (two test workers on 2 cores); enumerating
    # took 8.4 s for the probe and grows with its lists.
    started = time.perf_counter()
    response = client.post("/api/v1/jobs", json=probe, headers=ADMIN)
    assert time.perf_counter() - started < 3.0
    assert response.status_code == 422 and "operator_genes.attention" in response.json()["detail"]
    # At the cap and with no valid combination at all (odd heads never divide these widths),
    # every combination is checked for every width: still well under a second.
    worst = {
        **SPEC,
        "search_space": {
            "classes": ["attention", "swiglu"],
            "widths": [2**i for i in range(3, 15)],
            "operator_genes": {
                "attention": {
                    "heads": list(range(3, 19, 2)),
                    "kv_heads": list(range(1, 9)),
                    "window": list(range(0, 32)),
                    "qk_norm": [0, 1],
                }
            },
        },
    }
    started = time.perf_counter()
    response = client.post("/api/v1/jobs", json=worst, headers=ADMIN)
    assert time.perf_counter() - started < 4.0
    assert response.status_code == 201, response.text  # swiglu still has valid choices


def test_specs_are_validated_off_the_event_loop(client, monkeypatch):
    """A spec at the bounds takes a while to check; the check runs in a worker thread, so the
    event loop keeps answering /health and heartbeats meanwhile."""
    import asyncio

    from api.routes import jobs as job_routes

    seen = []
    original = job_routes.parse_spec

    def spy(body: bytes):
        try:
            asyncio.get_running_loop()
            seen.append("event loop")
        except RuntimeError:
            seen.append("worker thread")
        return original(body)

    monkeypatch.setattr(job_routes, "parse_spec", spy)
    assert client.post("/api/v1/jobs", json=SPEC, headers=ADMIN).status_code == 201
    bad = client.post("/api/v1/jobs", json={**SPEC, "objectives": []}, headers=ADMIN)
    assert bad.status_code == 422 and bad.json()["detail"].startswith("objectives")
    assert seen == ["worker thread", "worker thread"]
