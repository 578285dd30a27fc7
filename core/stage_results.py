"""What each evaluation stage hands the next: typed, torch-free results.

A candidate is trained (`Trained`, holding a `QualityResult`), scored through quantized
graphs (`QuantizedQuality`), exported (`ExportOutput`, one `ExportedVariant` per variant)
and measured on devices (`core.protocol.MeasurementReport`). Workers produce these, Ray
carries them, the orchestrator reads their fields and the metric registry
(`core.metric_registry`) turns them into metrics; no stage reads another's output by string
key. `to_json` is the form the evaluation cache stores; `from_json` reads it back and ignores
fields it does not know, so records written by another version of Tailor stay readable.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any, TypeVar

T = TypeVar("T")


def _known(cls: type[T], record: dict[str, Any]) -> dict[str, Any]:
    names = {f.name for f in fields(cls)}
    return {k: v for k, v in record.items() if k in names}


@dataclass
class QualityResult:
    """A training run: validation perplexity and how it was reached (the trainer fills it)."""

    status: str  # "ok" or "failed"
    reason: str | None = None
    perplexity: float | None = None
    val_loss: float | None = None
    unigram_perplexity: float | None = None
    loss_curve: list[tuple[int, float]] = field(default_factory=list)  # (tokens seen, loss)
    tokens_trained: int = 0
    tokens_per_s: float | None = None
    wall_s: float = 0.0
    peak_memory_bytes: int | None = None
    params_trained: int | None = None
    device: str = "cpu"
    threads: int = 1
    split: dict[str, Any] = field(default_factory=dict)
    tokenizer: dict[str, Any] = field(default_factory=dict)
    weights_path: str | None = None
    genome_hash: str | None = None
    config_key: str | None = None
    eval_genome: dict[str, Any] | None = None
    mad: dict[str, Any] | None = None  # workers.mad's report: {"score", "tasks", ...}
    data_load_s: float | None = None  # opening the token cache (building it, first time)
    token_cache: dict[str, Any] = field(default_factory=dict)
    mfu: float | None = None  # model FLOPs utilisation on a GPU with a known peak
    peak_flops: float | None = None
    node: str | None = None  # the Ray node that trained it
    task_interval: list[float] | None = None  # [start, end], epoch seconds
    compute_s: float | None = None  # CPU-seconds of the task, or GPU-seconds on a GPU

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def mad_score(self) -> float | None:
        """Mean MAD accuracy in [0, 1], when MAD was scored."""
        return None if not self.mad else float(self.mad["score"])

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, record: dict[str, Any]) -> "QualityResult":
        return cls(**_known(cls, record))


@dataclass(frozen=True)
class Trained:
    """The quality stage's output: the result, and the trained weights' bytes (travelling
    back through Ray; the driver stores them as an artifact)."""

    result: QualityResult
    weights: bytes | None = None
    task_wall_s: float | None = None


@dataclass
class QuantizedScore:
    """One variant's perplexity through its quantized prefill graph, same held-out tokens."""

    precision: str
    perplexity: float
    val_loss: float | None = None
    float_onnx_perplexity: float | None = None  # the float32 graph's: equals torch's
    tokens_scored: int | None = None
    check: dict[str, Any] | None = None  # core.manifest.VariantCheck's JSON
    model_bytes: int | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, record: dict[str, Any]) -> "QuantizedScore":
        return cls(**_known(cls, record))


@dataclass
class QuantizedQuality:
    """The quantized-quality stage's output: a score per variant tag, or why none."""

    status: str  # "ok" or "failed"
    reason: str | None = None
    variants: dict[str, QuantizedScore] = field(default_factory=dict)
    wall_s: float = 0.0
    task_interval: list[float] | None = None
    compute_s: float | None = None  # CPU-seconds of the task

    @property
    def ok(self) -> bool:
        return self.status == "ok"


@dataclass
class ExportedVariant:
    """One exported variant as the evaluation cache keeps it: its manifest (the
    core.manifest.GraphManifest JSON) and how far its check strayed."""

    manifest: dict[str, Any]
    max_abs_diff: float  # float graphs: onnxruntime vs torch; quantized: decode vs prefill
    task_interval: list[float] | None = None

    @property
    def model_bytes(self) -> int | None:
        """What a phone stores for this variant (the manifest's `model_bytes`)."""
        return self.manifest.get("model_bytes")

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, record: dict[str, Any]) -> "ExportedVariant":
        return cls(**_known(cls, record))


@dataclass
class ExportOutput:
    """The export stage's output: every variant asked for, and the files (graphs and
    manifests, by file name) to store as artifacts."""

    variants: dict[str, ExportedVariant]
    files: dict[str, bytes]
    task_wall_s: float | None = None
    task_interval: list[float] | None = None
    compute_s: float | None = None  # CPU-seconds of the task


def task_compute_s(cpu_started: float, wall_s: float, device: str = "cpu", gpus: float = 1.0):
    """A task's compute: CPU-seconds of its process (every thread: `time.process_time`) on a
    CPU, GPU-seconds (wall time x GPUs held) on a GPU: `compute_s` of docs/architecture.md."""
    import time

    if device.startswith("cuda"):
        return wall_s * gpus
    return time.process_time() - cpu_started


StageResult = Trained | QuantizedQuality | ExportOutput
