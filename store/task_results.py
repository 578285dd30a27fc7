"""Profiling tasks as their readers see them: each task's state and measurement (the API's
candidate page, the orchestrator waiting on a candidate) and the runner builds of a job.

The queue itself (enqueue, lease, report, fail, cancel) lives in `store.tasks`; this module
only reads.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from core.protocol import MeasurementReport
from core.states import OPEN_TASK, TaskState
from store.models import Measurement, ProfilingTask

from . import SessionFactory, transaction


@dataclass(frozen=True)
class TaskOutcome:
    """One profiling task as the orchestrator waits on it: where it stands, and the
    measurement it brought back."""

    device_class: str
    variant: str  # export variant tag ("" = float32)
    state: TaskState
    last_error: str | None
    report: MeasurementReport | None
    graph_revision: int | None = None  # of the graphs it was queued (and so measured) for

    @property
    def open(self) -> bool:
        return self.state in OPEN_TASK


def task_outcomes(sessions: SessionFactory, candidate_id: int) -> list[TaskOutcome]:
    """Every task of one candidate, typed (the orchestrator reads these)."""
    return [
        TaskOutcome(
            r["device_class"],
            r["variant"],
            TaskState(r["state"]),
            r["last_error"],
            MeasurementReport.model_validate(r["report"]) if r["report"] else None,
            r["graph_revision"],
        )
        for r in task_results(sessions, [candidate_id])
    ]


def task_results(sessions: SessionFactory, candidate_ids: list[int]) -> list[dict[str, Any]]:
    """State and measurement of every task of these candidates (the API's candidate page)."""
    with transaction(sessions) as s:
        rows = s.execute(
            select(ProfilingTask, Measurement)
            .outerjoin(Measurement, Measurement.task_id == ProfilingTask.id)
            .where(ProfilingTask.candidate_id.in_(candidate_ids))
        ).all()
        return [
            {
                "task_id": t.id,
                "candidate_id": t.candidate_id,
                "device_class": t.device_class,
                "variant": t.variant,
                "state": t.state,
                "attempts": t.attempts,
                "last_error": t.last_error,
                "graph_revision": t.graph_revision,
                "report": m.report if m else None,
                "device_id": m.device_id if m else None,
                "measured_at": m.created_at if m else None,
            }
            for t, m in sorted(rows, key=lambda row: row[0].id)
        ]


def runner_builds(sessions: SessionFactory, job_id: int) -> dict[str, list[dict | None]]:
    """The runner identities (MeasurementReport.runner_identity, None where a report has
    none) of every measurement of a job, by device class: reads that one key of each
    report, not the samples."""
    identity = Measurement.report["runner_identity"]
    with transaction(sessions) as s:
        rows = s.execute(
            select(ProfilingTask.device_class, identity)
            .join(Measurement, Measurement.task_id == ProfilingTask.id)
            .where(ProfilingTask.job_id == job_id)
        ).all()
    builds: dict[str, list[dict | None]] = {}
    for device_class, found in rows:
        known = builds.setdefault(device_class, [])
        if found not in known:
            known.append(found)
    return builds
