"""Profiling tasks for agents: lease, report a measurement, report a failure, release.

A lease lasts what the agent asks for (else `lease_seconds`), at most `max_lease_seconds`
(`lease_expires_at` says when it ends); a device holds at most `max_leases_per_device`.
"""

from __future__ import annotations

import logging

from fastapi import APIRouter
from pydantic import ValidationError

from api.auth import DeviceDep
from core.precision import Variant
from core.protocol import (
    ArtifactRef,
    FailureReport,
    GraphManifest,
    LeaseRequest,
    LeaseResponse,
    MeasurementReport,
    MeasurementSpec,
    TaskAck,
    TaskAssignment,
    artifact_url,
)
from store import leasing
from store import tasks as store

from .deps import SessionsDep, SettingsDep, TaskId

router = APIRouter(prefix="/tasks", tags=["tasks"])
log = logging.getLogger(__name__)


class Unservable(Exception):
    """The server cannot hand a leased task out: what it measures is missing from storage."""


def task_public(lease: leasing.Lease) -> TaskAssignment:
    """The task with the manifest of the export variant it measures, and as its artifacts
    exactly the files a phone stores to run that variant (`GraphManifest.phone_files`: the
    graphs profiling times and the weights file they share, if any; not the full-logit
    prefill graph that serves perplexity, nor an opt-in chunk graph no agent runs)."""
    task, candidate, files = lease.task, lease.candidate, lease.files
    manifest_name = Variant.from_tag(task.variant).file("manifest")
    manifest = next((f for f in files if f.name == manifest_name), None)
    if manifest is None:
        raise Unservable(f"candidate {candidate.id} has no {manifest_name} stored")
    try:
        with open(manifest.path) as f:
            graph_manifest = GraphManifest.model_validate_json(f.read())
    except (OSError, ValueError, ValidationError) as exc:  # deleted, unreadable, not a manifest
        raise Unservable(
            f"candidate {candidate.id}'s stored {manifest_name} cannot be read: "
            f"{type(exc).__name__}: {exc}"
        ) from None
    graph_files = set(graph_manifest.phone_files)
    return TaskAssignment(
        task_id=task.id,
        job_id=task.job_id,
        candidate_id=candidate.id,
        genome_hash=candidate.genome_hash,
        attempt=task.attempts,
        lease_expires_at=task.lease_expires_at,
        spec=MeasurementSpec.model_validate(task.spec),
        manifest=graph_manifest,
        artifacts=[
            ArtifactRef(
                name=f.name,
                sha256=f.sha256,
                size_bytes=f.size_bytes,
                url=artifact_url(candidate.id, f.name),
            )
            for f in files
            if f.name in graph_files
        ],
    )


@router.post("/lease", response_model=LeaseResponse)
def lease(
    device: DeviceDep,
    sessions: SessionsDep,
    settings: SettingsDep,
    body: LeaseRequest | None = None,
) -> LeaseResponse:
    asked = body.lease_seconds if body and body.lease_seconds else settings.lease_seconds
    leased = leasing.lease_with_files(
        sessions, device, min(asked, settings.max_lease_seconds), settings.max_leases_per_device
    )
    if leased is None:
        return LeaseResponse(task=None)
    try:
        return LeaseResponse(task=task_public(leased))
    except Unservable as exc:
        # no device can measure it, and handing it back would hand it out again: it fails,
        # saying why (its job sees a failed measurement), and this device is told no task
        reason = f"server storage: {exc}"
        log.error("task %s failed: %s", leased.task.id, reason)
        store.fail_task(sessions, leased.task.id, device, reason, retryable=False)
        return LeaseResponse(task=None)


@router.post("/{task_id}/report", response_model=TaskAck)
def report(
    task_id: TaskId, body: MeasurementReport, device: DeviceDep, sessions: SessionsDep
) -> TaskAck:
    task = store.report_task(sessions, task_id, device, body.model_dump(mode="json"))
    return TaskAck(task_id=task.id, state=task.state)


@router.post("/{task_id}/fail", response_model=TaskAck)
def fail(task_id: TaskId, body: FailureReport, device: DeviceDep, sessions: SessionsDep) -> TaskAck:
    task = store.fail_task(sessions, task_id, device, body.reason, body.retryable, body.kind)
    return TaskAck(task_id=task.id, state=task.state)


@router.post("/{task_id}/release", response_model=TaskAck)
def release(task_id: TaskId, device: DeviceDep, sessions: SessionsDep) -> TaskAck:
    task = store.release_task(sessions, task_id, device)
    return TaskAck(task_id=task.id, state=task.state)
