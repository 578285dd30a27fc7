"""The fleet's work: J jobs submitted through the API at once, each with its own
`profiling.priority`, and their profiling tasks made directly with the store's functions
(`store.tasks.enqueue_task`, as the orchestrator's ProfilingQueue does) instead of running
a search per job: the fleet tests the queue, the leases and the agents, not training.

The harness plays the orchestrator's part at the end too: a job whose tasks have all ended
is finished (`completed`); a job still waiting at the deadline is finished anyway, and its
tasks that never completed are what the run reports as lost.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from sqlalchemy import func, select

from core.manifest import GraphManifest
from core.protocol import API_PREFIX
from store import jobs as job_store
from store import results as result_store
from store import tasks as task_store
from store import transaction
from store.artifacts import store_artifacts
from store.models import Measurement, ProfilingTask
from tests.device_agent.graphs import write_graphs
from tests.device_agent.serving import tiny_genome

from .server import ADMIN_KEY

SPEC = {  # short measurements: the fleet is about the queue, not the phone
    "prefill_lengths": [16],
    "decode_contexts": [24],
    "warmup": 1,
    "repeats": 3,
    "processes": 1,
    "threads": 1,
    "cooldown_celsius": 80,
}


@dataclass
class FleetJob:
    job_id: int
    priority: int
    task_ids: list[int] = field(default_factory=list)
    created_at: float = 0.0  # wall time its tasks were queued
    finished_at: float | None = None


def graph_files(workdir: Path) -> dict[str, bytes]:
    folder = workdir / "graphs"
    if not (folder / "manifest.json").exists():
        write_graphs(folder)
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}


def submit_jobs(url: str, count: int) -> list[FleetJob]:
    """`count` jobs at once, the later the higher their priority (0, 10, 20 ...)."""
    jobs = []
    for i in range(count):
        body = {
            "name": f"fleet-{i}",
            "objectives": ["perplexity", "params"],
            "profiling": {"priority": 10 * i},
        }
        answer = httpx.post(
            url + API_PREFIX + "/jobs",
            json=body,
            headers={"Authorization": f"Bearer {ADMIN_KEY}"},
            timeout=30,
        )
        answer.raise_for_status()
        jobs.append(FleetJob(answer.json()["id"], 10 * i))
    return jobs


def enqueue_work(
    sessions, artifact_dir: Path, workdir: Path, jobs: list[FleetJob], tasks: int, classes
) -> None:
    """`tasks` tasks over the jobs: per candidate one task per device class, every candidate
    its own graph folder (its manifest names its hash), so every first task on a phone
    pushes. Candidates and their graphs are stored first, then every job's tasks are queued
    in one burst, lowest priority first: the last job's tasks are the newest and the first
    to be leased."""
    files = graph_files(workdir)
    manifest = GraphManifest.model_validate_json(files["manifest.json"])
    per_job = -(-tasks // len(jobs))
    genome = tiny_genome()
    for _ in jobs:  # running, as an orchestrator that claimed them
        job_store.claim_job(sessions, "fleet-harness")
    plans = []
    for job in jobs:
        for n in range(-(-per_job // len(classes))):
            genome_hash = f"{job.job_id:04x}{n:08x}{'0' * 4}"
            [candidate] = result_store.add_candidates(
                sessions, job.job_id, 0, [{"genome": genome, "genome_hash": genome_hash}]
            )
            mine = manifest.model_copy(update={"genome_hash": genome_hash})
            store_artifacts(
                sessions,
                artifact_dir,
                genome_hash,
                {**files, "manifest.json": mine.model_dump_json().encode()},
            )
            plans.append((job, candidate.id, classes[: per_job - n * len(classes)]))
    for job, candidate_id, wanted in plans:
        job.created_at = job.created_at or time.time()
        for device_class in wanted:
            task = task_store.enqueue_task(
                sessions, job.job_id, candidate_id, device_class, SPEC, priority=job.priority
            )
            job.task_ids.append(task.id)


def task_states(sessions, job: FleetJob) -> dict[str, int]:
    with transaction(sessions) as s:
        rows = s.execute(
            select(ProfilingTask.state, func.count())
            .where(ProfilingTask.job_id == job.job_id)
            .group_by(ProfilingTask.state)
        ).all()
    return dict(rows)


def finish_ended_jobs(sessions, jobs: list[FleetJob], force: bool = False) -> bool:
    """Complete every job whose tasks all ended (all of them with `force`); True when all
    jobs are finished."""
    for job in jobs:
        if job.finished_at is not None:
            continue
        states = task_states(sessions, job)
        if force or not (states.get("queued", 0) or states.get("leased", 0)):
            job_store.finish_job(sessions, job.job_id, "completed")
            job.finished_at = time.time()
    return all(job.finished_at is not None for job in jobs)


def accounting(sessions, jobs: list[FleetJob]) -> dict[str, int]:
    """Stored measurements more than once per task or per (candidate, class, variant), and
    tasks of finished jobs that never completed (lost)."""
    with transaction(sessions) as s:
        by_task = s.execute(
            select(Measurement.task_id, func.count())
            .group_by(Measurement.task_id)
            .having(func.count() > 1)
        ).all()
        by_candidate = s.execute(
            select(
                ProfilingTask.candidate_id,
                ProfilingTask.device_class,
                ProfilingTask.variant,
                func.count(Measurement.id),
            )
            .join(Measurement, Measurement.task_id == ProfilingTask.id)
            .group_by(ProfilingTask.candidate_id, ProfilingTask.device_class, ProfilingTask.variant)
            .having(func.count(Measurement.id) > 1)
        ).all()
        done = set(s.scalars(select(ProfilingTask.id).where(ProfilingTask.state == "done")).all())
    ids = [t for job in jobs for t in job.task_ids]
    return {
        "stored_twice_by_task": sum(n - 1 for _, n in by_task),
        "stored_twice_by_candidate": sum(row[-1] - 1 for row in by_candidate),
        "lost": sum(1 for t in ids if t not in done),
        "tasks": len(ids),
    }
