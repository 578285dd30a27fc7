"""The driver, without Ray and without training: a fake evaluator, a real database.

The fake evaluator answers every quality and export request at once with made-up but
deterministic results; a device is played by the test through the real task queue
(`store.tasks`), as an agent would over HTTP. Each test walks one path of a candidate's
state machine (orchestrator/candidate_state.py) and checks what the database holds after.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time

import pytest

from core import preset
from core.job_spec import JobSpec
from core.precision import Variant
from core.stage_results import (
    ExportedVariant,
    ExportOutput,
    QualityResult,
    QuantizedQuality,
    QuantizedScore,
    Trained,
)
from orchestrator.candidate_state import CandidateProgress, IllegalTransition, Stage
from orchestrator.driver import JobRunner
from orchestrator.evaluator import Finished, Work
from orchestrator.search.algorithms import registered
from orchestrator.search.loop import Individual
from store import devices, jobs, leasing, results, tasks
from store.task_results import task_results

DEVICE = "phone"


def spec(**overrides) -> dict:
    base = {
        "name": "fake",
        "objectives": ["perplexity", "params"],
        "search_space": {"widths": [32, 48], "depth_min": 2, "depth_max": 4, "vocab_size": 257},
        "evolution": {"population": 4, "generations": 3, "seed": 3},
        "training": {"tokenizer": {"kind": "byte"}},
    }
    for key, value in overrides.items():
        base[key] = {**base.get(key, {}), **value} if isinstance(value, dict) else value
    return JobSpec.model_validate(base).model_dump(mode="json")


HARDWARE = {
    "objectives": ["perplexity", f"decode_ms@64[{DEVICE}]", "params"],
    "profiling": {
        "devices": [DEVICE],
        "prefill_lengths": [64],
        "decode_contexts": [64],
        "timeout_s": 30,
    },
}


def fake_perplexity(genome_hash: str) -> float:
    return 10 + int(genome_hash[:4], 16) / 6553.5  # in [10, 20), fixed per genome


def fake_model_bytes(genome_hash: str, precision: str) -> int:
    return {"float32": 4000, "int8": 1100, "int4": 700}[precision] + int(genome_hash[:2], 16)


def fake_quantized_factor(tag: str) -> float:
    return {"int8": 1.01, "int4-b32": 1.05}.get(tag, 1.0)


class FakeEvaluator:
    """Same methods as RayEvaluator; results come back on the next collect."""

    def __init__(
        self,
        fail_quality=lambda h: False,
        fail_export=lambda h: False,
        crash_after: int | None = None,
    ):
        self.fail_quality, self.fail_export = fail_quality, fail_export
        self.crash_after = crash_after  # the process "dies" after delivering this many results
        self.queue: list[Finished] = []
        self.trained: list[str] = []
        self.delivered: list[str] = []
        self.exported: list[str] = []
        self.export_tags: list[list[str]] = []
        self.quantized: list[tuple[str, list[str], bytes]] = []
        self.cancelled = 0

    def submit_quality(self, genome_hash, genome, config, timeout_s):
        self.trained.append(genome_hash)
        if self.fail_quality(genome_hash):
            self.queue.append(Finished(genome_hash, Work.QUALITY, False, error="worker died"))
            return
        record = QualityResult(status="ok", perplexity=fake_perplexity(genome_hash))
        self.queue.append(
            Finished(
                genome_hash, Work.QUALITY, True, Trained(record, b"weights:" + genome_hash.encode())
            )
        )

    def submit_export(self, genome_hash, genome, weights, timeout_s, tags=None):
        self.exported.append(genome_hash)
        self.export_tags.append(list(tags or [""]))
        if self.fail_export(genome_hash):
            self.queue.append(Finished(genome_hash, Work.EXPORT, False, error="exporter crashed"))
            return
        files, variants = {}, {}
        for tag in tags or [""]:
            variant = Variant.from_tag(tag)
            manifest = {
                "genome_hash": genome_hash,
                "weights_seen": weights is not None,
                "precision": variant.precision,
                "variant": tag,
                "model_bytes": fake_model_bytes(genome_hash, variant.precision),
            }
            prefill, decode, manifest_file = variant.files
            files.update(
                {
                    prefill: b"p" + tag.encode(),
                    decode: b"d" + tag.encode(),
                    manifest_file: json.dumps(manifest).encode(),
                }
            )
            variants[tag] = ExportedVariant(manifest, 0.0)
        self.queue.append(Finished(genome_hash, Work.EXPORT, True, ExportOutput(variants, files)))

    def submit_quantized_quality(self, genome_hash, eval_genome, config, weights, tags, timeout_s):
        self.quantized.append((genome_hash, list(tags), weights))
        variants = {
            t: QuantizedScore(
                Variant.from_tag(t).precision,
                fake_perplexity(genome_hash) * fake_quantized_factor(t),
            )
            for t in tags
        }
        self.queue.append(
            Finished(
                genome_hash, Work.QUANTIZED_QUALITY, True, QuantizedQuality("ok", variants=variants)
            )
        )

    def collect(self, wait_s):
        """One result per call, so a crash can fall between two of them."""
        if self.crash_after is not None and len(self.delivered) >= self.crash_after:
            raise KeyboardInterrupt("the orchestrator dies here")
        if not self.queue:
            return []
        finished = self.queue.pop(0)
        self.delivered.append(finished.genome_hash)
        return [finished]

    def in_flight(self):
        return len(self.queue)

    def cancel_all(self):
        self.cancelled += 1
        self.queue.clear()


def fake_report(median: float, precision: str = "float32") -> dict:
    """A measurement report of one sample at length 64, prefill and decode alike."""
    stat = {
        "length": 64,
        "median_ms": median,
        "p10_ms": median,
        "p90_ms": median,
        "n": 1,
        "samples_ms": [median],
    }
    return {
        "prefill": [stat],
        "decode": [stat],
        "peak_memory_bytes": 3 << 20,
        "runner": "fake",
        "wall_s": 0.0,
        "precision": precision,
    }


class FakePhone(threading.Thread):
    """Plays a device agent on the real task queue: reports (or fails) every task."""

    def __init__(
        self, sessions, fail_reason: str | None = None, model: str = DEVICE, speed: float = 1.0
    ):
        super().__init__(daemon=True)
        self.sessions, self.fail_reason, self.speed = sessions, fail_reason, speed
        self.device, _ = devices.enroll_device(
            sessions,
            f"fake-{model}",
            {
                "backend": "adb",
                "model": model,
                "cpu_count": 8,
                "ram_bytes": 1 << 33,
                "serial": f"serial-{model}",
            },
        )
        self.stop = threading.Event()
        self.reports: dict[int, float] = {}  # candidate id -> reported decode median
        self.by_variant: dict[tuple[int, str], float] = {}  # (candidate, variant) -> median

    def run(self):
        while not self.stop.is_set():
            task = leasing.lease_task(self.sessions, self.device, 60)
            if task is None:
                time.sleep(0.01)
                continue
            if self.fail_reason:
                tasks.fail_task(
                    self.sessions, task.id, self.device, self.fail_reason, retryable=False
                )
                continue
            precision = Variant.from_tag(task.variant).precision
            median = (
                self.speed
                * (1.0 + task.candidate_id / 100)
                * {"float32": 1.0, "int8": 0.5, "int4": 0.25}[precision]
            )
            tasks.report_task(self.sessions, task.id, self.device, fake_report(median, precision))
            self.by_variant[(task.candidate_id, task.variant)] = median
            if not task.variant:
                self.reports[task.candidate_id] = median


def submit(db, job_spec: dict) -> int:
    job = jobs.create_job(db, job_spec["name"], job_spec)
    assert jobs.claim_job(db, "me").id == job.id
    return job.id


def runner(db, tmp_path, job_id, evaluator, **kwargs) -> JobRunner:
    return JobRunner(
        db, tmp_path / "artifacts", job_id, "me", evaluator=evaluator, poll_s=0.0, **kwargs
    )


def test_success_without_hardware_trains_each_genome_once(db, tmp_path):
    job_id = submit(db, spec())
    evaluator = FakeEvaluator()
    assert runner(db, tmp_path, job_id, evaluator).run() == "completed"
    candidates = results.job_candidates(db, job_id)
    assert len(candidates) == 4 + 2 * 2  # population, then population - elitism per generation
    assert sorted(evaluator.trained) == sorted(c.genome_hash for c in candidates)
    assert not evaluator.exported  # no hardware metric: nothing is exported
    for c in candidates:
        assert c.status == "done" and c.failure is None
        assert c.metrics["perplexity"] == pytest.approx(fake_perplexity(c.genome_hash))
        assert c.metrics["params"] > 0
    generations = results.generations_since(db, job_id, 0)
    assert [g.index for g in generations] == [0, 1, 2]
    assert generations[-1].pareto and generations[-1].hypervolume > 0
    assert jobs.get_job(db, job_id).status == "completed"


def test_success_with_a_phone_maps_each_report_to_metrics(db, tmp_path):
    job_id = submit(db, spec(**HARDWARE))
    phone = FakePhone(db)
    phone.start()
    evaluator = FakeEvaluator()
    try:
        assert runner(db, tmp_path, job_id, evaluator).run() == "completed"
    finally:
        phone.stop.set()
    candidates = results.job_candidates(db, job_id)
    assert sorted(evaluator.exported) == sorted(c.genome_hash for c in candidates)
    for c in candidates:
        assert c.status == "done", c.failure
        assert c.metrics[f"decode_ms@64[{DEVICE}]"] == phone.reports[c.id]
        assert c.metrics[f"prefill_ms@64[{DEVICE}]"] == phone.reports[c.id]
        assert c.metrics[f"peak_mem_mb[{DEVICE}]"] == 3.0
    # the export received the trained weights, and they were kept as an artifact
    first = candidates[0].genome_hash
    assert (
        tmp_path / "artifacts" / first / "weights.pt"
    ).read_bytes() == b"weights:" + first.encode()
    assert (
        json.loads((tmp_path / "artifacts" / first / "manifest.json").read_text())["weights_seen"]
        is True
    )


def test_a_quality_failure_fails_only_that_candidate(db, tmp_path):
    job_id = submit(db, spec(**HARDWARE))
    unlucky = lambda h: int(h, 16) % 3 == 0  # noqa: E731
    phone = FakePhone(db)
    phone.start()
    evaluator = FakeEvaluator(fail_quality=unlucky)
    try:
        assert runner(db, tmp_path, job_id, evaluator).run() == "completed"
    finally:
        phone.stop.set()
    candidates = results.job_candidates(db, job_id)
    failed = [c for c in candidates if unlucky(c.genome_hash)]
    assert failed, "the seed should give at least one unlucky genome"
    for c in failed:
        assert c.status == "failed" and "training task failed: worker died" in c.failure
        assert "params" in c.metrics and "perplexity" not in c.metrics
        assert c.genome_hash not in evaluator.exported  # a failed candidate stops there
    assert all(c.status == "done" for c in candidates if not unlucky(c.genome_hash))
    front = set(results.generations_since(db, job_id, 0)[-1].pareto)
    assert not front & {c.id for c in failed}


def test_an_export_failure_fails_the_candidate_before_profiling(db, tmp_path):
    job_id = submit(db, spec(**HARDWARE))
    evaluator = FakeEvaluator(fail_export=lambda h: True)
    assert runner(db, tmp_path, job_id, evaluator).run() == "failed"  # every candidate failed
    candidates = results.job_candidates(db, job_id)
    assert all(
        c.status == "failed" and "export failed: exporter crashed" in c.failure for c in candidates
    )
    assert all("perplexity" in c.metrics for c in candidates)  # training did succeed
    assert not task_results(db, [c.id for c in candidates])  # nothing was enqueued


def test_profiling_timeout_fails_the_candidate_and_names_the_device(db, tmp_path):
    job_id = submit(
        db,
        spec(
            **{**HARDWARE, "profiling": {**HARDWARE["profiling"], "timeout_s": 0.2}},
            evolution={"generations": 1},
        ),
    )
    started = time.monotonic()
    assert (
        runner(db, tmp_path, job_id, FakeEvaluator()).run() == "failed"
    )  # no phone: every candidate failed
    assert time.monotonic() - started < 30
    candidates = results.job_candidates(db, job_id)
    assert len(candidates) == 4
    for c in candidates:
        assert c.status == "failed"
        assert c.failure == f"profiling timed out after 0.2s waiting for {DEVICE}"
    # Nobody waits for those tasks any more: a phone enrolling now gets none of them.
    rows = task_results(db, [c.id for c in candidates])
    assert len(rows) == 4 and {r["state"] for r in rows} == {"cancelled"}


def test_profiling_failure_on_the_device_fails_the_candidate_with_its_reason(db, tmp_path):
    job_id = submit(db, spec(**HARDWARE, evolution={"generations": 1}))
    phone = FakePhone(db, fail_reason="runner crashed: SIGSEGV")
    phone.start()
    try:
        assert runner(db, tmp_path, job_id, FakeEvaluator()).run() == "failed"
    finally:
        phone.stop.set()
    for c in results.job_candidates(db, job_id):
        assert c.status == "failed"
        assert c.failure == f"profiling failed on {DEVICE}: runner crashed: SIGSEGV"


def test_cancel_stops_the_job_and_the_evaluator(db, tmp_path):
    job_id = submit(db, spec(**HARDWARE))  # no phone: the first generation waits

    def cancel_soon():
        time.sleep(0.5)
        jobs.request_cancel(db, job_id)

    threading.Thread(target=cancel_soon, daemon=True).start()
    evaluator = FakeEvaluator()
    job_runner = runner(db, tmp_path, job_id, evaluator)
    assert job_runner.run() == "cancelled"
    assert evaluator.cancelled == 1
    job = jobs.get_job(db, job_id)
    assert job.status == "cancelled" and job.finished_at is not None
    assert not results.generations_since(db, job_id, 0)


def test_resume_after_a_crash_trains_nothing_twice_and_ends_where_a_clean_run_ends(db, tmp_path):
    clean_id = submit(db, spec(name="clean"))
    assert runner(db, tmp_path, clean_id, FakeEvaluator()).run() == "completed"

    # Another training seed: its own evaluation-cache entries, the same search.
    job_id = submit(db, spec(name="crashing", training={"seed": 1}))
    crashing = FakeEvaluator(crash_after=5)  # generation 0's four, then one of generation 1
    with pytest.raises(KeyboardInterrupt):
        runner(db, tmp_path, job_id, crashing).run()
    assert [g.index for g in results.generations_since(db, job_id, 0)] == [0]
    statuses = [c.status for c in results.job_candidates(db, job_id) if c.generation == 1]
    assert sorted(statuses) == ["done", "pending"]

    resumed = FakeEvaluator()
    assert runner(db, tmp_path, job_id, resumed).run() == "completed"
    # What was delivered before the crash is in the cache and never trained again; the one
    # in flight at the crash is trained again, then generation 2.
    assert not set(crashing.delivered) & set(resumed.trained)
    lost = set(crashing.trained) - set(crashing.delivered)
    assert len(lost) == 1 and lost <= set(resumed.trained)
    assert len(resumed.trained) == 1 + 2
    hashes = sorted(c.genome_hash for c in results.job_candidates(db, job_id))
    assert hashes == sorted(c.genome_hash for c in results.job_candidates(db, clean_id))
    fronts = [
        sorted(
            results.candidate_detail(db, j, i)[0].genome_hash
            for i in results.generations_since(db, j, 0)[-1].pareto
        )
        for j in (job_id, clean_id)
    ]
    assert fronts[0] == fronts[1]


def test_the_state_machine_refuses_illegal_moves():
    candidate = Individual(preset("transformer++", vocab=257), 0)
    progress = CandidateProgress(1, candidate)
    progress.advance(Stage.TRAINING)
    with pytest.raises(IllegalTransition):
        progress.advance(Stage.QUEUED)
    progress.advance(Stage.PROFILING)  # a cached export skips EXPORTING
    progress.fail("lost")
    assert progress.finished and progress.failure == "lost"
    with pytest.raises(IllegalTransition):
        progress.advance(Stage.DONE)


def test_the_driver_and_its_parts_load_neither_ray_nor_torch():
    code = (
        "import sys, orchestrator.driver, orchestrator.profiling, orchestrator.records; "
        "print(sorted(m for m in ('ray', 'torch') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    ).stdout
    assert out.strip() == "[]"


def test_a_surrogate_job_stores_what_it_predicted_and_how_well(db, tmp_path):
    job_id = submit(
        db,
        spec(
            evolution={
                "algorithm": "surrogate",
                "population": 6,
                "generations": 3,
                "pool_factor": 4,
                "surrogate_min_points": 5,
            }
        ),
    )
    assert runner(db, tmp_path, job_id, FakeEvaluator()).run() == "completed"
    candidates = results.job_candidates(db, job_id)
    bred = [c for c in candidates if c.generation > 0]
    assert bred and all(set(c.predictions) == {"perplexity"} for c in bred)
    assert all(not c.predictions for c in candidates if c.generation == 0)
    for c in bred:
        assert (
            c.predictions["perplexity"]["mean"] > 0 and c.predictions["perplexity"]["log_std"] >= 0
        )
    stats = results.generations_since(db, job_id, 0)[-1].stats
    selection = stats["selection"]
    assert selection["fallback"] is False  # pool: 4 x 4 bred, plus the static-front walk's
    assert selection["pool"] == 4 * 4 + selection["static_front"]
    job_accuracy = stats["predictor"]["job"]["perplexity"]
    assert job_accuracy["n"] == len(bred) and job_accuracy["mdape"] >= 0


BREED_IN_A_FRESH_PROCESS = """
import sys
from pathlib import Path
from orchestrator.records import JobRecords
from orchestrator.search.loop import SearchLoop
from store.engine import make_engine, session_factory
sessions = session_factory(make_engine(sys.argv[1]))
records = JobRecords(sessions, Path(sys.argv[2]), int(sys.argv[3]), "me")
spec = records.spec
loop = SearchLoop(spec.search_space, spec.evolution, spec.objectives,
                  prior=records.prior_observations)
restored = records.restore(loop)
print(" ".join(sorted(c.genome.hash() for c in loop.children_for(restored.next_generation))))
"""


@pytest.mark.parametrize("algorithm", sorted(registered()))
def test_a_job_resumed_after_a_crash_breeds_the_same_offspring(db, tmp_path, algorithm):
    """The searcher contract's restore, for every registered algorithm: a fresh process that
    restores the job from the database asks for the same next generation."""
    evolution = {
        "algorithm": algorithm,
        "population": 6,
        "generations": 3,
        "pool_factor": 4,
        "surrogate_min_points": 5,
    }
    job_id = submit(db, spec(evolution=evolution))
    crashing = FakeEvaluator(crash_after=6 + 4)  # generations 0 and 1, then it dies in 2
    with pytest.raises(KeyboardInterrupt):
        runner(db, tmp_path, job_id, crashing).run()
    # As if the process had died after breeding generation 2 but before storing it.
    bred = sorted(c.genome_hash for c in results.job_candidates(db, job_id) if c.generation == 2)
    assert len(bred) == 4
    from sqlalchemy import delete

    from store import transaction
    from store.models import Candidate as CandidateRow

    with transaction(db) as s:
        s.execute(
            delete(CandidateRow).where(CandidateRow.job_id == job_id, CandidateRow.generation == 2)
        )
    url = str(db.kw["bind"].url)
    again = subprocess.run(
        [
            sys.executable,
            "-c",
            BREED_IN_A_FRESH_PROCESS,
            url,
            str(tmp_path / "artifacts"),
            str(job_id),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert again.returncode == 0, again.stderr[-2000:]
    assert again.stdout.split() == bred


def test_a_job_whose_every_candidate_failed_ends_failed_with_the_reason(db, tmp_path):
    job_id = submit(db, spec(evolution={"generations": 2}))
    evaluator = FakeEvaluator(fail_quality=lambda h: True)
    assert runner(db, tmp_path, job_id, evaluator).run() == "failed"
    job = jobs.get_job(db, job_id)
    assert job.status == "failed" and job.finished_at is not None
    assert "no candidate was evaluated successfully" in job.error
    assert "training task failed: worker died" in job.error
    assert len(results.generations_since(db, job_id, 0)) == 2  # the generations are kept


QUANTIZED = {
    "objectives": [
        "perplexity[:int8]",
        "decode_ms@64[phone:int4]",
        "decode_ms@64[max:phone,tablet:int8]",
        "model_bytes[:int4]",
    ],
    "constraints": [{"metric": "perplexity", "op": "<=", "value": 1000}],
    "profiling": {
        "devices": [DEVICE, "tablet"],
        "prefill_lengths": [64],
        "decode_contexts": [64],
        "timeout_s": 30,
    },
}


def test_precision_variants_are_exported_once_measured_per_variant_and_fleets_combined(
    db, tmp_path
):
    job_id = submit(db, spec(**QUANTIZED))
    phone, tablet = FakePhone(db), FakePhone(db, model="tablet", speed=3.0)
    phone.start(), tablet.start()
    evaluator = FakeEvaluator()
    try:
        assert runner(db, tmp_path, job_id, evaluator).run() == "completed"
    finally:
        phone.stop.set(), tablet.stop.set()
    candidates = results.job_candidates(db, job_id)
    # one export per candidate, of exactly the variants the metrics name
    assert sorted(evaluator.exported) == sorted(c.genome_hash for c in candidates)
    assert all(sorted(tags) == ["int4-b32", "int8"] for tags in evaluator.export_tags)
    # quantized perplexity was scored once per candidate, with its trained weights
    assert sorted(h for h, _, _ in evaluator.quantized) == sorted(evaluator.trained)
    assert all(
        tags == ["int8"] and w == b"weights:" + h.encode() for h, tags, w in evaluator.quantized
    )
    rows = task_results(db, [c.id for c in candidates])
    # phone: int4 and int8 tasks; tablet: int8 only; never the float graphs
    assert sorted({(r["device_class"], r["variant"]) for r in rows}) == [
        ("phone", "int4-b32"),
        ("phone", "int8"),
        ("tablet", "int8"),
    ]
    assert len(rows) == 3 * len(candidates)
    for c in candidates:
        assert c.status == "done", c.failure
        h = c.genome_hash
        assert c.metrics["perplexity[:int8]"] == pytest.approx(fake_perplexity(h) * 1.01)
        assert c.metrics["model_bytes[:int4]"] == fake_model_bytes(h, "int4")
        assert c.metrics["decode_ms@64[phone:int4]"] == phone.by_variant[(c.id, "int4-b32")]
        per_class = [c.metrics["decode_ms@64[phone:int8]"], c.metrics["decode_ms@64[tablet:int8]"]]
        assert per_class == [phone.by_variant[(c.id, "int8")], tablet.by_variant[(c.id, "int8")]]
        assert c.metrics["decode_ms@64[max:phone,tablet:int8]"] == max(per_class)
        # the artifacts of each variant sit side by side
        names = {p.name for p in (tmp_path / "artifacts" / h).iterdir()}
        assert {"prefill.int8.onnx", "decode.int4-b32.onnx", "manifest.int8.json"} <= names


def test_a_fleet_metric_is_missing_until_every_class_reported(db, tmp_path):
    # The tablet's tasks must time out while the phone's report arrives: 3 s leaves the fake
    # phone's lease-and-report round trip room on a loaded 2-core CI runner (0.5 s once
    # did not: nothing had arrived).
    job_id = submit(
        db,
        spec(
            objectives=["perplexity", "decode_ms@64[mean:phone,tablet]"],
            profiling={
                "devices": [DEVICE, "tablet"],
                "prefill_lengths": [64],
                "decode_contexts": [64],
                "timeout_s": 3.0,
            },
            evolution={"population": 2, "generations": 1, "elitism": 0},
        ),
    )
    phone = FakePhone(db)  # no tablet is enrolled: its tasks time out
    phone.start()
    try:
        runner(db, tmp_path, job_id, FakeEvaluator()).run()
    finally:
        phone.stop.set()
    for c in results.job_candidates(db, job_id):
        assert c.status == "failed" and "tablet" in c.failure
        assert f"decode_ms@64[{DEVICE}]" in c.metrics  # what did arrive is kept
        assert "decode_ms@64[mean:phone,tablet]" not in c.metrics


def test_cached_variants_and_quantized_scores_are_not_redone_by_a_second_job(db, tmp_path):
    first = submit(db, spec(**QUANTIZED))
    phone, tablet = FakePhone(db), FakePhone(db, model="tablet")
    phone.start(), tablet.start()
    try:
        runner(db, tmp_path, first, FakeEvaluator()).run()
        second = submit(db, spec(**QUANTIZED, name="again"))
        again = FakeEvaluator()
        assert runner(db, tmp_path, second, again).run() == "completed"
    finally:
        phone.stop.set(), tablet.stop.set()
    seen = {c.genome_hash for c in results.job_candidates(db, first)}
    repeated = [c for c in results.job_candidates(db, second) if c.genome_hash in seen]
    assert repeated  # same seed, same space: the presets at least come back
    assert not {c.genome_hash for c in repeated} & set(again.exported)
    assert not {c.genome_hash for c in repeated} & {h for h, _, _ in again.quantized}
    assert all("perplexity[:int8]" in c.metrics for c in repeated)
