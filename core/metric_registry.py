"""Every metric a job can name, registered once: its kind, what it takes (a length, a device
class, a precision), its unit and doc line, and how its value is computed.

The grammar (`core.metrics.parse_metric`), the job spec's validation, static computation,
the metrics read off each stage's typed result (`core.stage_results`, measurement reports),
the surrogate's prior observations and the metric table in docs/architecture.md all derive
from this registry. Adding a metric is one `MetricDef` here (or a `register` call) plus its
computation; `tests/test_docs.py` checks every registered metric is documented.

How a metric is computed depends on its kind, and `compute` takes that kind's source:
- STATIC: `compute(genome_json, metric) -> float`, exact from the genome, before training;
- QUALITY: `compute(result, metric)`, from the training run's `QualityResult` (or, at a
  precision other than float32, from the variant's `QuantizedScore`);
- EXPORT: `compute(exported_variant, metric)`, from an `ExportedVariant`;
- HARDWARE: `compute(report, metric) -> {length or None: value}`, every value one device's
  `core.protocol.MeasurementReport` gives (a value per measured length).
A `compute` returns None when its source has no value (e.g. MAD was not scored).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any, Callable


class MetricKind(str, Enum):
    STATIC = "static"  # exact from the genome
    QUALITY = "quality"  # from training (and quantized-quality scoring)
    EXPORT = "export"  # read off the exported graphs
    HARDWARE = "hardware"  # measured on a device class


@dataclass(frozen=True)
class MetricDef:
    name: str
    kind: MetricKind
    unit: str
    doc: str  # one line: what the value is (the docs' metric table)
    compute: Callable[..., Any]
    length: bool = False  # spelled name@L
    device: bool = False  # needs [DEVICE] (a class or a fleet)
    precision: bool = False  # takes [:PREC] (or [DEVICE:PREC])
    # what else a job spec must say for this metric to be computable: (spec, metric) -> None,
    # or the message of its 422 (e.g. decode_ms@L needs L in profiling.decode_contexts)
    check_spec: Callable[[Any, Any], str | None] | None = None

    @property
    def spelling(self) -> str:
        """How a job names it, e.g. `decode_ms@L[DEVICE]`, `model_bytes[:PREC]`."""
        text = self.name + ("@L" if self.length else "")
        if self.device:
            return text + "[DEVICE]"
        return text + ("[:PREC]" if self.precision else "")


REGISTRY: dict[str, MetricDef] = {}


def register(definition: MetricDef) -> MetricDef:
    """Add a metric; a name registered twice is a mistake, not an override."""
    if definition.name in REGISTRY:
        raise ValueError(f"metric {definition.name!r} is registered already")
    if definition.kind is MetricKind.HARDWARE and not definition.device:
        raise ValueError(f"{definition.name}: a hardware metric is measured on a device class")
    REGISTRY[definition.name] = definition
    return definition


def unregister(name: str) -> None:
    REGISTRY.pop(name, None)


def metric_table() -> str:
    """The metric table of docs/architecture.md, one row per registered metric (a test keeps
    the document equal to it)."""
    rows = ["| metric | kind | unit | what it is |", "| --- | --- | --- | --- |"]
    rows += [f"| `{d.spelling}` | {d.kind.value} | {d.unit} | {d.doc} |" for d in REGISTRY.values()]
    return "\n".join(rows)


def _params(genome: dict[str, Any], metric) -> float:
    from . import costs

    return float(costs.params(genome))


def _cache_bytes(genome: dict[str, Any], metric) -> float:
    from . import costs

    return float(costs.cache_bytes(genome, metric.length, "float16"))


def _flops(genome: dict[str, Any], metric) -> float:
    from . import costs

    return float(costs.macs_per_token(genome, metric.length))


def _mad_error(result, metric) -> float | None:
    return None if result.mad_score is None else 1.0 - result.mad_score


def _model_bytes(exported, metric) -> float | None:
    return None if exported.model_bytes is None else float(exported.model_bytes)


def _latency(phase: str):
    def compute(report, metric) -> dict[int | None, float]:
        return {stat.length: stat.median_ms for stat in getattr(report, phase)}

    return compute


def _profiled_length(setting: str):
    def check(spec, metric) -> str | None:
        if metric.length in getattr(spec.profiling, setting):
            return None
        return f"{metric.length} is not in profiling.{setting}"

    return check


def _mad_scored(spec, metric) -> str | None:
    return None if spec.training.mad else "mad_error needs training.mad = true"


def _peak_mem(report, metric) -> dict[int | None, float]:
    return {None: report.peak_memory_bytes / 2**20}


for _definition in (
    MetricDef("params", MetricKind.STATIC, "parameters", "unique parameters", _params),
    MetricDef(
        "cache_bytes",
        MetricKind.STATIC,
        "bytes",
        "decode-cache bytes after L tokens (fp16, as STAR counts)",
        _cache_bytes,
        length=True,
    ),
    MetricDef(
        "flops",
        MetricKind.STATIC,
        "multiply-accumulates",
        "multiply-accumulates of one "
        "decode step with L tokens cached, batch 1 (core.costs.macs_per_token)",
        _flops,
        length=True,
    ),
    MetricDef(
        "model_bytes",
        MetricKind.EXPORT,
        "bytes",
        "bytes a phone stores for the variant's weights (float32 unless [:PREC])",
        _model_bytes,
        precision=True,
    ),
    MetricDef(
        "perplexity",
        MetricKind.QUALITY,
        "perplexity",
        "validation perplexity after "
        "the training budget; [:PREC]: the same model through its PREC ONNX prefill "
        "graph, same held-out tokens",
        lambda result, metric: result.perplexity,
        precision=True,
    ),
    MetricDef(
        "mad_error",
        MetricKind.QUALITY,
        "error rate",
        "1 - mean MAD accuracy",
        _mad_error,
        check_spec=_mad_scored,
    ),
    MetricDef(
        "prefill_ms",
        MetricKind.HARDWARE,
        "ms",
        "median prefill latency at L tokens",
        _latency("prefill"),
        length=True,
        device=True,
        precision=True,
        check_spec=_profiled_length("prefill_lengths"),
    ),
    MetricDef(
        "decode_ms",
        MetricKind.HARDWARE,
        "ms",
        "median decode latency per token with L tokens cached",
        _latency("decode"),
        length=True,
        device=True,
        precision=True,
        check_spec=_profiled_length("decode_contexts"),
    ),
    MetricDef(
        "peak_mem_mb",
        MetricKind.HARDWARE,
        "MiB",
        "peak resident memory of the runner over the profiling task",
        _peak_mem,
        device=True,
        precision=True,
    ),
):
    register(_definition)
