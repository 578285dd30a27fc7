"""onnxruntime_perf_test on the phone: the command line, and a parser of its output.

One runner process = one sample: `-m times -r 1` after the tool's own warm-up inference, so
each sample is a fresh process (session creation and page cache effects stay out of the
timed run; run-to-run drift of the phone stays in the spread). The tool reads the model's
inputs from `test_data_set_0/input_N.pb` beside the model file.

Output formats parsed (both seen in the wild):
- current: `Average inference time cost: 4.56 ms` (newest builds: `... cost total: 4.56 ms`),
  `Total inference requests: 10`, `Peak working set size: 47550464 bytes`, and with `-s`
  `Min Latency: 0.0043 s`, `P50 Latency: 0.0045 s` ... `P999 Latency: ...`;
- older: `Average time cost:4.56 ms`, `Total iterations:10`, `Min Latency is 0.0043sec`,
  `P50 Latency is 0.0045sec` ...
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import PurePosixPath

RUN_MARKER = "@@tailor-run-end"
_NUMBER = r"([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)"
_AVERAGE = re.compile(rf"Average (?:inference )?time cost(?: total)?:\s*{_NUMBER}\s*ms")
_REQUESTS = re.compile(rf"(?:Total inference requests|Total iterations):\s*{_NUMBER}")
_PEAK = re.compile(r"Peak working set size:\s*(\d+)")
_LATENCY = re.compile(rf"\b(Min|Max|P\d+) Latency(?::| is)\s*{_NUMBER}\s*s(?:ec)?\b")
_SESSION = re.compile(rf"Session creation time cost:\s*{_NUMBER}\s*s")


@dataclass
class PerfResult:
    average_ms: float
    requests: int | None = None
    peak_memory_bytes: int | None = None
    session_creation_s: float | None = None
    latency_ms: dict[str, float] = field(default_factory=dict)  # "Min", "P50", ... in ms


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
    return PerfResult(
        average_ms=float(average.group(1)),
        requests=int(float(requests.group(1))) if requests else None,
        peak_memory_bytes=int(peak.group(1)) if peak else None,
        session_creation_s=float(session.group(1)) if session else None,
        latency_ms={m.group(1): float(m.group(2)) * 1000 for m in _LATENCY.finditer(text)})


def split_runs(text: str) -> list[tuple[int, str]]:
    """Split the output of `loop_command` into (exit status, output) per runner process."""
    runs, current = [], []
    for line in text.splitlines():
        if line.startswith(RUN_MARKER):
            runs.append((int(line.split("=", 1)[1]), "\n".join(current)))
            current = []
        else:
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


def runner_args(model: str, threads: int, repeats: int = 1, statistics: bool = True) -> list[str]:
    args = ["-e", "cpu", "-m", "times", "-r", str(repeats), "-x", str(threads), "-y", "1"]
    if statistics:
        args.append("-s")
    return [*args, model, "result.txt"]


def loop_command(runner: str, workdir: str, model: str, runs: int, threads: int,
                 cores: list[int] | None) -> str:
    """One shell command that runs the runner `runs` times in `workdir`, each run followed by
    a marker line with its exit status (one adb round trip for all samples of one length)."""
    pin = f"taskset {cpu_mask(cores)} " if cores else ""
    call = pin + shlex.join([runner, *runner_args(model, threads)])
    # A runner built with --build_shared_lib finds libonnxruntime.so in its own folder.
    libs = shlex.quote(str(PurePosixPath(runner).parent))
    return (f"cd {shlex.quote(workdir)} && export LD_LIBRARY_PATH={libs}:$LD_LIBRARY_PATH && "
            f"for i in $(seq {runs}); do {call} 2>&1; "
            f"echo \"{RUN_MARKER} rc=$?\"; done")
