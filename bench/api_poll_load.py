"""The load `bench.api_poll` puts on the API: a seeded job, the writer that grows it while the
pollers run, and the pollers (dashboards) that read it."""

from __future__ import annotations

import math
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx

from store import jobs, results
from store.engine import make_engine, session_factory, upgrade

GENOME = {
    "global": {"width": 64, "vocab_size": 257, "depth": 2},
    "backbone": [
        {"op": "hyena_y", "share_featurizer": None, "share_weights": None},
        {"op": "swiglu", "share_featurizer": None, "share_weights": None},
    ],
}
ENDPOINTS = ("generations?since", "pareto")


def seed(url: str, candidates: int, per_generation: int) -> int:
    """The job the pollers read, as large as a real run's: `candidates` finished candidates in
    generations of `per_generation` (a front of 40 in each); returns its id."""
    engine = make_engine(url)
    upgrade(engine)
    sessions = session_factory(engine)
    job = jobs.create_job(
        sessions,
        "poll-bench",
        {"objectives": ["perplexity", "params"], "evolution": {"generations": 50}},
    )
    rng = random.Random(0)
    generations = candidates // per_generation
    for g in range(generations):
        rows = results.add_candidates(
            sessions,
            job.id,
            g,
            [{"genome": GENOME, "genome_hash": f"{g:06x}{i:010x}"} for i in range(per_generation)],
        )
        for row in rows:
            results.set_candidate_result(
                sessions,
                row.id,
                "done",
                {"perplexity": rng.uniform(5, 20), "params": rng.randint(10**5, 10**7)},
            )
        ids = [r.id for r in rows]
        results.write_generation(
            sessions, job.id, g, ids[:16], ids[:40], 0.1 + g / 100, (g + 1) * per_generation
        )
    engine.dispose()
    return job.id


def writer(url: str, job_id: int, first: int, every_s: float, stop: threading.Event) -> int:
    """Add a generation of 20 candidates every `every_s` seconds until `stop`: the
    candidates one by one (born pending, then finished), then the generation."""
    engine = make_engine(url)
    sessions = session_factory(engine)
    rng = random.Random(first)
    g = first
    while not stop.wait(every_s):
        rows = results.add_candidates(
            sessions,
            job_id,
            g,
            [{"genome": GENOME, "genome_hash": f"w{g:06x}{i:09x}"} for i in range(20)],
        )
        for row in rows:
            results.set_candidate_result(
                sessions,
                row.id,
                "done",
                {"perplexity": rng.uniform(5, 20), "params": rng.randint(10**5, 10**7)},
            )
        ids = [r.id for r in rows]
        results.write_generation(sessions, job_id, g, ids, ids[:5], 0.5 + g / 1000, g * 20)
        g += 1
    engine.dispose()
    return g - first


class Poller:
    """One dashboard: its client, its `since`, the ETags it holds, its samples."""

    def __init__(self, base: str, job_id: int, mode: str):
        self.base, self.job_id, self.mode = base, job_id, mode
        self.client = httpx.Client(timeout=120)
        self.tags: dict[str, str] = {}
        self.times: dict[str, list[float]] = {"first load": [], **{e: [] for e in ENDPOINTS}}
        self.not_modified: list[bool] = []
        self.following = 0
        self.newest_seen = -1

    def first_load(self) -> None:
        t0 = time.perf_counter()
        full = self.client.get(f"{self.base}/jobs/{self.job_id}/generations", params={"since": 0})
        self.times["first load"].append((time.perf_counter() - t0) * 1000)
        assert full.status_code == 200, full.text[:200]
        self.following = max([g["index"] for g in full.json()["generations"]] + [-1]) + 1
        self.newest_seen = self.following - 1

    def round(self) -> None:
        since = 0 if self.mode == "since0" else self.following
        for name, target in (
            ("generations?since", f"{self.base}/jobs/{self.job_id}/generations?since={since}"),
            ("pareto", f"{self.base}/jobs/{self.job_id}/pareto"),
        ):
            headers = {"If-None-Match": self.tags[target]} if target in self.tags else {}
            t0 = time.perf_counter()
            response = self.client.get(target, headers=headers)
            elapsed = (time.perf_counter() - t0) * 1000
            assert response.status_code in (200, 304), response.text[:200]
            self.times[name].append(elapsed)
            self.not_modified.append(response.status_code == 304)
            self.tags[target] = response.headers["etag"]
            if name.startswith("generations") and response.status_code == 200:
                got = [g["index"] for g in response.json()["generations"]]
                if got:
                    self.newest_seen = max(self.newest_seen, max(got))
                    if self.mode != "since0":
                        self.following = max(got) + 1


def poll(
    base: str,
    job_id: int,
    pollers: int,
    mode: str,
    requests: int,
    interval_s: float,
    duration_s: float,
) -> list[Poller]:
    """`pollers` threads: each loads the whole job once, then, when every poller has (the
    first loads are timed on their own, not with the polls), `requests` rounds back to back,
    or a round every `interval_s` (random phase) for `duration_s`."""
    loaded = threading.Barrier(pollers)

    def closed(p: Poller) -> Poller:
        p.first_load()
        loaded.wait()
        for _ in range(requests):
            p.round()
        return p

    def interval(p: Poller) -> Poller:
        rng = random.Random(id(p))
        time.sleep(rng.uniform(0, interval_s))
        p.first_load()
        loaded.wait()
        start = time.perf_counter() + rng.uniform(0, interval_s)
        end = start + duration_s
        k = 0
        while True:
            due = start + k * interval_s
            if due > end:
                break
            time.sleep(max(0.0, due - time.perf_counter()))
            p.round()
            # The next tick after now: ticks missed while a request ran are skipped, not
            # fired back to back (a poll at most every `interval_s`, as app.js's timer).
            k = max(k + 1, math.floor((time.perf_counter() - start) / interval_s) + 1)
        return p

    run = interval if mode == "interval" else closed
    every = [Poller(base, job_id, mode) for _ in range(pollers)]
    try:
        with ThreadPoolExecutor(pollers) as pool:
            return list(pool.map(run, every))
    finally:
        for p in every:
            p.client.close()
