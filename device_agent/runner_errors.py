"""Why one onnxruntime_perf_test process failed, in the words of its release line, and whose
fault that is (failures.py).

What each line prints (onnxruntime/test/perftest/):
- a provider its build lacks (every line): ort_test_session.cc throws e.g.
  `Xnnpack is not supported in this build`, `NNAPI is not supported in this build`;
  main.cc prints the exception on stderr and exits 255 (a DeviceError: ProviderMissing);
- a command line its parser refuses, up to 1.22 (getopt, command_args_parser.cc): main.cc
  prints the usage text (`ShowUsage`) on stdout, exit 255, for an unknown option (getopt
  itself first says `unknown option -- X` on stderr) and for a value it does not take, such
  as an `-e` provider its parser does not list;
- since 1.23 (Abseil): an unknown flag is Abseil's `ERROR: Unknown command line flag 'X'`
  (stderr, exit 1); any value ParseArguments refuses, an unknown `-e` provider included, is
  only `See 'onnxruntime_perf_test --help'.` (main.cc, stderr, no newline, exit 255).
So "See ... --help" does not mean an old runner (it is the newest lines that print it), and
a usage text does not mean a missing provider unless the usage does not list it.
"""

from __future__ import annotations

import re

from .failures import DeviceError, ProviderMissing
from .perf_command import STDERR_MARKER
from .perf_output import PerfOutputError
from .runner_probe import ABSEIL, GETOPT, GETOPT_USAGE, RunnerProbe

RUNNER_NOT_RUNNABLE = (126, 127)  # the shell's "cannot execute" / "not found" statuses
SEE_HELP = "See 'onnxruntime_perf_test --help'."  # main.cc, 1.23+
_NOT_IN_BUILD = re.compile(r"\b(\w+) is not supported in this build", re.IGNORECASE)
_NOT_IN_TOOL = re.compile(
    r"This (?:backend is not included in perf test runner|execution "
    r"provider is not included in this tool)"
)
_UNKNOWN_FLAG = re.compile(r"ERROR: Unknown command line flag '([^']+)'")  # Abseil
_GETOPT_UNKNOWN = re.compile(r"(?:unknown|invalid) option -- '?(.)'?")  # bionic, glibc
BUILD_FLAGS = {
    "xnnpack": "--use_xnnpack",
    "nnapi": "--use_nnapi",
    "qnn": "--use_qnn --qnn_home $QNN_SDK_ROOT (and push the QNN libraries beside it)",
}
SUPPORTED = 'onnxruntime_perf_test 1.19 or newer (device_agent/README.md, "Which releases")'
SIGNALS = {
    9: "SIGKILL: on a phone usually the low-memory killer",
    6: "SIGABRT",
    11: "SIGSEGV",
    15: "SIGTERM",
}


class CommandLineRejected(DeviceError):
    """The runner's parser refused the agent's command line: this runner build does not fit
    the agent (the message names the flag or value where the runner said which)."""


def provider_missing(text: str, provider: str) -> str | None:
    """The runner's own words when its build lacks `provider` (None if it ran, or failed
    for another reason)."""
    if provider == "cpu":
        return None
    for match in _NOT_IN_BUILD.finditer(text):
        if match.group(1).lower() == provider:
            return match.group(0)
    match = _NOT_IN_TOOL.search(text)
    return match.group(0) if match else None


def provider_missing_message(runner: str, provider: str, said: str) -> str:
    return (
        f"the onnxruntime_perf_test on the phone ({runner}) was built without the "
        f"{provider} execution provider; build it with {BUILD_FLAGS.get(provider, '')} or "
        f'push one that has it (see device_agent/README.md, "Execution providers"); the '
        f"runner said: {said}"
    )


def rejected(text: str) -> str | None:
    """What the runner said when its parser refused the command line, else None."""
    flag = _UNKNOWN_FLAG.search(text)
    if flag:
        return flag.group(0)
    if GETOPT_USAGE.search(text):
        option = _GETOPT_UNKNOWN.search(text)
        return (
            f"its usage text, after `{option.group(0)}`"
            if option
            else "its usage text (getopt parser: an option or value it does not take)"
        )
    if SEE_HELP in text:
        return SEE_HELP
    return None


def rejection_error(
    runner: str, provider: str, said: str, probe: RunnerProbe | None, command: str
) -> DeviceError:
    parser = {GETOPT: "a getopt build, 1.19-1.22", ABSEIL: "an Abseil build, 1.23+"}.get(
        probe.parser if probe else "", "parser unknown"
    )
    if (
        provider != "cpu"
        and probe is not None
        and probe.providers
        and provider not in probe.providers
    ):
        return ProviderMissing(
            f"the onnxruntime_perf_test on the phone ({runner}, {parser}) does not know "
            f"-e {provider}: its --help lists {', '.join(probe.providers)}; push a runner "
            f"whose release lists {provider}, built with {BUILD_FLAGS.get(provider, '')} "
            f'(see device_agent/README.md, "Execution providers"); the runner said: {said}'
        )
    return CommandLineRejected(
        f"the onnxruntime_perf_test on the phone ({runner}, {parser}) rejected the agent's "
        f"command line `{command}`: it printed {said}; the agent needs {SUPPORTED}"
    )


def exit_text(rc: int) -> str:
    if rc > 128 and rc - 128 in SIGNALS:
        return f"was killed by signal {rc - 128} ({SIGNALS[rc - 128]}; exit {rc})"
    return f"exited {rc}"


def diagnose(
    rc: int,
    text: str,
    runner: str,
    provider: str,
    probe: RunnerProbe | None,
    command: str,
    folder: str,
) -> Exception | None:
    """The error for one runner process that exited `rc` after printing `text` (stdout,
    then the tail of its stderr), or None when it succeeded."""
    if rc == 0:
        return None
    stdout, _, stderr = text.partition(STDERR_MARKER)
    tail = f"{stdout.strip()[-600:]}; its stderr ended: {stderr.strip()[-900:] or '(nothing)'}"
    if rc in RUNNER_NOT_RUNNABLE:
        return DeviceError(f"{runner} could not start on the phone (exit {rc}): {tail}")
    said = provider_missing(text, provider)
    if said:
        return ProviderMissing(provider_missing_message(runner, provider, said))
    said = rejected(text)
    if said:
        return rejection_error(runner, provider, said, probe, command)
    return PerfOutputError(f"{folder}: runner {exit_text(rc)}: {tail}")
