"""The API's test client (FastAPI's TestClient over the real app), on SQLite and
PostgreSQL (`database_url`)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.settings import Settings


@pytest.fixture
def client(database_url, tmp_path):
    settings = Settings(
        database_url=database_url,
        data_dir=tmp_path,
        admin_key="admin-secret",
        enroll_token="enroll-secret",
        enroll_attempts_per_minute=5,
        max_body_bytes=200_000,
    )
    with TestClient(create_app(settings)) as test_client:
        yield test_client
