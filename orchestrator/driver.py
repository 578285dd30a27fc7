"""The persistent search driver: one job, from the database, on Ray.

The driver rebuilds the search loop from what the database holds (candidates, their
metrics, the generations written), so a restarted orchestrator — after `kill -9`, say —
continues where the last one stopped. Nothing is evaluated twice: candidates are unique per
(job, genome hash), and every training or export result goes to the evaluation cache keyed
by (genome hash, evaluation config) before it is used, where any later job or restart finds
it. Evaluations run as Ray tasks; hardware profiling goes to the database as profiling tasks
for the job's device classes and is awaited with a timeout. A candidate whose evaluation
fails is recorded as failed (worst fitness) and the job goes on.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from api.schemas.job_spec import JobSpec
from api.storage import SessionFactory
from api.storage import artifacts as artifact_store
from api.storage import jobs as job_store
from api.storage import results as result_store
from api.storage import tasks as task_store
from orchestrator.genome import Genome
from orchestrator.search.evolution import EvolutionParams
from orchestrator.search.loop import Candidate, GenerationSummary, SearchLoop
from orchestrator.search.metrics import Constraint, parse_metric, static_metrics
from orchestrator.search.motifs import enrichment
from orchestrator.search.selection import NormalisationFrame

from .evaluation import Evaluator, cluster_has_gpus

log = logging.getLogger("tailor.orchestrator")
EXPORT_KEY = "onnx-opset18-v1"


class JobCancelled(Exception):
    pass


@dataclass
class Pending:
    """Where one candidate's evaluation stands."""

    row_id: int
    candidate: Candidate
    metrics: dict[str, Any] = field(default_factory=dict)
    quality_done: bool = False
    export_done: bool = False
    tasks_enqueued: bool = False
    profiling_started: float = 0.0
    failure: str | None = None


class JobRunner:
    def __init__(self, sessions: SessionFactory, artifact_dir: Path, job_id: int, owner: str,
                 evaluator: Evaluator | None = None, poll_s: float = 0.5):
        self.sessions, self.artifact_dir = sessions, Path(artifact_dir)
        self.job_id, self.owner = job_id, owner
        self.evaluator = evaluator or Evaluator(gpus=cluster_has_gpus())
        self.poll_s = poll_s
        job = job_store.get_job(sessions, job_id)
        self.spec = JobSpec.model_validate(job.spec)
        evo = self.spec.evolution
        self.params = EvolutionParams(**evo.model_dump())
        self.constraints = [Constraint(c.metric, c.op, c.value) for c in self.spec.constraints]
        self.metric_names = list(dict.fromkeys(
            self.spec.objectives + [c.metric for c in self.spec.constraints]))
        self.loop = SearchLoop(self.spec.search_space, self.params, self.spec.objectives,
                               self.constraints)
        self.train_config = self.spec.training.model_dump(mode="json")
        self.train_key = self.spec.training.cache_key()
        self.hardware = [parse_metric(m) for m in self.metric_names
                         if parse_metric(m).kind == "hardware"]
        self.ids: dict[str, int] = {}  # genome hash -> candidate row id
        self.last_heartbeat = 0.0

    # ----------------------------------------------------------------- state

    def _restore(self) -> int:
        """Load candidates and generations; return the first generation still to run."""
        for row in result_store.job_candidates(self.sessions, self.job_id):
            genome = Genome.from_json(row.genome)
            candidate = Candidate(genome, row.generation, row.parents or [], row.origin,
                                  dict(row.metrics) if row.status in ("done", "failed")
                                  else None)
            self.loop.archive[row.genome_hash] = candidate
            self.ids[row.genome_hash] = row.id
        generations = result_store.generations_since(self.sessions, self.job_id, 0)
        by_id = {v: k for k, v in self.ids.items()}
        for g in generations:
            self.loop.history.append(GenerationSummary(
                g.index, [by_id[i] for i in g.population], [by_id[i] for i in g.pareto],
                g.hypervolume, g.evaluations))
            if g.stats.get("frame"):
                self.loop.frame = NormalisationFrame(**g.stats["frame"])
        if generations:
            self.loop.population = list(self.loop.history[-1].population)
        return len(generations)

    def _heartbeat(self, force: bool = False) -> None:
        if not force and time.monotonic() - self.last_heartbeat < 5:
            return
        self.last_heartbeat = time.monotonic()
        done = sum(c.metrics is not None for c in self.loop.archive.values())
        if not job_store.heartbeat_job(self.sessions, self.job_id, self.owner,
                                       len(self.loop.history), done):
            raise JobCancelled(f"job {self.job_id} was cancelled or claimed elsewhere")

    # ----------------------------------------------------------------- evaluation

    def _start(self, p: Pending) -> None:
        genome = p.candidate.genome.to_json()
        p.metrics.update(static_metrics(genome, self.metric_names))
        cached = result_store.get_evaluation(self.sessions, p.candidate.hash, self.train_key,
                                             "quality")
        if cached is not None:
            self._apply_quality(p, cached)
        else:
            self.evaluator.submit_quality(f"{p.candidate.hash}:quality", genome,
                                          self.train_config, self.spec.training.timeout_s)
        if not self.hardware:
            p.export_done = True
            return
        if result_store.get_evaluation(self.sessions, p.candidate.hash, EXPORT_KEY,
                                       "export") is not None:
            p.export_done = True
        elif cached is not None or not self._exports_trained_weights():
            self.evaluator.submit_export(f"{p.candidate.hash}:export", genome,
                                         self._weights(p), self.spec.profiling.timeout_s)

    def _exports_trained_weights(self) -> bool:
        # Trained weights fit the exported graph only when training ran at full size.
        return self.spec.training.eval_width is None and self.spec.training.eval_depth is None

    def _weights(self, p: Pending) -> bytes | None:
        if not self._exports_trained_weights():
            return None
        path = self.artifact_dir / p.candidate.hash / "weights.pt"
        return path.read_bytes() if path.exists() else None

    def _apply_quality(self, p: Pending, record: dict[str, Any]) -> None:
        p.quality_done = True
        if record.get("status") != "ok":
            p.failure = f"training failed: {record.get('reason')}"
            return
        p.metrics["perplexity"] = record["perplexity"]
        if record.get("mad"):
            p.metrics["mad_error"] = 1.0 - record["mad"]["score"]

    def _on_result(self, finished, pending: dict[str, Pending]) -> None:
        genome_hash, kind = finished.key.split(":")
        p = pending.get(genome_hash)
        if p is None:
            return
        if kind == "quality":
            if not finished.ok:
                p.quality_done, p.failure = True, f"training task failed: {finished.error}"
                return
            record = dict(finished.value["result"])
            if finished.value.get("weights"):
                artifact_store.store_artifacts(self.sessions, self.artifact_dir, genome_hash,
                                               {"weights.pt": finished.value["weights"]})
            record = result_store.put_evaluation(self.sessions, genome_hash, self.train_key,
                                                 "quality", record)
            job_store.add_event(self.sessions, self.job_id, "trained",
                                f"{genome_hash} {record.get('status')} perplexity "
                                f"{record.get('perplexity')}")
            self._apply_quality(p, record)
            if self.hardware and not p.export_done and self._exports_trained_weights():
                self.evaluator.submit_export(f"{genome_hash}:export", p.candidate.genome.to_json(),
                                             finished.value.get("weights"),
                                             self.spec.profiling.timeout_s)
        else:
            if not finished.ok:
                p.export_done, p.failure = True, f"export failed: {finished.error}"
                return
            artifact_store.store_artifacts(self.sessions, self.artifact_dir, genome_hash,
                                           finished.value["files"])
            result_store.put_evaluation(self.sessions, genome_hash, EXPORT_KEY, "export",
                                        {"max_abs_diff": finished.value["max_abs_diff"],
                                         "manifest": finished.value["manifest"],
                                         "task_interval": finished.value.get("task_interval")})
            p.export_done = True

    def _profiling(self, p: Pending) -> bool:
        """Enqueue and collect hardware measurements; True when nothing is outstanding."""
        if not self.hardware or p.failure:
            return True
        profiling = self.spec.profiling
        if not p.tasks_enqueued:
            spec = {"prefill_lengths": profiling.prefill_lengths,
                    "decode_contexts": profiling.decode_contexts, "warmup": profiling.warmup,
                    "repeats": profiling.repeats, "threads": profiling.threads}
            for device in profiling.devices:
                task_store.enqueue_task(self.sessions, self.job_id, p.row_id, device, spec)
            p.tasks_enqueued, p.profiling_started = True, time.monotonic()
        rows = task_store.task_results(self.sessions, [p.row_id])
        if any(r["state"] in ("queued", "leased") for r in rows):
            if time.monotonic() - p.profiling_started > profiling.timeout_s:
                p.failure = f"profiling timed out after {profiling.timeout_s:.0f}s"
                return True
            return False
        for row in rows:
            if row["report"] is None:
                continue
            device, report = row["device_class"], row["report"]
            for stat in report["prefill"]:
                p.metrics[f"prefill_ms@{stat['length']}[{device}]"] = stat["median_ms"]
            for stat in report["decode"]:
                p.metrics[f"decode_ms@{stat['length']}[{device}]"] = stat["median_ms"]
            p.metrics[f"peak_mem_mb[{device}]"] = report["peak_memory_bytes"] / 2**20
        failed = [r for r in rows if r["state"] == "failed"]
        if failed:
            p.failure = f"profiling failed on {failed[0]['device_class']}: {failed[0]['last_error']}"
        return True

    def _evaluate(self, candidates: list[Candidate]) -> None:
        pending = {c.hash: Pending(self.ids[c.hash], c) for c in candidates}
        for p in pending.values():
            self._start(p)
        while pending:
            for finished in self.evaluator.collect(self.poll_s):
                self._on_result(finished, pending)
            for genome_hash, p in list(pending.items()):
                if not (p.quality_done and p.export_done) and not p.failure:
                    continue
                if p.failure and not p.quality_done:
                    continue  # wait for the training task before recording
                if not self._profiling(p):
                    continue
                status = "failed" if p.failure else "done"
                result_store.set_candidate_result(self.sessions, p.row_id, status, p.metrics,
                                                  p.failure)
                p.candidate.metrics = p.metrics
                del pending[genome_hash]
            self._heartbeat()

    # ----------------------------------------------------------------- main loop

    def run(self) -> str:
        try:
            start = self._restore()
            for generation in range(start, self.params.generations):
                self._heartbeat(force=True)
                stored = [c for c in self.loop.archive.values() if c.generation == generation]
                if not stored:
                    children = self.loop.children_for(generation)
                    rows = result_store.add_candidates(self.sessions, self.job_id, generation, [
                        {"genome": c.genome.to_json(), "genome_hash": c.genome.hash(),
                         "parents": c.parents, "origin": c.origin} for c in children])
                    stored = self.loop.add(children, generation)
                    self.ids.update({r.genome_hash: r.id for r in rows})
                todo = [c for c in stored if c.metrics is None]
                log.info("job %s generation %s: %s to evaluate", self.job_id, generation,
                         len(todo))
                if todo:
                    self._evaluate(todo)
                summary = self.loop.complete(generation, [c.hash for c in stored])
                frame = self.loop.frame.__dict__ if self.loop.frame else None
                motifs = enrichment([self.loop.archive[h].genome for h in summary.pareto],
                                    [c.genome for c in self.loop.archive.values()], top=10)
                result_store.write_generation(
                    self.sessions, self.job_id, generation,
                    [self.ids[h] for h in summary.population],
                    [self.ids[h] for h in summary.pareto], summary.hypervolume,
                    summary.evaluations, {"frame": frame, "offspring": len(stored),
                                          "motifs": motifs})
                self._heartbeat(force=True)
            job_store.finish_job(self.sessions, self.job_id, "completed")
            return "completed"
        except JobCancelled:
            self.evaluator.cancel_all()
            job = job_store.get_job(self.sessions, self.job_id)
            if job.cancel_requested and job.owner == self.owner:
                job_store.finish_job(self.sessions, self.job_id, "cancelled")
                return "cancelled"
            return "lost"


def owner_id() -> str:
    import os
    import socket

    return f"{socket.gethostname()}:{os.getpid()}"

