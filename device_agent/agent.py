"""The agent loop: enroll once, then heartbeat, lease, measure, report — until stopped.

Any error while measuring a task is reported as a failure with its reason (the server
retries the task up to its attempt limit); on SIGINT/SIGTERM the agent hands its current
task back (release) and exits. Server outages are waited out with backoff. A refused
enrollment (a disabled device, a wrong enrollment token) stops the agent with the server's
reason: retrying cannot help until an admin acts.
"""

from __future__ import annotations

import logging
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import httpx

from .client import AgentClient, ServerError
from .config import load_token, save_token
from core.protocol import API_PREFIX, DeviceProperties, MeasurementReport, TaskAssignment

log = logging.getLogger("tailor.agent")
Measure = Callable[[Path, TaskAssignment], MeasurementReport]


class EnrollmentRefused(ServerError):
    """The server will not enroll this device (it is disabled, or the token is wrong)."""


class Agent:
    def __init__(self, server: str, enroll_token: str | None, name: str,
                 properties: DeviceProperties, measure: Measure, config: Path,
                 poll_s: float = 2.0, lease_seconds: float | None = None,
                 ready: Callable[[], bool] | None = None):
        self.client = AgentClient(server)
        self.server, self.enroll_token, self.name = server, enroll_token, name
        self.properties, self.measure, self.config = properties, measure, config
        self.poll_s, self.lease_seconds = poll_s, lease_seconds
        self.ready = ready  # False while the device is away (phone unplugged): lease nothing
        self.heartbeat_s = 30.0  # the server's interval once enrolled in this process
        self.stop = threading.Event()
        self.current: int | None = None
        self.completed = 0

    def ensure_enrolled(self) -> None:
        identity = f"{self.properties.backend}-{self.properties.model}-{self.name}"
        saved = load_token(self.config, self.server, identity)
        if saved:
            self.client.token = saved["device_token"]
            try:
                self.client.heartbeat()
                return
            except ServerError as exc:
                if exc.status not in (401, 403):
                    raise
                log.warning("saved token rejected (%s); enrolling again", exc)
        if not self.enroll_token:
            raise ServerError(403, "not enrolled and no enrollment token given")
        try:
            enrolled = self.client.enroll(self.enroll_token, self.name, self.properties)
        except ServerError as exc:
            if exc.status not in (401, 403):
                raise
            detail = " ".join(str(exc).partition(": ")[2].split())  # one line
            raise EnrollmentRefused(exc.status, f"enrollment refused: {detail}") from None
        self.client.token = enrolled.device_token
        self.heartbeat_s = enrolled.heartbeat_interval_s
        save_token(self.config, self.server, identity, enrolled.device_id, enrolled.device_token)
        log.info("enrolled as device %s", enrolled.device_id)

    def run_one(self) -> bool:
        """Lease and measure one task; False when there was none."""
        state = self.client.heartbeat().state
        if state != "active":
            return False
        if self.ready is not None and not self.ready():
            return False
        task = self.client.lease(self.lease_seconds).task
        if task is None:
            return False
        self.current = task.task_id
        work = Path(tempfile.mkdtemp(prefix=f"tailor-task{task.task_id}-"))
        # Heartbeats keep the device online and renew the lease through slow downloads and
        # measurements longer than the lease: often enough that a lease never runs out.
        expires = task.lease_expires_at
        if expires.tzinfo is None:  # SQLite servers send UTC without a zone
            expires = expires.replace(tzinfo=timezone.utc)
        lease_left = (expires - datetime.now(timezone.utc)).total_seconds()
        interval = max(0.2, min(self.heartbeat_s, lease_left / 3))
        beating = threading.Event()
        threading.Thread(target=self._heartbeat_until, args=(beating, interval),
                         daemon=True).start()
        try:
            for artifact in task.artifacts:
                self.client.download(artifact, work)
            (work / "manifest.json").write_text(task.manifest.model_dump_json())
            report = self.measure(work, task)
        except Exception as exc:  # report every measurement failure with its reason
            log.warning("task %s failed: %s", task.task_id, exc)
            self.client.fail(task.task_id, f"{type(exc).__name__}: {exc}", retryable=True)
        else:
            self.client.report(task.task_id, report)
            self.completed += 1
        finally:
            beating.set()
            self.current = None
            shutil.rmtree(work, ignore_errors=True)
        return True

    def _heartbeat_until(self, done: threading.Event, interval_s: float) -> None:
        while not done.wait(interval_s):
            try:
                self.client.heartbeat()
            except (httpx.HTTPError, ServerError) as exc:
                log.warning("heartbeat during a task failed: %s", exc)

    def run(self, max_tasks: int | None = None) -> None:
        backoff = 1.0
        while not self.stop.is_set():
            try:
                if self.client.token is None:
                    self.ensure_enrolled()
                worked = self.run_one()
                backoff = 1.0
                if max_tasks is not None and self.completed >= max_tasks:
                    return
                if not worked:
                    self.stop.wait(self.poll_s)
            except (httpx.TransportError, ServerError) as exc:
                if isinstance(exc, ServerError) and exc.status in (401, 403):
                    raise
                what = "server unreachable" if isinstance(exc, httpx.TransportError) \
                    else "server refused"
                log.warning("%s (%s); retrying in %.0fs", what, exc, backoff)
                self.stop.wait(backoff)
                backoff = min(backoff * 2, 60)

    def shutdown(self) -> None:
        """Stop the loop and hand the current task back."""
        self.stop.set()
        if self.current is not None:
            try:
                self.client.release(self.current)
            except (httpx.HTTPError, ServerError) as exc:
                log.warning("could not release task %s: %s", self.current, exc)

    def install_signal_handlers(self) -> None:
        """SIGINT/SIGTERM: release the current task, then leave at once (a measurement in
        progress is abandoned: its task is already back in the queue)."""

        def on_signal(*_):
            busy = self.current is not None
            self.shutdown()
            if busy:
                raise SystemExit(0)

        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, on_signal)


def host_measure(graph_dir: Path, task: TaskAssignment) -> MeasurementReport:
    from .host_backend import measure_task

    return measure_task(graph_dir, task.spec)


def wait_for_server(server: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(server.rstrip("/") + API_PREFIX + "/health", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    raise TimeoutError(f"no API at {server} after {timeout_s:.0f}s")
