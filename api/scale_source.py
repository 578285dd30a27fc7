"""Where a scale-up job's members come from: a completed job's front and presets, resized
(core/scale_check.py), read from the store.

`POST /jobs/{id}/scale` writes the scale block; a scale block submitted by hand in
`POST /jobs` (a scale-up job's spec resubmitted) must hold members that its source job
really gives at its request, or the ranking comparison it reports (search-scale against
scale-up perplexity, Kendall tau) would be of numbers nobody measured.
"""

from __future__ import annotations

import math
from typing import Any

from fastapi.exceptions import RequestValidationError

from core.genome import Genome
from core.job_spec import JobSpec, stored_spec
from core.scale_check import (
    NothingToScale,
    ScaleError,
    ScaleMember,
    ScaleRequest,
    ScaleSpec,
    pick_members,
)
from core.states import JobStatus
from store import Conflict, NotFound
from store import jobs as store
from store import results as result_store
from store.models import Job


def _invalid(loc: tuple[Any, ...], message: str) -> RequestValidationError:
    return RequestValidationError([{"loc": ("body", *loc), "msg": message, "type": "value_error"}])


def source_members(sessions, job_id: int, request: ScaleRequest) -> tuple[Job, list[ScaleMember]]:
    """The source job and the members `request` gives. NotFound, Conflict (the job is not
    completed, or nothing on its front was evaluated: NothingToScale), ScaleError."""
    job = store.get_job(sessions, job_id)
    if job.status != JobStatus.COMPLETED:
        raise Conflict(f"job {job_id} is {job.status}: only a completed job can be scaled up")
    last = result_store.generations_since(sessions, job_id, max(0, job.generations_done - 1))
    front = set(last[-1].pareto) if last else set()
    candidates = [
        {
            "id": c.id,
            "genome": c.genome,
            "origin": c.origin,
            "status": c.status,
            "metrics": c.metrics or {},
        }
        for c in result_store.job_candidates(sessions, job_id)
    ]
    try:
        return job, pick_members(candidates, front, request)
    except NothingToScale as exc:
        raise Conflict(f"job {job_id}: {exc}") from None


def members_for_scale_request(
    sessions, job_id: int, request: ScaleRequest
) -> tuple[JobSpec, list[ScaleMember]]:
    """The source job's spec and the members of `POST /jobs/{id}/scale`: a request that
    cannot make a scale-up is a 422 naming the request's field (the job's absence and state
    stay 404 and 409)."""
    try:
        job, members = source_members(sessions, job_id, request)
    except ScaleError as exc:
        raise _invalid((exc.field,) if exc.field else (), str(exc)) from None
    return stored_spec(job.spec), members


def _same_member(given: ScaleMember, expected: ScaleMember) -> bool:
    """The same candidate, origin and resized genome (by phenotype hash), search perplexity
    and front flag. The perplexity to float rounding: a client may print floats shorter than
    Python's repr, and 15 significant digits (C's DBL_DIG) are within 5e-15 relative of the
    double, 13 digits within 5e-13: rel 1e-12 admits both. It is text parsing, the same on
    every CPU; a perplexity made up or taken from another candidate differs by far more."""
    return (
        given.origin == expected.origin
        and Genome.coerce(given.genome).hash() == Genome.coerce(expected.genome).hash()
        and given.search_front == expected.search_front
        and (given.search_perplexity is None) == (expected.search_perplexity is None)
        and (
            given.search_perplexity is None
            or math.isclose(given.search_perplexity, expected.search_perplexity, rel_tol=1e-12)
        )
    )


def check_hand_written(sessions, scale: ScaleSpec) -> None:
    """422 unless every member of a submitted scale block is the one its source job gives
    for that candidate at the block's request (a subset of them is fine), each once."""
    try:
        _, given = source_members(sessions, scale.source_job, scale.request)
    except (NotFound, Conflict) as exc:
        raise _invalid(("scale", "source_job"), str(exc)) from None
    except ScaleError as exc:
        loc = ("scale", "request", *([exc.field] if exc.field else []))
        raise _invalid(loc, str(exc)) from None
    by_candidate = {m.source_candidate: m for m in given}
    seen: set[int] = set()
    for i, member in enumerate(scale.members):
        if member.source_candidate in seen:
            raise _invalid(
                ("scale", "members", i), f"candidate {member.source_candidate} is listed twice"
            )
        seen.add(member.source_candidate)
        expected = by_candidate.get(member.source_candidate)
        if expected is None or not _same_member(member, expected):
            raise _invalid(
                ("scale", "members", i),
                f"is not what job {scale.source_job} gives for candidate "
                f"{member.source_candidate} at this request (its resized genome, origin, "
                f"search perplexity and front membership): a scale block is written by "
                f"POST /jobs/{scale.source_job}/scale; resubmit the scale-up job's spec as "
                "GET /jobs/{its id} gives it, or with some of its members (and "
                "evolution.population their number)",
            )
