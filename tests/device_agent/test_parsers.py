"""Parsers of what phones and the runner print, on real text samples."""

from __future__ import annotations

import pytest

from core.wire_text import device_class_problem
from device_agent import perf_command, perf_output
from device_agent.properties import (
    count_processors,
    parse_cpu_freqs,
    parse_cpu_list,
    parse_getprop,
    phone_class,
)
from device_agent.runner_probe import ABSEIL, GETOPT, parse_help, release_line
from device_agent.stats import summarize
from device_agent.thermal import CoolingPolicy, parse_zones, watched

from . import standin_texts

# onnxruntime_perf_test 1.1x on an ARM board (-m times -r 100), current format.
CURRENT = """using SpaceMITExecutionProvider
Session creation time cost: 2.74716 s
First inference time cost: 85 ms
Total inference time cost: 6.22935 s
Total inference requests: 100
Average inference time cost: 62.2935 ms
Total inference run time: 6.23146 s
Number of inferences per second: 16.0476
Total CPU usage: 382 %
Peak working set size: 114634752 bytes
Min Latency: 0.0529422 s
Max Latency: 0.0912857 s
P50 Latency: 0.0603562 s
P90 Latency: 0.0741593 s
P95 Latency: 0.0837052 s
P99 Latency: 0.0912857 s
P999 Latency: 0.0912857 s
"""
# Newest builds (-s on an Arm C1-Pro core): "cost total", and the -s summary block.
NEWEST = """Setting intra_op_num_threads to 1
Disabling intra-op thread spinning between runs
Session creation time cost: 0.217932 s
First inference time cost: 196 ms
Total inference time cost: 0.49481 s
Total inference requests: 5
Average inference time cost total: 98.961997 ms
Total inference run time: 0.494854 s
Number of inferences per second: 10.104
Avg CPU usage: 11 %
Peak working set size: 271122432 bytes
Avg CPU usage:11
Peak working set size:271122432
Runs:5
Min Latency: 0.0958204 s
Max Latency: 0.101519 s
P50 Latency: 0.0995086 s
P90 Latency: 0.101519 s
P95 Latency: 0.101519 s
P99 Latency: 0.101519 s
P999 Latency: 0.101519 s
"""
# Older builds: written from the older format strings (`Average time cost:X ms`, `Min Latency
# is Xsec`), not captured from a phone; the two samples above are real outputs.
OLDER = """Session creation time cost:0.0372612 s
Total time cost:1.36745 s
Total iterations:100
Average time cost:13.6745 ms
Total run time:1.37281 s
Min Latency is 0.0129812sec
Max Latency is 0.0196405sec
P50 Latency is 0.0134907sec
P90 Latency is 0.0141468sec
P95 Latency is 0.0147283sec
P99 Latency is 0.0196405sec
P999 Latency is 0.0196405sec
"""


@pytest.mark.parametrize(
    "text, average, requests, peak, p50",
    [
        (CURRENT, 62.2935, 100, 114634752, 60.3562),
        (NEWEST, 98.961997, 5, 271122432, 99.5086),
        (OLDER, 13.6745, 100, None, 13.4907),
    ],
)
def test_runner_output_formats(text, average, requests, peak, p50):
    result = perf_output.parse_output(text)
    assert result.average_ms == pytest.approx(average)
    assert result.requests == requests and result.peak_memory_bytes == peak
    assert result.latency_ms["P50"] == pytest.approx(p50)
    assert set(result.latency_ms) == {"Min", "Max", "P50", "P90", "P95", "P99", "P999"}
    assert result.latency_ms["Min"] <= result.latency_ms["P90"] <= result.latency_ms["Max"]


def test_runner_failure_output_is_an_error_that_quotes_it():
    with pytest.raises(perf_output.PerfOutputError, match="Load model from .* failed"):
        perf_output.parse_output("Load model from model.onnx failed:Protobuf parsing failed.\n")


def test_runs_are_split_by_marker_and_pinned_to_big_cores():
    text = f"{CURRENT}{perf_command.RUN_MARKER} rc=0\nboom\n{perf_command.RUN_MARKER} rc=1\n"
    assert [rc for rc, _ in perf_command.split_runs(text)] == [0, 1]
    assert perf_command.big_cores([1800000] * 4 + [2400000] * 3 + [3300000]) == [4, 5, 6, 7]
    assert perf_command.big_cores([2000000] * 4) == [0, 1, 2, 3]
    assert perf_command.cpu_mask([4, 5, 6, 7]) == "f0" and perf_command.cpu_mask([7]) == "80"
    command = perf_command.loop_command(
        "/data/local/tmp/onnxruntime_perf_test", "/w/x", "model.onnx", 3, 12, 2, [6, 7]
    )
    assert (
        "taskset c0 /data/local/tmp/onnxruntime_perf_test -e cpu -m times -r 12 -x 2 "
        "-y 1 -s -v model.onnx 2>"
    ) in command  # no result file: DumpToFile prints
    assert "$(seq 3)" in command and "tail -c 4000 runner-stderr.txt" in command
    assert f'echo; echo "{perf_command.RUN_MARKER} rc=$rc"' in command


def test_an_offline_cpu_does_not_make_the_little_cores_look_big():
    """An offline CPU reads 0 kHz (and is absent from /sys/devices/system/cpu/online)."""
    freqs = [0] + [1800000] * 3 + [2400000] * 3 + [3300000]
    assert perf_command.big_cores(freqs) == [4, 5, 6, 7]
    assert parse_cpu_list("0-3,5,7\n") == {0, 1, 2, 3, 5, 7} and parse_cpu_list("") is None
    assert perf_command.big_cores([1800000] * 4 + [2400000] * 4, {0, 1, 2, 3, 4, 6}) == [4, 6]
    assert perf_command.big_cores([1800000] * 4 + [2400000] * 4, {0, 1, 2, 3}) == [0, 1, 2, 3]


def test_the_marker_is_found_after_a_line_without_its_newline():
    """1.23+'s argument error and a runner killed mid-line end without a newline; the
    marker glued to them still ends that process's output."""
    text = (
        f"iteration:1,time_cost:0.01\niteration:2,time_c{perf_command.ALIVE_MARKER}\n"
        f"{standin_texts.SEE_HELP}{perf_command.RUN_MARKER} rc=255\n"
        f"{perf_command.RUN_MARKER} rc=0\n"
    )
    [(first_rc, first), (second_rc, second)] = perf_command.split_runs(text)
    assert (first_rc, second_rc, second) == (255, 0, "")
    assert first.endswith(standin_texts.SEE_HELP) and perf_command.ALIVE_MARKER not in first


@pytest.mark.parametrize("line", standin_texts.LINES)
def test_per_run_times_of_each_release_line_are_read_and_the_warmup_dropped(line):
    """`-v` prints every timed run (performance_runner.h: `iteration:N,time_cost:S` up to
    1.23, `iteration:N,time_cost_submission:S,time_cost_total:T` since 1.24); keep-alive
    lines are not part of any run's output; the summary average is never a sample."""
    costs = [0.01 * i for i in range(1, 6)]
    runs = "".join(
        standin_texts.per_run_line(line, i, c / 2, c) + "\n" for i, c in enumerate(costs, 1)
    )
    summary = standin_texts.summary(line, 0.2, 196, costs, 0.5, 271122432)
    text = (
        f"{perf_command.ALIVE_MARKER}\n{runs}{summary}"
        f"{standin_texts.dump_block(costs, 271122432)}{standin_texts.statistics(costs)}"
        f"{perf_command.ALIVE_MARKER}\n{perf_command.RUN_MARKER} rc=0\n"
    )
    [(rc, output)] = perf_command.split_runs(text)
    assert rc == 0 and perf_command.ALIVE_MARKER not in output
    result = perf_output.parse_output(output)
    assert result.runs_ms == pytest.approx([10, 20, 30, 40, 50])  # totals, not submissions
    assert result.per_run_format == ("submission_total" if line == "main" else "time_cost")
    assert result.dump_runs == 5 and result.peak_memory_bytes == 271122432
    assert result.average_ms == pytest.approx(30) and result.latency_ms["P50"] == 30
    assert perf_output.timed_samples(result, 2, 3) == pytest.approx([30, 40, 50])
    with pytest.raises(perf_output.PerfOutputError, match="expected 4 per-run times, got 5"):
        perf_output.timed_samples(result, 2, 2)


def test_no_per_run_lines_or_an_unknown_format_is_an_error_not_an_average():
    with pytest.raises(perf_output.PerfOutputError, match="no per-run lines under -v"):
        perf_output.timed_samples(perf_output.parse_output(CURRENT), 2, 3)
    future = "iteration:1,time_cost_gpu:0.01\n" + NEWEST
    with pytest.raises(perf_output.UnknownPerRunFormat, match="time_cost_gpu"):
        perf_output.parse_output(future)


def test_help_texts_of_each_parser_name_the_line_and_its_providers():
    getopt = parse_help(standin_texts.getopt_usage(standin_texts.GETOPT_PROVIDERS))
    assert getopt.parser == GETOPT and "xnnpack" in getopt.providers
    abseil = parse_help(standin_texts.abseil_help())
    assert abseil.parser == ABSEIL
    assert {"cpu", "xnnpack", "nnapi", "qnn", "webgpu"} <= set(abseil.providers)
    assert "xnnpack" not in parse_help(standin_texts.abseil_help(("xnnpack",))).providers
    assert parse_help(standin_texts.SEE_HELP) is None  # what `-h` gets on 1.23+
    assert parse_help("taskset: bad mask --help") is None
    assert release_line(GETOPT, "time_cost") == "1.19-1.22"
    assert release_line(ABSEIL, "time_cost") == "1.23"
    assert release_line(ABSEIL, "submission_total") == "1.24+"


def test_cpu_and_soc_zones_are_watched_by_default_others_only_by_name():
    zones = parse_zones("cpu-1-0-0 38500\nbattery 31000\npm8550-pmic 51000\nsoc_max 40000\n")
    assert [r.zone for r in watched(zones, [])] == ["cpu-1-0-0", "soc_max"]
    assert [r.zone for r in watched(zones, ["pmic"])] == ["pm8550-pmic"]
    assert CoolingPolicy().zones_on(zones) == ["cpu-1-0-0", "soc_max"]
    assert CoolingPolicy(zones=("battery",)).zones_on(zones) == ["battery"]
    others = parse_zones("battery 31000\nskin-therm 33000\n")  # no CPU zone: all of them
    assert [r.zone for r in watched(others, [])] == ["battery", "skin-therm"]


def test_getprop_cpufreq_cpuinfo_thermal():
    props = parse_getprop(
        "[ro.product.model]: [Pixel 8]\n[ro.build.version.sdk]: [34]\n[persist.empty]: []\n"
    )
    assert props == {
        "ro.product.model": "Pixel 8",
        "ro.build.version.sdk": "34",
        "persist.empty": "",
    }
    assert parse_cpu_freqs("cpu0 1700000\ncpu1 1700000\ncpu2 \ncpu3 2910000\n") == [
        1700000,
        1700000,
        0,
        2910000,
    ]
    assert count_processors("processor\t: 0\nBogoMIPS : 1\n\nprocessor\t: 1\n") == 2
    zones = parse_zones(
        "cpu-0-0-0 41200\nbattery 29\nsdm-therm -273000\nbogus\nskin-therm 1000000\n"
    )
    assert [(z.zone, z.celsius) for z in zones] == [("cpu-0-0-0", 41.2), ("battery", 29.0)]


def test_summary_statistics():
    stat = summarize([5.0, 1.0, 3.0, 2.0, 4.0])
    assert stat == {
        "median_ms": 3.0,
        "p10_ms": pytest.approx(1.4),
        "p90_ms": pytest.approx(4.6),
        "n": 5,
    }


@pytest.mark.parametrize(
    "model, device_class",
    [
        ("SM-S928B", "SM-S928B"),
        ("Pixel 8 Pro ", "Pixel 8 Pro"),
        ("Mi [Lite]\x01", "Mi (Lite)"),
        ("", "unknown"),
        ("\x1b", "unknown"),
        ("x" * 200, "x" * 128),
    ],
)
def test_a_phone_model_becomes_a_class_every_job_can_name(model, device_class):
    """Whatever getprop says, enrollment never fails on the class (core.wire_text's rule)."""
    assert phone_class(model) == device_class
    assert device_class_problem(phone_class(model)) is None
