"""Property-based tests from the OpenAPI schema (schemathesis): no input may cause a 5xx."""

from __future__ import annotations

import tempfile
from pathlib import Path

import schemathesis
from hypothesis import HealthCheck, settings

from api.app import create_app
from api.settings import Settings

_DATA = Path(tempfile.mkdtemp(prefix="tailor-schemathesis-"))
APP = create_app(
    Settings(
        data_dir=_DATA,
        admin_key="admin",
        enroll_token="enroll",
        database_url=f"sqlite:///{_DATA / 'db.sqlite'}",
        enroll_attempts_per_minute=100_000,
    )
)
schema = schemathesis.openapi.from_asgi("/openapi.json", APP)


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_input_causes_a_server_error(case):
    response = case.call(headers={"Authorization": "Bearer admin"})
    assert response.status_code < 500, (case.method, case.path, response.text[:500])


CONFORMANCE = [
    schemathesis.checks.not_a_server_error,
    schemathesis.checks.status_code_conformance,
    schemathesis.checks.content_type_conformance,
    schemathesis.checks.response_schema_conformance,
    schemathesis.checks.response_headers_conformance,
]


@schema.parametrize()
@settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
def test_responses_conform_to_the_schema(case):
    """Every status a route answers is declared, and every body matches its declared
    schema (error bodies included), with and without credentials."""
    case.call_and_validate(headers={"Authorization": "Bearer admin"}, checks=CONFORMANCE)
    case.call_and_validate(headers={}, checks=CONFORMANCE)
