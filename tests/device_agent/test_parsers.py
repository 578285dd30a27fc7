"""Parsers of what phones and the runner print, on real text samples."""

from __future__ import annotations

import pytest

from device_agent import perf_test
from device_agent.properties import count_processors, parse_cpu_freqs, parse_getprop
from device_agent.stats import summarize
from device_agent.thermal import parse_zones

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


@pytest.mark.parametrize("text, average, requests, peak, p50", [
    (CURRENT, 62.2935, 100, 114634752, 60.3562),
    (NEWEST, 98.961997, 5, 271122432, 99.5086),
    (OLDER, 13.6745, 100, None, 13.4907),
])
def test_runner_output_formats(text, average, requests, peak, p50):
    result = perf_test.parse_output(text)
    assert result.average_ms == pytest.approx(average)
    assert result.requests == requests and result.peak_memory_bytes == peak
    assert result.latency_ms["P50"] == pytest.approx(p50)
    assert set(result.latency_ms) == {"Min", "Max", "P50", "P90", "P95", "P99", "P999"}
    assert result.latency_ms["Min"] <= result.latency_ms["P90"] <= result.latency_ms["Max"]


def test_runner_failure_output_is_an_error_that_quotes_it():
    with pytest.raises(perf_test.PerfOutputError, match="Load model from .* failed"):
        perf_test.parse_output("Load model from model.onnx failed:Protobuf parsing failed.\n")


def test_runs_are_split_by_marker_and_pinned_to_big_cores():
    text = f"{CURRENT}{perf_test.RUN_MARKER} rc=0\nboom\n{perf_test.RUN_MARKER} rc=1\n"
    assert [rc for rc, _ in perf_test.split_runs(text)] == [0, 1]
    assert perf_test.big_cores([1800000] * 4 + [2400000] * 3 + [3300000]) == [4, 5, 6, 7]
    assert perf_test.big_cores([2000000] * 4) == [0, 1, 2, 3]
    assert perf_test.cpu_mask([4, 5, 6, 7]) == "f0" and perf_test.cpu_mask([7]) == "80"
    command = perf_test.loop_command("/data/local/tmp/onnxruntime_perf_test", "/w/x",
                                     "model.onnx", 3, 12, 2, [6, 7])
    assert ("taskset c0 /data/local/tmp/onnxruntime_perf_test -e cpu -m times -r 12 -x 2 "
            "-y 1 -s -v model.onnx") in command
    assert "$(seq 3)" in command


def test_per_run_times_are_read_and_the_warmup_dropped():
    """`-v` makes the tool print every timed run (performance_runner.cc: `iteration:N,
    time_cost:SECONDS`); keep-alive lines are not part of any run's output."""
    runs = "".join(f"iteration:{i},time_cost:0.0{i}\n" for i in range(1, 6))
    text = (f"{perf_test.ALIVE_MARKER}\n{runs}{NEWEST}{perf_test.ALIVE_MARKER}\n"
            f"{perf_test.RUN_MARKER} rc=0\n")
    [(rc, output)] = perf_test.split_runs(text)
    assert rc == 0 and perf_test.ALIVE_MARKER not in output
    result = perf_test.parse_output(output)
    assert result.runs_ms == pytest.approx([10, 20, 30, 40, 50])
    assert perf_test.timed_samples(result, 2, 3) == pytest.approx([30, 40, 50])
    with pytest.raises(perf_test.PerfOutputError, match="expected 4 per-run times, got 5"):
        perf_test.timed_samples(result, 2, 2)
    # A build without per-run lines: its summary average is the process's one sample.
    assert perf_test.timed_samples(perf_test.parse_output(CURRENT), 2, 3) == [62.2935]


def test_getprop_cpufreq_cpuinfo_thermal():
    props = parse_getprop("[ro.product.model]: [Pixel 8]\n[ro.build.version.sdk]: [34]\n"
                          "[persist.empty]: []\n")
    assert props == {"ro.product.model": "Pixel 8", "ro.build.version.sdk": "34",
                     "persist.empty": ""}
    assert parse_cpu_freqs("cpu0 1700000\ncpu1 1700000\ncpu2 \ncpu3 2910000\n") == \
        [1700000, 1700000, 0, 2910000]
    assert count_processors("processor\t: 0\nBogoMIPS : 1\n\nprocessor\t: 1\n") == 2
    zones = parse_zones("cpu-0-0-0 41200\nbattery 29\nsdm-therm -273000\nbogus\n"
                        "skin-therm 1000000\n")
    assert [(z.zone, z.celsius) for z in zones] == [("cpu-0-0-0", 41.2), ("battery", 29.0)]


def test_summary_statistics():
    stat = summarize([5.0, 1.0, 3.0, 2.0, 4.0])
    assert stat == {"median_ms": 3.0, "p10_ms": pytest.approx(1.4), "p90_ms": pytest.approx(4.6),
                    "n": 5}
