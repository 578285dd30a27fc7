"""A job whose candidates fail still runs every generation, with every failure recorded."""

from __future__ import annotations

import pytest

from core.job_spec import JobSpec
from orchestrator.driver import JobRunner
from orchestrator.ray_evaluator import connect
from store import jobs, results
from store.engine import make_engine, session_factory, upgrade


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    import ray

    connect(num_cpus=2)
    yield
    ray.shutdown()


def test_failed_evaluations_get_the_worst_fitness_and_the_job_goes_on(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    upgrade(engine)
    sessions = session_factory(engine)
    spec = JobSpec.model_validate(
        {
            "name": "diverging",
            "objectives": ["perplexity", "params"],
            "search_space": {"widths": [32], "depth_min": 2, "depth_max": 3, "vocab_size": 257},
            "evolution": {"population": 3, "generations": 2},
            # lr 10 with no warm-up diverges: every training run comes back failed
            "training": {
                "tokens": 20_000,
                "seq_len": 32,
                "lr": 10.0,
                "warmup_fraction": 0.0,
                "tokenizer": {"kind": "byte"},
            },
        }
    )
    job = jobs.create_job(sessions, spec.name, spec.model_dump(mode="json"))
    jobs.claim_job(sessions, "me")
    # Every candidate failed: the job says so instead of completing with an empty front.
    assert JobRunner(sessions, tmp_path / "art", job.id, "me").run() == "failed"
    assert "diverged" in jobs.get_job(sessions, job.id).error
    candidates = results.job_candidates(sessions, job.id)
    assert len(candidates) == 3 + 1
    failed = [c for c in candidates if c.status == "failed"]
    assert failed and all("diverged" in c.failure for c in failed)
    assert all("params" in c.metrics for c in candidates)  # static metrics still recorded
    generations = results.generations_since(sessions, job.id, 0)
    assert [g.index for g in generations] == [0, 1]
    front = set(generations[-1].pareto)
    assert not front & {c.id for c in failed}  # failures never reach the Pareto front
    engine.dispose()
