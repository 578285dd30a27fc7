"""Which onnxruntime_perf_test is on the phone: asked with `--help`, a question every
supported release line answers, and identified by its sha256.

Why `--help` and not `-h`: up to 1.22 the runner parses flags with getopt and prints its
usage (stdout, exit 255) for `-h` or any unknown option, `--help` included (getopt reports
the `-` it does not know on stderr first); since 1.23 it parses with Abseil, where `-h` is a
flag that does nothing (with no model it prints only `See 'onnxruntime_perf_test --help'.`
on stderr, no newline, exit 255) and `--help` prints Abseil's flag list (stdout, exit 1).
Both usage texts name `model_path` (command_args_parser.cc: getopt's `ShowUsage`,
`perf_test [options...] model_path [result_file]`; Abseil's `CustomUsageMessage`,
`onnxruntime_perf_test [options...] model_path [result_file]`).

The probe also reads which `-e` providers the runner's parser knows (its usage lists them),
so a rejected command line can be told from a provider the build lacks, and the
onnxruntime version where the runner's folder says it (`libonnxruntime.so.X.Y.Z` beside
a runner built with --build_shared_lib); the runner itself prints no version.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import PurePosixPath

from core.protocol import RunnerIdentity

from .perf_output import PER_RUN_SUBMISSION_TOTAL, PER_RUN_TIME_COST

GETOPT, ABSEIL = "getopt", "abseil"
HELP_MARK = "model_path"
RC_MARK = "@@rc="
HELP_TAIL_CHARS = 64_000  # what the agent keeps of the help text (Abseil's is ~20 kB)
# command_args_parser.cc up to 1.22, ShowUsage: "\t-e [cpu|cuda|...]: Specifies the provider"
GETOPT_USAGE = re.compile(r"^perf_test \[options\.\.\.\] model_path", re.MULTILINE)
_GETOPT_PROVIDERS = re.compile(r"-e \[([a-z0-9_|]+)\]")
# 1.23+: ABSL_FLAG(std::string, e, "cpu", "Specifies the provider 'cpu','cuda',... or 'webgpu'.")
_ABSEIL_PROVIDERS = re.compile(r"--e \(Specifies the provider (.*?)\.\);")
_VERSION = re.compile(r"libonnxruntime\.so\.(\d+\.\d+\.\d+)")


@dataclass(frozen=True)
class RunnerProbe:
    parser: str  # GETOPT or ABSEIL
    providers: tuple[str, ...]  # the `-e` values its parser knows (empty: not listed)
    sha256: str | None = None
    onnxruntime_version: str | None = None

    def identity(self, per_run_format: str | None = None) -> RunnerIdentity:
        return RunnerIdentity(
            sha256=self.sha256,
            parser=self.parser,
            per_run_format=per_run_format or "",
            release_line=release_line(self.parser, per_run_format),
            onnxruntime_version=self.onnxruntime_version,
        )


def release_line(parser: str, per_run_format: str | None) -> str:
    """The release line a parser and a per-run format belong to (see the module doc)."""
    if parser == GETOPT:
        return "1.19-1.22" if per_run_format != PER_RUN_SUBMISSION_TOTAL else "unknown"
    if per_run_format == PER_RUN_TIME_COST:
        return "1.23"
    if per_run_format == PER_RUN_SUBMISSION_TOTAL:
        return "1.24+"
    return "1.23+"


def help_command(runner: str) -> str:
    """`runner --help`, both streams, with its exit status on a line of its own (the help
    may end without a newline)."""
    libs = shlex.quote(str(PurePosixPath(runner).parent))
    return (
        f"LD_LIBRARY_PATH={libs} {shlex.quote(runner)} --help 2>&1; rc=$?; echo; "
        f'echo "{RC_MARK}$rc"'
    )


def split_status(out: str) -> tuple[str, int]:
    body, _, rc = out.rstrip().rpartition(RC_MARK)
    return body, int(rc) if rc.strip().isdigit() else -1


def parse_help(text: str) -> RunnerProbe | None:
    """The parser and known providers from a `--help` answer; None when it is not the
    usage text of any supported release line."""
    if HELP_MARK not in text:
        return None
    if GETOPT_USAGE.search(text):
        listed = _GETOPT_PROVIDERS.search(text)
        return RunnerProbe(GETOPT, tuple(listed.group(1).split("|")) if listed else ())
    listed = _ABSEIL_PROVIDERS.search(" ".join(text.split()))  # Abseil wraps at 80 columns
    names = re.findall(r"'([a-z0-9_]+)'", listed.group(1)) if listed else []
    return RunnerProbe(ABSEIL, tuple(names))


def version_command(runner: str) -> str:
    return f"ls {shlex.quote(str(PurePosixPath(runner).parent))} 2>/dev/null"


def parse_version(listing: str) -> str | None:
    found = _VERSION.search(listing)
    return found.group(1) if found else None
