"""Stand-in `onnxruntime_perf_test` for the loopback phone: same command line, same output.

Parses the real tool's flags, reads `test_data_set_*/input_*.pb` beside the model (as the
real tool does), runs one warm-up inference and `-r` timed ones with onnxruntime, and prints
the current output format (or the older one when the sandbox's `runner_format` says "old").
With `-v` it prints each timed run as the real tool does (`iteration:N,time_cost:SECONDS`
on stdout) and some verbose onnxruntime log on stderr; `-h` prints the usage.
Execution providers: `-e cpu` always; others only when named in the sandbox's
`runner_providers` file (e.g. "cpu xnnpack"); asked for one it lacks, it fails as the real
tool does (ort_test_session.cc: `Xnnpack is not supported in this build`, on stderr, exit
255); the inference itself always runs on the host's CPU provider.
Faults, from files in the sandbox root: `runner_per_run` = "no" (a build that prints no
per-run lines), `runner_delay_s` (a slow runner: sleeps that long before loading).
"""

from __future__ import annotations

import os
import resource
import sys
import time
from pathlib import Path


VALUE_FLAGS = set("emrtxyopuCcSfFTiRl")
KNOWN_PROVIDERS = ("cpu", "xnnpack", "nnapi", "qnn", "cuda", "dnnl", "tensorrt")
NOT_IN_BUILD = {"xnnpack": "Xnnpack", "nnapi": "NNAPI", "qnn": "QNN", "cuda": "CUDA",
                "dnnl": "DNNL", "tensorrt": "TensorRT"}   # as ort_test_session.cc spells them


def parse(argv: list[str]) -> tuple[dict[str, str], list[str]]:
    options, positional, i = {}, [], 0
    while i < len(argv):
        arg = argv[i]
        if arg.startswith("-") and len(arg) == 2:
            if arg[1] in VALUE_FLAGS:
                options[arg[1]] = argv[i + 1]
                i += 2
                continue
            options[arg[1]] = ""
        else:
            positional.append(arg)
        i += 1
    return options, positional


def sandbox_setting(name: str) -> str | None:
    root = os.environ.get("TAILOR_STANDIN_ROOT")
    path = Path(root, name) if root else None
    return path.read_text().strip() if path and path.exists() else None


def main() -> int:
    if "-h" in sys.argv[1:]:
        print("usage: ./onnxruntime_perf_test [options...] model_path [result_file]\n"
              "Options:\n\t-m [test_mode]: Specifies the test mode. Value could be "
              "'duration' or 'times'.")
        return 255
    options, positional = parse(sys.argv[1:])
    # Heavy imports after `-h`, so the preflight's usage check answers fast on a busy host.
    import numpy as np
    import onnx
    import onnxruntime as ort
    from onnx import numpy_helper

    if not positional:
        print("usage: onnxruntime_perf_test [options...] model_path [result_file]")
        return 1
    delay = sandbox_setting("runner_delay_s")
    if delay:
        time.sleep(float(delay))
    verbose = "v" in options and sandbox_setting("runner_per_run") != "no"
    if verbose:
        print("2026-01-01 00:00:00.000 [V:onnxruntime:, inference_session.cc:1] verbose log",
              file=sys.stderr)
    model = Path(positional[0])
    provider = options.get("e", "cpu")
    if provider not in KNOWN_PROVIDERS:   # command_args_parser.cc: unknown -e value
        print("See 'onnxruntime_perf_test --help'.", file=sys.stderr)
        return 255
    if provider != "cpu" and provider not in (sandbox_setting("runner_providers") or "cpu").split():
        print("/onnxruntime/onnxruntime/test/perftest/ort_test_session.cc:812 onnxruntime::"
              "perftest::OnnxRuntimeTestSession::OnnxRuntimeTestSession(Ort::Env&, std::"
              "random_device&, const onnxruntime::perftest::PerformanceTestConfig&, const "
              f"TestModelInfo&) {NOT_IN_BUILD[provider]} is not supported in this build\n",
              file=sys.stderr)
        return 255
    if options.get("m", "duration") != "times":
        print("stand-in supports -m times only")
        return 1
    feeds = {}
    for pb in sorted((model.parent / "test_data_set_0").glob("input_*.pb")):
        tensor = onnx.TensorProto()
        tensor.ParseFromString(pb.read_bytes())
        feeds[tensor.name] = numpy_helper.to_array(tensor)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = int(options.get("x", "0"))
    opts.inter_op_num_threads = int(options.get("y", "0"))
    opts.log_severity_level = 3
    created = time.perf_counter()
    try:
        session = ort.InferenceSession(str(model), opts, providers=["CPUExecutionProvider"])
    except Exception as exc:  # the real tool prints the ORT error and exits non-zero
        print(f"Error: {exc}")
        return 1
    creation_s = time.perf_counter() - created
    start = time.perf_counter()
    session.run(None, feeds)
    first_ms = int((time.perf_counter() - start) * 1000)
    costs = []
    run_start = time.perf_counter()
    for _ in range(int(options.get("r", "1000"))):
        start = time.perf_counter()
        session.run(None, feeds)
        costs.append(time.perf_counter() - start)
        if verbose:
            print(f"iteration:{len(costs)},time_cost:{costs[-1]:g}")
    run_s = time.perf_counter() - run_start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    total = sum(costs)
    old = sandbox_setting("runner_format") == "old"
    if old:
        print(f"Session creation time cost:{creation_s:g} s\nTotal time cost:{total:g} s\n"
              f"Total iterations:{len(costs)}\nAverage time cost:{total / len(costs) * 1000:g} ms\n"
              f"Total run time:{run_s:g} s\nPeak working set size: {peak} bytes")
    else:
        print(f"Setting intra_op_num_threads to {opts.intra_op_num_threads}\n"
              f"Session creation time cost: {creation_s:g} s\nFirst inference time cost: "
              f"{first_ms} ms\nTotal inference time cost: {total:g} s\nTotal inference requests: "
              f"{len(costs)}\nAverage inference time cost: {total / len(costs) * 1000:g} ms\n"
              f"Total inference run time: {run_s:g} s\nNumber of inferences per second: "
              f"{len(costs) / run_s:g} \nAvg CPU usage: 97 %\nPeak working set size: {peak} bytes")
    if "s" in options:
        ordered = sorted(costs)
        pick = lambda q: ordered[min(len(ordered) - 1, int(np.ceil(q * len(ordered))) - 1)]
        if old:
            print(f"Min Latency is {ordered[0]:g}sec\nMax Latency is {ordered[-1]:g}sec")
            for name, q in (("P50", .5), ("P90", .9), ("P95", .95), ("P99", .99), ("P999", .999)):
                print(f"{name} Latency is {pick(q):g}sec")
        else:
            print(f"Avg CPU usage:97\nPeak working set size:{peak}\nRuns:{len(costs)}")
            print(f"Min Latency: {ordered[0]:g} s\nMax Latency: {ordered[-1]:g} s")
            for name, q in (("P50", .5), ("P90", .9), ("P95", .95), ("P99", .99), ("P999", .999)):
                print(f"{name} Latency: {pick(q):g} s")
    if len(positional) > 1:
        Path(positional[1]).write_text(f"{model},{total / len(costs)}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
