"""What a fleet run measured, under the field names of bench/results/fleet.json:

- `duplicates`: tasks measured twice, all kinds together: `measured_twice` (a task whose
  outcome agents sent more than once for different measurements, delivered or refused,
  from their logs: phone time spent twice),
  `duplicates_by_task` (measurements stored twice for one task) and
  `duplicates_by_candidate` (twice for one candidate, device class and variant);
- `lost`: tasks never completed although their job finished;
- `lease_p50_ms`/`lease_p99_ms`, `heartbeat_p50_ms`/`heartbeat_p99_ms`: request to first
  response byte as each agent's proxy saw it (server queueing included);
- `server_lease_p50_ms`/`server_lease_p99_ms`, `server_heartbeat_p50_ms`/
  `server_heartbeat_p99_ms`: the same requests as the server's app timed them
  (`Server-Timing`: from the request reaching the app to its answer starting), so a tail
  splits into the server's share and the rest (event loop, proxy, a loaded run queue);
- `tasks_per_s`: tasks done over the wall time from submission to the last job's end;
- `wait_to_lease_s`: per job priority, seconds from its tasks' creation to their first lease
  (p50, max, and the job's first lease);
- `server_own_lease_p99_ms`, `server_own_heartbeat_p99_ms`: the same less the time the app
  waited for the request's body to arrive (the `body` part: the client's and the link's
  time; an agent descheduled between sending its headers and its body lands there);
- `server_lease_tail_ms`, `server_heartbeat_tail_ms`: where the server's slowest 1 % of
  those requests (by its `app` time) spent it, each Server-Timing part's mean over them
  (`body`: waiting for the request body; `thread`: waiting for a request thread and the
  event loop; `db`: SQL statements; `dblock`: SQLite's write-lock queue);
- `server_workers` (`tailor serve --workers`); `server_cpu_s`, `server_cpu_percent` (of one
  core), `server_peak_rss_mb` (its processes together);
  `machine_cpu_percent`: the share of all the machine's cores busy during the round
  (server, agents, stand-in phones, proxies and database together: a tail at a full
  machine is the run queue's).
"""

from __future__ import annotations

import math
from collections import Counter

from .server import machine_cpu_s


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100); None without values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


LEASE, HEARTBEAT = "/api/v1/tasks/lease", "/api/v1/devices/heartbeat"


def latency_fields(run) -> dict:
    def seen(path: str, server: bool = False) -> list[float]:
        return [
            ms
            for b in run.benches
            for ms in (b.server_link.server_ms if server else b.server_link.latencies).get(path, [])
        ]

    def own(path: str) -> list[float]:
        parts = [p for b in run.benches for p in b.server_link.server_parts.get(path, [])]
        return [p["app"] - p.get("body", 0.0) for p in parts if "app" in p]

    lease, beats = seen(LEASE), seen(HEARTBEAT)
    server_lease, server_beats = seen(LEASE, server=True), seen(HEARTBEAT, server=True)
    return {
        "lease_requests": len(lease),
        "lease_p50_ms": _ms(percentile(lease, 50)),
        "lease_p99_ms": _ms(percentile(lease, 99)),
        "heartbeat_requests": len(beats),
        "heartbeat_p50_ms": _ms(percentile(beats, 50)),
        "heartbeat_p99_ms": _ms(percentile(beats, 99)),
        "server_lease_p50_ms": _ms(percentile(server_lease, 50)),
        "server_lease_p99_ms": _ms(percentile(server_lease, 99)),
        "server_heartbeat_p50_ms": _ms(percentile(server_beats, 50)),
        "server_heartbeat_p99_ms": _ms(percentile(server_beats, 99)),
        "server_own_lease_p99_ms": _ms(percentile(own(LEASE), 99)),
        "server_own_heartbeat_p99_ms": _ms(percentile(own(HEARTBEAT), 99)),
        "server_lease_tail_ms": tail_parts(run, LEASE),
        "server_heartbeat_tail_ms": tail_parts(run, HEARTBEAT),
    }


def tail_parts(run, path: str) -> dict[str, float] | None:
    """Each Server-Timing part's mean over the slowest 1 % of `path`'s requests."""
    parts = [p for b in run.benches for p in b.server_link.server_parts.get(path, [])]
    if not parts:
        return None
    parts.sort(key=lambda p: p.get("app", 0.0), reverse=True)
    slowest = parts[: max(1, math.ceil(len(parts) / 100))]
    names = sorted({name for p in slowest for name in p})
    return {name: _ms(sum(p.get(name, 0.0) for p in slowest) / len(slowest)) for name in names}


def wait_fields(run, events: list[tuple[float, str, int]]) -> dict:
    first_lease: dict[int, float] = {}
    for when, kind, task_id in sorted(events):
        if kind == "leased":
            first_lease.setdefault(task_id, when)
    waits = {}
    for job in run.jobs:
        seen = [first_lease[t] - job.created_at for t in job.task_ids if t in first_lease]
        waits[str(job.priority)] = {
            "job_id": job.job_id,
            "first_lease_s": round(min(seen), 3) if seen else None,
            "p50_s": round(percentile(seen, 50), 3) if seen else None,
            "max_s": round(max(seen), 3) if seen else None,
        }
    return waits


def fleet_report(run, counts: dict[str, int], wall_s: float) -> dict:
    c = run.config
    events = [e for bench in run.benches for e in bench.events()]
    ours = {t for job in run.jobs for t in job.task_ids}
    finished = Counter(
        task_id for _, kind, task_id in events if kind in ("done", "refused") and task_id in ours
    )
    measured_twice = sum(n - 1 for n in finished.values() if n > 1)
    done = counts["tasks"] - counts["lost"]
    cpu_s = run.server.cpu_s()
    busy, total = (now - before for now, before in zip(machine_cpu_s(), run.machine_cpu_before))
    return {
        "agents": c.agents,
        "jobs": c.jobs,
        "tasks": counts["tasks"],
        "backend": c.backend,
        "server_workers": c.server_workers,
        "faults": list(run.faults),
        "duplicates": measured_twice
        + counts["stored_twice_by_task"]
        + counts["stored_twice_by_candidate"],
        "measured_twice": measured_twice,
        "duplicates_by_task": counts["stored_twice_by_task"],
        "duplicates_by_candidate": counts["stored_twice_by_candidate"],
        "lost": counts["lost"],
        "jobs_completed": sum(1 for job in run.jobs if job.finished_at is not None),
        "every_job_completed_by_itself": not run.events.get("forced_finish", False),
        **latency_fields(run),
        "tasks_done": done,
        "wall_s": round(wall_s, 2),
        "tasks_per_s": round(done / wall_s, 3) if wall_s else None,
        "wait_to_lease_s": wait_fields(run, events),
        "server_cpu_s": round(cpu_s, 2),
        "server_cpu_percent": round(100 * cpu_s / wall_s, 1) if wall_s else None,
        "server_peak_rss_mb": round(run.server.peak_rss_bytes / 2**20, 1),
        "machine_cpu_percent": round(100 * busy / total, 1) if total else None,
        "agent_starts": sum(b.starts for b in run.benches) - run.starts_before,
        "faults_fired": {
            "server_link": sum(len(b.server_link.fired) for b in run.benches),
            "phone_link": sum(len(b.phone_link.fired) for b in run.benches if b.phone_link),
        },
        "events": {k: v for k, v in run.events.items() if k != "forced_finish"},
    }
