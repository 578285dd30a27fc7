"""A fleet run: the real server (SQLite or PostgreSQL), N stand-in phones each driven by a
real `tailor agent` process, J jobs with different priorities, faults on the way, and what
came out (`report.fleet_report`). `bench.fleet` runs it at size; tests/fleet/ at small size.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import func, select

from store import transaction
from store.engine import make_engine, session_factory
from store.models import Device, ProfilingTask

from . import faults as fault_kit
from .agents import DEVICE_CLASSES, Bench, start_benches
from .jobs import FleetJob, accounting, enqueue_work, finish_ended_jobs, submit_jobs
from .rack import PhoneRack
from .report import fleet_report
from .server import ServerProcess, machine_cpu_s


@dataclass
class FleetConfig:
    workdir: Path
    agents: int = 6
    jobs: int = 3
    tasks: int = 40
    backend: str = "sqlite"
    database_url: str | None = None  # PostgreSQL: a fresh, empty database
    faults: tuple[str, ...] = ()
    lease_s: float = 20.0
    heartbeat_s: float = 5.0
    poll_s: float = 0.5
    deadline_s: float = 600.0
    server_workers: int = 1  # `tailor serve --workers` (more than one: PostgreSQL only)


@dataclass
class FleetRun:
    config: FleetConfig
    events: dict[str, object] = field(default_factory=dict)
    server: ServerProcess | None = None
    benches: list[Bench] = field(default_factory=list)
    rack: PhoneRack | None = None
    jobs: list[FleetJob] = field(default_factory=list)

    def __enter__(self) -> FleetRun:
        c = self.config
        fault_kit.check_faults(c.faults)
        c.workdir.mkdir(parents=True, exist_ok=True)
        url = c.database_url or f"sqlite:///{c.workdir / 'tailor.db'}"
        settings = {
            "TAILOR_LEASE_SECONDS": str(c.lease_s),
            "TAILOR_HEARTBEAT_INTERVAL_S": str(c.heartbeat_s),
            # a first enrollment of the whole lab from one address; re-attaching known
            # devices never enrolls, so the storm needs no more than this
            "TAILOR_ENROLL_ATTEMPTS_PER_MINUTE": str(max(10, c.agents + 5)),
        }
        self.server = ServerProcess(c.workdir, url, settings, workers=c.server_workers)
        self.server.start()
        self.engine = make_engine(url)
        self.sessions = session_factory(self.engine)
        self.rack, self.benches = start_benches(c.workdir, c.agents, self.server.port)
        for bench in self.benches:
            bench.start_agent(c.poll_s)
        self._wait_devices(c.agents, timeout_s=60 + 2 * c.agents)
        return self

    def __exit__(self, *_exc) -> None:
        for bench in self.benches:
            bench.close()
        if self.rack is not None:
            self.rack.stop()
        if self.server is not None:
            self.server.stop()
        if hasattr(self, "engine"):
            self.engine.dispose()

    def _wait_devices(self, count: int, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with transaction(self.sessions) as s:
                if s.scalar(select(func.count(Device.id))) >= count:
                    return
            time.sleep(0.3)
        raise TimeoutError(f"fewer than {count} devices enrolled after {timeout_s:.0f} s")

    def done_count(self) -> int:
        ids = [t for job in self.jobs for t in job.task_ids]
        with transaction(self.sessions) as s:
            return s.scalar(
                select(func.count(ProfilingTask.id)).where(
                    ProfilingTask.id.in_(ids), ProfilingTask.state == "done"
                )
            )

    def run(self, faults: tuple[str, ...] | None = None) -> dict:
        """One round of jobs, with `faults` (default: the config's); a fleet may run
        several rounds, each reported on its own."""
        c = self.config
        self._new_round(c.faults if faults is None else fault_kit.check_faults(faults))
        started = time.time()
        self.machine_cpu_before = machine_cpu_s()
        self.jobs = submit_jobs(self.server.url, c.jobs)
        artifact_dir = c.workdir / "server" / "artifacts"
        enqueue_work(
            self.sessions, artifact_dir, c.workdir, self.jobs, c.tasks, list(DEVICE_CLASSES)
        )
        if "link-stall" in self.faults:
            self.events["links_armed"] = fault_kit.arm_links(self.benches)
        pending = [name for name in fault_kit.AT_SHARE if name in self.faults]
        workers: list[threading.Thread] = []
        total = sum(len(job.task_ids) for job in self.jobs)
        deadline = started + c.deadline_s
        while time.time() < deadline:
            done = self.done_count()
            for name in [n for n in pending if done >= fault_kit.AT_SHARE[n] * total]:
                pending.remove(name)
                workers.append(threading.Thread(target=self._inject, args=(name,), daemon=True))
                workers[-1].start()
            if not pending and all(not w.is_alive() for w in workers):
                if finish_ended_jobs(self.sessions, self.jobs):
                    break
            time.sleep(0.3)
        self.events["forced_finish"] = not finish_ended_jobs(self.sessions, self.jobs)
        finish_ended_jobs(self.sessions, self.jobs, force=True)
        for worker in workers:
            worker.join(timeout=5)
        if "unplug" in self.faults:
            self.events["unplugged_at"] = [t for t in self.rack.pulled() if t >= started]
        wall_s = time.time() - started
        return fleet_report(self, accounting(self.sessions, self.jobs), wall_s)

    def _new_round(self, faults: tuple[str, ...]) -> None:
        self.faults, self.events = faults, {}
        self.starts_before = sum(b.starts for b in self.benches)
        for link in [b.server_link for b in self.benches] + [b.phone_link for b in self.benches]:
            if link is not None:
                with link.lock:
                    link.fired.clear()
                    link.latencies.clear()
                    link.server_ms.clear()
                    link.server_parts.clear()
                    link.timeline.clear()

    def _inject(self, name: str) -> None:
        """One fault, then (for the restarts) how long until every agent was back."""
        n = len(self.benches)
        if name == "unplug":
            busy = self.benches[len(self.benches) // 2]
            fault_kit.unplug_mid_measurement(busy)
            self.events["unplugged"] = f"bench {busy.index} ({busy.device_class})"
        elif name == "server-kill":
            back_at = fault_kit.kill_and_restart_server(self.server)
            self.events["agents_back_after_server_restart_s"] = fault_kit.wait_agents_back(
                self.sessions, n, back_at
            )
        elif name == "restart-storm":
            enrolls_before = self.enrollments()
            since = fault_kit.restart_storm(self.benches)
            self.events["agents_back_after_restart_storm_s"] = fault_kit.wait_agents_back(
                self.sessions, n, since
            )
            self.events["enrollments_in_storm"] = self.enrollments() - enrolls_before

    def enrollments(self) -> int:
        return sum(
            len(b.server_link.latencies.get("/api/v1/devices/enroll", [])) for b in self.benches
        )
