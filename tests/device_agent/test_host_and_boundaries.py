"""The host backend, inputs from the manifest, and the package boundary."""

from __future__ import annotations

import subprocess
import sys

from core.protocol import GraphManifest, MeasurementSpec
from device_agent.host_backend import measure_task
from device_agent.inputs import graph_inputs


def test_host_backend_measures_warm_runs_in_several_processes(graph_dir):
    spec = MeasurementSpec(
        prefill_lengths=[16], decode_contexts=[16, 64], warmup=1, repeats=4, processes=2
    )
    report = measure_task(graph_dir, spec)
    assert [s.length for s in report.decode] == [16, 64]
    assert report.method == (
        "warm: 1 warm-up + 4 timed runs in each of 2 processes, cpu execution provider"
    )
    for stat in report.prefill + report.decode:
        assert stat.n == 8 and stat.p10_ms <= stat.median_ms <= stat.p90_ms
        assert stat.peak_memory_bytes > 10 << 20
    assert report.peak_memory_bytes == max(
        s.peak_memory_bytes for s in report.prefill + report.decode
    )


def heavy_reference(graph_dir, folder):
    """graph_dir's graphs with an embedding table of 200,000 rows (51 MB): the same inputs
    and outputs, a footprint no allocator noise hides."""
    import shutil

    import numpy as np
    import onnx
    from onnx import numpy_helper

    folder.mkdir()
    shutil.copy(graph_dir / "manifest.json", folder / "manifest.json")
    table = np.random.default_rng(0).standard_normal((200_000, 64)).astype(np.float32)
    for name in ("prefill.onnx", "decode.onnx"):
        model = onnx.load(graph_dir / name)
        for index, init in enumerate(model.graph.initializer):
            if init.name == "embedding":
                model.graph.initializer[index].CopyFrom(numpy_helper.from_array(table, "embedding"))
        onnx.save(model, folder / name)
    return folder


def test_a_reference_graph_is_timed_in_the_same_processes_after_the_plain_runs(graph_dir, tmp_path):
    spec = MeasurementSpec(
        prefill_lengths=[16], decode_contexts=[16], warmup=1, repeats=4, processes=2
    )
    plain = measure_task(graph_dir, spec)
    paired = measure_task(graph_dir, spec, reference=heavy_reference(graph_dir, tmp_path / "ref"))
    assert paired.method.endswith("(then paired run by run with a reference graph)")
    for before, stat in zip(plain.prefill + plain.decode, paired.prefill + paired.decode):
        assert stat.n == 8  # the plain runs, as without a reference
        assert before.reference_ratio is None and before.reference_median_ms is None
        assert stat.reference_median_ms > 0 and stat.reference_ratio > 0
        # The peak is read before the reference is loaded: the graph's own. Loading the
        # reference first would add its 51 MB table; processes of this one graph differ
        # by allocator pages (under 1 MiB here), so 8 MiB separates the two.
        assert abs(stat.peak_memory_bytes - before.peak_memory_bytes) < 8 << 20


def test_the_reference_ratio_is_the_median_over_processes_of_paired_medians(graph_dir, monkeypatch):
    """The arithmetic, on the runner's JSON as it prints it (device_agent.host_runner.run);
    the processes themselves are run in the test above."""
    import device_agent.host_backend as backend

    processes = iter(
        [  # per process: the graph's paired runs and the reference's
            {"paired_ms": [2.0, 4.0, 3.0], "reference_ms": [1.0, 1.0, 1.0]},  # 3.0 / 1.0
            {"paired_ms": [1.0, 1.0, 1.0], "reference_ms": [2.0, 2.0, 2.0]},  # 0.5
            {"paired_ms": [4.0, 4.0, 4.0], "reference_ms": [4.0, 8.0, 2.0]},  # 1.0
        ]
        * 2
    )
    asked = []

    def runner(graph, kind, length, **kw):
        asked.append((kind, kw["pairs"]))
        return {"samples_ms": [1.0], "peak_memory_bytes": 1 << 20, **next(processes)}

    monkeypatch.setattr(backend, "measure", runner)
    spec = MeasurementSpec(prefill_lengths=[16], decode_contexts=[16], processes=3, repeats=1)
    report = measure_task(graph_dir, spec, reference=graph_dir, pairs={"decode": 7})
    for stat in report.prefill + report.decode:
        assert stat.reference_ratio == 1.0  # median of 3.0, 0.5, 1.0
        assert stat.reference_median_ms == 2.0  # median of the reference's nine runs
    assert asked == [("prefill", None)] * 3 + [("decode", 7)] * 3


def test_the_pairs_with_the_reference_are_counted_apart_from_the_plain_runs(graph_dir):
    from device_agent.host_runner import measure

    result = measure(graph_dir, "decode", 16, repeats=3, warmup=1, reference=graph_dir, pairs=5)
    assert len(result["samples_ms"]) == 3
    assert len(result["paired_ms"]) == len(result["reference_ms"]) == 5
    assert "paired_ms" not in measure(graph_dir, "decode", 16, repeats=3, warmup=1)


def test_windowed_caches_are_capped_and_fixed_states_keep_their_shape(graph_dir):
    manifest = GraphManifest.model_validate_json((graph_dir / "manifest.json").read_text())
    data = manifest.model_dump()
    data["graphs"]["decode"]["inputs"][2]["past_cap"] = 32
    windowed = GraphManifest.model_validate(data)
    feeds = graph_inputs(windowed, "decode", 100)
    assert feeds["past_key"].shape == (1, 32, 64) and feeds["past_state"].shape == (1, 1, 64)
    assert feeds["position"].tolist() == [100]
    assert graph_inputs(manifest, "prefill", 100)["input_ids"].shape == (1, 100)


def test_device_agent_imports_no_torch_ray_or_server_packages():
    code = (
        "import sys, device_agent.agent, cli.agent, device_agent.adb_backend, "
        "device_agent.adb_device, device_agent.host_backend, device_agent.host_runner, "
        "device_agent.properties, device_agent.inputs, device_agent.perf_command, "
        "device_agent.preflight, device_agent.phone_lock, device_agent.failures; "
        "cli.agent.agent; print(' '.join(sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    top = {name.split(".")[0] for name in result.stdout.split()}
    assert not top & {"torch", "ray", "workers", "orchestrator", "api"}, top


def test_the_runner_reports_the_idle_footprint_and_what_running_adds(graph_dir):
    """bench.inference compares prefill peaks above the idle footprint (weights loaded, no
    input): the runner reads the resident set before any input and the runs' own VmHWM."""
    from device_agent.host_runner import measure

    short, long = (measure(graph_dir, "prefill", n, repeats=1, warmup=0) for n in (16, 2048))
    for run in (short, long):
        assert run["idle_bytes"] > 10 << 20  # onnxruntime and the weights
        assert run["idle_bytes"] <= run["run_peak_bytes"] <= run["peak_memory_bytes"]
    # 2048 tokens' activations are MiBs where 16 tokens' are KiBs
    assert long["run_peak_bytes"] - long["idle_bytes"] > short["run_peak_bytes"] - short[
        "idle_bytes"
    ] + (1 << 20)


def test_the_runner_can_run_without_onnxruntimes_cpu_arena(graph_dir):
    """`--no-arena` (perf_test's -A; bench.inference --no-arena) reaches the session
    onnxruntime runs, as onnxruntime reports its options back; a reference graph still runs
    beside it."""
    from device_agent.host_runner import measure

    on = measure(graph_dir, "prefill", 256, repeats=1, warmup=0)
    off = measure(
        graph_dir, "prefill", 256, repeats=1, warmup=0, arena=False, reference=graph_dir, pairs=1
    )
    assert on["arena"] is True and off["arena"] is False
    assert len(off["paired_ms"]) == len(off["reference_ms"]) == 1
    assert off["idle_bytes"] <= off["run_peak_bytes"]


def test_chunked_prefill_of_an_export_without_a_chunk_graph_says_so(graph_dir):
    """These hand-written graphs have no chunk graph (exports write one only when asked):
    --chunk must name what is missing, not run the whole prompt and report it as chunked."""
    import pytest

    from device_agent.host_runner import measure

    with pytest.raises(RuntimeError, match="has no prefill_chunk graph"):
        measure(graph_dir, "prefill", 64, repeats=1, warmup=0, chunk=16)
    # decode has no prompt to chunk: the flag does not apply to it
    assert measure(graph_dir, "decode", 64, repeats=1, warmup=0, chunk=16)["samples_ms"]
