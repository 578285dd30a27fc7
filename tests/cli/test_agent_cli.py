"""`tailor agent` as a user meets it: started before its server it
waits with back-off and enrolls once the server is up; the first pairing with a phone says
which key to allow and keeps asking; a second agent on the same phone is refused;
the help and the device flags — never a traceback."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import threading
import time

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_agent_waits_for_a_server_that_is_not_up_yet(tmp_path):
    import uvicorn

    from api.app import create_app
    from api.guards import SERVER_OPTIONS
    from api.settings import Settings

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    agent = subprocess.Popen(
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
            "--name",
            "early",
            "--config-dir",
            str(tmp_path / "agent"),
            "--poll-interval",
            "0.2",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    server = None
    try:
        time.sleep(4)  # the agent tries, fails, backs off
        assert agent.poll() is None, agent.communicate()[1][-2000:]
        settings = Settings(
            data_dir=tmp_path / "server",
            admin_key="a",
            enroll_token="e",
            database_url=f"sqlite:///{tmp_path / 'db.sqlite'}",
        )
        server = uvicorn.Server(
            uvicorn.Config(
                create_app(settings),
                host="127.0.0.1",
                port=port,
                log_level="error",
                **SERVER_OPTIONS,
            )
        )
        threading.Thread(target=server.run, daemon=True).start()
        deadline = time.monotonic() + 60
        devices = []
        while time.monotonic() < deadline and not devices:
            time.sleep(0.5)
            try:
                devices = httpx.get(f"{url}/api/v1/devices", timeout=5).json()
            except httpx.TransportError:
                pass
        assert [d["name"] for d in devices] == ["early"]
        assert agent.poll() is None
    finally:
        agent.terminate()
        _, stderr = agent.communicate(timeout=30)
        if server is not None:
            server.should_exit = True
    assert "server unreachable" in stderr and "retrying in" in stderr
    assert "Traceback" not in stderr
    assert "HTTP Request" not in stderr  # no httpx line per poll


def cli(*args: str, env: dict | None = None):
    import typer
    from typer.testing import CliRunner

    from cli.agent import register

    app = typer.Typer()
    register(app)
    app.command("noop")(lambda: None)
    return CliRunner().invoke(app, ["agent", *args], env=env)


def test_help_is_plain_says_the_device_flags_exclude_each_other_and_keeps_defaults():
    from device_agent.defaults import DEFAULT_RUNNER

    result = cli("--help", env={"COLUMNS": "100"})
    assert result.exit_code == 0
    assert "<bool>" not in result.output and DEFAULT_RUNNER in result.output
    assert re.search(
        r"--host\s+measure on this machine \(excludes --usb and --tcp\)", result.output
    )
    assert "--host, --usb and --tcp exclude each other" in result.output
    assert "(excludes --host and --tcp)" in result.output
    assert "(excludes --host and --usb)" in result.output


def test_device_flags_exclude_each_other_with_a_clear_error():
    for args in (["--host", "--tcp", "127.0.0.1:5555"], ["--usb", "X", "--tcp", "h:1"], []):
        result = cli("--server", "http://127.0.0.1:9", *args)
        assert result.exit_code == 2 and isinstance(result.exception, SystemExit)
        assert "error: choose exactly one of --host, --usb SERIAL, --tcp HOST:PORT" in result.output
        assert "Traceback" not in result.output
    result = cli("--server", "http://127.0.0.1:9", "--host", "--tcp", "h:1")
    assert "(got --host and --tcp: they exclude each other)" in result.output


def test_a_second_agent_on_the_same_phone_is_refused(tmp_path, monkeypatch):
    from device_agent.phone_lock import PhoneLock

    monkeypatch.setenv("TAILOR_AGENT_RUNTIME_DIR", str(tmp_path / "run"))
    first = PhoneLock("127.0.0.1:5555").acquire()  # the first agent holds the phone
    try:
        result = cli(
            "--server",
            "http://127.0.0.1:9",
            "--tcp",
            "127.0.0.1:5555",
            "--config-dir",
            str(tmp_path / "agent"),
        )
    finally:
        first.release()
    assert result.exit_code == 2
    assert "error: another agent already measures phone 127.0.0.1:5555 (pid " in result.output
    assert "stop it first" in result.output and "Traceback" not in result.output


def test_first_pairing_names_the_key_keeps_asking_and_connects_once_allowed(tmp_path):
    from tests.device_agent.adb_standin import AdbStandin, make_sandbox

    standin = AdbStandin(make_sandbox(tmp_path / "phone"), allow_new_keys=False)
    standin.start()
    env = {**os.environ, "TAILOR_AGENT_RUNTIME_DIR": str(tmp_path / "run")}
    agent = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "cli.main",
            "agent",
            "--server",
            f"http://127.0.0.1:{free_port()}",
            "--enroll-token",
            "e",
            "--tcp",
            f"127.0.0.1:{standin.port}",
            "--config-dir",
            str(tmp_path / "agent"),
            "--auth-timeout",
            "2",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    try:
        deadline = time.monotonic() + 60
        while standin.auth_prompts < 2 and time.monotonic() < deadline:
            time.sleep(0.2)  # nobody taps Allow: the agent asks again
        standin.allow_new_keys = True  # the user taps Allow
        deadline = time.monotonic() + 60
        while not any("getprop" in c for c in standin.commands) and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(2)
    finally:
        agent.terminate()
        output, _ = agent.communicate(timeout=30)
        standin.stop()
    assert (
        "does not know this computer's key yet: tap Allow on the phone (RSA fingerprint " in output
    )
    assert "nobody tapped Allow on the phone within 2 s; asking again" in output
    assert "(key allowed)" in output and "phone: samsung SM-S928B, Android 14" in output
    assert "Traceback" not in output
