"""onnxruntime_perf_test on the phone: the command line, and splitting what one shell call
of several runner processes printed into one output per process.

Warm steady state, as deployment runs: per (graph, L), `processes` fresh runner processes,
each doing `warmup + repeats` runs (`-m times -r N`, after the tool's own first inference)
with `-v`, which makes the tool print every run's time (perf_output.py reads both per-run
formats); the first `warmup` runs of each process are dropped. Fresh processes keep the
spread across processes (page cache, allocator, scheduling) in the samples, and peak
memory is the maximum over them. The tool reads the model's inputs from
`test_data_set_0/input_N.pb` beside the model file. No result file is named, so the tool
prints its `DumpToFile` block (`Runs:N`) and writes nothing that grows on the phone.

`-v` also turns on onnxruntime's verbose log on stderr (thousands of lines on a real
model): it goes to a file on the phone, overwritten by each process, and only its last
STDERR_TAIL_BYTES come back, and only when a process failed.
"""

from __future__ import annotations

import shlex
from pathlib import PurePosixPath

from .defaults import ALIVE_EVERY_S

RUN_MARKER = "@@tailor-run-end"
ALIVE_MARKER = "@@tailor-alive"  # printed every ALIVE_EVERY_S while a runner works
STDERR_MARKER = "@@tailor-stderr"  # what follows it is the tail of a failed run's stderr
STDERR_FILE = "runner-stderr.txt"
STDERR_TAIL_BYTES = 4000  # of a failed process's stderr (its verbose log ends there)


def split_runs(text: str) -> list[tuple[int, str]]:
    """Split the output of `loop_command` into (exit status, output) per runner process.
    The marker is found wherever it sits on a line (a runner killed mid-line leaves a line
    without its newline), and keep-alive markers are dropped wherever they landed."""
    runs, current = [], []
    for line in text.splitlines():
        line = line.replace(ALIVE_MARKER, "")
        head, marker, status = line.partition(RUN_MARKER)
        if not marker:
            if line:
                current.append(line)
            continue
        if head:
            current.append(head)
        runs.append((int(status.split("=", 1)[1]), "\n".join(current)))
        current = []
    return runs


def cpu_mask(cpus: list[int]) -> str:
    """taskset's hex mask for these CPU indices."""
    return format(sum(1 << c for c in cpus), "x")


def big_cores(max_freq_khz: list[int], online: set[int] | None = None) -> list[int]:
    """The CPUs of the faster clusters among the online ones: all but the slowest cluster
    (all of them if equal). An offline CPU reads 0 kHz (or is absent from `online`): it is
    no cluster, and counting it would make the slowest cluster look fast."""
    usable = {i: f for i, f in enumerate(max_freq_khz) if f > 0 and (online is None or i in online)}
    if not usable:
        return []
    slowest = min(usable.values())
    big = [i for i, f in usable.items() if f > slowest]
    return big or sorted(usable)


def runner_args(
    model: str,
    threads: int,
    repeats: int = 1,
    statistics: bool = True,
    per_run: bool = True,
    provider: str = "cpu",
) -> list[str]:
    args = ["-e", provider, "-m", "times", "-r", str(repeats), "-x", str(threads), "-y", "1"]
    if statistics:
        args.append("-s")
    if per_run:
        args.append("-v")
    return [*args, model]


def loop_command(
    runner: str,
    workdir: str,
    model: str,
    processes: int,
    runs: int,
    threads: int,
    cores: list[int] | None,
    provider: str = "cpu",
) -> str:
    """One shell command that starts the runner `processes` times in `workdir`, each doing
    `runs` runs, each process followed by a marker line with its exit status (one adb round
    trip per (graph, L)); the marker always starts a line of its own, whatever the runner
    printed last. While a runner works the shell prints a keep-alive line every
    ALIVE_EVERY_S, so a phone that stops answering is told from a slow graph within the
    ADB read timeout. The keep-alive's `sleep` writes nowhere: killing the loop leaves it
    running out its seconds, and holding the shell's output it kept every (graph, L) open up
    to ALIVE_EVERY_S longer (a fleet run showed 2 s of idle phone per case)."""
    pin = f"taskset {cpu_mask(cores)} " if cores else ""
    call = pin + shlex.join([runner, *runner_args(model, threads, runs, provider=provider)])
    # A runner built with --build_shared_lib finds libonnxruntime.so in its own folder.
    libs = shlex.quote(str(PurePosixPath(runner).parent))
    return (
        f"cd {shlex.quote(workdir)} && export LD_LIBRARY_PATH={libs}:$LD_LIBRARY_PATH && "
        f"for i in $(seq {processes}); do "
        f"( while :; do sleep {ALIVE_EVERY_S} >/dev/null 2>&1; echo {ALIVE_MARKER}; done ) & "
        "alive=$!; "
        f"{call} 2>{STDERR_FILE}; rc=$?; kill $alive 2>/dev/null; wait $alive 2>/dev/null; "
        f"if [ $rc -ne 0 ]; then echo; echo {STDERR_MARKER}; "
        f"tail -c {STDERR_TAIL_BYTES} {STDERR_FILE}; fi; "
        f'echo; echo "{RUN_MARKER} rc=$rc"; done'
    )
