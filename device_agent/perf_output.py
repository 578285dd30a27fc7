"""What onnxruntime_perf_test prints on stdout after a run, parsed, for every release line.

The agent takes its samples from the per-run lines `-v` prints, never from the summary
average: the average is one number per process, and it includes the runs the agent means
to drop as warm-up. Texts, from onnxruntime/test/perftest/ (file named per pattern):
- per-run line, `RunOneIteration` in performance_runner.h: up to 1.23
  `iteration:N,time_cost:S`; since 1.24 `iteration:N,time_cost_submission:S,time_cost_total:T`
  (seconds; T, the run's whole time, is the sample);
- summary, `PerformanceRunner::Run` in performance_runner.cc: `Average inference time cost:
  X ms` (1.24+: `Average inference time cost total: X ms`), `Total inference requests: N`,
  `Peak working set size: N bytes`, `Session creation time cost: S s`;
- `PerformanceResult::DumpToFile` (performance_runner.cc), run without a result file: a
  second block `Avg CPU usage:N`, `Peak working set size:N`, `Runs:N` (no space, no unit),
  then the statistics `Min Latency: S s`, `P50 Latency: S s` ...;
- builds older than any supported line wrote `Average time cost:X ms`, `Total iterations:N`
  and `Min Latency is Ssec`: still read, so an old capture parses.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_NUMBER = r"([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)"
_AVERAGE = re.compile(rf"Average (?:inference )?time cost(?: total)?:\s*{_NUMBER}\s*ms")
_REQUESTS = re.compile(rf"(?:Total inference requests|Total iterations):\s*{_NUMBER}")
_PEAK = re.compile(r"Peak working set size:\s*(\d+)")
_LATENCY = re.compile(rf"\b(Min|Max|P\d+) Latency(?::| is)\s*{_NUMBER}\s*s(?:ec)?\b")
_SESSION = re.compile(rf"Session creation time cost:\s*{_NUMBER}\s*s")
_DUMP_RUNS = re.compile(r"^Runs:(\d+)\s*$", re.MULTILINE)  # DumpToFile, performance_runner.cc
# performance_runner.h, up to 1.23: "iteration:" << n << "," << "time_cost:" << seconds
_PER_RUN_OLD = re.compile(rf"^iteration:(\d+),time_cost:{_NUMBER}\s*$", re.MULTILINE)
# performance_runner.h, 1.24 and main: iteration:N,time_cost_submission:S,time_cost_total:T
_PER_RUN_NEW = re.compile(
    rf"^iteration:(\d+),time_cost_submission:{_NUMBER},"
    rf"time_cost_total:{_NUMBER}\s*$",
    re.MULTILINE,
)
_ANY_ITERATION = re.compile(r"^iteration:\S*", re.MULTILINE)

PER_RUN_TIME_COST = "time_cost"  # iteration:N,time_cost:S (up to 1.23)
PER_RUN_SUBMISSION_TOTAL = "submission_total"  # iteration:N,time_cost_submission:S,... (1.24+)


@dataclass
class PerfResult:
    average_ms: float
    requests: int | None = None
    peak_memory_bytes: int | None = None
    session_creation_s: float | None = None
    latency_ms: dict[str, float] = field(default_factory=dict)  # "Min", "P50", ... in ms
    runs_ms: list[float] = field(default_factory=list)  # per timed run, with -v
    per_run_format: str | None = None  # PER_RUN_TIME_COST or PER_RUN_SUBMISSION_TOTAL
    dump_runs: int | None = None  # DumpToFile's `Runs:N`


class PerfOutputError(RuntimeError):
    """The runner's output has no timing (it failed); the message carries its output."""


class UnknownPerRunFormat(PerfOutputError):
    """The runner printed per-run lines in a format this agent does not know (a newer
    onnxruntime?): taking the summary average instead would mix averages with runs."""


def per_run_times(text: str) -> tuple[list[float], str | None]:
    """(per-run times in ms in iteration order, the format they were printed in)."""
    new = [(int(m.group(1)), float(m.group(3)) * 1000) for m in _PER_RUN_NEW.finditer(text)]
    if new:
        return [ms for _, ms in sorted(new)], PER_RUN_SUBMISSION_TOTAL
    old = [(int(m.group(1)), float(m.group(2)) * 1000) for m in _PER_RUN_OLD.finditer(text)]
    if old:
        return [ms for _, ms in sorted(old)], PER_RUN_TIME_COST
    unknown = _ANY_ITERATION.search(text)
    if unknown:
        raise UnknownPerRunFormat(
            f"per-run line in a format this agent does not know: "
            f"{unknown.group(0)[:200]!r} (supported: "
            "iteration:N,time_cost:S and iteration:N,"
            "time_cost_submission:S,time_cost_total:T)"
        )
    return [], None


def parse_output(text: str) -> PerfResult:
    average = _AVERAGE.search(text)
    if average is None:
        tail = "\n".join(text.strip().splitlines()[-15:])
        raise PerfOutputError(f"no 'Average ... time cost' line in runner output:\n{tail}")
    requests = _REQUESTS.search(text)
    peaks = [int(m.group(1)) for m in _PEAK.finditer(text)]
    session = _SESSION.search(text)
    dump_runs = _DUMP_RUNS.search(text)
    runs, per_run_format = per_run_times(text)
    return PerfResult(
        average_ms=float(average.group(1)),
        requests=int(float(requests.group(1))) if requests else None,
        peak_memory_bytes=max(peaks) if peaks else None,
        session_creation_s=float(session.group(1)) if session else None,
        latency_ms={m.group(1): float(m.group(2)) * 1000 for m in _LATENCY.finditer(text)},
        runs_ms=runs,
        per_run_format=per_run_format,
        dump_runs=int(dump_runs.group(1)) if dump_runs else None,
    )


def timed_samples(result: PerfResult, warmup: int, repeats: int) -> list[float]:
    """The timed runs of one process: its per-run times after the warm-up. A process that
    printed none (no `-v` lines in its output) is an error, not one averaged sample: the
    average would hide the warm-up in the numbers."""
    expected = warmup + repeats
    if not result.runs_ms:
        raise PerfOutputError(
            "the runner printed no per-run lines under -v (expected "
            f"{expected} `iteration:N,...` lines), only its average of "
            f"{result.average_ms:g} ms, which includes the warm-up runs"
        )
    if len(result.runs_ms) != expected:
        raise PerfOutputError(f"expected {expected} per-run times, got {len(result.runs_ms)}")
    if result.dump_runs is not None and result.dump_runs != expected:
        raise PerfOutputError(
            f"the runner's summary says Runs:{result.dump_runs}, but it "
            f"was asked for {expected} runs"
        )
    return result.runs_ms[warmup:]
