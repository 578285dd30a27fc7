"""What onnxruntime_perf_test prints, per release line, for the stand-in runner.

Every text is taken from onnxruntime's sources (onnxruntime/test/perftest/ unless named
otherwise); the file is named in a comment beside it. Release lines:
- "1.20": getopt parser (command_args_parser.cc up to 1.22), per-run line `time_cost:`;
- "1.23": Abseil flags (command_args_parser.cc since 1.23), per-run line `time_cost:`;
- "main": Abseil flags, per-run line `time_cost_submission:...,time_cost_total:...`
  (performance_runner.h since 1.24), summary `Average inference time cost total:`.
Numbers are printed as C++ iostreams print doubles (6 significant digits, like %g).
"""

from __future__ import annotations

from datetime import datetime, timezone

LINES = ("1.20", "1.23", "main")
GETOPT_LINES = ("1.20",)
PROGRAM = "onnxruntime_perf_test"

# command_args_parser.cc (getopt lines): the getopt option string of ParseArguments.
GETOPT_OPTIONS = "k:b:m:e:r:t:p:x:y:c:d:o:u:i:f:F:S:T:AMPIDZvhsqz"
# command_args_parser.cc (getopt lines): the `-e` values ParseArguments accepts.
GETOPT_PROVIDERS = (
    "cpu",
    "cuda",
    "dnnl",
    "openvino",
    "tensorrt",
    "qnn",
    "snpe",
    "nnapi",
    "coreml",
    "dml",
    "acl",
    "armnn",
    "rocm",
    "migraphx",
    "xnnpack",
    "vitisai",
)
# command_args_parser.cc (Abseil lines): the `-e` values ParseArguments accepts.
ABSEIL_PROVIDERS = (
    "cpu",
    "cuda",
    "dnnl",
    "openvino",
    "tensorrt",
    "qnn",
    "snpe",
    "nnapi",
    "vsinpu",
    "coreml",
    "dml",
    "acl",
    "migraphx",
    "xnnpack",
    "vitisai",
    "webgpu",
    "nvtensorrtrtx",
)
# ort_test_session.cc: how ORT_THROW spells each provider a build lacks.
NOT_IN_BUILD = {
    "xnnpack": "Xnnpack",
    "nnapi": "NNAPI",
    "qnn": "QNN",
    "cuda": "CUDA",
    "dnnl": "DNNL",
    "tensorrt": "TensorRT",
}


_GETOPT_E_LISTED = (
    "cpu",
    "cuda",
    "dnnl",
    "tensorrt",
    "openvino",
    "dml",
    "acl",
    "nnapi",
    "coreml",
    "snpe",
    "rocm",
    "migraphx",
    "xnnpack",
    "vitisai",
)
_GETOPT_E_LINE = (
    "\t-e [cpu|cuda|dnnl|tensorrt|openvino|dml|acl|nnapi|coreml|snpe|rocm|migraphx|"
    "xnnpack|vitisai]: Specifies the provider 'cpu','cuda','dnnl','tensorrt', "
    "'openvino', 'dml', 'acl', 'nnapi', 'coreml', 'snpe', 'rocm', 'migraphx', "
    "'xnnpack' or 'vitisai'. Default:'cpu'.\n"
)


def _getopt_e_line(providers: tuple[str, ...]) -> str:
    """The `-e` line verbatim; for a build whose parser predates some provider (a test
    setting), the same line without it."""
    listed = [p for p in _GETOPT_E_LISTED if p in providers]
    if len(listed) == len(_GETOPT_E_LISTED):
        return _GETOPT_E_LINE
    quoted = ",".join(f"'{p}'" for p in listed[:-1]) + f" or '{listed[-1]}'"
    return f"\t-e [{'|'.join(listed)}]: Specifies the provider {quoted}. Default:'cpu'.\n"


# command_args_parser.cc (getopt lines), CommandLineParser::ShowUsage: before and after `-e`.
_GETOPT_USAGE_HEAD = (
    "perf_test [options...] model_path [result_file]\n"
    "Options:\n"
    "\t-m [test_mode]: Specifies the test mode. Value could be 'duration' or 'times'.\n"
    "\t\tProvide 'duration' to run the test for a fix duration, and 'times' to repeated "
    "for a certain times. \n"
    "\t-M: Disable memory pattern.\n"
    "\t-A: Disable memory arena\n"
    "\t-I: Generate tensor input binding (Free dimensions are treated as 1.)\n"
    "\t-c [parallel runs]: Specifies the (max) number of runs to invoke simultaneously. "
    "Default:1.\n"
)
_GETOPT_USAGE_TAIL = (
    "\t-b [tf|ort]: backend to use. Default:ort\n"
    "\t-r [repeated_times]: Specifies the repeated times if running in 'times' test mode."
    "Default:1000.\n"
    "\t-t [seconds_to_run]: Specifies the seconds to run for 'duration' mode. "
    "Default:600.\n"
    "\t-p [profile_file]: Specifies the profile name to enable profiling and dump the "
    "profile data to the file.\n"
    "\t-s: Show statistics result, like P75, P90. If no result_file provided this "
    "defaults to on.\n"
    "\t-S: Given random seed, to produce the same input data. This defaults to -1(no "
    "initialize).\n"
    "\t-v: Show verbose information.\n"
    "\t-x [intra_op_num_threads]: Sets the number of threads used to parallelize the "
    "execution within nodes, A value of 0 means ORT will pick a default. Must >=0.\n"
    "\t-y [inter_op_num_threads]: Sets the number of threads used to parallelize the "
    "execution of the graph (across nodes), A value of 0 means ORT will pick a default. "
    "Must >=0.\n"
    "\t-f [free_dimension_override]: Specifies a free dimension by name to override to a "
    "specific value for performance optimization. Syntax is [dimension_name:override_value]. "
    "override_value must > 0\n"
    "\t-F [free_dimension_override]: Specifies a free dimension by denotation to override "
    "to a specific value for performance optimization. Syntax is [dimension_denotation:"
    "override_value]. override_value must > 0\n"
    "\t-P: Use parallel executor instead of sequential executor.\n"
    "\t-o [optimization level]: Default is 99 (all). Valid values are 0 (disable), 1 "
    "(basic), 2 (extended), 99 (all).\n"
    "\t\tPlease see onnxruntime_c_api.h (enum GraphOptimizationLevel) for the full list of "
    "all optimization levels.\n"
    "\t-u [optimized_model_path]: Specify the optimized model path for saving.\n"
    "\t-d [CUDA only][cudnn_conv_algorithm]: Specify CUDNN convolution algorithms: "
    "0(benchmark), 1(heuristic), 2(default). \n"
    "\t-q [CUDA only] use separate stream for copy. \n"
    "\t-z: Set denormal as zero. When turning on this option reduces latency dramatically, "
    "a model may have denormals.\n"
    "\t-i: Specify EP specific runtime options as key value pairs. Different runtime "
    "options available are: \n"
    "\t-T [Set intra op thread affinities]: Specify intra op thread affinity string\n"
    "\t [Example]: -T 1,2;3,4;5,6 or -T 1-2;3-4;5-6 \n"
    "\t\t Use semicolon to separate configuration between threads.\n"
    "\t\t E.g. 1,2;3,4;5,6 specifies affinities for three threads, the first thread will "
    "be attached to the first and second logical processor.\n"
    "\t\t The number of affinities must be equal to intra_op_num_threads - 1\n\n"
    "\t-D [Disable thread spinning]: disable spinning entirely for thread owned by "
    "onnxruntime intra-op thread pool.\n"
    "\t-Z [Force thread to stop spinning between runs]: disallow thread from spinning "
    "during runs to reduce cpu usage.\n"
    "\t-h: help\n"
)


def getopt_usage(providers: tuple[str, ...]) -> str:
    """command_args_parser.cc (getopt lines), CommandLineParser::ShowUsage, printf to stdout.
    Verbatim except the per-provider sub-lines of `-i` ([DML only] ... [SNPE only], and
    their [Usage]/[Example] lines), left out here: the agent reads none of them."""
    return _GETOPT_USAGE_HEAD + _getopt_e_line(providers) + _GETOPT_USAGE_TAIL


def getopt_unknown(option: str) -> str:
    """bionic libc's getopt (upstream/openbsd getopt_long.c): warnx(illoptchar, optchar),
    `illoptchar[] = "unknown option -- %c"`, on stderr, program name first."""
    return f"{PROGRAM}: unknown option -- {option}\n"


def getopt_missing_argument(option: str) -> str:
    """bionic libc's getopt: warnx(recargchar, optchar), `"option requires an argument --
    %c"`."""
    return f"{PROGRAM}: option requires an argument -- {option}\n"


# main.cc (1.23+): fprintf(stderr, "%s", "See 'onnxruntime_perf_test --help'."); return -1;
SEE_HELP = "See 'onnxruntime_perf_test --help'."


def abseil_unknown(flag: str) -> str:
    """absl/flags/parse.cc ReportUnrecognizedFlags -> absl/flags/internal/usage.cc
    ReportUsageError: `std::cerr << "ERROR: " << msg << std::endl`."""
    return f"ERROR: Unknown command line flag '{flag}'\n"


# command_args_parser.cc (Abseil lines): (name, help, default as Abseil prints it) of the
# ABSL_FLAGs the agent uses and `h`; Abseil's --help lists them sorted by name.
ABSEIL_FLAGS = (
    (
        "e",
        "Specifies the provider 'cpu','cuda','dnnl','tensorrt', 'nvtensorrtrtx', 'openvino', "
        "'dml', 'acl', 'nnapi', 'coreml', 'qnn', 'snpe', 'migraphx', 'xnnpack', 'vitisai' or "
        "'webgpu'.",
        '"cpu"',
    ),
    ("h", "Print program usage.", "false"),
    ("m", "Specifies the test mode. Value could be 'duration' or 'times'.", '"duration"'),
    ("r", "Specifies the repeated times if running in 'times' test mode.", "1000"),
    (
        "s",
        "Shows statistics result, like P75, P90. If no result_file provided this defaults to on.",
        "false",
    ),
    ("t", "Specifies the seconds to run for 'duration' mode.", "600"),
    ("v", "Shows verbose information.", "false"),
    (
        "x",
        "Sets the number of threads used to parallelize the execution within nodes, A value "
        "of 0 means ORT will pick a default. Must >=0.",
        "0",
    ),
    (
        "y",
        "Sets the number of threads used to parallelize the execution of the graph (across "
        "nodes), A value of 0 means ORT will pick a default. Must >=0.",
        "0",
    ),
)
# command_args_parser.cc (Abseil lines), CustomUsageMessage.
ABSEIL_USAGE = (
    "onnxruntime_perf_test [options...] model_path [result_file]\n\n"
    "Note: Options may be specified with either a single dash(-option) or a double "
    "dash(--option). Both forms are accepted and treated identically.\n\nOptions:"
)
SOURCE_FILE = "/onnxruntime_src/onnxruntime/test/perftest/command_args_parser.cc"


class _Printer:
    """absl/flags/internal/usage.cc FlagHelpPrettyPrinter: words wrapped before column 80,
    the first line indented `min_len`, the wrapped ones `min_len + wrapped_indent`."""

    def __init__(self, min_len: int, wrapped_indent: int, out: list[str]):
        self.min_len, self.wrapped, self.out = min_len, wrapped_indent, out
        self.line_len, self.first = 0, True

    def write(self, text: str, wrap: bool = False) -> None:
        tokens = []
        for i, line in enumerate(text.split("\n") if wrap else [text]):
            tokens += (["\n"] if i else []) + (line.split() if wrap else [line])
        for token in tokens:
            if token == "\n":
                self.end_line()
                continue
            new_line = self.line_len == 0
            if not new_line and self.line_len + len(token) >= 80:
                self.end_line()
                new_line = True
            if new_line:
                self.line_len = self.min_len if self.first else self.min_len + self.wrapped
                self.first = False
                self.out.append(" " * self.line_len)
            else:
                self.out.append(" ")
                self.line_len += 1
            self.out.append(token)
            self.line_len += len(token)

    def end_line(self) -> None:
        self.out.append("\n")
        self.line_len = 0


def abseil_help(lacks: tuple[str, ...] = ()) -> str:
    """absl/flags/internal/usage.cc FlagsHelpImpl (human-readable), as `--help` prints it on
        stdout (then absl exits 1): program name and usage message, the flags of the file
        `contains_help_flags` accepts (command_args_parser.cc; the entries of the flags the agent
    uses, and `h`, here), and the closing hint."""
    out = [f"{PROGRAM}: {ABSEIL_USAGE}\n\n", f"  Flags from {SOURCE_FILE}:\n"]
    for name, help_text, default in ABSEIL_FLAGS:  # FlagHelpHumanReadable
        for provider in lacks:  # a build whose parser predates it (a test setting)
            help_text = help_text.replace(f"'{provider}', ", "").replace(f"'{provider}',", "")
        printer = _Printer(4, 2, out)
        printer.write(f"--{name}")
        printer.write(f"({help_text});", wrap=True)
        printer.write(f"default: {default};")
        printer.end_line()
    out.append("\n")
    _Printer(0, 0, out).write(
        "Try --helpfull to get a list of all flags or --help=substring "
        "shows help for flags which include specified substring in "
        "either in the name, or description or path.\n",
        wrap=True,
    )
    return "".join(out)


def not_in_build(provider: str) -> str:
    """ort_test_session.cc: ORT_THROW("Xnnpack is not supported in this build\\n"), printed
    by main.cc's catch (`std::cerr << ex.what()` / `fprintf(stderr, "%s\\n", ...)`) with
    ORT_THROW's location prefix."""
    return (
        "/onnxruntime_src/onnxruntime/test/perftest/ort_test_session.cc:812 onnxruntime::"
        "perftest::OnnxRuntimeTestSession::OnnxRuntimeTestSession(Ort::Env&, std::"
        "random_device&, const onnxruntime::perftest::PerformanceTestConfig&, const "
        f"TestModelInfo&) {NOT_IN_BUILD[provider]} is not supported in this build\n\n"
    )


def per_run_line(line: str, n: int, submission_s: float, total_s: float) -> str:
    """performance_runner.h RunOneIteration under -v (f_verbose): up to 1.23
    `"iteration:" << n << "," << "time_cost:" << seconds`; since 1.24
    `iteration:N,time_cost_submission:S,time_cost_total:T`."""
    if line == "main":
        return f"iteration:{n},time_cost_submission:{submission_s:g},time_cost_total:{total_s:g}"
    return f"iteration:{n},time_cost:{total_s:g}"


def summary(
    line: str, creation_s: float, first_ms: int, costs: list[float], run_s: float, peak: int
) -> str:
    """performance_runner.cc PerformanceRunner::Run, after the timed runs (1.24+ names the
    average `Average inference time cost total`, as a capture from a phone shows)."""
    total = sum(costs)
    average = (
        "Average inference time cost total" if line == "main" else "Average inference time cost"
    )
    return (
        f"Session creation time cost: {creation_s:g} s\n"
        f"First inference time cost: {first_ms} ms\n"
        f"Total inference time cost: {total:g} s\n"
        f"Total inference requests: {len(costs)}\n"
        f"{average}: {total / len(costs) * 1000:g} ms\n"
        f"Total inference run time: {run_s:g} s\n"
        f"Number of inferences per second: {len(costs) / run_s:g} \n"
        f"Avg CPU usage: 97 %\n"
        f"Peak working set size: {peak} bytes\n"
    )


def dump_block(costs: list[float], peak: int) -> str:
    """performance_runner.cc PerformanceResult::DumpToFile without a result file:
    `std::cout << "Avg CPU usage:" << ... << "\\nPeak working set size:" << ... <<
    "\\nRuns:" << time_costs.size() << std::endl`."""
    return f"Avg CPU usage:97\nPeak working set size:{peak}\nRuns:{len(costs)}\n"


def statistics(costs: list[float]) -> str:
    """performance_runner.cc PerformanceResult::DumpToFile, output_stats(std::cout), with
    `-s` or without a result file: `Min Latency: S s` ... `P999 Latency: S s`."""
    ordered = sorted(costs)
    picks = [("Min", 0), ("Max", len(ordered) - 1)] + [
        (name, int(len(ordered) * q))
        for name, q in (("P50", 0.5), ("P90", 0.9), ("P95", 0.95), ("P99", 0.99), ("P999", 0.999))
    ]
    return "".join(f"{name} Latency: {ordered[i]:g} s\n" for name, i in picks)


def log_line(severity: str, location: str, message: str) -> str:
    """onnxruntime/core/common/logging/sinks/ostream_sink.cc: `timestamp [S:category:logger,
    file:line function] message`, the default sink's format on stderr."""
    now = datetime.now(timezone.utc)
    stamp = now.strftime("%Y-%m-%d %H:%M:%S.") + f"{now.microsecond * 1000:09d}"
    return f"{stamp} [{severity}:onnxruntime:, {location}] {message}\n"


def verbose_session_log(nodes: int) -> str:
    """Under -v (ORT_LOGGING_LEVEL_VERBOSE) a session logs per node as it partitions, plans
    and allocates the graph; `nodes` lines of it stand for a real model's thousands."""
    lines = [
        log_line(
            "I",
            "inference_session.cc:583 TraceSessionOptions",
            "Session Options {  execution_mode:0 execution_order:DEFAULT "
            "enable_profiling:0 optimized_model_filepath: }",
        )
    ]
    for i in range(nodes):
        lines.append(
            log_line(
                "V",
                "session_state.cc:1152 VerifyEachNodeIsAssignedToAnEp",
                f" Node(s) placed on [CPUExecutionProvider]. Node name: "
                f"/layers.{i // 8}/node_{i} Op type: MatMul",
            )
        )
    lines.append(
        log_line("V", "inference_session.cc:2109 Initialize", "Session successfully initialized.")
    )
    return "".join(lines)
