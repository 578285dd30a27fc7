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
import pytest


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


# --------------------------------------------------------------------------- hostile input
# Every argument no retry can fix ends at once in one line and exit 2, before the agent
# enrolls anything on the (real) server; the agent before these checks ran for ever on some
# of them, so each run has a time limit.


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from tests.device_agent.serving import serve

    with serve(tmp_path_factory.mktemp("hostile")) as (url, _app):
        yield url


def enrolled(url: str) -> list[str]:
    from tests.device_agent.serving import ADMIN

    return [d["name"] for d in httpx.get(f"{url}/api/v1/devices", headers=ADMIN, timeout=10).json()]


def refused(url: str, tmp_path, *args: str) -> str:
    """`tailor agent --server URL ... ARGS` (ARGS name the device, else --host): exit 2 with
    one `error:` line and no traceback, within 60 s; returns that line."""
    from tests.device_agent.serving import ENROLL

    device = [] if {"--host", "--usb", "--tcp"} & set(args) else ["--host"]
    server = [] if "--server" in args else ["--server", url]
    result = subprocess.run(
        [sys.executable, "-m", "cli.main", "agent", *server, "--enroll-token", ENROLL]
        + ["--config-dir", str(tmp_path / "agent"), *device, *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "TAILOR_AGENT_RUNTIME_DIR": str(tmp_path / "run")},
    )
    assert result.returncode == 2, (args, result.stderr[-2000:])
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), (args, result.stderr[-2000:])
    return lines[0]


def test_a_model_or_name_the_protocol_refuses_is_a_usage_error_before_enrolling(server, tmp_path):
    for model in ("", "x" * 200):
        line = refused(server, tmp_path, "--model", model)
        assert line.startswith("error: --model: device class ") and "1 to 128 characters" in line
    line = refused(server, tmp_path, "--name", "n" * 200)
    assert (
        line == f"error: --name: the device name {'n' * 40!r} must be 1 to 128 characters, got 200"
    )
    assert enrolled(server) == []


def test_a_lease_length_out_of_the_protocols_bounds_is_refused_before_enrolling(server, tmp_path):
    for seconds in ("-5", "0", "nan", "86401"):
        line = refused(server, tmp_path, "--lease-seconds", seconds)
        assert line.startswith(
            "error: --lease-seconds: must be more than 0 and at most 86400 seconds, got "
        )
    assert enrolled(server) == []


def test_a_config_dir_that_is_a_file_is_a_usage_error(server, tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("not a folder")
    line = refused(server, tmp_path, "--config-dir", str(afile))
    assert (
        line == f"error: --config-dir (or TAILOR_AGENT_HOME): cannot use {afile}: not a directory"
    )
    line = refused(server, tmp_path, "--config-dir", str(afile / "below"))
    assert "--config-dir (or TAILOR_AGENT_HOME): cannot use" in line
    assert enrolled(server) == []


def test_a_poll_interval_that_would_flood_the_server_is_refused(server, tmp_path):
    from cli.agent_args import MIN_POLL_S

    for seconds in ("0", "-1", "0.01", "nan", "inf"):
        line = refused(server, tmp_path, "--poll-interval", seconds)
        assert line.startswith(
            f"error: --poll-interval: must be a number of seconds, at least {MIN_POLL_S:g} "
        )
    assert enrolled(server) == []


def test_a_number_option_that_is_nan_or_no_wait_is_refused(server, tmp_path):
    """An option without click's min= takes NaN, one with it still takes infinity."""
    for flag, value, says in (
        ("--auth-timeout", "nan", "must be a finite number, got nan"),
        ("--auth-timeout", "0", "must be more than 0 seconds, got 0"),
        ("--cooldown-timeout", "inf", "must be a finite number, got inf"),
        ("--min-free-mb", "inf", "must be a finite number, got inf"),
    ):
        assert refused(server, tmp_path, flag, value) == f"error: {flag}: {says}"
    assert enrolled(server) == []


def test_arguments_no_retry_can_fix_end_at_once(server, tmp_path):
    for url in ("notaurl", "ftp://example.org", "http://"):
        line = refused(server, tmp_path, "--server", url, "--host")
        assert line.startswith("error: --server: expected an http:// or https:// URL")
    for address, says in (
        ("127.0.0.1:abc", "the port must be a number from 1 to 65535, got 'abc'"),
        ("127.0.0.1:70000", "the port must be a number from 1 to 65535, got '70000'"),
        ("", "expected HOST:PORT"),
        ("fe80::1", "an IPv6 address goes in brackets"),
        ("no host:5555", "'no host' is no host name or IP address"),
    ):
        assert refused(server, tmp_path, "--tcp", address).startswith(f"error: --tcp: {says}")
    for serial in ("", "  "):
        line = refused(server, tmp_path, "--usb", serial)
        assert line.startswith("error: --usb: give the phone's USB serial")
    assert enrolled(server) == []


def test_usb_without_libusb_is_a_usage_error(server, tmp_path):
    from device_agent.adb_device import UsbUnavailable, usb_transport_class

    try:
        usb_transport_class()
    except UsbUnavailable as exc:
        line = refused(server, tmp_path, "--usb", "R5CX1234ABC")
        assert line == f"error: --usb: {exc}"
    else:
        pytest.skip("this machine has libusb: a missing phone is waited for, rightly")


def test_a_phone_name_that_does_not_resolve_yet_is_retried(server, tmp_path):
    """A well-formed host name that does not resolve may resolve once the network is up (an
    agent started at boot, a phone's mDNS name), so the agent keeps trying it."""
    from tests.device_agent.serving import ENROLL

    agent = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "agent", "--server", server, "--enroll-token"]
        + [ENROLL, "--tcp", "phone.invalid:5555", "--config-dir", str(tmp_path / "agent")],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "TAILOR_AGENT_RUNTIME_DIR": str(tmp_path / "run")},
    )
    try:
        time.sleep(4)
        assert agent.poll() is None
    finally:
        agent.terminate()
        output, _ = agent.communicate(timeout=30)
    assert "phone not reachable (tcp:phone.invalid:5555: cannot connect" in output
    assert "Traceback" not in output


def test_a_model_or_name_no_job_spec_or_listing_can_show_is_refused(server, tmp_path):
    from core.job_spec import ProfilingSpec

    for model, says in (
        (" host ", "must be 1 to 128 characters without surrounding spaces"),
        ("host ", "must be 1 to 128 characters without surrounding spaces"),
        ("\thost", "must be 1 to 128 characters without surrounding spaces"),
        ("a\x1b[31mb", "must not hold control characters"),
        ("a\x01b", "must not hold control characters"),
        ("a\nb", "must not hold control characters"),
        ("a\x7fb", "must not hold control characters"),
        ("SM[1]", "must not hold brackets"),
    ):
        line = refused(server, tmp_path, "--model", model)
        assert line.startswith(f"error: --model: device class {model!r} {says}")
        with pytest.raises(ValueError):
            ProfilingSpec(devices=[model])  # no job could name it
    for name in ("a\x1b]0;owned\x07b", "a\rb", "a\nb"):
        line = refused(server, tmp_path, "--name", name)
        assert line == f"error: --name: the device name {name!r} must not hold control characters"
    assert refused(server, tmp_path, "--name", " lab-1") == (
        "error: --name: the device name ' lab-1' must not begin or end with spaces"
    )
    assert enrolled(server) == []
