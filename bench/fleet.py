"""How one server carries a device lab: `python -m bench.fleet --agents N --jobs J --tasks T
--backend sqlite|postgresql [--faults server-kill,link-stall,unplug,restart-storm]`.

N real `tailor agent` processes, each driving its own loopback stand-in phone in sleep mode
(tests/device_agent/standin_perf_test.py: each inference sleeps its device class's latency,
so fifty phones fit on two cores), over three device classes; J jobs submitted at once
through the API, each with its own `profiling.priority`, their profiling tasks made with
`store.tasks.enqueue_task` (no search runs: the fleet measures the queue, not training);
the real server (`tailor serve`) on SQLite or on a throwaway PostgreSQL (tests/pg_server.py,
with two server processes: `--workers 2`).
The harness and its faults live in tests/fleet/ (the small-size fault tests run there).

Writes bench/results/fleet.json: one entry per backend and fault set, with `duplicates`,
`lost`, `lease_p99_ms`, `heartbeat_p99_ms`, `tasks_per_s` and the rest that
tests/fleet/report.py describes.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results" / "fleet.json"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.fleet",
        description="How one server carries a device lab (tests/fleet/, issue 25).",
    )
    parser.add_argument("--agents", type=int, default=50, help="agents, one phone each")
    parser.add_argument("--jobs", type=int, default=3, help="jobs submitted at once")
    parser.add_argument("--tasks", type=int, default=600, help="profiling tasks over all jobs")
    parser.add_argument("--backend", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument(
        "--faults",
        default="",
        help="comma-separated: server-kill, link-stall, unplug, restart-storm (default none)",
    )
    parser.add_argument(
        "--server-workers",
        type=int,
        default=None,
        help="`tailor serve --workers` (default: 2 on PostgreSQL, 1 on SQLite, which takes "
        "one process)",
    )
    parser.add_argument("--deadline", type=float, default=1800.0, help="seconds before giving up")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (logs)")
    parser.add_argument(
        "--acceptance",
        action="store_true",
        help="issue 25's runs: 50 agents, 3 jobs, 600 tasks on each backend, without faults "
        "and with all of them (the other size flags are ignored)",
    )
    return parser.parse_args(argv)


ALL_FAULTS = "server-kill,link-stall,unplug,restart-storm"


def acceptance(deadline_s: float) -> list[dict]:
    """The four acceptance runs, one after the other (each saved as it ends)."""
    return [
        main(
            [
                *("--agents", "50", "--jobs", "3", "--tasks", "600", "--backend", backend),
                *("--faults", faults, "--deadline", str(deadline_s)),
            ]
        )
        for backend in ("sqlite", "postgresql")
        for faults in ("", ALL_FAULTS)
    ]


def postgres_database():
    """(server, URL of a fresh database) on a throwaway PostgreSQL."""
    from sqlalchemy import text

    from store.engine import make_engine
    from tests.pg_server import start_postgres

    server, reason = start_postgres()
    if server is None:
        raise SystemExit(f"error: --backend postgresql: {reason}")
    admin = make_engine(server.url)
    with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("CREATE DATABASE fleet"))
    admin.dispose()
    return server, server.url.rsplit("/", 1)[0] + "/fleet"


def save(result: dict) -> None:
    """Merge under `<backend>/<faults or none>/<agents>x<tasks>` into bench/results/fleet.json."""
    runs = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    faults = "+".join(result["faults"]) or "none"
    runs[f"{result['backend']}/{faults}/{result['agents']}x{result['tasks']}"] = result
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(runs, indent=1, sort_keys=True) + "\n")


def main(argv: list[str] | None = None) -> dict:
    from tests.fleet.faults import check_faults
    from tests.fleet.harness import FleetConfig, FleetRun

    args = parse_args(argv)
    if args.acceptance:
        return {"runs": acceptance(args.deadline)}
    try:
        faults = check_faults([f.strip() for f in args.faults.split(",") if f.strip()])
    except ValueError as exc:
        raise SystemExit(f"error: --faults: {exc}") from None
    workdir = Path(tempfile.mkdtemp(prefix="tailor-fleet-"))
    pg_server, url = postgres_database() if args.backend == "postgresql" else (None, None)
    config = FleetConfig(
        workdir=workdir,
        agents=args.agents,
        jobs=args.jobs,
        tasks=args.tasks,
        backend=args.backend,
        database_url=url,
        faults=faults,
        deadline_s=args.deadline,
        server_workers=args.server_workers or (2 if args.backend == "postgresql" else 1),
    )
    started = time.perf_counter()
    try:
        with FleetRun(config) as fleet:
            print(f"{args.agents} agents up in {time.perf_counter() - started:.0f}s", flush=True)
            result = fleet.run()
    finally:
        if pg_server is not None:
            pg_server.stop()
            shutil.rmtree(pg_server.data_dir, ignore_errors=True)
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    save(result)
    print(json.dumps(result, indent=1))
    if args.keep:
        print(f"logs: {workdir}")
    return result


if __name__ == "__main__":
    main()
