"""Candidates, the evaluation cache, and generations: what a job produces."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select

from store.models import Candidate, Evaluation, Generation, Job

# api/routes/results.py reads the poll version here; it lives in store/polling.py.
from . import NotFound, SessionFactory, insert_or_get, transaction


def add_candidates(
    sessions: SessionFactory, job_id: int, generation: int, items: list[dict[str, Any]]
) -> list[Candidate]:
    """Insert candidates (genome, genome_hash, parents, origin, predictions); idempotent on
    (job, genome_hash): a candidate already stored is returned as it is."""
    out = []
    for item in items:
        row = Candidate(
            job_id=job_id,
            generation=generation,
            genome=item["genome"],
            genome_hash=item["genome_hash"],
            parents=item.get("parents", []),
            origin=item.get("origin", "random"),
            status="pending",
            metrics={},
            predictions=item.get("predictions", {}),
        )
        out.append(
            insert_or_get(
                sessions,
                row,
                lambda s, h=item["genome_hash"]: s.scalar(
                    select(Candidate).where(Candidate.job_id == job_id, Candidate.genome_hash == h)
                ),
            )
        )
    return out


def job_candidates(sessions: SessionFactory, job_id: int) -> list[Candidate]:
    with transaction(sessions) as s:
        return list(
            s.scalars(
                select(Candidate).where(Candidate.job_id == job_id).order_by(Candidate.id)
            ).all()
        )


def candidates_for(
    sessions: SessionFactory, job_id: int, ids: set[int], min_generation: int | None = None
) -> list[Candidate]:
    """Candidates with these ids, plus (optionally) every one born at `min_generation` or
    later: what an incremental poll needs, without reading the whole job."""
    with transaction(sessions) as s:
        condition = Candidate.id.in_(ids) if ids else None
        if min_generation is not None:
            newer = Candidate.generation >= min_generation
            condition = newer if condition is None else (condition | newer)
        if condition is None:
            return []
        return list(
            s.scalars(
                select(Candidate)
                .where(Candidate.job_id == job_id, condition)
                .order_by(Candidate.id)
            ).all()
        )


def set_candidate_result(
    sessions: SessionFactory,
    candidate_id: int,
    status: str,
    metrics: dict[str, Any] | None = None,
    failure: str | None = None,
    compute: dict[str, Any] | None = None,
    rungs: list[dict[str, Any]] | None = None,
    graph_revision: int | None = None,
) -> Candidate:
    """Its outcome; `graph_revision`: the exporter's revision its metrics came from."""
    with transaction(sessions) as s:
        row = s.get(Candidate, candidate_id)
        if row is None:
            raise NotFound(f"candidate {candidate_id} not found")
        row.status = status
        if metrics is not None:
            row.metrics = {**(row.metrics or {}), **metrics}
        if graph_revision is not None:
            row.graph_revision = graph_revision
        row.failure = failure
        if compute is not None:
            row.compute = compute
        if rungs is not None:
            row.rungs = rungs
        return row


def get_evaluation(
    sessions: SessionFactory, genome_hash: str, config_key: str, kind: str
) -> dict[str, Any] | None:
    with transaction(sessions) as s:
        row = s.scalar(
            select(Evaluation).where(
                Evaluation.genome_hash == genome_hash,
                Evaluation.config_key == config_key,
                Evaluation.kind == kind,
            )
        )
        return None if row is None else row.result


def put_evaluation(
    sessions: SessionFactory, genome_hash: str, config_key: str, kind: str, result: dict[str, Any]
) -> dict[str, Any]:
    """Store once; a concurrent writer's earlier row wins and is returned."""
    row = Evaluation(genome_hash=genome_hash, config_key=config_key, kind=kind, result=result)
    stored = insert_or_get(
        sessions,
        row,
        lambda s: s.scalar(
            select(Evaluation).where(
                Evaluation.genome_hash == genome_hash,
                Evaluation.config_key == config_key,
                Evaluation.kind == kind,
            )
        ),
    )
    return stored.result


def write_generation(
    sessions: SessionFactory,
    job_id: int,
    index: int,
    population: list[int],
    pareto: list[int],
    hypervolume: float,
    evaluations: int,
    stats: dict[str, Any] | None = None,
) -> Generation:
    """Idempotent on (job, index): writing the same generation twice keeps the first."""
    row = Generation(
        job_id=job_id,
        index=index,
        population=population,
        pareto=pareto,
        hypervolume=hypervolume,
        evaluations=evaluations,
        stats=stats or {},
    )
    return insert_or_get(
        sessions,
        row,
        lambda s: s.scalar(
            select(Generation).where(Generation.job_id == job_id, Generation.index == index)
        ),
    )


def generations_since(sessions: SessionFactory, job_id: int, since: int) -> list[Generation]:
    """Generations with index >= since, for incremental polling."""
    with transaction(sessions) as s:
        if s.get(Job, job_id) is None:
            raise NotFound(f"job {job_id} not found")
        return list(
            s.scalars(
                select(Generation)
                .where(Generation.job_id == job_id, Generation.index >= since)
                .order_by(Generation.index)
            ).all()
        )


def candidates_born(
    sessions: SessionFactory,
    job_id: int,
    generations: list[int] | None = None,
    after: int | None = None,
) -> list[Candidate]:
    """Candidates born in these generations, or after generation `after`."""
    with transaction(sessions) as s:
        query = select(Candidate).where(Candidate.job_id == job_id)
        if generations is not None:
            query = query.where(Candidate.generation.in_(generations))
        if after is not None:
            query = query.where(Candidate.generation > after)
        return list(s.scalars(query.order_by(Candidate.id)).all())


def pareto(sessions: SessionFactory, job_id: int) -> tuple[Generation | None, list[Candidate]]:
    """The newest generation's Pareto front, as candidates."""
    with transaction(sessions) as s:
        if s.get(Job, job_id) is None:
            raise NotFound(f"job {job_id} not found")
        latest = s.scalar(
            select(Generation)
            .where(Generation.job_id == job_id)
            .order_by(Generation.index.desc())
            .limit(1)
        )
        if latest is None:
            return None, []
        rows = s.scalars(select(Candidate).where(Candidate.id.in_(latest.pareto))).all()
        return latest, sorted(rows, key=lambda c: c.id)


def candidate_detail(
    sessions: SessionFactory, job_id: int, candidate_id: int
) -> tuple[Candidate, list[Candidate], list[Candidate]]:
    """The candidate, its parents and its children within the job (lineage)."""
    with transaction(sessions) as s:
        row = s.get(Candidate, candidate_id)
        if row is None or row.job_id != job_id:
            raise NotFound(f"candidate {candidate_id} not found in job {job_id}")
        parents = list(
            s.scalars(
                select(Candidate).where(
                    Candidate.job_id == job_id, Candidate.genome_hash.in_(row.parents or [])
                )
            ).all()
        )
        later = s.scalars(
            select(Candidate).where(
                Candidate.job_id == job_id, Candidate.generation > row.generation
            )
        ).all()
        children = [c for c in later if row.genome_hash in (c.parents or [])]
        return row, parents, children


def generation_written_at(sessions: SessionFactory, job_id: int, index: int) -> datetime | None:
    with transaction(sessions) as s:
        return s.scalar(
            select(Generation.created_at).where(
                Generation.job_id == job_id, Generation.index == index
            )
        )


def quality_observations(
    sessions: SessionFactory, config_key: str, before: datetime, exclude_job: int
) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(genome JSON, quality record) of every successful quality evaluation with this
    training config stored before `before`, for genomes of jobs other than `exclude_job`
    (the evaluation cache is keyed by genome hash; the genome comes from any job's row)."""
    with transaction(sessions) as s:
        rows = s.execute(
            select(Evaluation.genome_hash, Evaluation.result)
            .where(
                Evaluation.config_key == config_key,
                Evaluation.kind == "quality",
                Evaluation.created_at <= before,
            )
            .order_by(Evaluation.id)
        ).all()
        own = set(s.scalars(select(Candidate.genome_hash).where(Candidate.job_id == exclude_job)))
        wanted = [(h, r) for h, r in rows if h not in own and r.get("status") == "ok"]
        genomes = dict(
            s.execute(
                select(Candidate.genome_hash, Candidate.genome)
                .where(Candidate.genome_hash.in_([h for h, _ in wanted]))
                .order_by(Candidate.id.desc())
            ).all()
        )
        return [(genomes[h], r) for h, r in wanted if h in genomes]


def measured_candidates(
    sessions: SessionFactory,
    metric_names: list[str],
    before: datetime,
    exclude_job: int,
    graph_revision: int,
) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(genome JSON, metrics among `metric_names`) of other jobs' evaluated candidates last
    updated before `before` that hold at least one of those metrics, oldest first; only
    candidates recorded as measured at `graph_revision` (another revision's graphs time
    differently: revision 6 cut a GQA decode step's ops, core.manifest.GRAPH_REVISION)."""
    wanted = set(metric_names)
    with transaction(sessions) as s:
        rows = s.execute(
            select(Candidate.genome, Candidate.metrics)
            .where(
                Candidate.job_id != exclude_job,
                Candidate.status.in_(("done", "failed")),
                Candidate.updated_at <= before,
                Candidate.graph_revision == graph_revision,
            )
            .order_by(Candidate.id)
        ).all()
    out = []
    for genome, metrics in rows:
        found = {k: v for k, v in (metrics or {}).items() if k in wanted}
        if found:
            out.append((genome, found))
    return out


def device_class_predictions(
    sessions: SessionFactory, device_class: str
) -> tuple[int, dict[str, list[tuple[float, float]]]]:
    """For one device class, across jobs: how many candidates hold a measurement of it, and
    per metric of that class the (predicted, measured) pairs of candidates that a surrogate
    predicted before they were measured."""
    suffix = f"[{device_class}]"
    measured, pairs = 0, {}
    with transaction(sessions) as s:
        rows = s.execute(
            select(Candidate.metrics, Candidate.predictions).where(
                Candidate.status.in_(("done", "failed"))
            )
        ).all()
    for metrics, predictions in rows:
        mine = {k: v for k, v in (metrics or {}).items() if k.endswith(suffix)}
        measured += bool(mine)
        for metric, predicted in (predictions or {}).items():
            if metric in mine:
                pairs.setdefault(metric, []).append((predicted["mean"], mine[metric]))
    return measured, pairs
