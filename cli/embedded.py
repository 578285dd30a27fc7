"""The embedded system: API server and a host profiling agent as threads of this process.

Used by `tailor demo` and by bench/system; a deployment runs the same pieces as separate
services instead (`tailor serve`, `tailor agent`, `tailor orchestrator`).
"""

from __future__ import annotations

import secrets
import socket
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass
class Embedded:
    url: str
    admin_key: str
    app: Any
    server: Any
    agent: Any

    def stop(self) -> None:
        self.agent.shutdown()
        self.server.should_exit = True


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_embedded(data_dir: Path, port: int = 0, agent_threads: int = 1) -> Embedded:
    import uvicorn

    from api.app import create_app
    from api.guards import SERVER_OPTIONS
    from api.settings import Settings
    from cli.rest import TailorClient
    from device_agent.agent import Agent, host_measure
    from device_agent.config import config_dir
    from device_agent.properties import host_properties

    data_dir.mkdir(parents=True, exist_ok=True)
    admin_key, enroll_token = secrets.token_urlsafe(16), secrets.token_urlsafe(16)
    port = port or free_port()
    url = f"http://127.0.0.1:{port}"
    settings = Settings(
        data_dir=data_dir,
        admin_key=admin_key,
        enroll_token=enroll_token,
        database_url=f"sqlite:///{(data_dir / 'tailor.db').resolve()}",
    )
    app = create_app(settings)
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", **SERVER_OPTIONS)
    )
    threading.Thread(target=server.run, daemon=True).start()
    TailorClient(url).wait_until_up()
    agent = Agent(
        url,
        enroll_token,
        "embedded-host",
        host_properties("host"),
        host_measure,
        config_dir(data_dir / "agent"),
        poll_s=0.5,
    )
    agent.ensure_enrolled()
    threading.Thread(target=agent.run, daemon=True).start()
    (data_dir / "admin_key.txt").write_text(admin_key + "\n")
    (data_dir / "admin_key.txt").chmod(0o600)
    return Embedded(url, admin_key, app, server, agent)
