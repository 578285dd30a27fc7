"""Objective and constraint names, and how a candidate's metrics become a fitness vector.

Grammar (every metric is minimised):
    params                     unique parameters
    cache_bytes@L              decode-cache bytes after L tokens (fp16, as STAR counts)
    flops@L                    multiply-accumulates of one decode step with L tokens
                               cached, batch 1 (FlopCounterMode's FLOPs / 2, exact:
                               core.costs.macs_per_token)
    perplexity                 validation perplexity after the training budget
    mad_error                  1 - mean MAD accuracy
    prefill_ms@L[DEVICE]       median prefill latency at L tokens on a device class
    decode_ms@L[DEVICE]        median decode latency per token with L tokens cached
    peak_mem_mb[DEVICE]        peak resident memory of the runner over the profiling task
A candidate's metrics are a dict keyed by these exact strings, so a fitness vector is a
lookup; a metric that could not be measured is missing and counts as the worst value.
Pure Python: the API validates job specs with the same parser.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

import numpy as np

STATIC = {"params", "cache_bytes", "flops"}
QUALITY = {"perplexity", "mad_error"}
HARDWARE = {"prefill_ms", "decode_ms", "peak_mem_mb"}
NEEDS_LENGTH = {"cache_bytes", "flops", "prefill_ms", "decode_ms"}
NEEDS_DEVICE = HARDWARE
PATTERN = re.compile(r"^(?P<name>[a-z_]+)(@(?P<length>[0-9]+))?(\[(?P<device>[^\[\]]+)\])?$")


@dataclass(frozen=True)
class Metric:
    name: str
    length: int | None = None
    device: str | None = None

    def __str__(self) -> str:
        text = self.name
        if self.length is not None:
            text += f"@{self.length}"
        if self.device is not None:
            text += f"[{self.device}]"
        return text

    @property
    def kind(self) -> str:
        if self.name in STATIC:
            return "static"
        return "quality" if self.name in QUALITY else "hardware"


def parse_metric(text: str) -> Metric:
    """Parse and check one metric name; ValueError says what is wrong and what is allowed."""
    match = PATTERN.match(text.strip())
    allowed = ("params, cache_bytes@L, flops@L, perplexity, mad_error, "
               "prefill_ms@L[DEVICE], decode_ms@L[DEVICE], peak_mem_mb[DEVICE]")
    if not match or match["name"] not in STATIC | QUALITY | HARDWARE:
        raise ValueError(f"unknown metric {text!r}; allowed: {allowed}")
    name = match["name"]
    length = int(match["length"]) if match["length"] else None
    device = match["device"]
    if name in NEEDS_LENGTH and not length:
        raise ValueError(f"{name} needs a positive length, e.g. {name}@1024")
    if name not in NEEDS_LENGTH and length is not None:
        raise ValueError(f"{name} takes no length")
    if name in NEEDS_DEVICE and not device:
        raise ValueError(f"{name} needs a device class, e.g. {name}"
                         f"{'@1024' if name in NEEDS_LENGTH else ''}[SM-S928B]")
    if name not in NEEDS_DEVICE and device is not None:
        raise ValueError(f"{name} takes no device class")
    return Metric(name, length, device)


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


def static_metrics(genome: dict[str, Any], names: list[str]) -> dict[str, float]:
    """The static metrics among `names`, computed exactly from the genome."""
    from . import costs

    out: dict[str, float] = {}
    for text in names:
        metric = parse_metric(text)
        if metric.name == "params":
            out[text] = float(costs.params(genome))
        elif metric.name == "cache_bytes":
            out[text] = float(costs.cache_bytes(genome, metric.length, "float16"))
        elif metric.name == "flops":
            out[text] = float(costs.macs_per_token(genome, metric.length))
    return out


def fitness(metrics: dict[str, Any], objectives: list[str],
            constraints: list[Constraint]) -> tuple[np.ndarray, float]:
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
