"""A throwaway PostgreSQL server on loopback for the storage suite (Debian's packages).

Runs initdb and pg_ctl as the `postgres` OS user when the tests run as root. Returns None
(and the suite skips its PostgreSQL run, saying why) when no server can be started.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass
class PostgresServer:
    url: str
    data_dir: Path
    port: int
    bin_dir: Path

    def _run(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            _as_postgres([str(self.bin_dir / args[0]), *args[1:]]),
            capture_output=True,
            text=True,
            timeout=120,
        )

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.data_dir), "-m", "fast", "-w", "stop")

    def start(self) -> None:
        result = self._run(
            "pg_ctl",
            "-D",
            str(self.data_dir),
            "-l",
            str(self.data_dir / "log"),
            "-w",
            "-t",
            "60",
            "start",
        )
        if result.returncode:
            raise RuntimeError(result.stderr or result.stdout)


def _as_postgres(cmd: list[str]) -> list[str]:
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *cmd]
    return cmd


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_postgres() -> tuple[PostgresServer | None, str]:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        return None, "PostgreSQL is not installed (.ci/run installs Debian's postgresql)"
    bin_dir = Path(found[-1]).parent
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        return None, "running as root without runuser to drop to the postgres user"
    data_dir = Path(tempfile.mkdtemp(prefix="tailor-pg-"))
    if os.geteuid() == 0:
        shutil.chown(data_dir, "postgres", "postgres")
    port = _free_port()
    init = subprocess.run(
        _as_postgres(
            [
                str(bin_dir / "initdb"),
                "-D",
                str(data_dir),
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
            ]
        ),
        capture_output=True,
        text=True,
        timeout=180,
    )
    if init.returncode:
        return None, f"initdb failed: {init.stderr[-500:]}"
    with open(data_dir / "postgresql.conf", "a") as conf:
        conf.write(
            f"\nport = {port}\nlisten_addresses = '127.0.0.1'\n"
            f"unix_socket_directories = '{data_dir}'\nfsync = off\n"
            "max_connections = 200\n"
        )
    server = PostgresServer(
        f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres", data_dir, port, bin_dir
    )
    try:
        server.start()
    except RuntimeError as exc:
        return None, f"pg_ctl start failed: {exc}"
    for _ in range(50):
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return server, ""
        time.sleep(0.1)
    return None, "PostgreSQL did not accept connections"
