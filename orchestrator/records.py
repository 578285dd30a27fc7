"""Everything a running job reads from and writes to the database, in one place.

The driver never calls `store` itself: it asks `JobRecords` to restore the search, store
candidates, results, artifacts and generations, enqueue and read profiling tasks, and
heartbeat. Each call is one storage transaction. Evaluation results go to the evaluation
cache keyed by (genome hash, evaluation config) before they are used, so a restart or a
later job with the same training config finds them and nothing is trained twice.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core import Genome
from core.job_spec import stored_spec
from core.manifest import GRAPH_REVISION
from core.metric_registry import MetricKind
from core.metrics import fleet_metrics, parse_metric, trained_metrics
from core.stage_results import ExportedVariant, ExportOutput, QualityResult, QuantizedScore
from core.states import EVALUATED_CANDIDATE, CandidateStatus, JobStatus
from orchestrator.search.evolution import Child
from orchestrator.search.loop import GenerationSummary, Individual, SearchLoop
from orchestrator.search.selection import NormalisationFrame
from orchestrator.search.surrogate import Observation
from store import SessionFactory
from store import artifacts as artifact_store
from store import jobs as job_store
from store import results as result_store
from store import tasks as task_store
from store.task_results import TaskOutcome, task_outcomes

# Evaluation-cache key of the float ONNX export: the exporter's graph revision (what each
# revision changed: core.manifest.GRAPH_REVISION).
EXPORT_KEY = f"onnx-opset18-v{GRAPH_REVISION}"
QUANTIZED_QUALITY = "quantized_quality"  # evaluation kind: perplexity through a quantized graph


def export_key(tag: str) -> str:
    """The evaluation-cache key of one export variant (core.precision.Variant tag)."""
    return f"{EXPORT_KEY}:{tag}" if tag else EXPORT_KEY


WEIGHTS = "weights.pt"


def weights_name(tokens: int | None = None) -> str:
    """The trained weights' artifact: the job's budget, or one rung's (`weights-N.pt`)."""
    return WEIGHTS if tokens is None else f"weights-{tokens}.pt"


@dataclass
class Restored:
    """What `restore` rebuilt: the next generation to run and every candidate's row id."""

    next_generation: int
    row_ids: dict[str, int]  # genome hash -> candidate row id
    compute: dict[str, dict[str, Any]] = field(default_factory=dict)  # hash -> its ledger
    rungs: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # hash -> its rungs


class JobRecords:
    def __init__(self, sessions: SessionFactory, artifact_dir: Path, job_id: int, owner: str):
        self.sessions, self.artifact_dir = sessions, Path(artifact_dir)
        self.job_id, self.owner = job_id, owner
        self.spec = stored_spec(job_store.get_job(sessions, job_id).spec)
        self.train_key = self.spec.training.cache_key()
        self.metric_names = list(
            dict.fromkeys(self.spec.objectives + [c.metric for c in self.spec.constraints])
        )

    # ----------------------------------------------------------------- the search

    def restore(self, loop: SearchLoop) -> Restored:
        """Load candidates and generations into `loop`."""
        row_ids: dict[str, int] = {}
        restored = Restored(0, row_ids)
        for row in result_store.job_candidates(self.sessions, self.job_id):
            if row.compute:
                restored.compute[row.genome_hash] = row.compute
            if row.rungs:
                restored.rungs[row.genome_hash] = row.rungs
            genome = Genome.from_json(row.genome)
            loop.archive[row.genome_hash] = Individual(
                genome,
                row.generation,
                row.parents or [],
                row.origin,
                dict(row.metrics) if row.status in EVALUATED_CANDIDATE else None,
                predictions=dict(row.predictions or {}),
                fidelity=row.rungs[-1]["tokens"] if row.rungs else None,
            )
            row_ids[row.genome_hash] = row.id
        generations = result_store.generations_since(self.sessions, self.job_id, 0)
        by_id = {v: k for k, v in row_ids.items()}
        for g in generations:
            loop.history.append(
                GenerationSummary(
                    g.index,
                    [by_id[i] for i in g.population],
                    [by_id[i] for i in g.pareto],
                    g.hypervolume,
                    g.evaluations,
                )
            )
            if g.stats.get("frame"):
                loop.frame = NormalisationFrame(**g.stats["frame"])
        if generations:
            loop.population = list(loop.history[-1].population)
        restored.next_generation = len(generations)
        return restored

    def add_candidates(self, generation: int, children: list[Child]) -> dict[str, int]:
        rows = result_store.add_candidates(
            self.sessions,
            self.job_id,
            generation,
            [
                {
                    "genome": c.genome.to_json(),
                    "genome_hash": c.genome.hash(),
                    "parents": c.parents,
                    "origin": c.origin,
                    "predictions": c.predictions,
                }
                for c in children
            ],
        )
        return {r.genome_hash: r.id for r in rows}

    def record_candidate(
        self,
        row_id: int,
        metrics: dict[str, Any],
        failure: str | None,
        compute: dict[str, Any] | None = None,
        rungs: list[dict[str, Any]] | None = None,
        graph_revision: int | None = GRAPH_REVISION,
    ) -> None:
        """`graph_revision`: of the graphs its metrics came from (this exporter's, unless its
        measurements were taken on an older one's: `ProfilingOutcome.graph_revision`)."""
        result_store.set_candidate_result(
            self.sessions,
            row_id,
            (CandidateStatus.FAILED if failure else CandidateStatus.DONE).value,
            metrics,
            failure,
            compute,
            rungs,
            graph_revision,
        )

    def write_generation(
        self, summary: GenerationSummary, row_ids: dict[str, int], stats: dict[str, Any]
    ) -> None:
        result_store.write_generation(
            self.sessions,
            self.job_id,
            summary.index,
            [row_ids[h] for h in summary.population],
            [row_ids[h] for h in summary.pareto],
            summary.hypervolume,
            summary.evaluations,
            stats,
        )

    def prior_observations(self, generation: int) -> list[Observation]:
        """What other jobs observed that the surrogate may learn from when breeding
        `generation`: quality results with this job's training config, and every measured
        hardware metric this job models from exports of this exporter's graph revision
        (core.manifest.GRAPH_REVISION). Only what was stored before generation - 1 was
        written counts, so a resumed job sees the same data when it breeds again."""
        cutoff = result_store.generation_written_at(self.sessions, self.job_id, generation - 1)
        if cutoff is None:
            return []
        observations: dict[str, Observation] = {}
        for genome, record in result_store.quality_observations(
            self.sessions, self.train_key, cutoff, self.job_id
        ):
            parsed = Genome.from_json(genome)
            observations[parsed.hash()] = (parsed, trained_metrics(QualityResult.from_json(record)))
        hardware = [
            m
            for m in self.metric_names
            if parse_metric(m).kind in (MetricKind.HARDWARE, MetricKind.EXPORT)
        ]
        # a fleet metric from other jobs' per-class measurements of the same classes
        members = [
            str(parse_metric(m).on(c))
            for m in hardware
            if parse_metric(m).aggregate
            for c in parse_metric(m).classes
        ]
        if hardware:
            for genome, metrics in result_store.measured_candidates(
                self.sessions,
                list(dict.fromkeys(hardware + members)),
                cutoff,
                self.job_id,
                GRAPH_REVISION,
            ):
                parsed = Genome.from_json(genome)
                known = observations.setdefault(parsed.hash(), (parsed, {}))[1]
                known.update({k: v for k, v in metrics.items() if k in hardware})
                known.update(fleet_metrics(metrics, hardware))
        return list(observations.values())

    # ----------------------------------------------------------------- evaluation cache

    def cached_quality(self, genome_hash: str, tokens: int | None = None) -> QualityResult | None:
        """The cached result at the job's budget, or at a rung's `tokens`."""
        key = self._train_key(tokens)
        record = result_store.get_evaluation(self.sessions, genome_hash, key, "quality")
        return None if record is None else QualityResult.from_json(record)

    def _train_key(self, tokens: int | None) -> str:
        if tokens is None or tokens == self.spec.training.tokens:
            return self.train_key
        return self.spec.training.at_fidelity(tokens).cache_key()

    def store_quality(
        self,
        genome_hash: str,
        result: QualityResult,
        weights: bytes | None,
        tokens: int | None = None,
    ) -> QualityResult:
        """Keep the weights as an artifact and the result in the cache (at a rung's `tokens`
        when given); returns the stored result (a concurrent writer's, if it won)."""
        if weights:
            artifact_store.store_artifacts(
                self.sessions, self.artifact_dir, genome_hash, {weights_name(tokens): weights}
            )
        stored = QualityResult.from_json(
            result_store.put_evaluation(
                self.sessions, genome_hash, self._train_key(tokens), "quality", result.to_json()
            )
        )
        job_store.add_event(
            self.sessions,
            self.job_id,
            "trained",
            f"{genome_hash} {stored.status} perplexity {stored.perplexity}",
        )
        return stored

    def trained_weights(self, genome_hash: str, tokens: int | None = None) -> bytes | None:
        path = self.artifact_dir / genome_hash / weights_name(tokens)
        return path.read_bytes() if path.exists() else None

    def exported(self, genome_hash: str, tag: str = "") -> ExportedVariant | None:
        """The stored export record of one variant."""
        record = result_store.get_evaluation(self.sessions, genome_hash, export_key(tag), "export")
        return None if record is None else ExportedVariant.from_json(record)

    def has_export(self, genome_hash: str, tag: str = "") -> bool:
        return self.exported(genome_hash, tag) is not None

    def store_export(self, genome_hash: str, output: ExportOutput) -> None:
        """Files first, then one cache record per variant."""
        artifact_store.store_artifacts(self.sessions, self.artifact_dir, genome_hash, output.files)
        for tag, variant in output.variants.items():
            result_store.put_evaluation(
                self.sessions, genome_hash, export_key(tag), "export", variant.to_json()
            )

    def _quantized_key(self, tag: str, tokens: int | None = None) -> str:
        """Per training config (a rung's, at `tokens`) and per export variant, as the
        exporter made it (EXPORT_KEY)."""
        return f"{self._train_key(tokens)}:{export_key(tag)}"

    def cached_quantized_quality(
        self, genome_hash: str, tag: str, tokens: int | None = None
    ) -> QuantizedScore | None:
        record = result_store.get_evaluation(
            self.sessions, genome_hash, self._quantized_key(tag, tokens), QUANTIZED_QUALITY
        )
        return None if record is None else QuantizedScore.from_json(record)

    def store_quantized_quality(
        self, genome_hash: str, tag: str, score: QuantizedScore, tokens: int | None = None
    ) -> QuantizedScore:
        stored = QuantizedScore.from_json(
            result_store.put_evaluation(
                self.sessions,
                genome_hash,
                self._quantized_key(tag, tokens),
                QUANTIZED_QUALITY,
                score.to_json(),
            )
        )
        job_store.add_event(
            self.sessions,
            self.job_id,
            "quantized",
            f"{genome_hash} {tag} perplexity {stored.perplexity}",
        )
        return stored

    # ----------------------------------------------------------------- profiling tasks

    def enqueue_profiling(
        self,
        candidate_id: int,
        device_class: str,
        measurement: dict[str, Any],
        priority: int = 0,
        variant: str = "",
    ) -> None:
        task_store.enqueue_task(
            self.sessions,
            self.job_id,
            candidate_id,
            device_class,
            measurement,
            priority=priority,
            variant=variant,
            graph_revision=GRAPH_REVISION,
        )

    def cancel_profiling(self, candidate_id: int, reason: str) -> int:
        """Nobody waits for this candidate's open tasks any more (its profiling timed out)."""
        return task_store.cancel_tasks(self.sessions, reason, candidate_id=candidate_id)

    def profiling_results(self, candidate_id: int) -> list[TaskOutcome]:
        return task_outcomes(self.sessions, candidate_id)

    # ----------------------------------------------------------------- the job itself

    def heartbeat(self, generations_done: int, evaluations_done: int) -> bool:
        """Record progress; False when the job was cancelled or claimed elsewhere."""
        return job_store.heartbeat_job(
            self.sessions, self.job_id, self.owner, generations_done, evaluations_done
        )

    def failures(self) -> tuple[int, list[str]]:
        """(candidates evaluated successfully, the distinct failure reasons of the others)."""
        rows = result_store.job_candidates(self.sessions, self.job_id)
        reasons = list(dict.fromkeys(r.failure for r in rows if r.status == CandidateStatus.FAILED))
        return sum(r.status == CandidateStatus.DONE for r in rows), reasons

    def finish(self, status: JobStatus, error: str | None = None) -> None:
        job_store.finish_job(self.sessions, self.job_id, status, error)

    def cancelled_by_user(self) -> bool:
        """True when a cancel was requested and this process still owns the job."""
        job = job_store.get_job(self.sessions, self.job_id)
        return job.cancel_requested and job.owner == self.owner
