"""Dashboard polling under load: p50/p99/max latency of `generations?since=` and `pareto`.

A job with 10,000 candidates (50 generations of 200, a Pareto front of 40 in each) in a
SQLite file, the API served by `tailor serve` (uvicorn, one process) in its own process,
while a writer (this process, through the store, as the orchestrator writes) adds a
generation of 20 candidates every `--write-every` seconds. Every poller first loads the
whole job (`since=0`, "first load", timed on its own and not part of the targets; the polls
start once every poller has loaded), then polls
`generations?since=<next>` and `pareto`, sending the ETag of its last answer in
If-None-Match (304 when nothing changed). Modes:

- "every 3 s" (open loop, what dashboards produce): each poller polls both endpoints every
  `--interval` seconds (app.js's `setInterval(poll, 3000)`), from a random start phase, for
  `--duration` seconds.
- "back to back" (closed loop, saturation): each poller polls both endpoints `--requests`
  times with no pause; latency then includes queueing behind the other pollers.
- "since=0 always" (closed loop, a careless client re-reading the whole job each time;
  only with `--modes ... since0`).

With `--pin` (the default where there are at least 2 CPUs) the server runs on CPU 0
(`taskset -c 0`) and this process (pollers and writer) on the others, so client threads do
not take the server's core; other programs on the machine are not kept off either. Server
CPU per request is the server process's user+system time (/proc) over the requests of the
scenario. The load average is recorded per scenario. Writes bench/results/api_poll.json
and prints whether each mode meets issue #12's targets (p99 <= 100 ms at 20 pollers,
<= 300 ms at 50, for both endpoints).

    python -m bench.api_poll [--candidates 10000 --pollers 20 50 --modes interval closed]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from bench.api_poll_load import ENDPOINTS, poll, seed, writer

RESULTS = Path(__file__).parent / "results"
TARGETS_MS = {20: 100.0, 50: 300.0}  # issue #12: p99 at this many pollers
MODES = {"interval": "every 3 s", "closed": "back to back", "since0": "since=0 always"}


def percentiles(samples: list[float]) -> dict[str, float]:
    """Median, nearest-rank 99th percentile and maximum."""
    ordered = sorted(samples)
    if not ordered:
        return {"p50_ms": math.nan, "p99_ms": math.nan, "max_ms": math.nan, "requests": 0}
    return {
        "p50_ms": statistics.median(ordered),
        "p99_ms": ordered[max(0, math.ceil(0.99 * len(ordered)) - 1)],
        "max_ms": ordered[-1],
        "requests": len(ordered),
    }


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process (Linux /proc), None where unavailable."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def targets_table(scenarios: list[dict]) -> list[dict]:
    """Per mode and poller count with a target: the worse p99 of the two endpoints."""
    rows = []
    for row in scenarios:
        target = TARGETS_MS.get(row["pollers"])
        if target is None:
            continue
        worst = max(row[e]["p99_ms"] for e in ENDPOINTS)
        rows.append(
            {
                "mode": row["mode"],
                "pollers": row["pollers"],
                "target_p99_ms": target,
                "worst_p99_ms": worst,
                "met": bool(worst <= target),
            }
        )
    return rows


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The flags; --pin defaults on where there is a second CPU and taskset to use it."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--candidates", type=int, default=10_000)
    parser.add_argument("--pollers", type=int, nargs="+", default=[20, 50])
    parser.add_argument("--modes", nargs="+", choices=sorted(MODES), default=["interval", "closed"])
    parser.add_argument("--requests", type=int, default=50, help="rounds per poller, back to back")
    parser.add_argument(
        "--interval",
        type=float,
        default=3.0,
        help="seconds between a poller's rounds in the 'every 3 s' mode",
    )
    parser.add_argument(
        "--duration", type=float, default=45.0, help="seconds each 'every 3 s' scenario runs"
    )
    parser.add_argument(
        "--write-every", type=float, default=0.5, help="seconds between the writer's generations"
    )
    parser.add_argument(
        "--pin",
        action=argparse.BooleanOptionalAction,
        default=(os.cpu_count() or 1) >= 2 and shutil.which("taskset") is not None,
        help="server on CPU 0, this process on the others",
    )
    return parser.parse_args(argv)


def free_port() -> int:
    """A local port nothing listens on, for the server to take."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pin_server(command: list[str], pin: bool) -> tuple[list[str], dict | None]:
    """With `pin`, the server's command on the first CPU and this process moved to the others,
    so the pollers' threads do not take the server's core."""
    if pin:
        cpus = sorted(os.sched_getaffinity(0))
        if len(cpus) >= 2:
            os.sched_setaffinity(0, cpus[1:])
            return (
                ["taskset", "-c", str(cpus[0])] + command,
                {"server": [cpus[0]], "clients_and_writer": cpus[1:]},
            )
    return command, None


def wait_until_healthy(base: str) -> None:
    """Up to about 30 s for the server to answer, so the first scenario times requests, not
    start-up."""
    for _ in range(300):
        try:
            if httpx.get(f"{base}/health").status_code == 200:
                break
        except httpx.TransportError:
            time.sleep(0.1)


def run_scenario(
    url: str,
    base: str,
    job_id: int,
    server: subprocess.Popen,
    mode: str,
    pollers: int,
    first_generation: int,
    args: argparse.Namespace,
) -> dict:
    """One (mode, pollers) while the writer adds generations: latencies, 304 share, server
    and client CPU per request, and whether pollers kept up."""
    stop = threading.Event()
    load_before = os.getloadavg()
    cpu0 = cpu_seconds(server.pid)
    with ThreadPoolExecutor(1) as background:
        written = background.submit(writer, url, job_id, first_generation, args.write_every, stop)
        t0 = time.perf_counter()
        client_cpu0 = time.process_time()
        done = poll(base, job_id, pollers, mode, args.requests, args.interval, args.duration)
        wall = time.perf_counter() - t0
        client_cpu = time.process_time() - client_cpu0
        stop.set()
        generations_written = written.result()
    cpu1 = cpu_seconds(server.pid)
    times = {k: [t for p in done for t in p.times[k]] for k in done[0].times}
    served = sum(len(v) for v in times.values())
    newest = first_generation + generations_written - 1
    return {
        "pollers": pollers,
        "mode": MODES[mode],
        "wall_s": wall,
        "generations_written": generations_written,
        "not_modified_share": statistics.mean([x for p in done for x in p.not_modified] or [0]),
        "requests_per_s": served / wall,
        "server_cpu_ms_per_request": (
            None if cpu0 is None or cpu1 is None else (cpu1 - cpu0) * 1000 / served
        ),
        "server_cpu_share": (None if cpu0 is None or cpu1 is None else (cpu1 - cpu0) / wall),
        "client_cpu_ms_per_request": client_cpu * 1000 / served,
        # The writer's last generation may land after a poller's last poll.
        "pollers_behind_at_end": sum(p.newest_seen < newest - 1 for p in done),
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
        **{name: percentiles(samples) for name, samples in times.items()},
    }


def print_scenario(row: dict) -> None:
    """One line per scenario, printed as it finishes so a long run shows progress."""
    cpu = row["server_cpu_ms_per_request"]
    print(
        f"{row['pollers']:3d} pollers, {row['mode']:14s}: "
        + "   ".join(
            f"{name} p50 {row[name]['p50_ms']:.1f} / p99 {row[name]['p99_ms']:.1f} / "
            f"max {row[name]['max_ms']:.1f} ms"
            for name in ENDPOINTS
        )
        + f"   first load p50 {row['first load']['p50_ms']:.0f} ms"
        + f"   ({row['not_modified_share']:.0%} 304, {row['requests_per_s']:.0f}"
        f" req/s, server CPU {'n/a' if cpu is None else f'{cpu:.2f}'} ms/req,"
        f" writer added {row['generations_written']} generations in {row['wall_s']:.0f}s,"
        f" load {row['load_average_before'][0]:.1f})",
        flush=True,
    )


def print_targets(table: list[dict]) -> None:
    """Each mode and poller count against issue #12's p99 target."""
    print("\ntargets (issue #12: p99 <= 100 ms at 20 pollers, <= 300 ms at 50; worse endpoint)")
    for t in table:
        print(
            f"  {t['mode']:14s} {t['pollers']:3d} pollers: p99 {t['worst_p99_ms']:7.1f} ms"
            f" <= {t['target_p99_ms']:.0f} ms  {'met' if t['met'] else 'NOT MET'}"
        )


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    folder = Path(tempfile.mkdtemp(prefix="tailor-poll-"))
    url = f"sqlite:///{folder / 'db.sqlite'}"
    started = time.perf_counter()
    job_id = seed(url, args.candidates, 200)
    print(
        f"seeded {args.candidates} candidates in {time.perf_counter() - started:.0f}s", flush=True
    )
    port = free_port()
    env = {
        **os.environ,
        "TAILOR_DATABASE_URL": url,
        "TAILOR_DATA_DIR": str(folder),
        "TAILOR_ADMIN_KEY": "bench",
    }
    affinity = os.sched_getaffinity(0)
    command, pinned = pin_server(
        [sys.executable, "-m", "cli.main", "serve", "--port", str(port)], args.pin
    )
    server = subprocess.Popen(
        command,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=Path(__file__).parent.parent,
    )
    base = f"http://127.0.0.1:{port}/api/v1"
    scenarios = []
    next_generation = args.candidates // 200
    try:
        wait_until_healthy(base)
        for mode in args.modes:
            for pollers in args.pollers:
                row = run_scenario(url, base, job_id, server, mode, pollers, next_generation, args)
                next_generation += row["generations_written"]
                scenarios.append(row)
                print_scenario(row)
    finally:
        server.terminate()
        server.wait(timeout=30)
        os.sched_setaffinity(0, affinity)
        shutil.rmtree(folder, ignore_errors=True)
    table = targets_table(scenarios)
    print_targets(table)
    result = {
        "benchmark": "api_poll",
        "args": vars(args),
        "pinned": pinned,
        "cpus": os.cpu_count(),
        "scenarios": scenarios,
        "targets": {"p99_ms at 20 pollers": 100, "p99_ms at 50 pollers": 300},
        "targets_met": table,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "api_poll.json").write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
