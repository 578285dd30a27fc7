"""What one evaluation cost, stage by stage (`compute_s`, docs/architecture.md).

Each stage's task measures its own compute (`core.stage_results.task_compute_s`: CPU-seconds
of the task's process, GPU-seconds on a GPU); profiling adds the phone's seconds
(`MeasurementReport.wall_s`), kept apart because a phone-second and a CPU-second are not the
same resource. A stage answered by the evaluation cache cost this job nothing: its original
cost goes to `reused_s`, so a job's sum says what it spent and what it would have cost alone.
Sums per generation and per job are `summed` over the candidates' ledgers.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

STAGES = ("training", "quantization", "export")


@dataclass
class ComputeLedger:
    training_s: float = 0.0
    quantization_s: float = 0.0
    export_s: float = 0.0
    device_s: float = 0.0  # phone (or host-agent) seconds of profiling
    reused_s: float = 0.0  # what cached stages had cost when they were computed

    def add(self, stage: str, seconds: float | None, reused: bool = False) -> None:
        """Charge `seconds` of `stage` (one of STAGES, or "device") to this evaluation."""
        if stage not in STAGES and stage != "device":
            raise ValueError(f"unknown compute stage {stage!r}")
        if not seconds:
            return
        if reused:
            self.reused_s += float(seconds)
        else:
            setattr(self, f"{stage}_s", getattr(self, f"{stage}_s") + float(seconds))

    @property
    def compute_s(self) -> float:
        """CPU- or GPU-seconds this job spent on the evaluation (phone time apart)."""
        return self.training_s + self.quantization_s + self.export_s

    def to_json(self) -> dict[str, float]:
        return {**asdict(self), "compute_s": self.compute_s}


def summed(ledgers: list[dict[str, Any] | None]) -> dict[str, float]:
    """The sum of stored ledgers (a generation's, a job's); missing ones count zero."""
    keys = [*(f"{s}_s" for s in STAGES), "device_s", "reused_s", "compute_s"]
    return {k: float(sum((entry or {}).get(k, 0.0) for entry in ledgers)) for k in keys}
