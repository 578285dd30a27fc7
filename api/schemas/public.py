"""Response models: what the API returns for jobs, generations, candidates and devices."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field


class JobPublic(BaseModel):
    id: int
    name: str
    status: str
    spec: dict[str, Any]
    warnings: list[str] = []  # e.g. a device class with no enrolled device
    generations_done: int
    generations_total: int
    evaluations_done: int
    cancel_requested: bool
    error: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class JobList(BaseModel):
    count: int
    offset: int
    items: list[JobPublic]


class JobCreated(BaseModel):
    id: int
    status: str
    warnings: list[str] = []  # accepted, but something will keep it waiting


class GenerationPublic(BaseModel):
    index: int
    population: list[int]
    pareto: list[int]
    hypervolume: float
    evaluations: int
    stats: dict[str, Any]
    created_at: datetime


class CandidateSummary(BaseModel):
    id: int
    genome_hash: str
    generation: int
    origin: str
    status: str
    metrics: dict[str, Any]
    failure: str | None = None
    # what the search's surrogate predicted before evaluating it: metric -> {mean, log_std}
    predictions: dict[str, Any] = {}
    # CPU-/GPU-seconds per stage, phone seconds apart (orchestrator/compute_ledger.py)
    compute: dict[str, Any] | None = None
    # multi-fidelity rungs trained: [{tokens, perplexity, compute_s, promoted}]
    rungs: list[dict[str, Any]] | None = None


class GenerationsResponse(BaseModel):
    job_id: int
    status: str
    generations: list[GenerationPublic]
    candidates: list[CandidateSummary]  # every candidate those generations mention


class ParetoResponse(BaseModel):
    job_id: int
    generation: int | None
    objectives: list[str]
    candidates: list[CandidateSummary]


class ArtifactPublic(BaseModel):
    name: str
    sha256: str
    size_bytes: int
    url: str


class MeasurementPublic(BaseModel):
    """One profiling task of a candidate and, once measured, the whole report: per-length
    median, p10, p90 and raw samples, peak memory, thermals, method, and which device."""

    task_id: int
    device_class: str
    variant: str = Field(
        default="",
        description="the export variant measured "
        "(core.precision.Variant tag: '' = plain float32, 'int8', 'int4-b32')",
    )
    state: str
    attempts: int
    last_error: str | None
    graph_revision: int | None = Field(
        default=None,
        description="the exporter's graph revision the task was queued for "
        "(core.manifest.GRAPH_REVISION; null: queued before it was kept); a task leased, "
        "then requeued after its job was resumed under a newer exporter measures the new "
        "graphs under the older label",
    )
    device_id: int | None
    measured_at: datetime | None
    report: dict[str, Any] | None
    # which runner build took the numbers (core.protocol.RunnerIdentity; None: not said)
    runner_identity: dict[str, Any] | None = None


class CandidateDetail(CandidateSummary):
    genome: dict[str, Any]
    parents: list[CandidateSummary]
    children: list[CandidateSummary]
    artifacts: list[ArtifactPublic]
    measurements: list[MeasurementPublic] = []
    # measurements of one device class taken by different runner builds (never mixed
    # silently): one line per class saying which builds
    runner_warnings: list[str] = []


class DevicePublic(BaseModel):
    id: int
    name: str
    model: str
    state: str
    online: bool
    last_heartbeat_at: datetime | None
    paused_until: datetime | None = None  # a device error keeps it from leasing until then
    paused_reason: str | None = None
    properties: dict[str, Any]
    # can it take a task now (active, online, not paused, its preflight passed); if not,
    # why, and what fixes it
    ready: bool = False
    not_ready_reason: str | None = None
    fix: str | None = None
    runner: dict[str, Any] | None = None  # the runner build its preflight found


class GenePublic(BaseModel):
    name: str
    low: int
    high: int
    default: int
    doc: str
    search_choices: list[int]
    scales_with_width: bool


class OperatorPublic(BaseModel):
    name: str
    class_id: int
    kind: str
    summary: str
    featurizer: str
    colour: str
    default_search: bool
    genes: list[GenePublic]


class CatalogResponse(BaseModel):
    operators: list[OperatorPublic]  # in class-id order
    presets: dict[str, str]  # name -> one-line summary


class PredictorAccuracy(BaseModel):
    n: int  # candidates predicted before they were measured
    kendall_tau: float | None
    mdape: float | None  # median absolute percentage error, as a fraction


class LatencyModelPublic(BaseModel):
    device_class: str
    measured_candidates: int  # every candidate measured on this class, across jobs
    metrics: dict[str, PredictorAccuracy]  # per hardware metric of this class


class ScaleResult(BaseModel):
    """A scale-up job's comparison of the two rankings (core.scale_check.scale_report); `report`
    is null until the job's generation is written."""

    job_id: int
    status: str
    source_job: int
    report: dict[str, Any] | None
