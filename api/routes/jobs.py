"""Jobs: submit, list, inspect, cancel, resume, and scale a finished one up."""

from __future__ import annotations

from fastapi import APIRouter, Header, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from api.auth import AdminDep
from api.scale_source import check_hand_written, members_for_scale_request
from api.schemas.public import JobCreated, JobList, JobPublic, ScaleResult
from core.job_spec import JobSpec
from core.scale_check import ScaleRequest, ScaleSpec
from core.states import TERMINAL_JOB
from core.strict import ID_MAX
from store import NotFound
from store import devices as device_store
from store import jobs as store
from store import results as result_store
from store.models import Device, Job

from .deps import JobId, SessionsDep, SettingsDep

router = APIRouter(prefix="/jobs", tags=["jobs"])


Fleet = dict[str, list[tuple[Device, device_store.Readiness]]]


def job_warnings(spec: dict, fleet: Fleet) -> list[str]:
    """What will keep the job waiting though the spec is valid: a device class that no
    enrolled device has (its tasks queue until one enrolls, then time out), or whose every
    device is not ready (offline, paused, or its phone failed its preflight: each named
    with the reason and the fix)."""
    warnings = []
    for d in spec.get("profiling", {}).get("devices", []):
        members = fleet.get(d)
        if not members:
            warnings.append(
                f"no enrolled device of class {d!r}: its profiling tasks wait "
                f"until one enrolls (GET /api/v1/devices lists the classes "
                f"enrolled), else profiling.timeout_s fails the candidates"
            )
        elif not any(verdict.ready for _, verdict in members):
            why = "; ".join(
                f"device {device.id} ({device.name}): {verdict.reason} (fix: {verdict.fix})"
                for device, verdict in members
            )
            warnings.append(
                f"no device of class {d!r} is ready to measure, so its profiling "
                f"tasks wait (else profiling.timeout_s fails the candidates): "
                f"{why}"[:2000]
            )
    return warnings


def job_public(job: Job, fleet: Fleet | None = None) -> JobPublic:
    return JobPublic(
        id=job.id,
        name=job.name,
        status=job.status,
        spec=job.spec,
        warnings=job_warnings(job.spec, fleet)
        if fleet is not None and job.status not in TERMINAL_JOB
        else [],
        generations_done=job.generations_done,
        generations_total=job.spec.get("evolution", {}).get("generations", 0),
        evaluations_done=job.evaluations_done,
        cancel_requested=job.cancel_requested,
        error=job.error,
        created_at=job.created_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
    )


def parse_spec(body: bytes) -> JobSpec:
    """Validate a submitted spec; errors are the 422 every body gets (`api.app`). Runs in a
    worker thread: a spec at the bounds takes up to a second or two to check, and the event
    loop (health checks, agents' heartbeats) must not wait for it."""
    try:
        return JobSpec.model_validate_json(body)
    except ValidationError as error:
        raise RequestValidationError(
            [{**e, "loc": ("body", *e["loc"])} for e in error.errors(include_url=False)]
        ) from None


@router.post(
    "",
    status_code=201,
    response_model=JobCreated,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/JobSpec"}}},
        }
    },
)
async def submit_job(
    request: Request,
    sessions: SessionsDep,
    settings: SettingsDep,
    _: AdminDep,
    idempotency_key: str | None = Header(
        None,
        min_length=1,
        max_length=128,
        pattern=r"^[\x21-\x7e]+$",
        description="retrying with the same key returns the same job",
    ),
) -> JobCreated:
    """Submit a job spec (schema `JobSpec`), validated off the event loop."""
    spec = await run_in_threadpool(parse_spec, await request.body())

    def create() -> JobCreated:
        if spec.scale is not None:  # written by hand: its members must be its source's
            check_hand_written(sessions, spec.scale)
        job = store.create_job(sessions, spec.name, spec.model_dump(mode="json"), idempotency_key)
        return JobCreated(
            id=job.id,
            status=job.status,
            warnings=job_warnings(
                job.spec, device_store.fleet_readiness(sessions, settings.offline_after_s)
            ),
        )

    return await run_in_threadpool(create)


@router.get("", response_model=JobList)
def list_jobs(
    sessions: SessionsDep,
    offset: int = Query(0, ge=0, le=ID_MAX),
    limit: int = Query(50, ge=1, le=500),
) -> JobList:
    rows, total = store.list_jobs(sessions, offset, limit)
    return JobList(count=total, offset=offset, items=[job_public(j) for j in rows])


@router.get("/{job_id}", response_model=JobPublic)
def get_job(job_id: JobId, sessions: SessionsDep, settings: SettingsDep) -> JobPublic:
    return job_public(
        store.get_job(sessions, job_id),
        device_store.fleet_readiness(sessions, settings.offline_after_s),
    )


@router.post("/{job_id}/cancel", response_model=JobPublic)
def cancel_job(job_id: JobId, sessions: SessionsDep, _: AdminDep) -> JobPublic:
    return job_public(store.request_cancel(sessions, job_id))


@router.post("/{job_id}/resume", response_model=JobPublic)
def resume_job(job_id: JobId, sessions: SessionsDep, _: AdminDep) -> JobPublic:
    return job_public(store.resume_job(sessions, job_id))


def scale_spec(sessions, job_id: int, request: ScaleRequest) -> JobSpec:
    """The follow-up job of `POST /jobs/{id}/scale` (core/scale_check.py): the source's training
    settings with the larger budget, at full size; objectives perplexity and params."""
    source, members = members_for_scale_request(sessions, job_id, request)
    training = source.training.model_dump(mode="json")
    training.update(
        tokens=request.tokens, eval_width=None, eval_width_divisor=None, eval_depth=None
    )
    return JobSpec.model_validate(
        {
            "name": request.name or f"{source.name} scaled up"[:200],
            "search_space": source.search_space.model_dump(mode="json"),
            "objectives": ["perplexity", "params"],
            "evolution": {
                "population": len(members),
                "generations": 1,
                "elitism": 0,
                "include_presets": False,
                "seed": source.evolution.seed,
            },
            "training": training,
            "scale": ScaleSpec(source_job=job_id, request=request, members=members).model_dump(
                mode="json"
            ),
        }
    )


@router.post("/{job_id}/scale", status_code=201, response_model=JobCreated)
def scale_job(
    job_id: JobId, sessions: SessionsDep, _: AdminDep, body: ScaleRequest = ScaleRequest()
) -> JobCreated:
    """Create the scale-up check of a completed job: its best front members and presets,
    resized and trained larger; `GET /jobs/{new id}/scale` compares the rankings."""
    spec = scale_spec(sessions, job_id, body)
    job = store.create_job(sessions, spec.name, spec.model_dump(mode="json"))
    return JobCreated(id=job.id, status=job.status)


@router.get("/{job_id}/scale", response_model=ScaleResult)
def scale_result(job_id: JobId, sessions: SessionsDep) -> ScaleResult:
    """A scale-up job's comparison: per member its search-scale and scale-up perplexity and
    rank and whether it is on the front at each scale, and Kendall tau between the two
    perplexity rankings (stored when the job's generation was written)."""
    job = store.get_job(sessions, job_id)
    if not job.spec.get("scale"):
        raise NotFound(f"job {job_id} is not a scale-up job (POST /jobs/{{id}}/scale makes one)")
    generations = result_store.generations_since(sessions, job_id, 0)
    report = (generations[-1].stats or {}).get("scale") if generations else None
    return ScaleResult(
        job_id=job_id, status=job.status, source_job=job.spec["scale"]["source_job"], report=report
    )
