"""Stand-in `onnxruntime_perf_test` for the loopback phone: the real tool's command line and
exactly what its release line prints (texts and sources: standin_texts.py).

The release line comes from the sandbox's `runner_line` file: "1.20" (getopt parser),
"1.23" (Abseil flags, `iteration:N,time_cost:S`) or "main" (Abseil flags,
`iteration:N,time_cost_submission:S,time_cost_total:T`). Per line it parses its arguments
as that line's parser does (getopt: usage on stdout and exit 255 for `-h`, `--help` or an
unknown option; Abseil: `--help` prints the flag list and exits 1, an unknown flag is
`ERROR: Unknown command line flag 'X'` and exit 1, any value ParseArguments refuses is only
`See 'onnxruntime_perf_test --help'.` without a newline and exit 255), reads
`test_data_set_0/input_*.pb` beside the model, runs one warm-up inference and `-r` timed
ones with onnxruntime on the host's CPU, and prints the per-run lines (`-v`), the summary
and the DumpToFile block as the line does; `-v` also writes onnxruntime's verbose log on
stderr (`runner_verbose_lines` lines, default 2000).

Sandbox settings (files in the sandbox root): `runner_providers` ("cpu xnnpack": the
providers the build has; another is ort_test_session.cc's "X is not supported in this
build", exit 255), `runner_parser_lacks` (providers this build's parser does not know),
`runner_delay_s` (a slow runner), `runner_kill_at` (killed by SIGKILL in the middle of the
per-run line of that iteration, as the low-memory killer does), `runner_sleep_ms` (sleep
mode, for fleets of stand-in phones: every inference is a sleep of this many milliseconds,
the device class's latency, instead of onnxruntime, so fifty phones fit on two cores; what
is printed is the same, line for line, and a missing model or test data still fails as
onnxruntime's loader does). Every per-run line printed is also appended to
`runner_printed.log` for tests to compare with what the agent stored.
"""

from __future__ import annotations

import os
import resource
import signal
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import standin_texts as texts  # noqa: E402  (run by path: its folder is not on sys.path)

ABSEIL_BOOL = set("AMsvIPqzDZnlgXh")
ABSEIL_VALUE = set("fFmertpxycdouiSTCR")
HELP_FLAGS = ("help", "helpfull", "helpshort", "helppackage")


class Refused(Exception):
    """The parser refused the command line: what the tool prints, and its exit status."""

    def __init__(self, stdout: str, stderr: str, rc: int):
        super().__init__(rc)
        self.stdout, self.stderr, self.rc = stdout, stderr, rc


def sandbox_setting(name: str) -> str | None:
    root = os.environ.get("TAILOR_STANDIN_ROOT")
    path = Path(root, name) if root else None
    return path.read_text().strip() if path and path.exists() else None


def known_providers(line: str) -> tuple[str, ...]:
    lacks = (sandbox_setting("runner_parser_lacks") or "").split()
    names = texts.GETOPT_PROVIDERS if line in texts.GETOPT_LINES else texts.ABSEIL_PROVIDERS
    return tuple(p for p in names if p not in lacks)


def check_values(options: dict[str, str], known: tuple[str, ...]) -> bool:
    """command_args_parser.cc ParseArguments' own checks (both parsers)."""
    if options.get("e", "cpu") not in known:
        return False
    if options.get("m", "duration") not in ("duration", "times"):
        return False
    return "r" not in options or (options["r"].isdigit() and int(options["r"]) > 0)


def parse_getopt(argv: list[str], known: tuple[str, ...]) -> tuple[dict[str, str], list[str]]:
    """POSIX getopt over GETOPT_OPTIONS (bionic: no permutation), then ParseArguments'
    checks; a refusal is ShowUsage on stdout, exit 255 (main.cc returns -1)."""
    usage = Refused(texts.getopt_usage(known), "", 255)
    options, i = {}, 1
    while i < len(argv) and argv[i].startswith("-") and argv[i] != "-":
        if argv[i] == "--":
            i += 1
            break
        arg, j = argv[i], 1
        while j < len(arg):
            ch = arg[j]
            at = texts.GETOPT_OPTIONS.find(ch) if ch not in ":-" else -1
            if at < 0:
                raise Refused(usage.stdout, texts.getopt_unknown(ch), 255)
            if texts.GETOPT_OPTIONS[at + 1 : at + 2] == ":":
                value = arg[j + 1 :] or (argv[i + 1] if i + 1 < len(argv) else None)
                if value is None:
                    raise Refused(usage.stdout, texts.getopt_missing_argument(ch), 255)
                i += 0 if arg[j + 1 :] else 1
                options[ch] = value
                break
            options[ch] = ""
            j += 1
        i += 1
    positional = argv[i:]
    if "h" in options or not check_values(options, known) or len(positional) not in (1, 2):
        raise usage
    return options, positional


def parse_abseil(argv: list[str], known: tuple[str, ...]) -> tuple[dict[str, str], list[str]]:
    """absl::ParseCommandLine (unknown flags, --help), then ParseArguments' checks; a
    refusal of those is main.cc's `See 'onnxruntime_perf_test --help'.`, exit 255."""
    options, positional, unknown, i = {}, [], [], 1
    while i < len(argv):
        arg = argv[i]
        i += 1
        if arg == "--":
            positional += argv[i:]
            break
        if not arg.startswith("-") or arg == "-":
            positional.append(arg)
            continue
        name, has_value, value = arg.lstrip("-").partition("=")
        if name in HELP_FLAGS:
            raise Refused(texts.abseil_help(tuple(set(texts.ABSEIL_PROVIDERS) - set(known))), "", 1)
        if name in ABSEIL_BOOL:
            options[name] = value if has_value else "true"
        elif name in ABSEIL_VALUE:
            if not has_value and i >= len(argv):
                raise Refused("", f"ERROR: Missing the value for the flag '{name}'\n", 1)
            options[name] = value if has_value else argv[i]
            i += 0 if has_value else 1
        else:
            unknown.append(name)
    if unknown:
        raise Refused("", "".join(texts.abseil_unknown(f) for f in unknown), 1)
    if not check_values(options, known) or len(positional) not in (1, 2):
        raise Refused("", texts.SEE_HELP, 255)
    return {k: v for k, v in options.items() if v != "false"}, positional


def load(model: Path, threads: int):
    import onnx
    import onnxruntime as ort
    from onnx import numpy_helper

    feeds = {}
    for pb in sorted((model.parent / "test_data_set_0").glob("input_*.pb")):
        tensor = onnx.TensorProto()
        tensor.ParseFromString(pb.read_bytes())
        feeds[tensor.name] = numpy_helper.to_array(tensor)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    return ort.InferenceSession(str(model), opts, providers=["CPUExecutionProvider"]), feeds


class SleepSession:
    """Sleep mode: one inference is a sleep of `runner_sleep_ms` (the device class's
    latency); nothing of onnxruntime is loaded, so a runner process costs a few ms of CPU."""

    def __init__(self, model: Path, sleep_ms: float):
        if not model.is_file():  # onnxruntime's loader: the text main.cc prints
            raise FileNotFoundError(f"Load model from {model} failed:File doesn't exist")
        if not any((model.parent / "test_data_set_0").glob("input_*.pb")):
            raise FileNotFoundError(f"{model.parent / 'test_data_set_0'}: no input_*.pb")
        self.sleep_s = sleep_ms / 1000

    def run(self, _outputs, _feeds) -> None:
        time.sleep(self.sleep_s)


def load_session(model: Path, threads: int):
    sleep_ms = sandbox_setting("runner_sleep_ms")
    if sleep_ms:
        return SleepSession(model, float(sleep_ms)), {}
    return load(model, threads)


def timed_runs(line: str, session, feeds, runs: int, verbose: bool) -> list[float]:
    """RunRepeatedTimes: each run timed, printed under -v (performance_runner.h)."""
    costs, kill_at = [], int(sandbox_setting("runner_kill_at") or 0)
    log = Path(os.environ.get("TAILOR_STANDIN_ROOT", "."), "runner_printed.log")
    for n in range(1, runs + 1):
        start = time.perf_counter()
        session.run(None, feeds)
        submitted = time.perf_counter() - start
        costs.append(time.perf_counter() - start)
        if not verbose:
            continue
        text = texts.per_run_line(line, n, submitted, costs[-1])
        if n == kill_at:  # killed while writing this line: no newline, no summary
            sys.stdout.write(text[: text.index("time_cost") + len("time_co")])
            sys.stdout.flush()
            os.kill(os.getpid(), signal.SIGKILL)
        print(text, flush=True)
        sys.stderr.write(
            texts.log_line("V", "sequential_executor.cc:534 ExecuteThePlan", "Number of streams: 1")
        )
        with log.open("a") as f:
            f.write(text + "\n")
    return costs


def run(line: str, options: dict[str, str], positional: list[str]) -> int:
    provider = options.get("e", "cpu")
    if provider != "cpu" and provider not in (sandbox_setting("runner_providers") or "cpu").split():
        sys.stderr.write(texts.not_in_build(provider))
        return 255
    if sandbox_setting("runner_delay_s"):
        time.sleep(float(sandbox_setting("runner_delay_s")))
    verbose, threads = "v" in options, int(options.get("x", "0"))
    if verbose:
        sys.stderr.write(
            texts.verbose_session_log(int(sandbox_setting("runner_verbose_lines") or 2000))
        )
    if threads > 0:  # ort_test_session.cc
        print(f"Setting intra_op_num_threads to {threads}")
    created = time.perf_counter()
    try:
        session, feeds = load_session(Path(positional[0]), threads)
    except Exception as exc:  # main.cc prints the exception and returns -1
        sys.stderr.write(f"{exc}\n")
        return 255
    creation_s = time.perf_counter() - created
    start = time.perf_counter()
    session.run(None, feeds)  # the warm-up, RunOneIteration<true>
    first_ms = int((time.perf_counter() - start) * 1000)
    run_start = time.perf_counter()
    costs = timed_runs(line, session, feeds, int(options.get("r", "1000")), verbose)
    run_s = time.perf_counter() - run_start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    sys.stdout.write(texts.summary(line, creation_s, first_ms, costs, run_s, peak))
    if len(positional) > 1:  # DumpToFile with a result file: the runs go to it
        with open(positional[1], "a") as f:
            f.writelines(
                f"{Path(positional[0]).parent.name},{c},{peak},97,{i}\n"
                for i, c in enumerate(costs)
            )
    else:
        sys.stdout.write(texts.dump_block(costs, peak))
    if "s" in options or len(positional) == 1:
        sys.stdout.write(texts.statistics(costs))
    return 0


def main() -> int:
    line = sandbox_setting("runner_line") or "main"
    if line not in texts.LINES:
        raise SystemExit(f"stand-in runner: unknown release line {line!r}")
    known = known_providers(line)
    parse = parse_getopt if line in texts.GETOPT_LINES else parse_abseil
    try:
        options, positional = parse(sys.argv, known)
    except Refused as refused:
        sys.stdout.write(refused.stdout)
        sys.stderr.write(refused.stderr)
        return refused.rc
    if options.get("m", "duration") != "times":
        print("stand-in supports -m times only")
        return 1
    return run(line, options, positional)


if __name__ == "__main__":
    sys.exit(main())
