"""The agent against a server that disabled it, and its secrets on disk (issue 12).

A disabled device's agent stops with the server's reason in one line instead of enrolling
itself back in; the token file is 0600 whatever mode an older file had.
"""

from __future__ import annotations

import stat
import threading

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.settings import Settings
from core.protocol import DeviceProperties
from device_agent.agent import Agent, EnrollmentRefused
from device_agent.config import load_token, save_token

ADMIN = {"Authorization": "Bearer admin-secret"}
PROPS = DeviceProperties(
    backend="adb",
    model="SM-S928B",
    serial="R5CX10",
    board="pineapple",
    cpu_count=8,
    ram_bytes=8 << 30,
)


def never_measure(*_):
    raise AssertionError("nothing to measure")


def test_a_disabled_device_stops_its_agent_instead_of_enrolling_again(tmp_path):
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'db.sqlite'}",
        data_dir=tmp_path,
        admin_key="admin-secret",
        enroll_token="enroll-secret",
    )
    with TestClient(create_app(settings)) as server:

        def agent() -> Agent:
            a = Agent(
                "http://testserver",
                "enroll-secret",
                "pixel",
                PROPS,
                never_measure,
                tmp_path / "agent",
                poll_s=0.01,
            )
            a.client.http = server  # the agent's HTTP client, served in process
            return a

        first = agent()
        first.ensure_enrolled()
        device_id = server.get("/api/v1/devices").json()[0]["id"]
        assert server.post(f"/api/v1/devices/{device_id}/disable", headers=ADMIN).is_success

        restarted = agent()  # as `restart: unless-stopped` brings it back, enroll token set
        timer = threading.Timer(10, restarted.stop.set)  # an agent that loops: give up
        timer.start()
        try:
            with pytest.raises(EnrollmentRefused) as refused:
                restarted.run()
        finally:
            timer.cancel()
        message = str(refused.value)
        assert "\n" not in message and f"an admin must enable device {device_id}" in message
        devices = server.get("/api/v1/devices").json()
        assert [(d["id"], d["state"]) for d in devices] == [(device_id, "disabled")]


def test_the_token_file_is_0600_even_when_it_was_0644(tmp_path):
    save_token(tmp_path, "http://s", "adb-x", 1, "old")
    [path] = tmp_path.glob("device-*.json")
    path.chmod(0o644)
    save_token(tmp_path, "http://s", "adb-x", 2, "new-secret")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_token(tmp_path, "http://s", "adb-x")["device_token"] == "new-secret"
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no partial file left


def test_a_restart_with_changed_properties_updates_them_on_the_server(tmp_path):
    """the server's view of a phone follows an Android update or a new
    board reading after a restart: the first heartbeat carries the properties, so no enrollment
    token is needed and the device keeps its token."""
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'db.sqlite'}",
        data_dir=tmp_path,
        admin_key="admin-secret",
        enroll_token="enroll-secret",
    )
    with TestClient(create_app(settings)) as server:

        def agent(properties) -> Agent:
            a = Agent(
                "http://testserver",
                "enroll-secret",
                "pixel",
                properties,
                never_measure,
                tmp_path / "agent",
                poll_s=0.01,
            )
            a.client.http = server
            return a

        first = agent(PROPS)
        first.ensure_enrolled()
        again = agent(PROPS)
        again.ensure_enrolled()  # unchanged: the saved token, no new enrollment
        assert again.client.token == first.client.token
        updated = PROPS.model_copy(update={"android_release": "15", "sdk": 35})
        restarted = agent(updated)
        restarted.enroll_token = None  # a restart from the saved token alone
        restarted.ensure_enrolled()
        assert restarted.client.token == first.client.token
        [device] = server.get("/api/v1/devices").json()
        assert device["properties"]["android_release"] == "15"
        assert device["properties"]["sdk"] == 35
