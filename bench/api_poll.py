"""Dashboard polling under load: p50/p99 latency of `generations?since=` and `pareto`.

A job with 10,000 candidates (50 generations of 200, a Pareto front of 40 in each) in a
SQLite file, the API served by uvicorn in its own process, and 20 concurrent pollers
alternating the two endpoints, the way dashboards poll.

    python -m bench.api_poll [--candidates 10000 --pollers 20 --requests 50]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
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


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--candidates", type=int, default=10_000)
    parser.add_argument("--pollers", type=int, default=20)
    parser.add_argument("--requests", type=int, default=50, help="per poller per endpoint")
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
    try:
        for _ in range(200):
            try:
                if httpx.get(f"{base}/health").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        last = args.candidates // 200 - 1
        endpoints = {"generations?since": f"{base}/jobs/{job_id}/generations?since={last}",
                     "pareto": f"{base}/jobs/{job_id}/pareto"}

        def poller(_: int) -> dict[str, list[float]]:
            times: dict[str, list[float]] = {name: [] for name in endpoints}
            with httpx.Client(timeout=60) as client:
                for _ in range(args.requests):
                    for name, target in endpoints.items():
                        t0 = time.perf_counter()
                        response = client.get(target)
                        times[name].append((time.perf_counter() - t0) * 1000)
                        assert response.status_code == 200, response.text[:200]
            return times

        with ThreadPoolExecutor(args.pollers) as pool:
            runs = list(pool.map(poller, range(args.pollers)))
    finally:
        server.terminate()
        server.wait(timeout=30)
    summary = {}
    for name in endpoints:
        samples = sorted(t for run in runs for t in run[name])
        summary[name] = {"p50_ms": statistics.median(samples),
                         "p99_ms": samples[int(0.99 * (len(samples) - 1))],
                         "requests": len(samples)}
        print(f"{name:18s} p50 {summary[name]['p50_ms']:7.1f} ms   p99 "
              f"{summary[name]['p99_ms']:7.1f} ms   ({len(samples)} requests, "
              f"{args.pollers} concurrent pollers)")
    result = {"benchmark": "api_poll", "args": vars(args), "latency": summary}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "api_poll.json").write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
