"""The agent loop: enroll once, then heartbeat, lease, measure, report — until stopped.

A failed task is reported with its reason and whose fault it was (failures.py): the
candidate's (counts as an attempt), the device's (uncounted; the agent pauses leasing with
back-off and re-checks the phone first) or a phone disconnect (uncounted; reconnect).
Heartbeats run in their own thread, so a hung ADB call or a phone that is away never
silences the device on the server. On SIGINT/SIGTERM the agent hands its current task back
(release) and exits. Server outages are waited out with backoff. A refused enrollment (a
disabled device, a wrong enrollment token) stops the agent with the server's reason:
retrying cannot help until an admin acts. Restarted with a saved token, its first heartbeat
carries the device properties read now (a new Android release, another runner), so the
server sees them without a new enrollment. Every heartbeat carries the device's readiness
(the phone's preflight verdict: why it cannot measure, and the fix), and a change of it is
sent at once, so the server and the dashboard show a phone that measures nothing, and why,
within one heartbeat. A lease it never got the answer to is handed back (leasing.py).
"""

from __future__ import annotations

import logging
import random
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import datetime, timezone
from functools import partial
from pathlib import Path

import httpx

from core.protocol import (
    API_PREFIX,
    DeviceProperties,
    DeviceReadiness,
    MeasurementReport,
    TaskAssignment,
)

from .client import AgentClient, ServerError
from .config import load_token, save_token
from .delivery import Undelivered, deliver
from .failures import failure_report
from .leasing import Leaser
from .stats import lengths_text, summary_text, warm_method

log = logging.getLogger("tailor.agent")
Measure = Callable[[Path, TaskAssignment], MeasurementReport]
KIND_TEXT = {
    "candidate": "counts against the candidate",
    "device": "device fault",
    "disconnected": "phone disconnected",
}
DEVICE_BACKOFF_S = (10.0, 300.0)  # pause after a device failure: first, longest
# Waits while the server is unreachable: first, longest. The longest stays well under the
# 30 s in which a lab's agents must be back after a server restart; each wait is jittered
# (50-100 %) so a whole lab does not knock on a restarted server in the same instant.
SERVER_BACKOFF_S = (1.0, 10.0)
# A failed heartbeat is sent again within 1 s and waits one renewal period for its answer:
# a held lease outlives any outage shorter than lease - 2 periods - 1 s (docs/devices.md).
BEAT_RETRY_S = 1.0
# A lab's agents start together (a power cut, a restarted lab) and, at one interval, would
# beat and poll in step for ever: fifty requests in the same few milliseconds, whose last
# waits for the other forty-nine (bench.fleet's tails). Each heartbeat comes after 75-100 %
# of its interval (never later: leases depend on it), each idle poll after 75-125 % of
# `poll_s`, drawn afresh every time, so the lab spreads itself over the interval.
BEAT_JITTER = 0.25
POLL_JITTER = 0.25


class EnrollmentRefused(ServerError):
    """The server will not enroll this device (it is disabled, or the token is wrong)."""


def _utc(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)  # SQLite: naive UTC


class Agent:
    def __init__(
        self,
        server: str,
        enroll_token: str | None,
        name: str,
        properties: DeviceProperties,
        measure: Measure,
        config: Path,
        poll_s: float = 2.0,
        lease_seconds: float | None = None,
        ready: Callable[[], bool] | None = None,
        on_device_failure: Callable[[], None] | None = None,
        device_backoff_s: tuple[float, float] = DEVICE_BACKOFF_S,
    ):
        self.client = AgentClient(server)
        # A lease whose answer was lost is handed back with the heartbeat a start sends.
        self.leaser = Leaser(self.client, lambda: self._beat(properties=self.properties))
        self.server, self.enroll_token, self.name = server, enroll_token, name
        self.properties, self.measure, self.config = properties, measure, config
        self.poll_s, self.lease_seconds = poll_s, lease_seconds
        self.ready = ready  # False while the device is away or unfit: lease nothing
        self.on_device_failure = on_device_failure or getattr(ready, "device_failed", None)
        self.device_backoff_s = device_backoff_s
        self.heartbeat_s = 30.0  # the server's interval once enrolled in this process
        self.stop = threading.Event()
        self.current: int | None = None
        self.completed = 0
        self.failures: list[tuple[int, str]] = []  # (task id, kind) of failed tasks
        self.state = "active"
        self.server_paused_until: datetime | None = None
        self.paused_until = 0.0  # monotonic: no leases before (after a device failure)
        self._pause_s = device_backoff_s[0]
        self._beat_every = self.heartbeat_s
        self._beat_share = 1.0  # of `_beat_every` before the next beat (BEAT_JITTER)
        self._last_beat = 0.0
        self._wake = threading.Event()
        self._pulse: threading.Thread | None = None
        self._beat_failing = False
        self._paused_logged = False
        self._sent_readiness: DeviceReadiness | None = None

    # ------------------------------------------------------------------ enrolment
    def ensure_enrolled(self) -> None:
        identity = f"{self.properties.backend}-{self.properties.model}-{self.name}"
        saved = load_token(self.config, self.server, identity)
        current = self.properties.model_dump(mode="json")
        if saved:
            self.client.token = saved["device_token"]
            changed = saved.get("properties") != current
            try:
                # The first heartbeat after a restart carries what the agent reads now, so
                # an OS update or another runner reaches the server without enrolling again.
                self._beat(properties=self.properties)
                if changed:
                    log.info(
                        "device properties changed since the last start: updated on the server"
                    )
                    save_token(
                        self.config,
                        self.server,
                        identity,
                        saved.get("device_id"),
                        saved["device_token"],
                        current,
                    )
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
        self.heartbeat_s = self._beat_every = enrolled.heartbeat_interval_s
        save_token(
            self.config, self.server, identity, enrolled.device_id, enrolled.device_token, current
        )
        log.info("enrolled as device %s", enrolled.device_id)

    # ------------------------------------------------------------------ heartbeats
    def readiness(self) -> DeviceReadiness | None:
        return getattr(self.ready, "readiness", None)

    def _beat(self, properties: DeviceProperties | None = None):
        readiness = self.readiness()
        response = self.client.heartbeat(
            properties, readiness, timeout_s=max(BEAT_RETRY_S, self._beat_every)
        )
        self._sent_readiness = readiness
        self._last_beat = time.monotonic()
        self._beat_share = random.uniform(1 - BEAT_JITTER, 1.0)
        self.state, self.server_paused_until = response.state, response.paused_until
        if self._beat_failing:
            log.info("heartbeats reach the server again")
            self._beat_failing = False
        if response.paused_until is not None and not self._paused_logged:
            log.warning(
                "the server paused this device until %s: %s",
                response.paused_until.isoformat(timespec="seconds"),
                response.paused_reason or "a device failure",
            )
        self._paused_logged = response.paused_until is not None
        return response

    def _beat_gap(self) -> float:
        """Seconds from the last beat to the next: this beat's share of the interval."""
        return self._beat_every * self._beat_share

    def _pulse_loop(self) -> None:
        """Heartbeat at least every `_beat_every`, whatever the main loop is blocked in."""
        while not self.stop.is_set():
            self._wake.wait(max(0.05, self._beat_gap() - (time.monotonic() - self._last_beat)))
            self._wake.clear()
            if self.stop.is_set() or self.client.token is None:
                continue
            if time.monotonic() - self._last_beat < self._beat_gap():  # may have changed
                continue
            try:
                self._beat()
            except (httpx.HTTPError, ServerError) as exc:
                if not self._beat_failing:
                    log.warning("heartbeat failed: %s", exc)
                self._beat_failing = True
                # Again soon (BEAT_RETRY_S), jittered so a lab does not beat in step.
                retry = min(BEAT_RETRY_S, self._beat_every) * random.uniform(0.5, 1.0)
                self._last_beat = time.monotonic() - self._beat_every + retry

    def _start_pulse(self) -> None:
        if self._pulse is None or not self._pulse.is_alive():
            self._pulse = threading.Thread(target=self._pulse_loop, name="heartbeat", daemon=True)
            self._pulse.start()

    # ------------------------------------------------------------------ tasks
    def leasable(self) -> bool:
        """Active, the device fit (checked even while paused, so the log says what to
        fix), and no pause running (ours after a device fault, or the server's)."""
        if self.state != "active":
            return False
        fit = self.ready is None or self.ready()
        now = datetime.now(timezone.utc)
        if self.server_paused_until is not None and _utc(self.server_paused_until) > now:
            return False
        return fit and time.monotonic() >= self.paused_until

    def run_one(self) -> bool:
        """Lease and measure one task; False when there was none. A poll heartbeats first
        only when the last beat is older than half the interval: the heartbeat thread keeps
        the device alive anyway, and a lab of agents beating on every poll doubled what the
        server answered (the server refuses leases to a draining or paused device itself)."""
        if time.monotonic() - self._last_beat >= self._beat_every / 2:
            self._beat()
        leasable = self.leasable()
        if self.readiness() != self._sent_readiness:
            self._beat()  # the preflight's verdict changed: the server hears it now
        if not leasable:
            return False
        task = self.leaser.lease(self.lease_seconds)
        if task is None:
            return False
        self.current = task.task_id
        log.info(
            "leased task %s (candidate %s, job %s)", task.task_id, task.candidate_id, task.job_id
        )
        work = Path(tempfile.mkdtemp(prefix=f"tailor-task{task.task_id}-"))
        # Heartbeats renew the lease through slow downloads and measurements longer than
        # the lease: often enough that a lease never runs out.
        lease_left = (_utc(task.lease_expires_at) - datetime.now(timezone.utc)).total_seconds()
        self._beat_every = max(0.2, min(self.heartbeat_s, lease_left / 3))
        self._wake.set()
        try:
            for artifact in task.artifacts:
                self.client.download(artifact, work)
            (work / "manifest.json").write_text(task.manifest.model_dump_json())
            spec = task.spec
            log.info(
                "measuring task %s: %s (%s graphs, %s execution provider; %s)",
                task.task_id,
                lengths_text(task),
                task.manifest.variant or task.manifest.precision,
                spec.execution_provider,
                warm_method(spec.warmup, spec.repeats, spec.processes),
            )
            report = self.measure(work, task)
        except Exception as exc:  # report every measurement failure with its reason
            self._failed(task.task_id, exc)
        else:
            send = partial(self.client.report, task.task_id, report)
            if self._deliver(send, task.task_id, "report"):
                log.info("task %s done: %s", task.task_id, summary_text(report))
                self.completed += 1
            self._pause_s = self.device_backoff_s[0]
        finally:
            self._beat_every = self.heartbeat_s
            self.current = None
            shutil.rmtree(work, ignore_errors=True)
        return True

    def _failed(self, task_id: int, exc: Exception) -> None:
        failure = failure_report(exc)
        self.failures.append((task_id, failure.kind))
        log.warning(
            "task %s failed (%s): %s",
            task_id,
            KIND_TEXT[failure.kind],
            failure.reason.splitlines()[0][:500],
        )
        if failure.kind == "device":
            log.warning(
                "pausing leases for %.0f s after a device failure; the phone is "
                "checked again before the next lease",
                self._pause_s,
            )
            self.paused_until = time.monotonic() + self._pause_s
            self._pause_s = min(self._pause_s * 2, self.device_backoff_s[1])
            if self.on_device_failure is not None:
                self.on_device_failure()
        self._deliver(partial(self.client.fail, task_id, failure), task_id, "failure")

    def _deliver(self, send, task_id: int, what: str) -> bool:
        """Send a task's outcome until the server answers (delivery.py); False when the
        agent was stopped first (the next start hands the task back, see the heartbeat) or
        the server refused it with 409 (the lease lapsed and went to another device, or the
        job ended: the work was in vain, and the log says so)."""
        try:
            deliver(send, f"task {task_id}'s {what}", self.stop)
        except Undelivered as exc:
            log.warning("%s", exc)
            return False
        except ServerError as exc:
            if exc.status != 409:
                raise
            log.warning("task %s's %s refused by the server: %s", task_id, what, str(exc)[:500])
            return False
        return True

    def run(self, max_tasks: int | None = None) -> None:
        backoff = SERVER_BACKOFF_S[0]
        self._start_pulse()
        try:
            while not self.stop.is_set():
                try:
                    if self.client.token is None:
                        self.ensure_enrolled()
                    worked = self.run_one()
                    backoff = SERVER_BACKOFF_S[0]
                    if max_tasks is not None and self.completed >= max_tasks:
                        return
                    if not worked:
                        self.stop.wait(
                            self.poll_s * random.uniform(1 - POLL_JITTER, 1 + POLL_JITTER)
                        )
                except (httpx.TransportError, ServerError) as exc:
                    if isinstance(exc, ServerError) and exc.status in (401, 403):
                        raise
                    what = (
                        "server unreachable"
                        if isinstance(exc, httpx.TransportError)
                        else "server refused"
                    )
                    self._last_beat = 0.0  # back: heartbeat first, the leases need renewing
                    wait = backoff * random.uniform(0.5, 1.0)
                    log.warning("%s (%s); retrying in %.0fs", what, exc, wait)
                    self.stop.wait(wait)
                    backoff = min(backoff * 2, SERVER_BACKOFF_S[1])
        finally:
            if max_tasks is not None:
                self.stop.set()
                self._wake.set()

    def shutdown(self) -> None:
        """Stop the loop and hand the current task back."""
        self.stop.set()
        self._wake.set()
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

    return measure_task(graph_dir, task.spec, precision=task.manifest.precision)


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
