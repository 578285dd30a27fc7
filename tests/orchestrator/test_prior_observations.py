"""Other jobs' measurements as a new job's surrogate prior (`JobRecords.prior_observations`),
on a real database: hardware metrics reach it only from exports of this exporter's graph
revision (core.manifest.GRAPH_REVISION); a revision's graphs time differently (revision 6
cut a grouped-query decode step's ops by about 60 per layer)."""

from __future__ import annotations

import random

from core.job_spec import JobSpec
from core.manifest import GRAPH_REVISION
from core.variation import sample
from orchestrator.records import JobRecords
from store import jobs
from store import results as result_store

METRIC = "decode_ms@64[phone]"
SPEC = JobSpec.model_validate(
    {
        "name": "prior",
        "objectives": ["perplexity", METRIC],
        "search_space": {"widths": [32, 48], "depth_min": 2, "depth_max": 4, "vocab_size": 257},
        "profiling": {"devices": ["phone"], "prefill_lengths": [64], "decode_contexts": [64]},
        "training": {"tokenizer": {"kind": "byte"}},
    }
).model_dump(mode="json")


def test_a_new_job_learns_latencies_only_from_its_own_graph_revision(sessions, tmp_path):
    earlier = jobs.create_job(sessions, "earlier", SPEC).id
    space = JobSpec.model_validate(SPEC).search_space
    genomes = []
    rng = random.Random(0)
    while len(genomes) < 3:
        g = sample(space, rng)
        if g.hash() not in {x.hash() for x in genomes}:
            genomes.append(g)
    rows = result_store.add_candidates(
        sessions,
        earlier,
        0,
        [{"genome": g.to_json(), "genome_hash": g.hash()} for g in genomes],
    )
    # Recorded by this code: this revision. Then one of an older revision, and one stored
    # before candidates kept a revision (NULL), as an upgraded database holds them.
    JobRecords(sessions, tmp_path, earlier, "me").record_candidate(
        rows[0].id, {"perplexity": 11.0, METRIC: 1.0}, None
    )
    result_store.set_candidate_result(
        sessions, rows[1].id, "done", {"perplexity": 12.0, METRIC: 2.0}, graph_revision=5
    )
    result_store.set_candidate_result(
        sessions, rows[2].id, "done", {"perplexity": 13.0, METRIC: 3.0}
    )
    stored = {
        c.genome_hash: c.graph_revision for c in result_store.job_candidates(sessions, earlier)
    }
    assert stored == {
        genomes[0].hash(): GRAPH_REVISION,
        genomes[1].hash(): 5,
        genomes[2].hash(): None,
    }

    later = jobs.create_job(sessions, "later", SPEC).id
    result_store.write_generation(sessions, later, 0, [], [], 0.0, 0)
    prior = JobRecords(sessions, tmp_path, later, "me").prior_observations(1)
    measured = {g.hash(): m[METRIC] for g, m in prior if METRIC in m}
    assert measured == {genomes[0].hash(): 1.0}
