"""Tables. The schema itself is created by the Alembic migrations in store/migrations."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def as_utc(moment: datetime | None) -> datetime | None:
    """A stored time as an aware UTC datetime (SQLite hands them back without a zone)."""
    if moment is not None and moment.tzinfo is None:
        return moment.replace(tzinfo=timezone.utc)
    return moment


class UtcDateTime(TypeDecorator):
    """A timestamp column that reads back as an aware UTC datetime on every backend
    (PostgreSQL keeps the zone; SQLite returns naive values, read here as the UTC they were
    written in), so every time the API serialises carries its zone."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is not None and value.tzinfo is not None:
            value = value.astimezone(timezone.utc)
        return value

    def process_result_value(self, value, dialect):
        return as_utc(value)


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON, datetime: UtcDateTime}


class Job(Base):
    __tablename__ = "jobs"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    spec: Mapped[dict[str, Any]]
    status: Mapped[str] = mapped_column(String(20), index=True, default="queued")
    owner: Mapped[str | None] = mapped_column(String(200))
    owner_heartbeat_at: Mapped[datetime | None]
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    generations_done: Mapped[int] = mapped_column(Integer, default=0)
    evaluations_done: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    # The client's Idempotency-Key of the POST that created it: the same key gets this job
    # back instead of a duplicate (a client retrying after a lost response).
    idempotency_key: Mapped[str | None] = mapped_column(String(128), unique=True)


class Generation(Base):
    __tablename__ = "generations"
    __table_args__ = (UniqueConstraint("job_id", "index"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    index: Mapped[int] = mapped_column(Integer)
    population: Mapped[list[Any]]  # candidate ids
    pareto: Mapped[list[Any]]  # candidate ids
    hypervolume: Mapped[float] = mapped_column(Float)
    evaluations: Mapped[int] = mapped_column(Integer)
    stats: Mapped[dict[str, Any]]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Candidate(Base):
    __tablename__ = "candidates"
    # (job_id, generation, status): every dashboard poll counts the candidates born after a
    # job's newest generation and how many finished; this index answers it without a row read.
    __table_args__ = (
        UniqueConstraint("job_id", "genome_hash"),
        Index("ix_candidates_job_generation_status", "job_id", "generation", "status"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    genome_hash: Mapped[str] = mapped_column(String(64), index=True)
    genome: Mapped[dict[str, Any]]
    generation: Mapped[int] = mapped_column(Integer, index=True)
    parents: Mapped[list[Any]]  # genome hashes
    origin: Mapped[str] = mapped_column(String(64), default="random")
    status: Mapped[str] = mapped_column(String(20), default="pending")
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    failure: Mapped[str | None] = mapped_column(Text)
    # What the search's surrogate predicted before the candidate was evaluated:
    # {metric: {"mean": m, "std": s}}; empty when it was not chosen by a prediction.
    predictions: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # Compute the evaluation used (orchestrator/compute_ledger.py): CPU- or GPU-seconds per
    # stage, phone seconds apart, what this job spent and what it reused from the cache.
    compute: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # Multi-fidelity rungs reached: [{"tokens", "perplexity", "compute_s", "promoted"}].
    rungs: Mapped[list[Any] | None] = mapped_column(JSON)
    # The exporter's graph revision (core.manifest.GRAPH_REVISION) its export and hardware
    # metrics came from; other jobs' surrogates learn only from their own revision's
    # latencies (store/results.py measured_candidates). NULL: recorded before it was kept.
    graph_revision: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Evaluation(Base):
    """The evaluation cache shared by every job: one row per (genome, config, kind)."""

    __tablename__ = "evaluations"
    __table_args__ = (UniqueConstraint("genome_hash", "config_key", "kind"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    genome_hash: Mapped[str] = mapped_column(String(64))
    config_key: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(32))
    result: Mapped[dict[str, Any]]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Artifact(Base):
    __tablename__ = "artifacts"
    __table_args__ = (UniqueConstraint("genome_hash", "name"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    genome_hash: Mapped[str] = mapped_column(String(64), index=True)
    name: Mapped[str] = mapped_column(String(128))
    sha256: Mapped[str] = mapped_column(String(64))
    size_bytes: Mapped[int] = mapped_column(Integer)
    path: Mapped[str] = mapped_column(Text)


class Device(Base):
    __tablename__ = "devices"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    model: Mapped[str] = mapped_column(String(128), index=True)
    properties: Mapped[dict[str, Any]]
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    # store.devices.device_identity: one row per physical device; NULL for rows enrolled
    # before revision 0003 that were not the newest of their device.
    identity: Mapped[str | None] = mapped_column(String(64), unique=True, index=True)
    state: Mapped[str] = mapped_column(String(20), default="active")
    last_heartbeat_at: Mapped[datetime | None]
    # A task failed with kind "device" (runner missing, storage full) pauses the device from
    # leasing until then; the reason is shown to admins.
    paused_until: Mapped[datetime | None]
    paused_reason: Mapped[str | None] = mapped_column(Text)
    # The agent's preflight verdict (core.protocol.DeviceReadiness) from its last heartbeat:
    # {"ready": bool, "reason": ..., "fix": ..., "runner": {...}}; NULL: never sent one.
    readiness: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)

    def pause(self) -> tuple[datetime, str | None] | None:
        """(until, reason) while a device error keeps this device from leasing, else None."""
        until = as_utc(self.paused_until)
        return (until, self.paused_reason) if until is not None and until > utcnow() else None

    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class EnrollAttempt(Base):
    """An enrollment attempt of one client address within the last minute, counted by every
    server process alike (store/enrollment_limit.py)."""

    __tablename__ = "enroll_attempts"
    __table_args__ = (Index("ix_enroll_attempts_client_at", "client", "at"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    client: Mapped[str] = mapped_column(String(255))
    at: Mapped[datetime] = mapped_column(index=True)


class ProfilingTask(Base):
    __tablename__ = "profiling_tasks"
    __table_args__ = (
        UniqueConstraint(
            "candidate_id",
            "device_class",
            "variant",
            name="uq_profiling_tasks_candidate_device_variant",
        ),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    candidate_id: Mapped[int] = mapped_column(ForeignKey("candidates.id", ondelete="CASCADE"))
    device_class: Mapped[str] = mapped_column(String(128), index=True)
    # The export variant measured (core.precision.Variant tag; '' = plain float32 graphs)
    variant: Mapped[str] = mapped_column(String(64), default="", server_default="")
    spec: Mapped[dict[str, Any]]
    state: Mapped[str] = mapped_column(String(20), index=True, default="queued")
    lease_owner: Mapped[int | None] = mapped_column(ForeignKey("devices.id"))
    lease_expires_at: Mapped[datetime | None]
    # The length granted at lease time; every heartbeat of the holder renews it by as much.
    lease_seconds: Mapped[float | None] = mapped_column(Float)
    priority: Mapped[int] = mapped_column(Integer, default=0)  # the job's profiling.priority
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer, default=3)
    last_error: Mapped[str | None] = mapped_column(Text)
    # The exporter's graph revision (core.manifest.GRAPH_REVISION) of the graphs the task was
    # queued for: a job resumed under a newer exporter re-exports, and a task still queued
    # takes the new revision, while one leased or measured keeps the one it was queued for
    # (NULL: queued before it was kept; store/tasks.py enqueue_task).
    graph_revision: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Measurement(Base):
    __tablename__ = "measurements"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    task_id: Mapped[int] = mapped_column(
        ForeignKey("profiling_tasks.id", ondelete="CASCADE"), unique=True
    )
    device_id: Mapped[int] = mapped_column(ForeignKey("devices.id"))
    report: Mapped[dict[str, Any]]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Event(Base):
    __tablename__ = "events"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[int | None] = mapped_column(
        ForeignKey("jobs.id", ondelete="CASCADE"), index=True
    )
    time: Mapped[datetime] = mapped_column(default=utcnow)
    kind: Mapped[str] = mapped_column(String(64))
    message: Mapped[str] = mapped_column(Text)
