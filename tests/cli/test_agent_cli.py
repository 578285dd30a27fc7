"""`tailor agent` started before its server (issue #13, point 9): it waits with back-off,
saying so in one log line per try, and enrolls once the server is up — no traceback, no
exit."""

from __future__ import annotations

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
        [sys.executable, "-m", "cli.main", "agent", "--server", url, "--enroll-token", "e",
         "--host", "--name", "early", "--config-dir", str(tmp_path / "agent"),
         "--poll-interval", "0.2"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    server = None
    try:
        time.sleep(4)  # the agent tries, fails, backs off
        assert agent.poll() is None, agent.communicate()[1][-2000:]
        settings = Settings(data_dir=tmp_path / "server", admin_key="a", enroll_token="e",
                            database_url=f"sqlite:///{tmp_path / 'db.sqlite'}")
        server = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1",
                                               port=port, log_level="error", **SERVER_OPTIONS))
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
