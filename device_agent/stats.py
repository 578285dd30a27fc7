"""Summaries of repeated timings: median, p10, p90 (linear interpolation, as numpy), and
the one-line texts the agent logs for a task and its measurement."""

from __future__ import annotations

import numpy as np

from core.protocol import MeasurementReport, TaskAssignment


def summarize(samples_ms: list[float]) -> dict[str, float]:
    if not samples_ms:
        raise ValueError("no samples")
    values = np.asarray(samples_ms, dtype=float)
    return {
        "median_ms": float(np.median(values)),
        "p10_ms": float(np.percentile(values, 10)),
        "p90_ms": float(np.percentile(values, 90)),
        "n": int(values.size),
    }


def coefficient_of_variation(samples: list[float]) -> float:
    values = np.asarray(samples, dtype=float)
    return float(values.std(ddof=1) / values.mean()) if values.size > 1 else 0.0


def warm_method(
    warmup: int, repeats: int, processes: int, note: str = "", provider: str | None = None
) -> str:
    """MeasurementReport.method for the warm steady-state measurement."""
    text = (
        f"warm: {warmup} warm-up + {repeats} timed runs in each of {processes} "
        f"process{'es' if processes != 1 else ''}"
    )
    if provider:
        text += f", {provider} execution provider"
    return f"{text} ({note})" if note else text


def lengths_text(task: TaskAssignment) -> str:
    spec = task.spec
    return (
        f"prefill@{','.join(map(str, spec.prefill_lengths))} "
        f"decode@{','.join(map(str, spec.decode_contexts))}"
    )


def summary_text(report: MeasurementReport) -> str:
    parts = [
        f"{kind}@{s.length} median {s.median_ms:.3g} ms"
        for kind, stats in (("prefill", report.prefill), ("decode", report.decode))
        for s in stats
    ]
    text = f"{', '.join(parts)}, peak {report.peak_memory_bytes / 2**20:.1f} MB"
    if report.above_thermal_limit:
        text += f" (still above {report.thermal_limit_celsius:.1f} °C)"
    return text
