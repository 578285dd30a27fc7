"""What the driver asks of an evaluator, whatever runs the work (Ray, or a test's fake).

Three kinds of work per candidate: `quality` (train, then validation perplexity and MAD),
`quantized_quality` (the trained model's perplexity through quantized ONNX graphs, when the
job asks for `perplexity[:int8]` and the like) and `export` (ONNX prefill/decode graphs of
every variant the job profiles). The driver submits by genome hash and collects
`Finished` results one batch at a time, each carrying its stage's typed result
(core.stage_results); an evaluator never raises for a bad candidate, it returns a failed
result with the reason. `orchestrator.ray_evaluator.RayEvaluator` is the
real one; the driver's unit tests use a fake with the same methods, without Ray or torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any, Protocol

from core.stage_results import StageResult


class Work(str, Enum):
    QUALITY = "quality"
    EXPORT = "export"
    QUANTIZED_QUALITY = "quantized_quality"


@dataclass(frozen=True)
class Finished:
    genome_hash: str
    work: Work
    ok: bool
    # quality: Trained; quantized_quality: QuantizedQuality; export: ExportOutput
    # (core.stage_results); None when the task itself failed (`error` says why)
    value: StageResult | None = None
    error: str | None = None
    wall_s: float = 0.0


class Evaluator(Protocol):
    def submit_quality(
        self, genome_hash: str, genome: dict[str, Any], config: dict[str, Any], timeout_s: float
    ) -> None: ...

    def submit_export(
        self,
        genome_hash: str,
        genome: dict[str, Any],
        weights: bytes | None,
        timeout_s: float,
        tags: list[str] | None = None,
    ) -> None: ...

    def submit_quantized_quality(
        self,
        genome_hash: str,
        eval_genome: dict[str, Any],
        config: dict[str, Any],
        weights: bytes,
        tags: list[str],
        timeout_s: float,
    ) -> None: ...

    def collect(self, wait_s: float) -> list[Finished]: ...

    def in_flight(self) -> int: ...

    def cancel_all(self) -> None: ...
