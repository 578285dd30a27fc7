"""A whole profiling task measured on the loopback phone with the stand-in runner."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from device_agent.adb_backend import AdbBackend
from core.protocol import GraphManifest, MeasurementSpec, TaskAssignment

SPEC = MeasurementSpec(prefill_lengths=[8, 32], decode_contexts=[16, 40], warmup=1, repeats=3,
                     threads=1, cooldown_celsius=60)


def make_task(graph_dir, spec=SPEC) -> TaskAssignment:
    manifest = GraphManifest.model_validate_json((graph_dir / "manifest.json").read_text())
    return TaskAssignment(task_id=1, job_id=1, candidate_id=1, genome_hash=manifest.genome_hash,
                         attempt=1, lease_expires_at=datetime.now(UTC), spec=spec,
                         manifest=manifest, artifacts=[])


@pytest.mark.parametrize("runner_format", ["current", "old"])
def test_task_measured_on_the_phone(phone, standin, graph_dir, runner_format):
    (standin.sandbox / "runner_format").write_text(runner_format)
    report = AdbBackend(phone).measure(graph_dir, make_task(graph_dir))
    assert [s.length for s in report.prefill] == [8, 32]
    assert [s.length for s in report.decode] == [16, 40]
    for stat in report.prefill + report.decode:
        assert stat.n == 3 and len(stat.samples_ms) == 3 and all(x > 0 for x in stat.samples_ms)
        assert stat.p10_ms <= stat.median_ms <= stat.p90_ms
        assert stat.peak_memory_bytes > 10 << 20           # a Python + onnxruntime process
    assert report.peak_memory_bytes == max(s.peak_memory_bytes for s in report.decode + report.prefill)
    assert {r.zone for r in report.thermal_before} == {"cpu-1-0-0", "battery"}
    assert report.thermal_after[0].celsius == 38.5
    runs = [c for c in standin.commands if "onnxruntime_perf_test" in c and "taskset" in c]
    assert len(runs) == 4 and all("taskset f0 " in c for c in runs)   # cpus 4-7: big + prime
    assert all("-e cpu -m times -r 1 -x 1" in c for c in runs)
    # The decode inputs on the phone: context 40 means 40 cached tokens, position 40.
    case = standin.sandbox / "data/local/tmp/tailor" / ("f" * 16) / "decode_L40/test_data_set_0"
    arrays = {}
    for pb in sorted(case.glob("input_*.pb")):
        tensor = onnx.TensorProto()
        tensor.ParseFromString(pb.read_bytes())
        arrays[tensor.name] = numpy_helper.to_array(tensor)
    assert arrays["past_key"].shape == (1, 40, 64) and arrays["position"].tolist() == [40]
    assert arrays["input_ids"].shape == (1, 1) and 0 <= arrays["input_ids"].max() < 97
    prefill = standin.sandbox / "data/local/tmp/tailor" / ("f" * 16) / "prefill_L32"
    tensor = onnx.TensorProto()
    tensor.ParseFromString((prefill / "test_data_set_0/input_0.pb").read_bytes())
    ids = numpy_helper.to_array(tensor)
    assert ids.shape == (1, 32) and ids.dtype == np.int64 and ids.max() < 97


def test_second_task_of_the_same_graphs_pushes_only_what_changed(phone, standin, graph_dir):
    backend = AdbBackend(phone)
    backend.measure(graph_dir, make_task(graph_dir))
    pushed = len(standin.pushed)
    backend.measure(graph_dir, make_task(graph_dir))
    assert len(standin.pushed) == pushed                 # graphs and inputs already there


def test_runner_missing_or_failing_is_an_error_with_its_output(phone, standin, graph_dir):
    with pytest.raises(FileNotFoundError, match="README"):
        AdbBackend(phone, runner="/data/local/tmp/nope").measure(graph_dir, make_task(graph_dir))
    (standin.sandbox / "data/local/tmp/tailor" / ("f" * 16)).mkdir(parents=True)
    broken = standin.sandbox / "data/local/tmp/tailor" / ("f" * 16) / "decode.onnx"
    broken.write_bytes(b"not onnx")
    # The push replaces it (checksum differs), so break the runner instead.
    runner = standin.sandbox / "data/local/tmp/onnxruntime_perf_test"
    runner.write_text("#!/bin/sh\necho 'Error: model load failed'\nexit 1\n")
    with pytest.raises(RuntimeError, match="exited 1.*model load failed"):
        AdbBackend(phone).measure(graph_dir, make_task(graph_dir))


def test_hot_phone_waits_for_cooldown(phone, standin, graph_dir):
    zone = standin.sandbox / "sys/class/thermal/thermal_zone0/temp"
    zone.write_text("71000\n")
    backend = AdbBackend(phone, max_cooldown_wait_s=20)
    reads = []

    def cooling():
        readings = backend.__class__.thermal(backend)
        reads.append(max(r.celsius for r in readings))
        zone.write_text("39000\n")       # the phone cools while we wait
        return readings

    backend.thermal = cooling
    from device_agent import thermal
    before = thermal.wait_for_cooldown(backend.thermal, 45.0, poll_s=0.01)
    assert reads == [71.0, 39.0] and max(r.celsius for r in before) == 39.0
