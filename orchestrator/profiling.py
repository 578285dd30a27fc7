"""Hardware profiling of one job's candidates: enqueue, wait with a timeout, map reports.

Profiling goes through the database, not Ray: the driver enqueues one task per (candidate,
device class, export variant) and device agents lease them over HTTP. This module owns what
a profiling task carries (`ProfilingSpec.measurement()`; the variant's graphs), how long the
search waits for it (`profiling.timeout_s`, from the moment the tasks were enqueued), and how
a measurement report becomes metrics (`prefill_ms@L[DEVICE]`, `decode_ms@L[DEVICE:int8]`,
`peak_mem_mb[DEVICE]`, spelled by `core.metrics.Metric`). Measurements that did arrive are kept even when another
device class timed out or failed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable

from core.job_spec import ProfilingSpec
from core.metrics import Metric
from core.precision import DEFAULT_PRECISION, Variant

from store.tasks import OPEN_TASK_STATES

from .records import JobRecords

Clock = Callable[[], float]


@dataclass
class ProfilingOutcome:
    finished: bool  # False while a task is still queued or leased and time is left
    metrics: dict[str, float] = field(default_factory=dict)
    failure: str | None = None


def report_metrics(device_class: str, report: dict[str, Any],
                   precision: str = DEFAULT_PRECISION) -> dict[str, float]:
    """The metrics one measurement report gives, keyed by their metric names."""
    metrics: dict[str, float] = {}
    for stat in report["prefill"]:
        metrics[str(Metric("prefill_ms", stat["length"], device_class, precision))] = \
            stat["median_ms"]
    for stat in report["decode"]:
        metrics[str(Metric("decode_ms", stat["length"], device_class, precision))] = \
            stat["median_ms"]
    metrics[str(Metric("peak_mem_mb", None, device_class, precision))] = \
        report["peak_memory_bytes"] / 2**20
    return metrics


class ProfilingQueue:
    def __init__(self, records: JobRecords, spec: ProfilingSpec, clock: Clock = time.monotonic,
                 pairs: list[tuple[str, str]] | None = None):
        """`pairs`: (device class, variant tag) to measure per candidate; by default every
        profiled class at the plain float32 graphs."""
        self.records, self.spec, self.clock = records, spec, clock
        self.pairs = pairs if pairs is not None else [(d, "") for d in spec.devices]
        self.started: dict[int, float] = {}  # candidate row id -> when its tasks were enqueued

    def start(self, candidate_id: int) -> None:
        """Enqueue the candidate's tasks (idempotent: a resumed job finds them queued)."""
        measurement = self.spec.measurement().model_dump(mode="json")
        for device_class, tag in self.pairs:
            self.records.enqueue_profiling(candidate_id, device_class, measurement,
                                           priority=self.spec.priority, variant=tag)
        self.started.setdefault(candidate_id, self.clock())

    def poll(self, candidate_id: int) -> ProfilingOutcome:
        rows = self.records.profiling_results(candidate_id)
        open_rows = [r for r in rows if r["state"] in OPEN_TASK_STATES]
        timed_out = self.clock() - self.started[candidate_id] > self.spec.timeout_s
        if open_rows and not timed_out:
            return ProfilingOutcome(finished=False)
        outcome = ProfilingOutcome(finished=True)
        for row in rows:
            if row["report"] is not None:
                precision = Variant.from_tag(row.get("variant", "")).precision
                outcome.metrics.update(report_metrics(row["device_class"], row["report"],
                                                      precision))
        failed = [r for r in rows if r["state"] == "failed"]
        if open_rows:
            classes = ", ".join(sorted(r["device_class"] for r in open_rows))
            outcome.failure = (f"profiling timed out after {self.spec.timeout_s:g}s "
                               f"waiting for {classes}")
            self.records.cancel_profiling(candidate_id, outcome.failure)
        elif failed:
            where = failed[0]["device_class"] + (f" ({failed[0]['variant']})"
                                                 if failed[0].get("variant") else "")
            outcome.failure = (f"profiling failed on {where}: "
                               f"{failed[0]['last_error']}")
        self.started.pop(candidate_id, None)
        return outcome
