"""The host backend: measures a profiling task on this machine with onnxruntime.

Each (graph, length) runs in a fresh subprocess (device_agent.host_runner) with warm-up and
repeats; the report carries median, p10, p90, n and the raw samples per length, the peak
resident memory of each run, and the maximum over the task.
"""

from __future__ import annotations

import time
from pathlib import Path

from .host_runner import measure
from core.protocol import LatencyStat, MeasurementReport, MeasurementSpec
from .stats import summarize


def measure_task(graph_dir: Path, spec: MeasurementSpec) -> MeasurementReport:
    started = time.perf_counter()
    stats: dict[str, list[LatencyStat]] = {"prefill": [], "decode": []}
    peak = 0
    for kind, lengths in (("prefill", spec.prefill_lengths), ("decode", spec.decode_contexts)):
        for length in lengths:
            result = measure(graph_dir, kind, length, repeats=spec.repeats, warmup=spec.warmup,
                             threads=spec.threads)
            peak = max(peak, result["peak_memory_bytes"])
            stats[kind].append(LatencyStat(length=length, samples_ms=result["samples_ms"],
                                           peak_memory_bytes=result["peak_memory_bytes"],
                                           **summarize(result["samples_ms"])))
    return MeasurementReport(prefill=stats["prefill"], decode=stats["decode"],
                             peak_memory_bytes=peak, runner="host onnxruntime (subprocess)",
                             wall_s=time.perf_counter() - started)
