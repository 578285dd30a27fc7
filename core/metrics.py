"""Metric names, and how a candidate's metrics become a fitness vector.

Every metric is minimised. What metrics exist, what each takes and how its value is computed
lives in the registry (core.metric_registry); this module is the grammar over it and the
functions that apply it:
    NAME                       e.g. params, perplexity, mad_error
    NAME@L                     a length: cache_bytes@1024, flops@512
    NAME[:PREC]                a precision: model_bytes[:int4], perplexity[:int8]
    NAME@L[DEVICE]             a device class: decode_ms@512[SM-S928B], peak_mem_mb[host]
Hardware metrics take a precision after the device class, `decode_ms@512[SM-S928B:int4]`,
and a fleet: `decode_ms@512[max:SM-S928B,Pixel 8]` is the worst of the named classes,
`[mean:...]` their mean, `[max:SM-S928B,Pixel 8:int8]` at a precision; a fleet metric
exists only when every named class has reported. PREC is float32 (the default, never
spelled in a canonical name), int8 or int4 (core.precision). Device class names used in
metrics must not contain ',' and must not end in ':PREC'.

A candidate's metrics are a dict keyed by the canonical spelling (`str(parse_metric(x))`;
the job spec stores objectives that way), so a fitness vector is a lookup; a metric that
could not be measured is missing and counts as the worst value. Pure Python: the API
validates job specs with the same parser.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from .metric_registry import REGISTRY, MetricDef, MetricKind
from .precision import DEFAULT_PRECISION, PRECISIONS

AGGREGATES = ("max", "mean")
PATTERN = re.compile(r"^(?P<name>[a-z_]+)(@(?P<length>[0-9]+))?(\[(?P<device>[^\[\]]*)\])?$")


def allowed() -> str:
    """Every registered metric as a job spells it, for error messages."""
    return (
        ", ".join(d.spelling for d in REGISTRY.values())
        + " (DEVICE: a class, CLASS:PREC, or max:/mean: then classes separated by commas; "
        f"PREC: {', '.join(PRECISIONS)})"
    )


@dataclass(frozen=True)
class Metric:
    name: str
    length: int | None = None
    device: str | None = None  # one device class (None for a fleet: see `devices`)
    precision: str = DEFAULT_PRECISION
    aggregate: str | None = None  # "max" or "mean" over `devices`
    devices: tuple[str, ...] = ()  # the fleet's classes

    def __str__(self) -> str:
        text = self.name
        if self.length is not None:
            text += f"@{self.length}"
        inside = ""
        if self.aggregate is not None:
            inside = f"{self.aggregate}:{','.join(self.devices)}"
        elif self.device is not None:
            inside = self.device
        if self.precision != DEFAULT_PRECISION:
            inside += f":{self.precision}"
        return f"{text}[{inside}]" if inside else text

    @property
    def definition(self) -> MetricDef:
        return REGISTRY[self.name]

    @property
    def kind(self) -> MetricKind:
        """static (exact from the genome), quality (training), export (from the exported
        graphs) or hardware (measured on a device): core.metric_registry.MetricKind."""
        return self.definition.kind

    @property
    def classes(self) -> tuple[str, ...]:
        """Device classes this metric needs measurements from."""
        return self.devices if self.aggregate else ((self.device,) if self.device else ())

    @property
    def quantized_quality(self) -> bool:
        """A quality metric read through a quantized graph (e.g. perplexity[:int8])."""
        return self.kind is MetricKind.QUALITY and self.precision != DEFAULT_PRECISION

    def on(self, device_class: str) -> "Metric":
        """This metric on one device class (a fleet member)."""
        return Metric(self.name, self.length, device_class, self.precision)


def _bracket(name: str, inside: str) -> tuple[str | None, str, str | None, tuple[str, ...]]:
    """(device, precision, aggregate, devices) from what stands between the brackets."""
    precision = DEFAULT_PRECISION
    head, sep, tail = inside.rpartition(":")
    if sep and tail.strip() in PRECISIONS:
        inside, precision = head, tail.strip()
    elif sep and not head:
        raise ValueError(f"{name}: unknown precision {tail!r}; use one of {', '.join(PRECISIONS)}")
    if not inside:
        return None, precision, None, ()
    prefix, sep, rest = inside.partition(":")
    if sep and prefix.strip() in AGGREGATES:
        devices = tuple(d.strip() for d in rest.split(","))
        if any(not d for d in devices):
            raise ValueError(
                f"{name}: {prefix.strip()}: needs device classes separated by "
                "commas, e.g. max:SM-S928B,Pixel 8"
            )
        if len(set(devices)) != len(devices):
            raise ValueError(f"{name}: a fleet names each device class once")
        return None, precision, prefix.strip(), devices
    if inside != inside.strip():
        raise ValueError(f"{name}: device class {inside!r} has surrounding spaces")
    return inside, precision, None, ()


def parse_metric(text: str) -> Metric:
    """Parse and check one metric name; ValueError says what is wrong and what is allowed."""
    match = PATTERN.match(text.strip())
    if not match or match["name"] not in REGISTRY:
        raise ValueError(f"unknown metric {text!r}; allowed: {allowed()}")
    name = match["name"]
    definition = REGISTRY[name]
    length = int(match["length"]) if match["length"] else None
    bracket = match["device"]
    if definition.length and not length:
        raise ValueError(f"{name} needs a positive length, e.g. {name}@1024")
    if not definition.length and length is not None:
        raise ValueError(f"{name} takes no length")
    if bracket is not None and not (definition.precision or definition.device):
        raise ValueError(f"{name} takes no device class or precision")
    device, precision, aggregate, devices = (
        _bracket(name, bracket) if bracket is not None else (None, DEFAULT_PRECISION, None, ())
    )
    if precision != DEFAULT_PRECISION and not definition.precision:
        raise ValueError(f"{name} takes no precision")
    if definition.device and not (device or aggregate):
        raise ValueError(
            f"{name} needs a device class, e.g. {name}"
            f"{'@1024' if definition.length else ''}[SM-S928B] (or "
            "[SM-S928B:int8], [max:SM-S928B,Pixel 8])"
        )
    if not definition.device and (device or aggregate):
        raise ValueError(f"{name} takes no device class, only a precision, e.g. {name}[:int8]")
    return Metric(name, length, device, precision, aggregate, devices)


def canonical(text: str) -> str:
    """The one spelling a metric is stored and looked up under."""
    return str(parse_metric(text))


@dataclass(frozen=True)
class MetricNeeds:
    """What a set of metric names asks the system to do for each candidate."""

    profiled: tuple[tuple[str, str], ...]  # (device class, precision) pairs to measure
    exported: tuple[str, ...]  # precisions whose graphs must exist (profiled or model_bytes)
    quantized_quality: tuple[str, ...]  # precisions of perplexity[:PREC]

    @classmethod
    def of(cls, names: list[str]) -> "MetricNeeds":
        profiled: dict[tuple[str, str], None] = {}
        exported: dict[str, None] = {}
        quantized: dict[str, None] = {}
        for text in names:
            metric = parse_metric(text)
            if metric.kind is MetricKind.HARDWARE:
                for device_class in metric.classes:
                    profiled[(device_class, metric.precision)] = None
                exported[metric.precision] = None
            elif metric.kind is MetricKind.EXPORT:
                exported[metric.precision] = None
            elif metric.quantized_quality:
                quantized[metric.precision] = None
        return cls(tuple(profiled), tuple(exported), tuple(quantized))


def fleet_metrics(metrics: dict[str, Any], names: list[str]) -> dict[str, float]:
    """The fleet metrics among `names` whose every class has a finite value in `metrics`."""
    out: dict[str, float] = {}
    for text in names:
        metric = parse_metric(text)
        if metric.aggregate is None:
            continue
        values = [metrics.get(str(metric.on(c))) for c in metric.devices]
        if any(v is None or not math.isfinite(v) for v in values):
            continue
        out[text] = max(values) if metric.aggregate == "max" else sum(values) / len(values)
    return out


@dataclass(frozen=True)
class Constraint:
    metric: str
    op: str  # "<=" or "<"
    value: float

    def violation(self, metrics: dict[str, Any]) -> float:
        """0 when satisfied, else how far off (relative to the bound); inf if unmeasured."""
        actual = metrics.get(self.metric)
        if actual is None or not math.isfinite(actual):
            return math.inf
        scale = abs(self.value) or 1.0
        if self.op == "<=":
            return max(0.0, (actual - self.value) / scale)
        return 0.0 if actual < self.value else (actual - self.value) / scale + 1e-9


def _computed(
    names: list[str] | None, kind: MetricKind, source: Any, precision: str = DEFAULT_PRECISION
) -> dict[str, float]:
    """The metrics of `kind` (at `precision`) that `source` gives a value for: among `names`,
    or (None) every registered one spelled without a length or a device."""
    if names is None:
        names = [
            str(Metric(d.name, precision=precision))
            for d in REGISTRY.values()
            if d.kind is kind
            and not (d.length or d.device)
            and (precision == DEFAULT_PRECISION or d.precision)
        ]
    out: dict[str, float] = {}
    for text in names:
        metric = parse_metric(text)
        if metric.kind is not kind or metric.precision != precision or metric.aggregate:
            continue
        value = metric.definition.compute(source, metric)
        if value is not None:
            out[text] = float(value)
    return out


def static_metrics(genome: dict[str, Any], names: list[str]) -> dict[str, float]:
    """The static metrics among `names`, computed exactly from the genome."""
    return _computed(names, MetricKind.STATIC, genome)


def trained_metrics(result, names: list[str] | None = None) -> dict[str, float]:
    """The float32 quality metrics (among `names`; None: all) from a QualityResult."""
    return _computed(names, MetricKind.QUALITY, result)


def quantized_metrics(score, names: list[str] | None = None) -> dict[str, float]:
    """The quality metrics at `score.precision` (among `names`; None: all), from a
    QuantizedScore."""
    return _computed(names, MetricKind.QUALITY, score, score.precision)


def export_metrics(exported, precision: str, names: list[str] | None = None) -> dict[str, float]:
    """The export metrics at `precision` (among `names`; None: all), from that variant's
    ExportedVariant."""
    return _computed(names, MetricKind.EXPORT, exported, precision)


def measured_metrics(
    report, device_class: str, precision: str = DEFAULT_PRECISION
) -> dict[str, float]:
    """Every hardware metric one device's MeasurementReport gives, keyed by metric name
    (`prefill_ms@512[SM-S928B:int8]`, ...), whether or not the job names it."""
    out: dict[str, float] = {}
    for definition in REGISTRY.values():
        if definition.kind is not MetricKind.HARDWARE:
            continue
        for length, value in definition.compute(report, None).items():
            out[str(Metric(definition.name, length, device_class, precision))] = float(value)
    return out


def fitness(
    metrics: dict[str, Any], objectives: list[str], constraints: list[Constraint]
) -> tuple[np.ndarray, float]:
    """(objective vector, total violation). A failed or unmeasured objective makes the
    candidate infeasible with infinite violation: the worst fitness."""
    values = []
    violation = 0.0
    for name in objectives:
        value = metrics.get(name)
        if value is None or not math.isfinite(value):
            values.append(math.inf)
            violation = math.inf
        else:
            values.append(float(value))
    for constraint in constraints:
        violation += constraint.violation(metrics)
    vector = np.array(values, dtype=float)
    return np.where(np.isfinite(vector), vector, np.finfo(float).max / 1e6), violation
