"""`tailor orchestrator` killed with SIGKILL mid-generation and started again: the job
finishes with every candidate evaluated exactly once, and (NSGA-II and the surrogate alike)
each generation holds exactly the offspring an uninterrupted search picks from the same
evaluations."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import select

from core.job_spec import JobSpec
from store import jobs, results, transaction
from store.engine import make_engine, session_factory, upgrade
from store.models import Evaluation, Event

SPEC = {
    "name": "resume",
    "objectives": ["perplexity", "params"],
    "search_space": {"widths": [32, 48], "depth_min": 2, "depth_max": 4, "vocab_size": 257},
    "evolution": {"population": 4, "generations": 3, "seed": 1},
    "training": {"tokens": 60_000, "seq_len": 32, "tokenizer": {"kind": "byte"}},
}


def start(url: str, data_dir: Path) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "cli.main",
            "orchestrator",
            "--database-url",
            url,
            "--data-dir",
            str(data_dir),
            "--workers",
            "2",
            "--once",
            "--stale-after",
            "2",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
        cwd=Path(__file__).parents[2],
    )


ALGORITHMS = {
    "nsga2": {},
    "surrogate": {"algorithm": "surrogate", "surrogate_min_points": 4, "pool_factor": 5},
}


def replay_picks(spec: JobSpec, candidates) -> None:
    """Run the search again in-process, fed the stored evaluations: every generation's
    offspring must be the ones the resumed job evaluated."""
    from orchestrator.search.loop import SearchLoop

    loop = SearchLoop(spec.search_space, spec.evolution, spec.objectives)
    stored = {c.genome_hash: c.metrics for c in candidates}
    for generation in range(spec.evolution.generations):
        children = loop.children_for(generation)
        picked = [child.genome.hash() for child in children]
        assert set(picked) == {c.genome_hash for c in candidates if c.generation == generation}, (
            generation
        )
        for individual in loop.add(children, generation):
            individual.metrics = stored[individual.hash]
        loop.complete(generation, picked)


@pytest.mark.parametrize("algorithm", list(ALGORITHMS))
def test_kill_9_mid_generation_then_resume(tmp_path, algorithm):
    url = f"sqlite:///{tmp_path / 'tailor.db'}"
    engine = make_engine(url)
    upgrade(engine)
    sessions = session_factory(engine)
    spec = JobSpec.model_validate(
        {**SPEC, "evolution": {**SPEC["evolution"], **ALGORITHMS[algorithm]}}
    )
    job = jobs.create_job(sessions, "resume", spec.model_dump(mode="json"))

    first = start(url, tmp_path)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:  # wait until generation 1 is under way
        done = [c for c in results.job_candidates(sessions, job.id) if c.status == "done"]
        if (
            any(c.generation == 1 for c in results.job_candidates(sessions, job.id))
            and len(done) >= 5
        ):
            break
        assert first.poll() is None, first.stderr.read().decode()[-2000:]
        time.sleep(0.3)
    os.killpg(first.pid, signal.SIGKILL)  # the orchestrator and its local Ray, mid-generation
    first.wait()
    before = {c.genome_hash for c in results.job_candidates(sessions, job.id) if c.status == "done"}
    assert jobs.get_job(sessions, job.id).status == "running"  # nobody finished it

    time.sleep(2.5)  # its heartbeat goes stale
    second = start(url, tmp_path)
    try:
        assert second.wait(timeout=400) == 0, second.stderr.read().decode()[-2000:]
    finally:
        if second.poll() is None:
            os.killpg(second.pid, signal.SIGKILL)

    final = jobs.get_job(sessions, job.id)
    assert final.status == "completed", final.error
    candidates = results.job_candidates(sessions, job.id)
    hashes = [c.genome_hash for c in candidates]
    assert len(hashes) == len(set(hashes)) == 4 + 2 * 2  # population + 2 x offspring
    assert all(c.status == "done" and "perplexity" in c.metrics for c in candidates)
    assert before <= set(hashes)
    generations = results.generations_since(sessions, job.id, 0)
    assert [g.index for g in generations] == [0, 1, 2]
    assert generations[-1].stats["motifs"]  # motif analysis of the front, per generation
    with transaction(sessions) as s:
        cache = s.scalars(select(Evaluation.genome_hash).where(Evaluation.kind == "quality")).all()
        trained = s.scalars(
            select(Event.message).where(Event.job_id == job.id, Event.kind == "trained")
        ).all()
    assert sorted(cache) == sorted(hashes)  # one stored evaluation per candidate
    trained_hashes = [m.split()[0] for m in trained]
    assert sorted(trained_hashes) == sorted(hashes)  # nothing finished before was redone
    replay_picks(spec, candidates)
    engine.dispose()
