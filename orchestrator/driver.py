"""The persistent search driver: one job, from the database, on an evaluator.

The driver rebuilds the search loop from what the database holds (candidates, their
metrics, the generations written), so a restarted orchestrator — after `kill -9`, say —
continues where the last one stopped. Nothing is evaluated twice: candidates are unique per
(job, genome hash) and every result goes to the evaluation cache first (`records`).
Each candidate moves through the stages of `candidate_state` — training (on the rungs of
`training.fidelities`: `rung_training`) and export on the evaluator (Ray tasks in a
deployment), profiling through the database (`profiling`; before training with
`profiling.ahead_of_training`) — and is recorded, with the compute it used
(`compute_ledger`), when it reaches DONE or FAILED; a failed candidate gets the worst
fitness and the job goes on. The driver imports neither Ray nor torch unless it builds the default
Ray evaluator, so its unit tests drive it with a fake one.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from core.metrics import (
    Constraint,
    MetricNeeds,
    export_metrics,
    fleet_metrics,
    quantized_metrics,
    static_metrics,
    trained_metrics,
)
from core.scale_check import scale_report
from core.stage_results import (
    ExportOutput,
    QualityResult,
    QuantizedQuality,
    QuantizedScore,
    Trained,
)
from core.states import JobStatus
from orchestrator.search.fidelity import Rungs
from orchestrator.search.loop import Individual, SearchLoop
from orchestrator.search.motifs import enrichment
from store import SessionFactory

from .candidate_state import CandidateProgress, Stage
from .evaluator import Evaluator, Finished, Work
from .generation_costs import compute_stats, rung_stats
from .job_support import scale_children
from .profiling import Clock, ProfilingQueue
from .records import JobRecords
from .rung_training import RungTraining

log = logging.getLogger("tailor.orchestrator")
HEARTBEAT_S = 5.0


class JobCancelled(Exception):
    pass


def default_evaluator() -> Evaluator:
    from .ray_evaluator import RayEvaluator, cluster_has_gpus

    return RayEvaluator(gpus=cluster_has_gpus())


class JobRunner(RungTraining):
    def __init__(
        self,
        sessions: SessionFactory,
        artifact_dir: Path,
        job_id: int,
        owner: str,
        evaluator: Evaluator | None = None,
        poll_s: float = 0.5,
        clock: Clock = time.monotonic,
    ):
        self.records = JobRecords(sessions, artifact_dir, job_id, owner)
        self.job_id = job_id
        self.spec = spec = self.records.spec
        self.evaluator = evaluator or default_evaluator()
        self.poll_s, self.clock = poll_s, clock
        self.constraints = [Constraint(c.metric, c.op, c.value) for c in spec.constraints]
        self.metric_names = list(
            dict.fromkeys(spec.objectives + [c.metric for c in spec.constraints])
        )
        self.loop = SearchLoop(
            spec.search_space,
            spec.evolution,
            spec.objectives,
            self.constraints,
            prior=self.records.prior_observations,
        )
        self.needs = needs = MetricNeeds.of(self.metric_names)
        variant = spec.export.variant
        self.export_tags = list(dict.fromkeys(variant(p).tag for p in needs.exported))
        self.quantized_tags = list(dict.fromkeys(variant(p).tag for p in needs.quantized_quality))
        self.profiling = ProfilingQueue(
            self.records,
            spec.profiling,
            clock,
            pairs=[
                (device_class, variant(precision).tag) for device_class, precision in needs.profiled
            ],
        )
        self.profiles = bool(needs.profiled)
        self.ahead = self.profiles and spec.profiling.ahead_of_training
        self.rungs = Rungs.of(spec.training)
        self.row_ids: dict[str, int] = {}  # genome hash -> candidate row id
        self.ledgers: dict[str, dict] = {}  # genome hash -> its compute ledger (JSON)
        self.rung_log: dict[str, list[dict]] = {}  # genome hash -> the rungs it trained
        self.last_heartbeat = -HEARTBEAT_S

    # ----------------------------------------------------------------- one candidate

    def _start(self, p: CandidateProgress) -> None:
        p.metrics.update(static_metrics(p.candidate.genome.to_json(), self.metric_names))
        if self.ahead:  # the phones measure first (profiling.ahead_of_training)
            self._export(p)
            return
        self._train_rung(p, 0)

    def _measured_ahead(self, p: CandidateProgress) -> None:
        """Measured before training: a candidate that already breaks a constraint on what was
        measured is never trained (it cannot be feasible); the others train."""
        p.profiled = True
        for c in self.constraints:
            if p.metrics.get(c.metric) is not None and c.violation(p.metrics) > 0:
                p.fail(
                    f"not trained: {c.metric} = {p.metrics[c.metric]:g} breaks "
                    f"{c.metric} {c.op} {c.value:g}, measured before training"
                )
                return
        self._train_rung(p, 0)

    def _trained(self, p: CandidateProgress, result: QualityResult, weights: bytes | None) -> None:
        """Quality is known: apply it, then score the quantized graphs, export (or finish)."""
        if not result.ok:
            p.fail(f"training failed: {result.reason}")
            return
        p.held = (result, weights)
        p.metrics.update(trained_metrics(result))  # every quality metric, named or not
        missing = [
            t
            for t in self.quantized_tags
            if not self._apply_quantized(
                p,
                self.records.cached_quantized_quality(p.genome_hash, t, self._rung_tokens(p.rung)),
            )
        ]
        if not missing:
            self._export(p)
            return
        weights = weights or self._weights(p)
        if weights is None:
            p.fail("quantized perplexity needs the trained weights, and none are stored")
            return
        self.evaluator.submit_quantized_quality(
            p.genome_hash,
            result.eval_genome or p.candidate.genome.to_json(),
            self.spec.training.at_fidelity(self.rungs.budgets[p.rung]).model_dump(mode="json"),
            weights,
            missing,
            self.spec.training.timeout_s,
        )
        p.advance(Stage.QUANTIZED_QUALITY)

    def _apply_quantized(self, p: CandidateProgress, score: QuantizedScore | None) -> bool:
        if score is None:
            return False
        p.metrics.update(quantized_metrics(score))
        return True

    def _export(self, p: CandidateProgress) -> None:
        """Export every variant the job needs that is not stored yet (or go on)."""
        if not self.export_tags or p.profiled:  # measured ahead of training: nothing left
            p.advance(Stage.DONE)
            return
        missing = [t for t in self.export_tags if not self.records.has_export(p.genome_hash, t)]
        if not missing:
            self._exported(p)
            return
        trained = self._exports_trained_weights() and not self.ahead
        weights = self._weights(p) if trained else None
        self.evaluator.submit_export(
            p.genome_hash,
            p.candidate.genome.to_json(),
            weights,
            self.spec.profiling.timeout_s,
            tags=missing,
        )
        p.advance(Stage.EXPORTING)

    def _exported(self, p: CandidateProgress) -> None:
        """Every needed variant is stored: read model_bytes off its manifest, then profile."""
        for precision in self.needs.exported:
            exported = self.records.exported(p.genome_hash, self.spec.export.variant(precision).tag)
            if exported is not None:
                p.metrics.update(export_metrics(exported, precision))
        if not self.profiles:
            p.advance(Stage.DONE)
            return
        self.profiling.start(p.row_id)
        p.advance(Stage.PROFILING)

    def _exports_trained_weights(self) -> bool:
        # Trained weights fit the exported graph only when training ran at full size.
        return self.spec.training.trains_full_size

    def _on_finished(self, finished: Finished, progress: dict[str, CandidateProgress]) -> None:
        p = progress.get(finished.genome_hash)
        if p is None or p.finished:
            return
        if finished.work is Work.QUALITY:
            if not finished.ok or not isinstance(finished.value, Trained):
                p.fail(f"training task failed: {finished.error}")
                return
            trained = finished.value
            result = self.records.store_quality(
                p.genome_hash, trained.result, trained.weights, self._rung_tokens(p.rung)
            )
            self._rung_trained(p, result, trained.weights, reused=False)
        elif finished.work is Work.QUANTIZED_QUALITY:
            scored = finished.value
            if not finished.ok or not isinstance(scored, QuantizedQuality) or not scored.ok:
                reason = finished.error or (scored.reason if scored is not None else None)
                p.fail(f"quantized perplexity failed: {reason}")
                return
            p.compute.add("quantization", scored.compute_s)
            for tag, score in scored.variants.items():
                self._apply_quantized(
                    p,
                    self.records.store_quantized_quality(
                        p.genome_hash, tag, score, self._rung_tokens(p.rung)
                    ),
                )
            self._export(p)
        else:
            if not finished.ok or not isinstance(finished.value, ExportOutput):
                p.fail(f"export failed: {finished.error}")
                return
            p.compute.add("export", finished.value.compute_s)
            self.records.store_export(p.genome_hash, finished.value)
            self._exported(p)

    def _poll_profiling(self, p: CandidateProgress) -> None:
        outcome = self.profiling.poll(p.row_id)
        if not outcome.finished:
            return
        p.metrics.update(outcome.metrics)
        p.compute.add("device", outcome.device_s)
        p.graph_revision = outcome.graph_revision
        p.metrics.update(fleet_metrics(p.metrics, self.metric_names))
        if outcome.failure:
            p.fail(outcome.failure)
        elif self.ahead and not p.profiled:
            self._measured_ahead(p)
        else:
            p.advance(Stage.DONE)

    def _evaluate(self, candidates: list[Individual]) -> None:
        progress = {c.hash: CandidateProgress(self.row_ids[c.hash], c) for c in candidates}
        for p in progress.values():
            self._start(p)
        while progress:
            for finished in self.evaluator.collect(self.poll_s):
                self._on_finished(finished, progress)
            self._decide_rungs(progress)
            for genome_hash, p in list(progress.items()):
                if p.stage is Stage.PROFILING:
                    self._poll_profiling(p)
                if p.finished:
                    self.records.record_candidate(
                        p.row_id,
                        p.metrics,
                        p.failure,
                        p.compute.to_json(),
                        p.rungs or None,
                        p.graph_revision,
                    )
                    p.candidate.metrics = p.metrics
                    self.ledgers[genome_hash] = p.compute.to_json()
                    if p.rungs:
                        self.rung_log[genome_hash] = p.rungs
                    del progress[genome_hash]
            self._heartbeat()

    # ----------------------------------------------------------------- the job

    def _heartbeat(self, force: bool = False) -> None:
        if not force and self.clock() - self.last_heartbeat < HEARTBEAT_S:
            return
        self.last_heartbeat = self.clock()
        done = sum(c.metrics is not None for c in self.loop.archive.values())
        if not self.records.heartbeat(len(self.loop.history), done):
            raise JobCancelled(f"job {self.job_id} was cancelled or claimed elsewhere")

    def _run_generation(self, generation: int) -> None:
        stored = [c for c in self.loop.archive.values() if c.generation == generation]
        if not stored:
            children = (
                scale_children(self.spec.scale)
                if self.spec.scale is not None
                else self.loop.children_for(generation)
            )
            self.row_ids.update(self.records.add_candidates(generation, children))
            stored = self.loop.add(children, generation)
        todo = [c for c in stored if c.metrics is None]
        log.info("job %s generation %s: %s to evaluate", self.job_id, generation, len(todo))
        if todo:
            self._evaluate(todo)
        summary = self.loop.complete(generation, [c.hash for c in stored])
        motifs = enrichment(
            [self.loop.archive[h].genome for h in summary.pareto],
            [c.genome for c in self.loop.archive.values()],
            top=10,
        )
        stats = {
            "frame": self.loop.frame.__dict__ if self.loop.frame else None,
            "offspring": len(stored),
            "motifs": motifs,
        }
        hashes = [c.hash for c in stored]
        stats["compute"] = compute_stats(self.ledgers, hashes)
        if (rungs := rung_stats(self.rungs, self.rung_log, hashes)) is not None:
            stats["rungs"] = rungs
        if generation in self.loop.selection_info:
            stats["selection"] = self.loop.selection_info[generation]
        if self.loop.algorithm.learns:
            stats["predictor"] = self.loop.prediction_report(generation)
        if self.spec.scale is not None:
            scaled = {
                c.hash: {"id": self.row_ids.get(c.hash), "metrics": c.metrics or {}} for c in stored
            }
            stats["scale"] = scale_report(self.spec.scale, scaled, set(summary.pareto))
        self.records.write_generation(summary, self.row_ids, stats)

    def run(self) -> str:
        """Run the job to its end; returns "completed", "failed" (no candidate succeeded: the
        job's error says why), "cancelled" or "lost" (claimed by another orchestrator)."""
        try:
            restored = self.records.restore(self.loop)
            self.row_ids = restored.row_ids
            self.ledgers, self.rung_log = restored.compute, restored.rungs
            for generation in range(restored.next_generation, self.spec.evolution.generations):
                self._heartbeat(force=True)
                self._run_generation(generation)
                self._heartbeat(force=True)
            succeeded, reasons = self.records.failures()
            if not succeeded:  # an empty front is not a result: say why, on the job
                self.records.finish(
                    JobStatus.FAILED,
                    "no candidate was evaluated successfully; "
                    f"{len(reasons)} distinct failure(s), first: "
                    + " | ".join(r[:300] for r in reasons[:3]),
                )
                return JobStatus.FAILED.value
            self.records.finish(JobStatus.COMPLETED)
            return JobStatus.COMPLETED.value
        except JobCancelled:
            self.evaluator.cancel_all()
            if self.records.cancelled_by_user():
                self.records.finish(JobStatus.CANCELLED)
                return JobStatus.CANCELLED.value
            return "lost"
