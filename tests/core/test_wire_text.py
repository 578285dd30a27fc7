"""What agents send that is stored and shown: a device class no job could name is refused at
enrollment as in job specs (one rule), names and runner lines are kept as plain text, and
memory sizes are bounded."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from core.job_spec import ProfilingSpec
from core.protocol import MAX_BYTES, DeviceProperties, EnrollRequest, MeasurementReport

PROPS = {"backend": "host", "cpu_count": 2, "ram_bytes": 1 << 30}


@pytest.mark.parametrize(
    "model, says",
    [
        (" host ", "surrounding spaces"),
        ("", "1 to 128 characters|at least 1 character"),  # pydantic's words or ours
        ("x" * 129, "1 to 128 characters|at most 128 characters"),
        ("a\x1b[31mb", "control characters"),
        ("a\x00b", "control characters"),
        ("a\nb", "control characters"),
        ("Pixel[8]", "brackets"),
    ],
)
def test_a_device_class_no_job_can_name_is_refused_at_both_ends(model, says):
    with pytest.raises(ValidationError, match=says):
        DeviceProperties(model=model, **PROPS)
    with pytest.raises(ValidationError, match=says):
        ProfilingSpec(devices=[model])


def test_ordinary_phone_models_enroll():
    for model in ("SM-S928B", "Pixel 8 Pro", "host", "CPH2581 (OnePlus 12)"):
        assert DeviceProperties(model=model, **PROPS).model == model
        assert ProfilingSpec(devices=[model]).devices == [model]


@pytest.mark.parametrize(
    "name, says",
    [
        ("\x1b[1mlab-3\x1b[0m", "control characters"),
        ("lab\x003", "control characters"),
        (" lab-3", "begin or end with spaces"),
        ("x" * 129, "at most 128 characters"),
    ],
)
def test_a_device_name_that_cannot_be_shown_as_given_is_refused(name, says):
    with pytest.raises(ValidationError, match=says):
        EnrollRequest(enroll_token="t", name=name, properties={"model": "host", **PROPS})
    assert EnrollRequest(
        enroll_token="t", name="lab 3 (Pixel)", properties={"model": "host", **PROPS}
    )


def test_runner_lines_are_kept_as_plain_text():
    report = MeasurementReport(
        prefill=[],
        decode=[],
        peak_memory_bytes=1,
        runner="\x1b[32monnxruntime_perf_test 1.22.0\x1b[0m",
        method="warm\x00",
        wall_s=1.0,
    )
    assert (report.runner, report.method) == ("onnxruntime_perf_test 1.22.0", "warm")


def test_memory_sizes_past_any_device_are_refused():
    base = {"prefill": [], "decode": [], "runner": "r", "wall_s": 1.0}
    assert MeasurementReport(peak_memory_bytes=MAX_BYTES, **base).peak_memory_bytes == MAX_BYTES
    for value in (MAX_BYTES + 1, 2**70):
        with pytest.raises(ValidationError, match="peak_memory_bytes"):
            MeasurementReport(peak_memory_bytes=value, **base)
    stat = {"length": 8, "median_ms": 1, "p10_ms": 1, "p90_ms": 1, "n": 1, "samples_ms": [1]}
    with pytest.raises(ValidationError, match="peak_memory_bytes"):
        MeasurementReport(
            peak_memory_bytes=1, **{**base, "decode": [{**stat, "peak_memory_bytes": 2**70}]}
        )


def test_a_spec_stored_before_the_class_rule_tightened_stays_readable():
    """A job the database holds is read back under the rule it was accepted by: a running
    job never becomes unreadable (its orchestrator crashing) because new submissions are
    held to more."""
    from core.job_spec import JobSpec, stored_spec

    spec = {"name": "old", "objectives": ["perplexity"], "profiling": {"devices": ["x[1]"]}}
    with pytest.raises(ValidationError, match="brackets"):
        JobSpec.model_validate(spec)
    assert stored_spec(spec).profiling.devices == ["x[1]"]
    with pytest.raises(ValidationError, match="surrounding spaces"):  # never accepted
        stored_spec({**spec, "profiling": {"devices": [" x"]}})
