"""Precision variants and execution providers (issue "measure models as phones run them"):
an int8 task pushes and runs its own graphs beside the float ones, `-e PROVIDER` reaches
the runner, and a runner (or host onnxruntime) without the provider is a device fault
that names it; per onnxruntime_perf_test release line: a provider the build lacks,
a provider its parser does not know, and a flag it does not know, each in that line's
words."""

from __future__ import annotations

import hashlib
import shutil

import pytest

from core.protocol import GraphManifest, MeasurementSpec
from device_agent import perf_command, runner_errors
from device_agent.adb_backend import AdbBackend
from device_agent.failures import ProviderMissing, failure_report
from device_agent.host_backend import measure_task
from device_agent.runner_errors import CommandLineRejected

from .standin_texts import SEE_HELP
from .test_adb_backend import HASH, make_task

SPEC = MeasurementSpec(
    prefill_lengths=[8],
    decode_contexts=[16],
    warmup=0,
    repeats=2,
    processes=1,
    threads=1,
    cooldown_celsius=80,
)


@pytest.fixture(scope="module")
def int8_dir(graph_dir, tmp_path_factory):
    """The float graphs quantized with onnxruntime's dynamic int8 quantization, named and
    described as the int8 variant (prefill.int8.onnx, decode.int8.onnx)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    folder = tmp_path_factory.mktemp("int8")
    manifest = GraphManifest.model_validate_json((graph_dir / "manifest.json").read_text())
    data = manifest.model_dump()
    for kind in ("prefill", "decode"):
        target = folder / f"{kind}.int8.onnx"
        quantize_dynamic(graph_dir / f"{kind}.onnx", target, weight_type=QuantType.QInt8)
        raw = target.read_bytes()
        data["graphs"][kind].update(
            file=target.name, sha256=hashlib.sha256(raw).hexdigest(), size_bytes=len(raw)
        )
    data.update(precision="int8", variant="int8")
    (folder / "manifest.json").write_text(GraphManifest.model_validate(data).model_dump_json())
    for name in ("prefill.onnx", "decode.onnx"):  # the float files sit beside, unused
        shutil.copy(graph_dir / name, folder / name)
    return folder


def perf_calls(standin) -> list[str]:
    return [c for c in standin.commands if "onnxruntime_perf_test -e " in c]


def test_an_int8_xnnpack_task_pushes_and_runs_its_own_graphs(phone, standin, graph_dir, int8_dir):
    (standin.sandbox / "runner_providers").write_text("cpu xnnpack")
    backend = AdbBackend(phone)
    float_report = backend.measure(graph_dir, make_task(graph_dir, SPEC))
    assert float_report.precision == "float32" and float_report.execution_provider == "cpu"
    folder = standin.sandbox / "data/local/tmp/tailor" / HASH
    float_bytes = (folder / "prefill.onnx").read_bytes()
    before = list(standin.pushed)
    spec = SPEC.model_copy(update={"execution_provider": "xnnpack"})
    report = backend.measure(int8_dir, make_task(int8_dir, spec))
    pushed = [p.rsplit("/", 1)[1] for p in standin.pushed[len(before) :]]
    # Only the int8 graphs: the float ones are not pushed, and the inputs (same content
    # as the float task's) are already on the phone.
    assert sorted(pushed) == ["decode.int8.onnx", "prefill.int8.onnx"]
    assert (folder / "prefill.onnx").read_bytes() == float_bytes  # not clobbered
    assert (folder / "prefill.int8.onnx").read_bytes() == (
        int8_dir / "prefill.int8.onnx"
    ).read_bytes()
    assert (folder / "prefill.int8_L8/model.onnx").resolve().name == "prefill.int8.onnx"
    assert (folder / "prefill_L8/model.onnx").resolve().name == "prefill.onnx"
    runs = perf_calls(standin)[-2:]
    assert all("-e xnnpack -m times" in c for c in runs)
    assert "prefill.int8_L8" in runs[0] and "decode.int8_L16" in runs[1]
    assert report.precision == "int8" and report.execution_provider == "xnnpack"
    assert "xnnpack execution provider" in report.method and "-e xnnpack" in report.runner
    assert report.prefill[0].n == 2 and report.decode[0].n == 2
    # The float variant again: nothing to push.
    count = len(standin.pushed)
    backend.measure(graph_dir, make_task(graph_dir, SPEC))
    assert len(standin.pushed) == count


def test_a_runner_without_the_provider_is_a_device_fault_naming_it(
    phone, standin, int8_dir, runner_line
):
    spec = SPEC.model_copy(update={"execution_provider": "xnnpack"})
    with pytest.raises(ProviderMissing) as error:
        AdbBackend(phone).measure(int8_dir, make_task(int8_dir, spec))
    failure = failure_report(error.value)
    assert failure.kind == "device"
    assert (
        "was built without the xnnpack execution provider; build it with --use_xnnpack "
        "or push one that has it"
    ) in failure.reason
    assert "Xnnpack is not supported in this build" in failure.reason


def test_a_provider_the_runners_parser_does_not_know_is_named_in_its_lines_words(
    phone, standin, int8_dir, runner_line
):
    """Up to 1.22 the parser answers an `-e` value it does not list with its usage text
    (stdout); since 1.23 with only "See 'onnxruntime_perf_test --help'." (stderr). Either
    way the runner lacks the provider: a device fault naming what its --help lists (today's
    agent took "See ... --help" for a runner too old to know -e)."""
    standin.setting("runner_parser_lacks", "xnnpack")
    standin.setting("runner_providers", "cpu xnnpack")
    spec = SPEC.model_copy(update={"execution_provider": "xnnpack"})
    with pytest.raises(ProviderMissing) as error:
        AdbBackend(phone).measure(int8_dir, make_task(int8_dir, spec))
    message = str(error.value)
    parser = "a getopt build, 1.19-1.22" if runner_line == "1.20" else "an Abseil build, 1.23+"
    assert (
        f"(/data/local/tmp/onnxruntime_perf_test, {parser}) does not know -e xnnpack: "
        "its --help lists cpu, " in message
    )
    assert "xnnpack" not in message.split("its --help lists ")[1].split(";")[0]
    said = "its usage text" if runner_line == "1.20" else SEE_HELP
    assert f"the runner said: {said}" in message
    assert failure_report(error.value).kind == "device"


def test_an_unknown_flag_is_a_rejected_command_line_in_each_lines_words(
    phone, standin, graph_dir, runner_line, monkeypatch
):
    """An agent flag the runner does not know (a build that does not fit the agent): getopt
    lines print `unknown option -- -` and their usage, Abseil lines `ERROR: Unknown command
    line flag`. A device fault that says so, not a failed candidate."""
    args = perf_command.runner_args
    monkeypatch.setattr(
        perf_command,
        "runner_args",
        lambda *a, **k: [*args(*a, **k)[:-1], "--no_such_flag", args(*a, **k)[-1]],
    )
    with pytest.raises(CommandLineRejected) as error:
        AdbBackend(phone).measure(graph_dir, make_task(graph_dir, SPEC))
    message = str(error.value)
    assert (
        "rejected the agent's command line `-e cpu -m times -r 2 -x 1 -y 1 -s -v "
        "--no_such_flag model.onnx`: it printed " in message
    )
    assert (
        "its usage text, after `unknown option -- -`"
        if runner_line == "1.20"
        else "ERROR: Unknown command line flag 'no_such_flag'"
    ) in message
    assert "the agent needs onnxruntime_perf_test 1.19 or newer" in message
    assert failure_report(error.value).kind == "device"


def test_unsupported_provider_texts_of_the_real_tool_are_recognised():
    said = (
        "/src/onnxruntime/test/perftest/ort_test_session.cc:640 onnxruntime::perftest::"
        "OnnxRuntimeTestSession::OnnxRuntimeTestSession(...) NNAPI is not supported in "
        "this build\n"
    )
    assert runner_errors.provider_missing(said, "nnapi") == "NNAPI is not supported in this build"
    assert runner_errors.provider_missing(said, "qnn") is None
    assert runner_errors.provider_missing("QNN is not supported in this build", "qnn")
    # 1.23+'s answer to any bad argument: a rejected command line, not an old runner
    assert runner_errors.provider_missing(SEE_HELP, "qnn") is None
    assert runner_errors.rejected(SEE_HELP) == SEE_HELP
    assert runner_errors.provider_missing("Error: model load failed", "xnnpack") is None
    assert runner_errors.rejected("Error: model load failed") is None
    assert runner_errors.provider_missing("Xnnpack is not supported in this build", "cpu") is None
    assert "-e xnnpack -m times" in " ".join(
        perf_command.runner_args("m.onnx", 2, provider="xnnpack")
    )


def test_host_backend_without_the_provider_is_a_device_fault_naming_what_it_has(int8_dir):
    spec = SPEC.model_copy(update={"execution_provider": "nnapi"})
    with pytest.raises(ProviderMissing) as error:
        measure_task(int8_dir, spec)
    failure = failure_report(error.value)
    assert failure.kind == "device" and "CPUExecutionProvider" in failure.reason
    assert (
        "onnxruntime here (" in failure.reason
        and "nnapi needs NnapiExecutionProvider" in failure.reason
    )


def test_host_backend_measures_the_int8_variant(int8_dir):
    report = measure_task(int8_dir, SPEC)
    assert report.precision == "int8" and report.execution_provider == "cpu"
    assert report.prefill[0].n == 2 and report.decode[0].n == 2
