"""Results: generations (incremental), the Pareto front, candidate details, artifacts."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import FileResponse

from api.auth import ArtifactReaderDep
from api.generation_views import summary
from api.poll_cache import conditional_async
from api.schemas.public import (
    ArtifactPublic,
    CandidateDetail,
    CandidateSummary,
    GenerationsResponse,
    MeasurementPublic,
    ParetoResponse,
)
from core.protocol import artifact_url
from core.strict import ID_MAX
from store import artifacts as artifact_store
from store import jobs as job_store
from store import polling
from store import results as store
from store.task_results import runner_builds, task_results

from .deps import CandidateId, JobId, SessionsDep

router = APIRouter(tags=["results"])


def _job_version(request: Request, job_id: int):
    """The job's poll version, read once for the requests that arrive together."""
    sessions = request.app.state.sessions
    return request.app.state.poll_cache.versions.get(
        job_id,
        lambda: polling.poll_version(sessions, job_id),
        fast=lambda: polling.poll_version_if_unchanged(sessions, job_id),
    )


# The two polled views are `async`: an unchanged view (304) or a cached body is answered on
# the event loop, without a worker thread or an ORM session (`api.poll_cache`).
@router.get(
    "/jobs/{job_id}/generations",
    response_model=GenerationsResponse,
    responses={304: {"description": "unchanged since the ETag sent in If-None-Match"}},
)
async def generations(
    job_id: JobId,
    request: Request,
    since: int = Query(0, ge=0, le=ID_MAX, description="first generation index to return"),
) -> Response:
    """Generations from `since` on and every candidate they mention. Conditional: send the
    ETag back in If-None-Match and an unchanged view is 304 with no body. The ETag is built
    from the version of the whole job, so it changes whenever anything polled changes."""
    version = await _job_version(request, job_id)
    etag = '"gen-%d-%d-%s"' % (job_id, since, "-".join(map(str, version)))
    views, sessions = request.app.state.generation_views, request.app.state.sessions
    return await conditional_async(
        request,
        request.app.state.poll_cache,
        etag,
        lambda: views.body(sessions, job_id, since, version[0], version[3]),
    )


@router.get(
    "/jobs/{job_id}/pareto",
    response_model=ParetoResponse,
    responses={304: {"description": "unchanged since the ETag sent in If-None-Match"}},
)
async def pareto(job_id: JobId, request: Request) -> Response:
    """The newest generation's Pareto front; conditional like `generations`."""
    _, count, newest, _, _ = await _job_version(request, job_id)
    etag = f'"pareto-{job_id}-{count}-{newest}"'
    sessions = request.app.state.sessions

    def build() -> bytes:
        job = job_store.get_job(sessions, job_id)
        latest, front = store.pareto(sessions, job_id)
        return (
            ParetoResponse(
                job_id=job_id,
                generation=None if latest is None else latest.index,
                objectives=job.spec.get("objectives", []),
                candidates=[summary(c) for c in front],
            )
            .model_dump_json()
            .encode()
        )

    return await conditional_async(request, request.app.state.poll_cache, etag, build)


@router.get("/jobs/{job_id}/candidates", response_model=list[CandidateSummary])
def candidates(job_id: JobId, sessions: SessionsDep) -> list[CandidateSummary]:
    job_store.get_job(sessions, job_id)
    return [summary(c) for c in store.job_candidates(sessions, job_id)]


@router.get("/jobs/{job_id}/candidates/{candidate_id}", response_model=CandidateDetail)
def candidate(job_id: JobId, candidate_id: CandidateId, sessions: SessionsDep) -> CandidateDetail:
    """The candidate page: genome, lineage, artifacts, and every measurement with the runner
    build that took it (and a warning where the job mixes runner builds on a class)."""
    row, parents, children = store.candidate_detail(sessions, job_id, candidate_id)
    files = artifact_store.artifacts_of(sessions, row.genome_hash)
    tasks = task_results(sessions, [row.id])
    return CandidateDetail(
        **summary(row).model_dump(),
        genome=row.genome,
        parents=[summary(p) for p in parents],
        children=[summary(c) for c in children],
        artifacts=[
            ArtifactPublic(
                name=a.name,
                sha256=a.sha256,
                size_bytes=a.size_bytes,
                url=artifact_url(row.id, a.name),
            )
            for a in files
        ],
        measurements=[
            MeasurementPublic(
                **{k: v for k, v in t.items() if k != "candidate_id"},
                runner_identity=(t["report"] or {}).get("runner_identity"),
            )
            for t in tasks
        ],
        runner_warnings=runner_warnings(tasks, runner_builds(sessions, job_id)),
    )


def runner_label(identity: dict | None) -> str:
    """One runner build in words: name, release line, sha256 prefix."""
    if not identity:
        return "a runner build not recorded (measured before runner identities were stored)"
    parts = [identity.get("name") or "runner"]
    if identity.get("release_line"):
        parts.append(identity["release_line"])
    if identity.get("onnxruntime_version"):
        parts.append(f"onnxruntime {identity['onnxruntime_version']}")
    if identity.get("sha256"):
        parts.append(f"sha256 {identity['sha256'][:12]}")
    return " ".join(parts)


def runner_warnings(tasks: list[dict], job_builds: dict[str, list]) -> list[str]:
    """A line per device class whose measurements in this job come from more than one
    runner build: their numbers are not comparable without saying so."""
    warnings = []
    for device_class in sorted({t["device_class"] for t in tasks if t["report"]}):
        builds = job_builds.get(device_class, [])
        if len(builds) < 2:
            continue
        mine = {
            runner_label((t["report"] or {}).get("runner_identity"))
            for t in tasks
            if t["report"] and t["device_class"] == device_class
        }
        warnings.append(
            f"measurements on {device_class} in this job come from "
            f"{len(builds)} runner builds ({'; '.join(map(runner_label, builds))}); "
            f"this candidate's: {'; '.join(sorted(mine))}"
        )
    return warnings


@router.get("/artifacts/{candidate_id}/{name}", response_class=FileResponse)
def artifact(
    candidate_id: CandidateId, name: str, sessions: SessionsDep, _: ArtifactReaderDep
) -> FileResponse:
    row = artifact_store.artifact_for(sessions, candidate_id, name)
    return FileResponse(Path(row.path), filename=row.name, media_type="application/octet-stream")
