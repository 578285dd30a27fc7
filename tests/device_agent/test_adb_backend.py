"""A whole profiling task measured on the loopback phone with the stand-in runner: the warm
steady-state method against every release line of onnxruntime_perf_test (per-run samples,
warm-up dropped, the runner's identity, a runner killed mid-line), heat and device
faults."""

from __future__ import annotations

import hashlib
import logging
import threading
from datetime import UTC, datetime

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from core.protocol import GraphManifest, MeasurementSpec, TaskAssignment
from device_agent import perf_output, thermal
from device_agent.adb_backend import AdbBackend
from device_agent.failures import DeviceError, DeviceTooHot, failure_report

SPEC = MeasurementSpec(
    prefill_lengths=[8, 32],
    decode_contexts=[16, 40],
    warmup=1,
    repeats=3,
    processes=2,
    threads=1,
    cooldown_celsius=60,
)
HASH = "f" * 16


def make_task(graph_dir, spec=SPEC) -> TaskAssignment:
    manifest = GraphManifest.model_validate_json((graph_dir / "manifest.json").read_text())
    return TaskAssignment(
        task_id=1,
        job_id=1,
        candidate_id=1,
        genome_hash=manifest.genome_hash,
        attempt=1,
        lease_expires_at=datetime.now(UTC),
        spec=spec,
        manifest=manifest,
        artifacts=[],
    )


def runner_calls(standin) -> list[str]:
    return [c for c in standin.commands if "onnxruntime_perf_test -e cpu" in c]


def printed_runs(standin) -> list[float]:
    """Every per-run time (ms) the stand-in runner printed, in order (its side log)."""
    log = standin.sandbox / "runner_printed.log"
    lines = log.read_text().splitlines() if log.exists() else []
    return [float(line.rsplit(":", 1)[1]) * 1000 for line in lines]


def test_task_measured_warm_in_several_processes(phone, standin, graph_dir, runner_line):
    report = AdbBackend(phone).measure(graph_dir, make_task(graph_dir))
    assert [s.length for s in report.prefill] == [8, 32]
    assert [s.length for s in report.decode] == [16, 40]
    printed = printed_runs(standin)  # 4 cases x 2 processes x (1 warm-up + 3 timed)
    assert len(printed) == 4 * 2 * 4
    for i, stat in enumerate(report.prefill + report.decode):
        # 2 processes x 3 timed runs, each a run of its own (not one average per process),
        # exactly the runs the runner printed after its first (warm-up) one
        case = printed[i * 8 : (i + 1) * 8]
        assert stat.samples_ms == pytest.approx(case[1:4] + case[5:8])
        assert stat.n == 6 and all(x > 0 for x in stat.samples_ms)
        assert stat.p10_ms <= stat.median_ms <= stat.p90_ms
        assert stat.peak_memory_bytes > 10 << 20  # a Python + onnxruntime process
    assert report.peak_memory_bytes == max(
        s.peak_memory_bytes for s in report.decode + report.prefill
    )
    assert report.method == (
        "warm: 1 warm-up + 3 timed runs in each of 2 processes, cpu execution provider"
    )
    assert report.precision == "float32" and report.execution_provider == "cpu"
    assert {r.zone for r in report.thermal_before} == {"cpu-1-0-0", "battery", "pm8550-pmic"}
    assert report.thermal_after[0].celsius == 38.5
    assert report.thermal_limit_celsius == 60 and not report.above_thermal_limit
    runner = standin.sandbox / "data/local/tmp/onnxruntime_perf_test"
    identity = report.runner_identity
    assert identity.sha256 == hashlib.sha256(runner.read_bytes()).hexdigest()
    assert (identity.parser, identity.per_run_format, identity.release_line) == {
        "1.20": ("getopt", "time_cost", "1.19-1.22"),
        "1.23": ("abseil", "time_cost", "1.23"),
        "main": ("abseil", "submission_total", "1.24+"),
    }[runner_line]
    assert report.runner.startswith(f"onnxruntime_perf_test {identity.release_line} (")
    runs = runner_calls(standin)
    assert len(runs) == 4 and all("taskset f0 " in c for c in runs)  # cpus 4-7: big + prime
    assert all(
        "-e cpu -m times -r 4 -x 1 -y 1 -s -v model.onnx 2>" in c and "$(seq 2)" in c for c in runs
    )
    # The decode inputs on the phone: context 40 means 40 cached tokens, position 40.
    case = standin.sandbox / "data/local/tmp/tailor" / HASH / "decode_L40/test_data_set_0"
    arrays = {}
    for pb in sorted(case.glob("input_*.pb")):
        tensor = onnx.TensorProto()
        tensor.ParseFromString(pb.read_bytes())
        arrays[tensor.name] = numpy_helper.to_array(tensor)
    assert arrays["past_key"].shape == (1, 40, 64) and arrays["position"].tolist() == [40]
    assert arrays["input_ids"].shape == (1, 1) and 0 <= arrays["input_ids"].max() < 97
    prefill = standin.sandbox / "data/local/tmp/tailor" / HASH / "prefill_L32"
    tensor = onnx.TensorProto()
    tensor.ParseFromString((prefill / "test_data_set_0/input_0.pb").read_bytes())
    ids = numpy_helper.to_array(tensor)
    assert ids.shape == (1, 32) and ids.dtype == np.int64 and ids.max() < 97


def test_verbose_logging_does_not_hide_the_numbers_or_come_back(
    phone, standin, graph_dir, runner_line
):
    """`-v` turns on onnxruntime's verbose log on stderr (thousands of lines on a real model):
    the samples are still found, and none of the log crosses ADB on a good run."""
    standin.setting("runner_verbose_lines", "20000")
    spec = SPEC.model_copy(update={"prefill_lengths": [8], "decode_contexts": [16], "processes": 1})
    sent: list[int] = []
    shell = phone.shell
    phone.shell = lambda *args, **kw: (out := shell(*args, **kw), sent.append(len(out)))[0]
    report = AdbBackend(phone).measure(graph_dir, make_task(graph_dir, spec))
    assert [s.n for s in report.prefill + report.decode] == [3, 3]
    stderr = standin.sandbox / "data/local/tmp/tailor" / HASH / "decode_L16/runner-stderr.txt"
    assert stderr.stat().st_size > 1 << 20  # a megabyte of log on the phone ...
    assert max(sent) < 64 << 10  # ... none of it read back


def test_a_runner_killed_mid_line_is_reported_as_killed(phone, standin, graph_dir, runner_line):
    """Killed by the low-memory killer while printing a per-run line: the output ends
    without a newline; the end-of-run marker still starts its own line, so the error is
    the kill, not "expected 2 runner processes, got 1"."""
    standin.setting("runner_kill_at", "3")
    with pytest.raises(perf_output.PerfOutputError) as error:
        AdbBackend(phone).measure(graph_dir, make_task(graph_dir))
    message = str(error.value)
    assert (
        "runner was killed by signal 9 (SIGKILL: on a phone usually the low-memory "
        "killer; exit 137)" in message
    )
    assert "runner processes, got" not in message
    assert "iteration:3,time_co; its stderr ended: " in message  # stdout's last, then stderr
    assert failure_report(error.value).kind == "candidate"


def test_the_big_cores_are_found_among_online_cpus(phone, standin, graph_dir):
    standin.take_cpu_offline(0)  # reads 0 kHz, absent from `online`
    standin.take_cpu_offline(5)
    spec = hot_spec(processes=1, cooldown_celsius=80)
    AdbBackend(phone).measure(graph_dir, make_task(graph_dir, spec))
    assert all("taskset d0 " in c for c in runner_calls(standin))  # cpus 4, 6, 7


def test_pmic_or_battery_heat_does_not_hold_the_measurement_unless_named(phone, standin, graph_dir):
    """On USB power the PMIC sits at 47 °C (the stand-in's third zone): only CPU/SoC zones
    are watched by default, so a 45 °C limit does not wait for it."""
    backend = AdbBackend(phone, cooldown_poll_s=0.1)
    assert backend.watched_zones() == ["cpu-1-0-0"]
    report = backend.measure(graph_dir, make_task(graph_dir, hot_spec(reject_hot=True)))
    assert not report.above_thermal_limit and report.cooldown_wait_s < 0.5
    named = AdbBackend(phone, cooldown_poll_s=0.1, cooling=thermal.CoolingPolicy(zones=("pmic",)))
    assert named.watched_zones() == ["pm8550-pmic"]
    with pytest.raises(DeviceTooHot, match=r"47\.0 °C \(zone pm8550-pmic\)"):
        named.measure(graph_dir, make_task(graph_dir, hot_spec(reject_hot=True)))


def test_second_task_of_the_same_graphs_pushes_only_what_changed(phone, standin, graph_dir):
    backend = AdbBackend(phone)
    spec = SPEC.model_copy(update={"processes": 1, "repeats": 1})
    backend.measure(graph_dir, make_task(graph_dir, spec))
    pushed = len(standin.pushed)
    backend.measure(graph_dir, make_task(graph_dir, spec))
    assert len(standin.pushed) == pushed  # graphs and inputs already there


def test_a_missing_runner_is_a_device_fault_that_says_how_to_fix_it(phone, standin, graph_dir):
    standin.remove_runner()
    with pytest.raises(DeviceError, match="not on the phone.*--runner PATH") as error:
        AdbBackend(phone).measure(graph_dir, make_task(graph_dir))
    assert failure_report(error.value).kind == "device" and runner_calls(standin) == []


def test_a_graph_the_runner_rejects_is_the_candidates_fault(phone, standin, graph_dir):
    runner = standin.sandbox / "data/local/tmp/onnxruntime_perf_test"
    text = runner.read_text()
    runner.write_text(
        '#!/bin/sh\ncase "$*" in *--help*) exec '
        + text.splitlines()[0][2:]
        + " "
        + str(runner)
        + '.real "$@";; esac\n'
        "echo '\033[31mError: model load failed\033[0m'\nexit 1\n"
    )
    (runner.parent / "onnxruntime_perf_test.real").write_text(text)
    with pytest.raises(perf_output.PerfOutputError, match="exited 1.*model load failed") as error:
        AdbBackend(phone).measure(graph_dir, make_task(graph_dir))
    failure = failure_report(error.value)
    assert failure.kind == "candidate" and "\033" not in failure.reason
    assert "Error: model load failed" in failure.reason


def test_a_full_phone_storage_is_a_device_fault(phone, standin, graph_dir):
    standin.disk_full = True
    with pytest.raises(DeviceError, match="No space left on device.*free some storage"):
        AdbBackend(phone).measure(graph_dir, make_task(graph_dir))


def hot_spec(**update) -> MeasurementSpec:
    base = {
        "prefill_lengths": [8],
        "decode_contexts": [16],
        "warmup": 0,
        "repeats": 1,
        "cooldown_celsius": 45,
        "cooldown_timeout_s": 0.6,
    }
    return MeasurementSpec(**{**base, **update})


def test_still_hot_after_the_timeout_with_reject_hot_fails_as_a_device_fault(
    phone, standin, graph_dir, caplog
):
    standin.set_zone(0, 95.0)
    backend = AdbBackend(phone, cooldown_poll_s=0.1)
    with caplog.at_level(logging.INFO, "tailor.agent"), pytest.raises(DeviceTooHot) as error:
        backend.measure(graph_dir, make_task(graph_dir, hot_spec(reject_hot=True)))
    assert "too hot to measure: phone at 95.0 °C (zone cpu-1-0-0) above 45.0 °C" in str(error.value)
    assert failure_report(error.value).kind == "device" and runner_calls(standin) == []
    assert (
        "phone at 95.0 °C (zone cpu-1-0-0) above 45.0 °C: cooling down, waited 0 s of 1 s"
        in caplog.text
    )


def test_still_hot_without_reject_hot_measures_and_says_so(phone, standin, graph_dir):
    standin.set_zone(0, 95.0)
    report = AdbBackend(phone, cooldown_poll_s=0.1).measure(
        graph_dir, make_task(graph_dir, hot_spec())
    )
    assert report.above_thermal_limit and report.thermal_limit_celsius == 45
    assert report.cooldown_wait_s >= 0.5 and report.prefill[0].n == 1


def test_the_wait_ends_when_the_phone_cools_and_is_reported(phone, standin, graph_dir, caplog):
    standin.set_zone(0, 71.0)
    backend = AdbBackend(phone, cooldown_poll_s=0.1)
    timer = threading.Timer(0.5, standin.set_zone, (0, 39.0))  # cools 0.5 s into the wait

    def read_zones():
        if not timer.is_alive() and not timer.finished.is_set():
            timer.start()
        return AdbBackend.thermal(backend)

    backend.thermal = read_zones
    with caplog.at_level(logging.INFO, "tailor.agent"):
        report = backend.measure(graph_dir, make_task(graph_dir, hot_spec(cooldown_timeout_s=20)))
    assert not report.above_thermal_limit and 0.4 < report.cooldown_wait_s < 5
    assert {r.zone: r.celsius for r in report.thermal_before}["cpu-1-0-0"] == 39.0
    assert "cooled down to 39.0 °C (zone cpu-1-0-0)" in caplog.text


def test_zones_and_the_agents_stricter_limit_decide_what_is_hot(phone, standin, graph_dir):
    standin.set_zone(1, 80.0)  # the battery is hot, the CPU is not
    spec = hot_spec(thermal_zones=["cpu"], reject_hot=True)
    assert not AdbBackend(phone).measure(graph_dir, make_task(graph_dir, spec)).above_thermal_limit
    strict = AdbBackend(
        phone, cooldown_poll_s=0.1, cooling=thermal.CoolingPolicy(limit_celsius=35.0)
    )
    with pytest.raises(DeviceTooHot, match=r"38\.5 °C \(zone cpu-1-0-0\) above 35\.0 °C"):
        strict.measure(graph_dir, make_task(graph_dir, spec))
    battery = AdbBackend(
        phone, cooldown_poll_s=0.1, cooling=thermal.CoolingPolicy(zones=("battery",))
    )
    with pytest.raises(DeviceTooHot, match=r"80\.0 °C \(zone battery\)"):
        battery.measure(graph_dir, make_task(graph_dir, spec))
    lax = thermal.CoolingPolicy(limit_celsius=90.0)  # the job's 45 °C stays: stricter
    assert lax.resolve(spec) == (45.0, ["cpu"], 0.6)


def test_a_slow_runner_is_not_taken_for_a_silent_phone(standin, graph_dir, tmp_path):
    """A graph that takes longer than the ADB silence timeout still completes: the phone
    prints a keep-alive line while its runner works."""
    from device_agent.adb_device import Phone
    from device_agent.config import adb_key_path
    from device_agent.defaults import ALIVE_EVERY_S

    (standin.sandbox / "runner_delay_s").write_text(str(2.5 * (ALIVE_EVERY_S + 1)))
    phone = Phone(
        adb_key_path(tmp_path / "agent"),
        tcp=f"127.0.0.1:{standin.port}",
        auth_timeout_s=10,
        transport_timeout_s=ALIVE_EVERY_S + 1,
    )
    phone.connect()
    spec = hot_spec(processes=1, cooldown_celsius=80)
    report = AdbBackend(phone).measure(graph_dir, make_task(graph_dir, spec))
    assert report.prefill[0].n == 1 and report.decode[0].n == 1
    phone.close()
