"""The host backend: measures a profiling task on this machine with onnxruntime.

Warm steady state, as the ADB backend: per (graph, length), `spec.processes` fresh
subprocesses (device_agent.host_runner), each doing `warmup` untimed and `repeats` timed
runs in one session. Samples are all timed runs across the processes; peak memory is the
maximum VmHWM over them. The report carries median, p10, p90, n and the raw samples per
length, the peak per length, the maximum over the task, the method, and which runner took
them (host onnxruntime and its version: RunnerIdentity).
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

from core.protocol import LatencyStat, MeasurementReport, MeasurementSpec, RunnerIdentity

from .failures import ProviderMissing
from .host_runner import measure, provider_problem
from .stats import summarize, warm_method


def measure_case(
    graph_dir: Path,
    kind: str,
    length: int,
    spec: MeasurementSpec,
    reference: Path | None = None,
    pairs: int | None = None,
) -> LatencyStat:
    """One (graph, L) in `spec.processes` fresh processes: every process's timed runs, the
    largest peak; with a reference graph (`pairs` alternating runs of each, default
    `spec.repeats`), its median and the median over processes of the graph's paired median
    over the reference's."""
    samples, peak, ratios, reference_ms = [], 0, [], []
    for _ in range(spec.processes):
        result = measure(
            graph_dir,
            kind,
            length,
            repeats=spec.repeats,
            warmup=spec.warmup,
            threads=spec.threads,
            provider=spec.execution_provider,
            reference=reference,
            pairs=pairs,
        )
        samples += result["samples_ms"]
        peak = max(peak, result["peak_memory_bytes"])
        if reference is not None:
            theirs = statistics.median(result["reference_ms"])
            ratios.append(statistics.median(result["paired_ms"]) / theirs)
            reference_ms += result["reference_ms"]
    return LatencyStat(
        length=length,
        samples_ms=samples,
        peak_memory_bytes=peak,
        reference_median_ms=statistics.median(reference_ms) if ratios else None,
        reference_ratio=statistics.median(ratios) if ratios else None,
        **summarize(samples),
    )


def measure_task(
    graph_dir: Path,
    spec: MeasurementSpec,
    precision: str | None = None,
    reference: Path | None = None,
    pairs: dict[str, int] | None = None,
) -> MeasurementReport:
    """`precision`: the variant measured (default: the precision in graph_dir's manifest).
    `reference`: a task folder of a fixed reference model at the same precision, timed
    alternately with every case (LatencyStat.reference_ratio); `pairs`: how many pairs per
    kind ("prefill", "decode"; default `spec.repeats`)."""
    started = time.perf_counter()
    if precision is None:
        precision = json.loads((graph_dir / "manifest.json").read_text()).get(
            "precision", "float32"
        )
    problem = provider_problem(spec.execution_provider)
    if problem:
        raise ProviderMissing(problem)
    stats: dict[str, list[LatencyStat]] = {"prefill": [], "decode": []}
    for kind, lengths in (("prefill", spec.prefill_lengths), ("decode", spec.decode_contexts)):
        for length in lengths:
            count = (pairs or {}).get(kind)
            stats[kind].append(measure_case(graph_dir, kind, length, spec, reference, count))
    peak = max(s.peak_memory_bytes or 0 for kind in stats.values() for s in kind)
    note = "then paired run by run with a reference graph" if reference else ""
    return MeasurementReport(
        prefill=stats["prefill"],
        decode=stats["decode"],
        peak_memory_bytes=peak,
        runner=f"host onnxruntime (subprocess, {spec.execution_provider})",
        method=warm_method(
            spec.warmup, spec.repeats, spec.processes, note, provider=spec.execution_provider
        ),
        precision=precision,
        execution_provider=spec.execution_provider,
        wall_s=time.perf_counter() - started,
        runner_identity=host_identity(),
    )


def host_identity() -> RunnerIdentity:
    from importlib.metadata import PackageNotFoundError, version

    try:
        found = version("onnxruntime")
    except PackageNotFoundError:
        found = None
    return RunnerIdentity(name="host onnxruntime", onnxruntime_version=found)
