"""Hardware profiling of one job's candidates: enqueue, wait with a timeout, map reports.

Profiling goes through the database, not Ray: the driver enqueues one task per (candidate,
device class, export variant) and device agents lease them over HTTP. This module owns what
a profiling task carries (`ProfilingSpec.measurement()`; the variant's graphs), how long the
search waits for it (`profiling.timeout_s`, from the moment the tasks were enqueued), and how
a measurement report becomes metrics (`prefill_ms@L[DEVICE]`, `decode_ms@L[DEVICE:int8]`,
`peak_mem_mb[DEVICE]`: every hardware metric of the registry, `core.metrics.measured_metrics`).
Measurements that did arrive are kept even when another device class timed out or failed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

from core.job_spec import ProfilingSpec
from core.manifest import GRAPH_REVISION
from core.metrics import measured_metrics
from core.precision import Variant
from core.states import TaskState

from .records import JobRecords

Clock = Callable[[], float]


@dataclass
class ProfilingOutcome:
    finished: bool  # False while a task is still queued or leased and time is left
    metrics: dict[str, float] = field(default_factory=dict)
    failure: str | None = None
    device_s: float = 0.0  # phone seconds the reports took (MeasurementReport.wall_s)
    # The graph revision every report was queued for (store/tasks.py enqueue_task): this
    # exporter's, an older one's (a job resumed under a newer exporter, its tasks measured
    # before), None where they differ or one is unknown (queued before tasks kept it). The
    # candidate is recorded with it; its export metrics (model_bytes) are this exporter's.
    graph_revision: int | None = GRAPH_REVISION


class ProfilingQueue:
    def __init__(
        self,
        records: JobRecords,
        spec: ProfilingSpec,
        clock: Clock = time.monotonic,
        pairs: list[tuple[str, str]] | None = None,
    ):
        """`pairs`: (device class, variant tag) to measure per candidate; by default every
        profiled class at the plain float32 graphs."""
        self.records, self.spec, self.clock = records, spec, clock
        self.pairs = pairs if pairs is not None else [(d, "") for d in spec.devices]
        self.started: dict[int, float] = {}  # candidate row id -> when its tasks were enqueued

    def start(self, candidate_id: int) -> None:
        """Enqueue the candidate's tasks (idempotent: a resumed job finds them queued)."""
        measurement = self.spec.measurement().model_dump(mode="json")
        for device_class, tag in self.pairs:
            self.records.enqueue_profiling(
                candidate_id, device_class, measurement, priority=self.spec.priority, variant=tag
            )
        self.started.setdefault(candidate_id, self.clock())

    def poll(self, candidate_id: int) -> ProfilingOutcome:
        tasks = self.records.profiling_results(candidate_id)
        open_tasks = [t for t in tasks if t.open]
        timed_out = self.clock() - self.started[candidate_id] > self.spec.timeout_s
        if open_tasks and not timed_out:
            return ProfilingOutcome(finished=False)
        outcome = ProfilingOutcome(finished=True)
        revisions = {t.graph_revision for t in tasks if t.report is not None}
        if revisions:
            outcome.graph_revision = revisions.pop() if len(revisions) == 1 else None
        for task in tasks:
            if task.report is not None:
                precision = Variant.from_tag(task.variant).precision
                outcome.metrics.update(measured_metrics(task.report, task.device_class, precision))
                outcome.device_s += task.report.wall_s
        failed = [t for t in tasks if t.state is TaskState.FAILED]
        if open_tasks:
            classes = ", ".join(sorted(t.device_class for t in open_tasks))
            outcome.failure = (
                f"profiling timed out after {self.spec.timeout_s:g}s waiting for {classes}"
            )
            self.records.cancel_profiling(candidate_id, outcome.failure)
        elif failed:
            where = failed[0].device_class + (
                f" ({failed[0].variant})" if failed[0].variant else ""
            )
            outcome.failure = f"profiling failed on {where}: {failed[0].last_error}"
        self.started.pop(candidate_id, None)
        return outcome
