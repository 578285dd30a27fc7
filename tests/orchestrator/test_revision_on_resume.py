"""A job resumed under a newer exporter (core.manifest.GRAPH_REVISION), on a real database:
what its tasks measured before keeps the graph revision it was measured on, what no agent
had leased yet is measured on the new export, and the candidate is recorded with the
revision of its measurements, so other jobs' surrogates do not learn old graphs' latencies
as this revision's (`JobRecords.prior_observations`)."""

from __future__ import annotations

from core.job_spec import JobSpec
from core.manifest import GRAPH_REVISION
from orchestrator import records as records_module
from orchestrator.profiling import ProfilingQueue
from orchestrator.records import JobRecords
from store import jobs, leasing, results, tasks
from store.task_results import task_results

from .test_driver_stages import (
    DEVICE,
    HARDWARE,
    FakeEvaluator,
    FakePhone,
    fake_report,
    runner,
    spec,
    submit,
)

OLD = GRAPH_REVISION - 1


def test_what_was_measured_keeps_its_revision_and_what_waits_takes_the_new_one(sessions, tmp_path):
    job_spec = spec(**HARDWARE)
    job = jobs.create_job(sessions, "resumed", job_spec)
    rows = results.add_candidates(
        sessions,
        job.id,
        0,
        [{"genome": {}, "genome_hash": name} for name in ("a1", "b2", "c3", "d4")],
    )
    measured, leased, waiting, cancelled = (r.id for r in rows)
    profiling = JobSpec.model_validate(job_spec).profiling
    measurement = profiling.measurement().model_dump(mode="json")
    for candidate in (measured, leased, waiting, cancelled):  # queued by the older exporter
        tasks.enqueue_task(sessions, job.id, candidate, DEVICE, measurement, graph_revision=OLD)
    tasks.cancel_tasks(sessions, "the job was cancelled", candidate_id=cancelled)
    phone = FakePhone(sessions).device
    first = leasing.lease_task(sessions, phone, 60)
    tasks.report_task(sessions, first.id, phone, fake_report(2.0))
    assert leasing.lease_task(sessions, phone, 60).candidate_id == leased  # held, in flight

    # The job resumes under this exporter and asks for every candidate's tasks again.
    job_records = JobRecords(sessions, tmp_path, job.id, "me")
    queue = ProfilingQueue(job_records, profiling)
    for candidate in (measured, leased, waiting, cancelled):
        queue.start(candidate)
    revisions = {
        r["candidate_id"]: (r["state"], r["graph_revision"])
        for r in task_results(sessions, [measured, leased, waiting, cancelled])
    }
    assert revisions == {
        measured: ("done", OLD),
        leased: ("leased", OLD),
        waiting: ("queued", GRAPH_REVISION),
        cancelled: ("queued", GRAPH_REVISION),  # reopened for the new export
    }

    outcome = queue.poll(measured)
    assert outcome.finished and outcome.failure is None
    assert outcome.metrics[f"decode_ms@64[{DEVICE}]"] == 2.0
    assert outcome.graph_revision == OLD
    job_records.record_candidate(
        measured, outcome.metrics, None, graph_revision=outcome.graph_revision
    )
    stored = {c.id: c.graph_revision for c in results.job_candidates(sessions, job.id)}
    assert stored[measured] == OLD


def test_the_driver_records_the_revision_its_candidates_were_measured_on(db, tmp_path, monkeypatch):
    """Tasks queued under an older revision (as a resumed job finds them measured): every
    candidate is recorded with that revision, not the running exporter's."""
    monkeypatch.setattr(records_module, "GRAPH_REVISION", OLD)  # what enqueue stamps
    job_id = submit(db, spec(**HARDWARE, evolution={"generations": 1}))
    phone = FakePhone(db)
    phone.start()
    try:
        assert runner(db, tmp_path, job_id, FakeEvaluator()).run() == "completed"
    finally:
        phone.stop.set()
    candidates = results.job_candidates(db, job_id)
    assert candidates and {c.status for c in candidates} == {"done"}
    assert {c.graph_revision for c in candidates} == {OLD}


def test_measurements_of_two_revisions_or_an_unknown_one_record_none(sessions, tmp_path):
    """A candidate measured at two revisions (one variant before the upgrade, one after) or
    on a task queued before tasks kept a revision has no one revision: recorded as none."""
    job_spec = spec(**HARDWARE)
    job = jobs.create_job(sessions, "mixed", job_spec)
    rows = results.add_candidates(
        sessions, job.id, 0, [{"genome": {}, "genome_hash": h} for h in ("e5", "f6")]
    )
    mixed, unknown = (r.id for r in rows)
    profiling = JobSpec.model_validate(job_spec).profiling
    measurement = profiling.measurement().model_dump(mode="json")
    tasks.enqueue_task(sessions, job.id, mixed, DEVICE, measurement, graph_revision=OLD)
    tasks.enqueue_task(
        sessions, job.id, mixed, DEVICE, measurement, variant="int8", graph_revision=GRAPH_REVISION
    )
    tasks.enqueue_task(sessions, job.id, unknown, DEVICE, measurement)  # no revision kept
    phone = FakePhone(sessions).device
    for _ in range(3):
        task = leasing.lease_task(sessions, phone, 60)
        precision = "int8" if task.variant == "int8" else "float32"
        tasks.report_task(sessions, task.id, phone, fake_report(1.0, precision))
    job_records = JobRecords(sessions, tmp_path, job.id, "me")
    both = ProfilingQueue(job_records, profiling, pairs=[(DEVICE, ""), (DEVICE, "int8")])
    plain = ProfilingQueue(job_records, profiling)
    for queue, candidate in ((both, mixed), (plain, unknown)):
        queue.start(candidate)  # already there: nothing requeued, no label changed
        outcome = queue.poll(candidate)
        assert outcome.finished and outcome.failure is None, outcome
        assert outcome.graph_revision is None
    assert [r["graph_revision"] for r in task_results(sessions, [mixed, unknown])] == [
        OLD,
        GRAPH_REVISION,
        None,
    ]
