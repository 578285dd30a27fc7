"""The host backend: measures a profiling task on this machine with onnxruntime.

Warm steady state, as the ADB backend: per (graph, length), `spec.processes` fresh
subprocesses (device_agent.host_runner), each doing `warmup` untimed and `repeats` timed
runs in one session. Samples are all timed runs across the processes; peak memory is the
maximum VmHWM over them. The report carries median, p10, p90, n and the raw samples per
length, the peak per length, the maximum over the task, and the method.
"""

from __future__ import annotations

import time
from pathlib import Path

from .host_runner import measure
from core.protocol import LatencyStat, MeasurementReport, MeasurementSpec
from .stats import summarize, warm_method


def measure_case(graph_dir: Path, kind: str, length: int, spec: MeasurementSpec
                 ) -> tuple[list[float], int]:
    """(timed runs of every process, the largest peak of them) for one (graph, L)."""
    samples, peak = [], 0
    for _ in range(spec.processes):
        result = measure(graph_dir, kind, length, repeats=spec.repeats, warmup=spec.warmup,
                         threads=spec.threads)
        samples += result["samples_ms"]
        peak = max(peak, result["peak_memory_bytes"])
    return samples, peak


def measure_task(graph_dir: Path, spec: MeasurementSpec) -> MeasurementReport:
    started = time.perf_counter()
    stats: dict[str, list[LatencyStat]] = {"prefill": [], "decode": []}
    peak = 0
    for kind, lengths in (("prefill", spec.prefill_lengths), ("decode", spec.decode_contexts)):
        for length in lengths:
            samples, case_peak = measure_case(graph_dir, kind, length, spec)
            peak = max(peak, case_peak)
            stats[kind].append(LatencyStat(length=length, samples_ms=samples,
                                           peak_memory_bytes=case_peak, **summarize(samples)))
    return MeasurementReport(prefill=stats["prefill"], decode=stats["decode"],
                             peak_memory_bytes=peak, runner="host onnxruntime (subprocess)",
                             method=warm_method(spec.warmup, spec.repeats, spec.processes),
                             wall_s=time.perf_counter() - started)
