"""The real API server as a child process (`python -m cli.main serve`), so a fleet run can
kill it with SIGKILL mid-run and start it again on the same port and database, and read
its CPU time and resident memory from /proc.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

from core.protocol import API_PREFIX

ROOT = Path(__file__).resolve().parents[2]
ADMIN_KEY, ENROLL_TOKEN = "fleet-admin", "fleet-enroll"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")
LOW_NICENESS = 19  # the scheduler's lowest weight: what `low` priority means


def machine_cpu_s() -> tuple[float, float]:
    """(busy, total) CPU seconds of every core since boot (/proc/stat's first line): two
    readings give the share of the machine that was busy in between."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields) - idle) / CLOCK_TICKS, sum(fields) / CLOCK_TICKS


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def lower_priority(priority: str) -> None:
    """In a child before exec: `low` (niceness 19: the scheduler's lowest weight, yet never
    starved as a SCHED_IDLE process is on a full machine) or `normal` (unchanged)."""
    if priority == "low":
        os.nice(LOW_NICENESS)
        lower_session_group(LOW_NICENESS)


def lower_session_group(niceness: int) -> None:
    """Give this process's session the scheduling weight of `niceness`.

    With the kernel's autogroups on (`/proc/sys/kernel/sched_autogroup_enabled`, the default
    of most distributions' kernels), every session is a scheduling group of its own, and the
    groups share the CPU by the group's niceness, not by their processes': fifty agents in
    sessions of their own at process niceness 19 still weighed as much as the server each.
    Only a session's own processes should call this (the agents and the phone rack lead
    theirs); without autogroups there is no such file and nothing to do."""
    try:
        Path("/proc/self/autogroup").write_text(f"{niceness}\n")
    except OSError:
        pass


def start_tailor(
    args: list[str], env: dict[str, str], log_path: Path, priority: str = "normal"
) -> subprocess.Popen:
    """`tailor ARGS` from this checkout in its own session (so a fault can kill its whole
    process group), its output appended to `log_path`, at `priority` (`lower_priority`)."""
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "cli.main", *args],
            env=env,
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=None if priority == "normal" else lambda: lower_priority(priority),
        )


class ServerProcess:
    """`settings`: TAILOR_* overrides (lease length, heartbeat interval, enrollment rate)."""

    def __init__(
        self, workdir: Path, database_url: str, settings: dict[str, str], workers: int = 1
    ):
        self.workdir, self.database_url, self.settings = workdir, database_url, settings
        self.workers = workers  # `tailor serve --workers`
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        self.cpu_s_before = 0.0  # CPU seconds of the incarnations killed so far
        self.peak_rss_bytes = 0
        self.restarts: list[float] = []  # wall time each restart was up again
        self._sampler: threading.Thread | None = None

    def start(self, timeout_s: float = 60.0) -> None:
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("TAILOR_", "RAY_"))},
            "TAILOR_DATABASE_URL": self.database_url,
            "TAILOR_ADMIN_KEY": ADMIN_KEY,
            "TAILOR_ENROLL_TOKEN": ENROLL_TOKEN,
            "TAILOR_DATA_DIR": str(self.workdir / "server"),
            **self.settings,
        }
        self.proc = start_tailor(
            ["serve", "--port", str(self.port), "--workers", str(self.workers)],
            env,
            self.workdir / "server.log",
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the server exited ({self.proc.returncode}): see server.log")
            try:
                if httpx.get(self.url + API_PREFIX + "/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        else:
            raise TimeoutError(f"no API at {self.url} after {timeout_s:.0f} s")
        if self._sampler is None:
            self._sampler = threading.Thread(target=self._sample_loop, daemon=True)
            self._sampler.start()

    def kill9(self) -> None:
        """SIGKILL to every process of the server (its workers too): no shutdown handler
        runs, open transactions die with the processes."""
        self.cpu_s_before += self.cpu_s_now()
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def restart(self) -> None:
        self.start()
        self.restarts.append(time.time())

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.cpu_s_before += self.cpu_s_now()
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)  # its workers too
                self.proc.wait()

    def processes(self) -> list[tuple[int, list[str]]]:
        """(pid, /proc/PID/stat fields after the command name) of every process of the running
        incarnation: its session, which the server leads (`start_tailor`) and its workers
        share; not the dead ones waiting to be reaped."""
        if self.proc is None:
            return []
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[3]) == self.proc.pid and fields[0] != "Z":  # session id; alive
                found.append((int(entry.name), fields))
        return found

    def cpu_s_now(self) -> float:
        """User + system CPU seconds of the running incarnation's processes, and of the
        workers its supervisor already reaped (the children's times it counts)."""
        ticks = 0
        for pid, f in self.processes():
            ticks += int(f[11]) + int(f[12])
            if pid == self.proc.pid:  # the leader: and the children it reaped
                ticks += int(f[13]) + int(f[14])
        return ticks / CLOCK_TICKS

    def cpu_s(self) -> float:
        return self.cpu_s_before + self.cpu_s_now()

    def rss_bytes(self) -> int:
        """Resident memory of the running incarnation's processes, summed (pages they share
        counted once per process: an upper bound)."""
        return sum(int(f[21]) for _, f in self.processes()) * PAGE_BYTES

    def _sample_loop(self) -> None:
        while self.proc is not None:
            self.peak_rss_bytes = max(self.peak_rss_bytes, self.rss_bytes())
            time.sleep(0.5)
