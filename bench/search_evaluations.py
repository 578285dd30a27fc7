"""The evaluations every search run of `bench.search` shares: each genome trained (on Ray) at
each token budget asked for and, where a set asks for it, its decode latency measured on this
host, once for all runs, with the compute each took (`compute_s` of docs/architecture.md:
CPU-seconds of the Ray task that trained it, and of the export and the measurement)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from bench.phone_measurements import PhoneMeasurements
from core import Genome
from core.manifest import GRAPH_REVISION, UNRECORDED_GRAPH_REVISION
from core.metrics import static_metrics
from orchestrator.ray_evaluator import RayEvaluator
from orchestrator.search.loop import Individual

HOST = "decode_ms@128[host]"


class PhoneDevice:
    """The phone set's measurements: full-size genomes at a phone's precision on one of this
    host's device classes (bench/phone_measurements.py), measured once per genome for every
    algorithm, seed and benchmark; exports run here, one at a time, while the trainers are
    idle (the search evaluates a generation's training first)."""

    def __init__(self, measurements: PhoneMeasurements, device: str):
        self.measurements, self.device = measurements, device
        self.metric_names = measurements.protocol.metric_names(device)

    def measure(self, genomes: list[Genome]) -> None:
        """Measure every one not measured yet (exports two at a time, timings alone)."""
        self.measurements.measure(genomes, [self.device])

    def measured(self, genome: Genome) -> tuple[dict[str, float], float]:
        """Its metrics ({} when its export failed: the candidate fails) and what they cost:
        the export's CPU-seconds plus the measurement's seconds."""
        entry = self.measurements.get(genome, [self.device])
        if "error" in entry:
            return {}, 0.0
        own = entry[self.device]
        return dict(own["metrics"]), own.get("export_s", 0.0) + own.get("measure_s", 0.0)


class Evaluations:
    """Every (genome, budget)'s perplexity and every genome's host decode latency, computed
    once for all runs; `compute[(hash, stage)]` what each cost."""

    def __init__(
        self,
        evaluator: RayEvaluator,
        config: dict[str, Any],
        cache: Path | None = None,
        phone: PhoneDevice | None = None,
    ):
        self.evaluator, self.config, self.cache, self.phone = evaluator, config, cache, phone
        self.perplexity: dict[tuple[str, int], float | None] = {}
        self.decode_ms: dict[str, float | None] = {}
        self.compute: dict[tuple[str, Any], float] = {}  # (hash, tokens or "measure") -> s
        if cache is not None and cache.exists():
            self._load(json.loads(cache.read_text()))

    def _load(self, saved: dict[str, Any]) -> None:
        """A run killed midway (a Ray node lost) resumes from what it had evaluated; the
        cache is keyed by the training config, so another config starts afresh, and its host
        decode latencies by the exporter's graph revision (a file from before it records
        one: revision 5), so latencies of graphs no longer exported are measured again."""
        if saved.get("config") != self.config:
            return
        self.perplexity = {(h, int(t)): v for h, t, v in saved["perplexity"]}
        self.compute = {(h, int(k) if k != "measure" else k): v for h, k, v in saved["compute"]}
        if saved.get("graphs", UNRECORDED_GRAPH_REVISION) == GRAPH_REVISION:
            self.decode_ms = dict(saved["decode_ms"])
        else:
            self.compute = {key: v for key, v in self.compute.items() if key[1] != "measure"}

    def _save(self) -> None:
        if self.cache is None:
            return
        saved = {
            "config": self.config,
            "graphs": GRAPH_REVISION,
            "perplexity": [[h, t, v] for (h, t), v in self.perplexity.items()],
            "decode_ms": self.decode_ms,
            "compute": [[h, k, v] for (h, k), v in self.compute.items()],
        }
        self.cache.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.cache.with_suffix(".tmp")
        temporary.write_text(json.dumps(saved))
        temporary.replace(self.cache)

    def _drain(self) -> list:
        done = []
        while self.evaluator.in_flight():
            done += self.evaluator.collect(1.0)
        return done

    def train(self, individuals: list[Individual], tokens: int) -> None:
        """Perplexity of each at `tokens` (cached), on the Ray workers in parallel."""
        todo = {c.hash: c for c in individuals if (c.hash, tokens) not in self.perplexity}
        config = {**self.config, "tokens": tokens}
        for h, c in todo.items():
            self.evaluator.submit_quality(h, c.genome.to_json(), config, timeout_s=900)
        for finished in self._drain():
            result = finished.value.result if finished.ok else None
            ok = result is not None and result.ok
            self.perplexity[(finished.genome_hash, tokens)] = result.perplexity if ok else None
            self.compute[(finished.genome_hash, tokens)] = (
                result.compute_s if result is not None and result.compute_s else finished.wall_s
            )
        if todo:
            self._save()

    def metrics(
        self, c: Individual, objectives: list[str], budgets: list[int]
    ) -> tuple[dict[str, Any], float]:
        """Its metrics (quality from the highest of `budgets` trained) and their compute."""
        metrics = static_metrics(c.genome.to_json(), objectives)
        compute = sum(self.compute.get((c.hash, b), 0.0) for b in budgets)
        if self.perplexity.get((c.hash, budgets[-1])) is not None:
            metrics["perplexity"] = self.perplexity[(c.hash, budgets[-1])]
        if HOST in objectives:
            compute += self.compute.get((c.hash, "measure"), 0.0)
            if self.decode_ms.get(c.hash) is not None:
                metrics[HOST] = self.decode_ms[c.hash]
        if self.phone is not None and set(objectives) & set(self.phone.metric_names):
            measured, seconds = self.phone.measured(c.genome)
            metrics.update(measured)
            compute += seconds
        return metrics, compute

    def measure(self, individuals: list[Individual]) -> None:
        """Host decode latency of each (cached): exported on Ray, measured here one at a time
        while the workers are idle, so timings are not shared."""
        import tempfile

        from core.protocol import MeasurementSpec
        from device_agent.host_backend import measure_task

        todo = [c for c in individuals if c.hash not in self.decode_ms]
        for c in todo:
            self.evaluator.submit_export(c.hash, c.genome.to_json(), None, timeout_s=900)
        exported = {f.genome_hash: f for f in self._drain()}
        spec = MeasurementSpec(prefill_lengths=[16], decode_contexts=[128], warmup=2, repeats=10)
        for c in todo:
            finished = exported[c.hash]
            if not finished.ok:
                self.decode_ms[c.hash] = None
                continue
            started = time.perf_counter()
            with tempfile.TemporaryDirectory() as folder:
                for name, data in finished.value.files.items():
                    (Path(folder) / name).write_bytes(data)
                report = measure_task(Path(folder), spec)
            self.decode_ms[c.hash] = report.decode[0].median_ms
            # export CPU-seconds + the measurement's wall time (its processes ran alone)
            self.compute[(c.hash, "measure")] = (finished.value.compute_s or 0.0) + (
                time.perf_counter() - started
            )
        if todo:
            self._save()
