"""The metric registry: every metric is one entry, and an entry is all a new metric needs.

The last test registers three toy metrics here, in the test alone (a static one from the
genome, a quality one from the training result, a hardware one from the device's report),
and runs a job that optimises them through the embedded system: the REST API validates the
spec, the orchestrator trains on local Ray and the host agent measures.
"""

from __future__ import annotations

import threading

import pytest

from core.genome import Genome
from core.metric_registry import REGISTRY, MetricDef, MetricKind, metric_table, register, unregister
from core.metrics import allowed, parse_metric


def test_every_registered_metric_parses_and_is_spelled_in_the_error_message():
    for definition in REGISTRY.values():
        example = definition.spelling.replace("@L", "@64").replace("[DEVICE]", "[host]")
        example = example.replace("[:PREC]", "[:int8]")
        metric = parse_metric(example)
        assert metric.kind is definition.kind and metric.definition is definition
        assert definition.spelling in allowed()
        assert f"`{definition.spelling}`" in metric_table()
    with pytest.raises(ValueError, match="unknown metric 'latency'; allowed: params"):
        parse_metric("latency")


def test_a_metric_is_registered_once_and_hardware_needs_a_device():
    with pytest.raises(ValueError, match="registered already"):
        register(REGISTRY["params"])
    with pytest.raises(ValueError, match="measured on a device class"):
        register(MetricDef("toy", MetricKind.HARDWARE, "ms", "toy", lambda r, m: {}))


TOYS = [
    MetricDef(
        "toy_slots",
        MetricKind.STATIC,
        "slots",
        "backbone slots of the genome",
        lambda genome, metric: float(len(Genome.coerce(genome).backbone)),
    ),
    MetricDef(
        "toy_train_s",
        MetricKind.QUALITY,
        "s",
        "wall time of the training run",
        lambda result, metric: result.wall_s,
    ),
    MetricDef(
        "toy_decode_runs",
        MetricKind.HARDWARE,
        "runs",
        "timed decode runs at the shortest context",
        lambda report, metric: {None: float(report.decode[0].n)},
        device=True,
    ),
]


@pytest.fixture
def toy_metrics():
    for toy in TOYS:
        register(toy)
    yield [t.name for t in TOYS]
    for toy in TOYS:
        unregister(toy.name)


def test_toy_metrics_registered_in_a_test_run_through_a_job_in_the_embedded_system(
    toy_metrics, tmp_path
):
    import ray

    from cli.embedded import start_embedded
    from cli.rest import TailorClient
    from orchestrator.driver import JobRunner
    from orchestrator.ray_evaluator import connect
    from store import jobs as job_store
    from store import results as result_store
    from store.engine import make_engine, session_factory

    embedded = start_embedded(tmp_path)
    client = TailorClient(embedded.url, admin_key=embedded.admin_key)
    spec = {
        "name": "toys",
        "objectives": ["perplexity", "toy_slots", "toy_train_s", "toy_decode_runs[host]"],
        "search_space": {"widths": [32], "depth_min": 1, "depth_max": 2, "vocab_size": 257},
        "evolution": {"population": 2, "generations": 1, "elitism": 1, "seed": 5},
        "training": {"tokens": 2_000, "seq_len": 32, "tokenizer": {"kind": "byte"}},
        "profiling": {
            "devices": ["host"],
            "prefill_lengths": [16],
            "decode_contexts": [16],
            "warmup": 1,
            "repeats": 3,
            "processes": 1,
            "timeout_s": 300,
        },
    }
    job_id = client.submit_job(spec)["id"]
    sessions = session_factory(make_engine(f"sqlite:///{tmp_path / 'tailor.db'}"))
    assert job_store.claim_job(sessions, "test").id == job_id
    connect(num_cpus=2)
    outcome: dict = {}
    runner = threading.Thread(
        target=lambda: outcome.update(
            status=JobRunner(sessions, tmp_path / "artifacts", job_id, "test").run()
        )
    )
    try:
        runner.start()
        runner.join(timeout=600)
    finally:
        embedded.stop()
        ray.shutdown()  # no cluster left behind for the next test in this process
    assert outcome.get("status") == "completed", outcome
    rows = result_store.job_candidates(sessions, job_id)
    assert len(rows) == 2
    for row in rows:
        assert row.status == "done", row.failure
        metrics = row.metrics
        assert metrics["toy_slots"] == len(Genome.from_json(row.genome).backbone)
        trained = result_store.get_evaluation(
            sessions, row.genome_hash, row_config_key(spec), "quality"
        )
        assert metrics["toy_train_s"] == trained["wall_s"] > 0
        assert metrics["toy_decode_runs[host]"] == 3  # repeats x processes, from the report
        assert metrics["decode_ms@16[host]"] > 0  # every report metric, the built-in ones too


def row_config_key(spec: dict) -> str:
    from core.job_spec import JobSpec

    return JobSpec.model_validate(spec).training.cache_key()
