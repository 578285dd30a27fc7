"""Dashboard polling under load: p50/p99 latency of `generations?since=` and `pareto`.

A job with 10,000 candidates (50 generations of 200, a Pareto front of 40 in each) in a
SQLite file, the API served by uvicorn in its own process, while a writer (this process,
through the store, as the orchestrator writes) adds a generation of 20 candidates every
`--write-every` seconds. For each poller count (20 and 50 by default), every poller polls
as the dashboard does: one full load (`since=0`), then `generations?since=<next>` and
`pareto` back to back, sending the ETag of its last answer in If-None-Match (304 when
nothing changed). A second mode, "since=0 always", has every poller re-read the whole job
each time (a careless client), also conditional. p50/p99 per endpoint and mode.

    python -m bench.api_poll [--candidates 10000 --pollers 20 50 --requests 50]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
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

from store.engine import make_engine, session_factory, upgrade
from store import jobs, results

RESULTS = Path(__file__).parent / "results"
GENOME = {"global": {"width": 64, "vocab_size": 257, "depth": 2},
          "backbone": [{"op": "hyena_y", "share_featurizer": None, "share_weights": None},
                       {"op": "swiglu", "share_featurizer": None, "share_weights": None}]}


def seed(url: str, candidates: int, per_generation: int) -> int:
    engine = make_engine(url)
    upgrade(engine)
    sessions = session_factory(engine)
    job = jobs.create_job(sessions, "poll-bench", {"objectives": ["perplexity", "params"],
                                                   "evolution": {"generations": 50}})
    rng = random.Random(0)
    generations = candidates // per_generation
    for g in range(generations):
        rows = results.add_candidates(sessions, job.id, g, [
            {"genome": GENOME, "genome_hash": f"{g:06x}{i:010x}"} for i in range(per_generation)])
        for row in rows:
            results.set_candidate_result(sessions, row.id, "done",
                                         {"perplexity": rng.uniform(5, 20),
                                          "params": rng.randint(10**5, 10**7)})
        ids = [r.id for r in rows]
        results.write_generation(sessions, job.id, g, ids[:16], ids[:40], 0.1 + g / 100,
                                 (g + 1) * per_generation)
    engine.dispose()
    return job.id


def writer(url: str, job_id: int, first: int, every_s: float, stop: threading.Event) -> int:
    """Add a generation of 20 candidates every `every_s` seconds until `stop`."""
    engine = make_engine(url)
    sessions = session_factory(engine)
    rng = random.Random(1)
    g = first
    while not stop.wait(every_s):
        rows = results.add_candidates(sessions, job_id, g, [
            {"genome": GENOME, "genome_hash": f"w{g:06x}{i:09x}"} for i in range(20)])
        for row in rows:
            results.set_candidate_result(sessions, row.id, "done",
                                         {"perplexity": rng.uniform(5, 20),
                                          "params": rng.randint(10**5, 10**7)})
        ids = [r.id for r in rows]
        results.write_generation(sessions, job_id, g, ids, ids[:5], 0.5 + g / 1000, g * 20)
        g += 1
    engine.dispose()
    return g - first


def poll(base: str, job_id: int, pollers: int, requests: int, mode: str) -> dict[str, list]:
    """`pollers` threads, each `requests` rounds of (generations, pareto)."""
    def one(_: int) -> dict[str, list[float]]:
        times: dict[str, list[float]] = {"first load": [], "generations?since": [],
                                         "pareto": [], "not modified": []}
        tags: dict[str, str] = {}
        with httpx.Client(timeout=120) as client:
            t0 = time.perf_counter()
            full = client.get(f"{base}/jobs/{job_id}/generations", params={"since": 0})
            times["first load"].append((time.perf_counter() - t0) * 1000)
            assert full.status_code == 200, full.text[:200]
            following = max([g["index"] for g in full.json()["generations"]] + [-1]) + 1
            for _ in range(requests):
                since = 0 if mode == "since=0 always" else following
                for name, target in (("generations?since", f"{base}/jobs/{job_id}/generations"
                                                           f"?since={since}"),
                                     ("pareto", f"{base}/jobs/{job_id}/pareto")):
                    headers = {"If-None-Match": tags[target]} if target in tags else {}
                    t0 = time.perf_counter()
                    response = client.get(target, headers=headers)
                    elapsed = (time.perf_counter() - t0) * 1000
                    assert response.status_code in (200, 304), response.text[:200]
                    times[name].append(elapsed)
                    times["not modified"].append(float(response.status_code == 304))
                    tags[target] = response.headers["etag"]
                    if name.startswith("generations") and response.status_code == 200:
                        got = [g["index"] for g in response.json()["generations"]]
                        if got and mode != "since=0 always":
                            following = max(got) + 1
        return times

    with ThreadPoolExecutor(pollers) as pool:
        runs = list(pool.map(one, range(pollers)))
    return {k: [t for run in runs for t in run[k]] for k in runs[0]}


def percentiles(samples: list[float]) -> dict[str, float]:
    """Median and nearest-rank 99th percentile."""
    ordered = sorted(samples)
    return {"p50_ms": statistics.median(ordered),
            "p99_ms": ordered[max(0, math.ceil(0.99 * len(ordered)) - 1)],
            "requests": len(ordered)}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--candidates", type=int, default=10_000)
    parser.add_argument("--pollers", type=int, nargs="+", default=[20, 50])
    parser.add_argument("--requests", type=int, default=50, help="rounds per poller")
    parser.add_argument("--write-every", type=float, default=0.5,
                        help="seconds between the writer's generations")
    args = parser.parse_args(argv)
    folder = Path(tempfile.mkdtemp(prefix="tailor-poll-"))
    url = f"sqlite:///{folder / 'db.sqlite'}"
    started = time.perf_counter()
    job_id = seed(url, args.candidates, 200)
    print(f"seeded {args.candidates} candidates in {time.perf_counter() - started:.0f}s",
          flush=True)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "TAILOR_DATABASE_URL": url, "TAILOR_DATA_DIR": str(folder),
           "TAILOR_ADMIN_KEY": "bench"}
    server = subprocess.Popen([sys.executable, "-m", "cli.main", "serve", "--port",
                               str(port)], env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, cwd=Path(__file__).parent.parent)
    base = f"http://127.0.0.1:{port}/api/v1"
    scenarios = []
    next_generation = args.candidates // 200
    try:
        for _ in range(200):
            try:
                if httpx.get(f"{base}/health").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        for pollers in args.pollers:
            for mode in ("dashboard", "since=0 always"):
                stop = threading.Event()
                with ThreadPoolExecutor(1) as background:
                    written = background.submit(writer, url, job_id, next_generation,
                                                args.write_every, stop)
                    t0 = time.perf_counter()
                    times = poll(base, job_id, pollers, args.requests, mode)
                    wall = time.perf_counter() - t0
                    stop.set()
                    generations_written = written.result()
                next_generation += generations_written
                row = {"pollers": pollers, "mode": mode, "wall_s": wall,
                       "generations_written": generations_written,
                       "not_modified_share": statistics.mean(times.pop("not modified")),
                       **{name: percentiles(samples) for name, samples in times.items()}}
                scenarios.append(row)
                print(f"{pollers:3d} pollers, {mode:15s}: " + "   ".join(
                    f"{name} p50 {row[name]['p50_ms']:.1f} / p99 {row[name]['p99_ms']:.1f} ms"
                    for name in ("generations?since", "pareto", "first load"))
                      + f"   ({row['not_modified_share']:.0%} 304, writer added "
                      f"{generations_written} generations in {wall:.0f}s)", flush=True)
    finally:
        server.terminate()
        server.wait(timeout=30)
    result = {"benchmark": "api_poll", "args": vars(args), "scenarios": scenarios,
              "targets": {"p99_ms at 20 pollers": 100, "p99_ms at 50 pollers": 300}}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "api_poll.json").write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
