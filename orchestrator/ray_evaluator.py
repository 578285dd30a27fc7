"""The Ray evaluator: quality (training), quantized quality and ONNX export as Ray tasks.

Workers only compute; files travel back through Ray's object store as bytes (trained
weights, ONNX graphs), so a worker on another node needs no shared disk and the driver
alone writes artifacts. Tasks retry when their worker process dies (`max_retries`); a task
that raises or exceeds its time budget comes back as a failed result, never as an
exception in the driver loop. On a cluster with GPUs, training tasks ask for one.
"""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ray

from core.stage_results import (
    ExportedVariant,
    ExportOutput,
    QuantizedQuality,
    Trained,
    task_compute_s,
)

from .evaluator import Finished, Work

TASK_RETRIES = 3


def connect(num_cpus: int | None = None) -> dict[str, float]:
    """Join the cluster named by RAY_ADDRESS, or start a local one; returns its resources."""
    if not ray.is_initialized():
        address = os.environ.get("RAY_ADDRESS")
        if address:
            ray.init(address=address, log_to_driver=False)
        else:
            ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False)
    return ray.cluster_resources()


def cluster_has_gpus() -> bool:
    """Training tasks ask for GPUs (`training.gpus_per_task` each) only where the cluster
    has some."""
    return ray.is_initialized() and ray.cluster_resources().get("GPU", 0) > 0


@ray.remote(max_retries=TASK_RETRIES)
def quality_task(genome: dict[str, Any], config: dict[str, Any]) -> Trained:
    """Train and score; the result with the weights' bytes (not a path on this node)."""
    from workers.train.trainer import evaluate_quality

    started, started_at, cpu = time.perf_counter(), time.time(), time.process_time()
    with tempfile.TemporaryDirectory() as tmp:
        result = evaluate_quality(genome, config, out_dir=tmp)
        weights = None
        if result.weights_path:
            weights = Path(result.weights_path).read_bytes()
            result.weights_path = None  # the driver stores the bytes and sets the path
    result.node = ray.get_runtime_context().get_node_id()
    result.task_interval = [started_at, time.time()]  # epoch seconds, for accounting
    wall = time.perf_counter() - started
    result.compute_s = task_compute_s(cpu, wall, result.device, config.get("gpus_per_task", 1))
    return Trained(result, weights, task_wall_s=wall)


@ray.remote(max_retries=TASK_RETRIES)
def export_task(
    genome: dict[str, Any], weights: bytes | None = None, tags: list[str] | None = None
) -> ExportOutput:
    """Export the variants named by `tags` (core.precision.Variant tags; '' = the plain
    float32 graphs), with trained weights when they fit the genome."""
    import io

    import torch

    from core.precision import Variant
    from workers.export.variants import export_variants
    from workers.model.compiler import compile_genome

    started, started_at, cpu = time.perf_counter(), time.time(), time.process_time()
    model = compile_genome(genome, seed=0)
    if weights is not None:
        model.load_state_dict(
            torch.load(io.BytesIO(weights), map_location="cpu", weights_only=True)
        )
    with tempfile.TemporaryDirectory() as tmp:
        exported = export_variants(
            genome, tmp, [Variant.from_tag(t) for t in tags or [""]], model=model
        )
        files = {p.name: p.read_bytes() for p in Path(tmp).iterdir() if p.is_file()}
    interval = [started_at, time.time()]
    return ExportOutput(
        variants={
            tag: ExportedVariant(e.manifest.model_dump(mode="json"), e.max_abs_diff, interval)
            for tag, e in exported.items()
        },
        files=files,
        task_wall_s=time.perf_counter() - started,
        task_interval=interval,
        compute_s=task_compute_s(cpu, 0.0),
    )


@ray.remote(max_retries=TASK_RETRIES)
def quantized_quality_task(
    eval_genome: dict[str, Any], config: dict[str, Any], weights: bytes, tags: list[str]
) -> QuantizedQuality:
    """The trained model's perplexity through its quantized ONNX graphs."""
    from workers.train.quantized_quality import evaluate_quantized_quality

    started_at, cpu = time.time(), time.process_time()
    result = evaluate_quantized_quality(eval_genome, config, weights, tags)
    result.task_interval = [started_at, time.time()]
    result.compute_s = task_compute_s(cpu, 0.0)
    return result


@dataclass
class InFlight:
    """One submitted Ray task."""

    genome_hash: str
    work: Work
    ref: ray.ObjectRef
    started: float
    timeout_s: float


@dataclass
class RayEvaluator:
    """The driver's view of in-flight Ray tasks: submit, then collect one result at a time."""

    gpus: bool = False
    pending: dict[ray.ObjectRef, InFlight] = field(default_factory=dict)

    def submit_quality(
        self, genome_hash: str, genome: dict[str, Any], config: dict[str, Any], timeout_s: float
    ) -> None:
        """On a cluster with GPUs a training task asks for `training.gpus_per_task` of one
        (a fraction lets several small candidates share a GPU; Ray packs them)."""
        options = {}
        if self.gpus:
            from core.training import TrainConfig

            options["num_gpus"] = TrainConfig.model_validate(config).gpus_per_task
        ref = quality_task.options(**options).remote(genome, config)
        self.pending[ref] = InFlight(genome_hash, Work.QUALITY, ref, time.monotonic(), timeout_s)

    def submit_export(
        self,
        genome_hash: str,
        genome: dict[str, Any],
        weights: bytes | None,
        timeout_s: float,
        tags: list[str] | None = None,
    ) -> None:
        ref = export_task.remote(genome, weights, tags)
        self.pending[ref] = InFlight(genome_hash, Work.EXPORT, ref, time.monotonic(), timeout_s)

    def submit_quantized_quality(
        self,
        genome_hash: str,
        eval_genome: dict[str, Any],
        config: dict[str, Any],
        weights: bytes,
        tags: list[str],
        timeout_s: float,
    ) -> None:
        ref = quantized_quality_task.remote(eval_genome, config, weights, tags)
        self.pending[ref] = InFlight(
            genome_hash, Work.QUANTIZED_QUALITY, ref, time.monotonic(), timeout_s
        )

    def in_flight(self) -> int:
        return len(self.pending)

    def collect(self, wait_s: float = 1.0) -> list[Finished]:
        """Results that finished (or timed out) within `wait_s`; never raises for a task."""
        done: list[Finished] = []
        if not self.pending:
            return done
        ready, _ = ray.wait(list(self.pending), num_returns=1, timeout=wait_s)
        for ref in ready:
            job = self.pending.pop(ref)
            elapsed = time.monotonic() - job.started
            try:
                done.append(Finished(job.genome_hash, job.work, True, ray.get(ref), wall_s=elapsed))
            except (ray.exceptions.RayError, RuntimeError, ValueError) as exc:
                done.append(
                    Finished(
                        job.genome_hash,
                        job.work,
                        False,
                        error=f"{type(exc).__name__}: {str(exc)[:2000]}",
                        wall_s=elapsed,
                    )
                )
        now = time.monotonic()
        for ref, job in list(self.pending.items()):
            if now - job.started > job.timeout_s:
                ray.cancel(ref, force=True)
                del self.pending[ref]
                done.append(
                    Finished(
                        job.genome_hash,
                        job.work,
                        False,
                        error=f"timeout: no result after {job.timeout_s:.0f}s",
                        wall_s=now - job.started,
                    )
                )
        return done

    def cancel_all(self) -> None:
        for ref in self.pending:
            ray.cancel(ref, force=True)
        self.pending.clear()
