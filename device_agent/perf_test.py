"""onnxruntime_perf_test on the phone: the command line, and a parser of its output.

Warm steady state, as deployment runs: per (graph, L), `processes` fresh runner processes,
each doing `warmup + repeats` runs (`-m times -r N`, after the tool's own first inference)
with `-v`, which makes the tool print every run's time (`iteration:3,time_cost:0.0045`, in
seconds); the first `warmup` runs of each process are dropped. A build that prints no
per-run lines gives one sample per process: its summary average. Fresh processes keep the
spread across processes (page cache, allocator, scheduling) in the samples, and peak
memory is the maximum over them. The tool reads the model's inputs from
`test_data_set_0/input_N.pb` beside the model file. `-v` also turns on onnxruntime's
verbose log (stderr): it goes to a file on the phone, whose tail is shown if a run fails.

Output formats parsed (both seen in the wild):
- current: `Average inference time cost: 4.56 ms` (newest builds: `... cost total: 4.56 ms`),
  `Total inference requests: 10`, `Peak working set size: 47550464 bytes`, and with `-s`
  `Min Latency: 0.0043 s`, `P50 Latency: 0.0045 s` ... `P999 Latency: ...`;
- older: `Average time cost:4.56 ms`, `Total iterations:10`, `Min Latency is 0.0043sec`,
  `P50 Latency is 0.0045sec` ...
- either, with `-v`: `iteration:N,time_cost:SECONDS` per timed run.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from .defaults import ALIVE_EVERY_S

RUN_MARKER = "@@tailor-run-end"
ALIVE_MARKER = "@@tailor-alive"  # printed every ALIVE_EVERY_S while a runner works
STDERR_FILE = "runner-stderr.txt"
_NUMBER = r"([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)"
_AVERAGE = re.compile(rf"Average (?:inference )?time cost(?: total)?:\s*{_NUMBER}\s*ms")
_REQUESTS = re.compile(rf"(?:Total inference requests|Total iterations):\s*{_NUMBER}")
_PEAK = re.compile(r"Peak working set size:\s*(\d+)")
_LATENCY = re.compile(rf"\b(Min|Max|P\d+) Latency(?::| is)\s*{_NUMBER}\s*s(?:ec)?\b")
_SESSION = re.compile(rf"Session creation time cost:\s*{_NUMBER}\s*s")
_ITERATION = re.compile(rf"^iteration:\s*(\d+)\s*,\s*time_cost:\s*{_NUMBER}", re.MULTILINE)


@dataclass
class PerfResult:
    average_ms: float
    requests: int | None = None
    peak_memory_bytes: int | None = None
    session_creation_s: float | None = None
    latency_ms: dict[str, float] = field(default_factory=dict)  # "Min", "P50", ... in ms
    runs_ms: list[float] = field(default_factory=list)  # per timed run, with -v


class PerfOutputError(RuntimeError):
    """The runner's output has no timing (it failed); the message carries its output."""


def parse_output(text: str) -> PerfResult:
    average = _AVERAGE.search(text)
    if average is None:
        tail = "\n".join(text.strip().splitlines()[-15:])
        raise PerfOutputError(f"no 'Average ... time cost' line in runner output:\n{tail}")
    requests = _REQUESTS.search(text)
    peak = _PEAK.search(text)
    session = _SESSION.search(text)
    runs = sorted((int(m.group(1)), float(m.group(2)) * 1000) for m in _ITERATION.finditer(text))
    return PerfResult(
        average_ms=float(average.group(1)),
        requests=int(float(requests.group(1))) if requests else None,
        peak_memory_bytes=int(peak.group(1)) if peak else None,
        session_creation_s=float(session.group(1)) if session else None,
        latency_ms={m.group(1): float(m.group(2)) * 1000 for m in _LATENCY.finditer(text)},
        runs_ms=[ms for _, ms in runs])


def timed_samples(result: PerfResult, warmup: int, repeats: int) -> list[float]:
    """The timed runs of one process: its per-run times after the warm-up, or (a build
    without per-run lines) its summary average as one sample."""
    if result.runs_ms:
        if len(result.runs_ms) != warmup + repeats:
            raise PerfOutputError(f"expected {warmup + repeats} per-run times, got "
                                  f"{len(result.runs_ms)}")
        return result.runs_ms[warmup:]
    return [result.average_ms]


def split_runs(text: str) -> list[tuple[int, str]]:
    """Split the output of `loop_command` into (exit status, output) per runner process."""
    runs, current = [], []
    for line in text.splitlines():
        if line.startswith(RUN_MARKER):
            runs.append((int(line.split("=", 1)[1]), "\n".join(current)))
            current = []
        elif not line.startswith(ALIVE_MARKER):
            current.append(line)
    return runs


def cpu_mask(cpus: list[int]) -> str:
    """taskset's hex mask for these CPU indices."""
    return format(sum(1 << c for c in cpus), "x")


def big_cores(max_freq_khz: list[int]) -> list[int]:
    """The CPUs of the faster clusters: all but the slowest cluster (all of them if equal)."""
    if not max_freq_khz:
        return []
    slowest = min(max_freq_khz)
    big = [i for i, f in enumerate(max_freq_khz) if f > slowest]
    return big or list(range(len(max_freq_khz)))


# What onnxruntime_perf_test prints (stderr, exit 255) when asked for a provider its build
# lacks: ort_test_session.cc throws e.g. ORT_THROW("Xnnpack is not supported in this build"),
# "NNAPI is not supported in this build", "QNN is not supported in this build"; main.cc
# prints the exception (prefixed with the source location).
_NOT_IN_BUILD = re.compile(r"\b(\w+) is not supported in this build", re.IGNORECASE)
_NOT_IN_TOOL = re.compile(r"This (?:backend is not included in perf test runner|execution "
                          r"provider is not included in this tool)")
BUILD_FLAGS = {"xnnpack": "--use_xnnpack", "nnapi": "--use_nnapi",
               "qnn": "--use_qnn --qnn_home $QNN_SDK_ROOT (and push the QNN libraries beside it)"}


def provider_missing(text: str, provider: str) -> str | None:
    """The runner's own words when its build lacks `provider` (None if it ran, or failed
    for another reason)."""
    if provider == "cpu":
        return None
    for match in _NOT_IN_BUILD.finditer(text):
        if match.group(1).lower() == provider:
            return match.group(0)
    match = _NOT_IN_TOOL.search(text)
    if match:
        return match.group(0)
    if "See 'onnxruntime_perf_test --help'" in text:   # too old to know `-e provider`
        return f"it does not accept -e {provider}"
    return None


def provider_missing_message(runner: str, provider: str, said: str) -> str:
    return (f"the onnxruntime_perf_test on the phone ({runner}) was built without the "
            f"{provider} execution provider; build it with {BUILD_FLAGS.get(provider, '')} or "
            f"push one that has it (see device_agent/README.md, \"Execution providers\"); the "
            f"runner said: {said}")


def runner_args(model: str, threads: int, repeats: int = 1, statistics: bool = True,
                per_run: bool = True, provider: str = "cpu") -> list[str]:
    args = ["-e", provider, "-m", "times", "-r", str(repeats), "-x", str(threads), "-y", "1"]
    if statistics:
        args.append("-s")
    if per_run:
        args.append("-v")
    return [*args, model, "result.txt"]


def loop_command(runner: str, workdir: str, model: str, processes: int, runs: int,
                 threads: int, cores: list[int] | None, provider: str = "cpu") -> str:
    """One shell command that starts the runner `processes` times in `workdir`, each doing
    `runs` runs, each process followed by a marker line with its exit status (one adb round
    trip per (graph, L)). While a runner works the shell prints a keep-alive line every
    ALIVE_EVERY_S, so a phone that stops answering is told from a slow graph within the
    ADB read timeout."""
    pin = f"taskset {cpu_mask(cores)} " if cores else ""
    call = pin + shlex.join([runner, *runner_args(model, threads, runs, provider=provider)])
    # A runner built with --build_shared_lib finds libonnxruntime.so in its own folder.
    libs = shlex.quote(str(PurePosixPath(runner).parent))
    return (f"cd {shlex.quote(workdir)} && export LD_LIBRARY_PATH={libs}:$LD_LIBRARY_PATH && "
            f"for i in $(seq {processes}); do "
            f"( while :; do sleep {ALIVE_EVERY_S}; echo {ALIVE_MARKER}; done ) & alive=$!; "
            f"{call} 2>{STDERR_FILE}; rc=$?; kill $alive 2>/dev/null; "
            f"if [ $rc -ne 0 ]; then tail -n 30 {STDERR_FILE}; fi; "
            f"echo \"{RUN_MARKER} rc=$rc\"; done")
