"""A whole profiling task measured on the loopback phone with the stand-in runner: the warm
steady-state method (issue #13 point 2), heat (point 3) and device faults (point 5)."""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from device_agent import perf_test, thermal
from device_agent.adb_backend import AdbBackend
from device_agent.failures import DeviceError, DeviceTooHot, failure_report
from core.protocol import GraphManifest, MeasurementSpec, TaskAssignment

SPEC = MeasurementSpec(prefill_lengths=[8, 32], decode_contexts=[16, 40], warmup=1, repeats=3,
                       processes=2, threads=1, cooldown_celsius=60)
HASH = "f" * 16


def make_task(graph_dir, spec=SPEC) -> TaskAssignment:
    manifest = GraphManifest.model_validate_json((graph_dir / "manifest.json").read_text())
    return TaskAssignment(task_id=1, job_id=1, candidate_id=1, genome_hash=manifest.genome_hash,
                          attempt=1, lease_expires_at=datetime.now(UTC), spec=spec,
                          manifest=manifest, artifacts=[])


def runner_calls(standin) -> list[str]:
    return [c for c in standin.commands if "onnxruntime_perf_test -e cpu" in c]


@pytest.mark.parametrize("runner_format", ["current", "old"])
def test_task_measured_warm_in_several_processes(phone, standin, graph_dir, runner_format):
    (standin.sandbox / "runner_format").write_text(runner_format)
    report = AdbBackend(phone).measure(graph_dir, make_task(graph_dir))
    assert [s.length for s in report.prefill] == [8, 32]
    assert [s.length for s in report.decode] == [16, 40]
    for stat in report.prefill + report.decode:
        # 2 processes x 3 timed runs, each a run of its own (not one average per process)
        assert stat.n == 6 and len(set(stat.samples_ms)) > 2
        assert all(x > 0 for x in stat.samples_ms)
        assert stat.p10_ms <= stat.median_ms <= stat.p90_ms
        assert stat.peak_memory_bytes > 10 << 20           # a Python + onnxruntime process
    assert report.peak_memory_bytes == max(s.peak_memory_bytes for s in report.decode + report.prefill)
    assert report.method == ("warm: 1 warm-up + 3 timed runs in each of 2 processes, "
                             "cpu execution provider")
    assert report.precision == "float32" and report.execution_provider == "cpu"
    assert {r.zone for r in report.thermal_before} == {"cpu-1-0-0", "battery"}
    assert report.thermal_after[0].celsius == 38.5
    assert report.thermal_limit_celsius == 60 and not report.above_thermal_limit
    runs = runner_calls(standin)
    assert len(runs) == 4 and all("taskset f0 " in c for c in runs)   # cpus 4-7: big + prime
    assert all("-e cpu -m times -r 4 -x 1 -y 1 -s -v model.onnx" in c and "$(seq 2)" in c
               for c in runs)
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


def test_a_runner_without_per_run_lines_gives_one_sample_per_process(phone, standin, graph_dir):
    (standin.sandbox / "runner_per_run").write_text("no")
    spec = SPEC.model_copy(update={"prefill_lengths": [8], "decode_contexts": [16],
                                   "processes": 3})
    report = AdbBackend(phone).measure(graph_dir, make_task(graph_dir, spec))
    assert [s.n for s in report.prefill + report.decode] == [3, 3]
    assert "one sample per process" in report.method


def test_second_task_of_the_same_graphs_pushes_only_what_changed(phone, standin, graph_dir):
    backend = AdbBackend(phone)
    spec = SPEC.model_copy(update={"processes": 1, "repeats": 1})
    backend.measure(graph_dir, make_task(graph_dir, spec))
    pushed = len(standin.pushed)
    backend.measure(graph_dir, make_task(graph_dir, spec))
    assert len(standin.pushed) == pushed                 # graphs and inputs already there


def test_a_missing_runner_is_a_device_fault_that_says_how_to_fix_it(phone, standin, graph_dir):
    standin.remove_runner()
    with pytest.raises(DeviceError, match="not on the phone.*--runner PATH") as error:
        AdbBackend(phone).measure(graph_dir, make_task(graph_dir))
    assert failure_report(error.value).kind == "device" and runner_calls(standin) == []


def test_a_graph_the_runner_rejects_is_the_candidates_fault(phone, standin, graph_dir):
    runner = standin.sandbox / "data/local/tmp/onnxruntime_perf_test"
    text = runner.read_text()
    runner.write_text("#!/bin/sh\ncase \"$*\" in *-h*) exec " + text.splitlines()[0][2:]
                      + " " + str(runner) + ".real \"$@\";; esac\n"
                      "echo '\033[31mError: model load failed\033[0m'\nexit 1\n")
    (runner.parent / "onnxruntime_perf_test.real").write_text(text)
    with pytest.raises(perf_test.PerfOutputError, match="exited 1.*model load failed") as error:
        AdbBackend(phone).measure(graph_dir, make_task(graph_dir))
    failure = failure_report(error.value)
    assert failure.kind == "candidate" and "\033" not in failure.reason
    assert "Error: model load failed" in failure.reason


def test_a_full_phone_storage_is_a_device_fault(phone, standin, graph_dir):
    standin.disk_full = True
    with pytest.raises(DeviceError, match="No space left on device.*free some storage"):
        AdbBackend(phone).measure(graph_dir, make_task(graph_dir))


def hot_spec(**update) -> MeasurementSpec:
    base = {"prefill_lengths": [8], "decode_contexts": [16], "warmup": 0, "repeats": 1,
            "cooldown_celsius": 45, "cooldown_timeout_s": 0.6}
    return MeasurementSpec(**{**base, **update})


def test_still_hot_after_the_timeout_with_reject_hot_fails_as_a_device_fault(
        phone, standin, graph_dir, caplog):
    standin.set_zone(0, 95.0)
    backend = AdbBackend(phone, cooldown_poll_s=0.1)
    with caplog.at_level(logging.INFO, "tailor.agent"), pytest.raises(DeviceTooHot) as error:
        backend.measure(graph_dir, make_task(graph_dir, hot_spec(reject_hot=True)))
    assert "too hot to measure: phone at 95.0 °C (zone cpu-1-0-0) above 45.0 °C" in str(error.value)
    assert failure_report(error.value).kind == "device" and runner_calls(standin) == []
    assert "phone at 95.0 °C (zone cpu-1-0-0) above 45.0 °C: cooling down, waited 0 s of 1 s" \
        in caplog.text


def test_still_hot_without_reject_hot_measures_and_says_so(phone, standin, graph_dir):
    standin.set_zone(0, 95.0)
    report = AdbBackend(phone, cooldown_poll_s=0.1).measure(graph_dir,
                                                            make_task(graph_dir, hot_spec()))
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
    assert max(r.celsius for r in report.thermal_before) == 39.0
    assert "cooled down to 39.0 °C (zone cpu-1-0-0)" in caplog.text


def test_zones_and_the_agents_stricter_limit_decide_what_is_hot(phone, standin, graph_dir):
    standin.set_zone(1, 80.0)   # the battery is hot, the CPU is not
    spec = hot_spec(thermal_zones=["cpu"], reject_hot=True)
    assert not AdbBackend(phone).measure(graph_dir, make_task(graph_dir, spec)).above_thermal_limit
    strict = AdbBackend(phone, cooldown_poll_s=0.1,
                        cooling=thermal.CoolingPolicy(limit_celsius=35.0))
    with pytest.raises(DeviceTooHot, match=r"38\.5 °C \(zone cpu-1-0-0\) above 35\.0 °C"):
        strict.measure(graph_dir, make_task(graph_dir, spec))
    battery = AdbBackend(phone, cooldown_poll_s=0.1,
                         cooling=thermal.CoolingPolicy(zones=("battery",)))
    with pytest.raises(DeviceTooHot, match=r"80\.0 °C \(zone battery\)"):
        battery.measure(graph_dir, make_task(graph_dir, spec))
    lax = thermal.CoolingPolicy(limit_celsius=90.0)   # the job's 45 °C stays: stricter
    assert lax.resolve(spec) == (45.0, ["cpu"], 0.6)


def test_a_slow_runner_is_not_taken_for_a_silent_phone(standin, graph_dir, tmp_path):
    """A graph that takes longer than the ADB silence timeout still completes: the phone
    prints a keep-alive line while its runner works."""
    from device_agent.adb_device import Phone
    from device_agent.config import adb_key_path
    from device_agent.defaults import ALIVE_EVERY_S

    (standin.sandbox / "runner_delay_s").write_text(str(2.5 * (ALIVE_EVERY_S + 1)))
    phone = Phone(adb_key_path(tmp_path / "agent"), tcp=f"127.0.0.1:{standin.port}",
                  auth_timeout_s=10, transport_timeout_s=ALIVE_EVERY_S + 1)
    phone.connect()
    spec = hot_spec(processes=1, cooldown_celsius=80)
    report = AdbBackend(phone).measure(graph_dir, make_task(graph_dir, spec))
    assert report.prefill[0].n == 1 and report.decode[0].n == 1
    phone.close()
