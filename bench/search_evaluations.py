"""The evaluations every search run of `bench.search` shares: each genome trained (on Ray) and,
where a set asks for it, its decode latency measured on this host, once for all runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from core.metrics import static_metrics
from orchestrator.ray_evaluator import RayEvaluator
from orchestrator.search.loop import Individual

HOST = "decode_ms@128[host]"


class Evaluations:
    """Every genome's perplexity and host decode latency, computed once for all runs."""

    def __init__(self, evaluator: RayEvaluator, config: dict[str, Any]):
        self.evaluator, self.config = evaluator, config
        self.perplexity: dict[str, float | None] = {}
        self.decode_ms: dict[str, float | None] = {}

    def _drain(self) -> list:
        done = []
        while self.evaluator.in_flight():
            done += self.evaluator.collect(1.0)
        return done

    def evaluate(self, individuals: list[Individual], objectives: list[str]) -> None:
        todo = {c.hash: c for c in individuals if c.hash not in self.perplexity}
        for h, c in todo.items():
            self.evaluator.submit_quality(h, c.genome.to_json(), self.config, timeout_s=900)
        for finished in self._drain():
            result = finished.value.result if finished.ok else None
            self.perplexity[finished.genome_hash] = (
                result.perplexity if result is not None and result.ok else None
            )
        if HOST in objectives:
            self._measure([c for c in individuals if c.hash not in self.decode_ms])
        for c in individuals:
            metrics = static_metrics(c.genome.to_json(), objectives)
            if self.perplexity.get(c.hash) is not None:
                metrics["perplexity"] = self.perplexity[c.hash]
            if HOST in objectives and self.decode_ms.get(c.hash) is not None:
                metrics[HOST] = self.decode_ms[c.hash]
            c.metrics = metrics

    def _measure(self, individuals: list[Individual]) -> None:
        import tempfile

        from core.protocol import MeasurementSpec
        from device_agent.host_backend import measure_task

        for c in individuals:
            self.evaluator.submit_export(c.hash, c.genome.to_json(), None, timeout_s=900)
        exported = {f.genome_hash: f for f in self._drain()}
        spec = MeasurementSpec(prefill_lengths=[16], decode_contexts=[128], warmup=2, repeats=10)
        for c in individuals:  # one at a time, the Ray workers idle: timings are not shared
            finished = exported[c.hash]
            if not finished.ok:
                self.decode_ms[c.hash] = None
                continue
            with tempfile.TemporaryDirectory() as folder:
                for name, data in finished.value.files.items():
                    (Path(folder) / name).write_bytes(data)
                report = measure_task(Path(folder), spec)
            self.decode_ms[c.hash] = report.decode[0].median_ms
