"""The metric grammar: precisions, fleets, exported sizes; one canonical spelling each."""

from __future__ import annotations

import pytest

from core.job_spec import JobSpec
from core.metrics import MetricNeeds, canonical, fleet_metrics, parse_metric
from core.precision import PRECISIONS, ExportSpec, Variant


@pytest.mark.parametrize(
    "text, spelled, kind, classes, precision",
    [
        (
            "decode_ms@512[SM-S928B:int4]",
            "decode_ms@512[SM-S928B:int4]",
            "hardware",
            ("SM-S928B",),
            "int4",
        ),
        (
            "peak_mem_mb[SM-S928B:int8]",
            "peak_mem_mb[SM-S928B:int8]",
            "hardware",
            ("SM-S928B",),
            "int8",
        ),
        ("decode_ms@128[host:float32]", "decode_ms@128[host]", "hardware", ("host",), "float32"),
        (
            "decode_ms@512[max:SM-S928B,Pixel 8]",
            "decode_ms@512[max:SM-S928B,Pixel 8]",
            "hardware",
            ("SM-S928B", "Pixel 8"),
            "float32",
        ),
        (
            "prefill_ms@64[mean: a , b :int8]",
            "prefill_ms@64[mean:a,b:int8]",
            "hardware",
            ("a", "b"),
            "int8",
        ),
        ("model_bytes", "model_bytes", "export", (), "float32"),
        ("model_bytes[:int4]", "model_bytes[:int4]", "export", (), "int4"),
        ("perplexity[:int8]", "perplexity[:int8]", "quality", (), "int8"),
        ("perplexity[:float32]", "perplexity", "quality", (), "float32"),
    ],
)
def test_each_spelling_parses_to_one_canonical_name(text, spelled, kind, classes, precision):
    metric = parse_metric(text)
    assert (str(metric), metric.kind, metric.classes, metric.precision) == (
        spelled,
        kind,
        classes,
        precision,
    )
    assert canonical(spelled) == spelled  # the canonical spelling is a fixed point


@pytest.mark.parametrize(
    "text, says",
    [
        ("perplexity[host]", "only a precision"),
        ("model_bytes[:int3]", "unknown precision"),
        ("params[:int8]", "takes no device class or precision"),
        ("decode_ms@64[:int8]", "needs a device class"),
        ("decode_ms@64[max:]", "needs device classes"),
        ("decode_ms@64[max:a,,b]", "needs device classes"),
        ("decode_ms@64[mean:a,a]", "each device class once"),
        ("decode_ms@64[ a]", "surrounding spaces"),
    ],
)
def test_bad_names_say_what_is_wrong(text, says):
    with pytest.raises(ValueError, match=says):
        parse_metric(text)


def test_every_precision_round_trips_through_a_hardware_name():
    for precision in PRECISIONS:
        assert parse_metric(f"decode_ms@8[x:{precision}]").precision == precision


def test_a_fleet_metric_needs_every_class():
    names = ["decode_ms@8[max:a,b]", "decode_ms@8[mean:a,b:int8]"]
    metrics = {"decode_ms@8[a]": 2.0, "decode_ms@8[b]": 5.0, "decode_ms@8[a:int8]": 1.0}
    assert fleet_metrics(metrics, names) == {"decode_ms@8[max:a,b]": 5.0}
    metrics["decode_ms@8[b:int8]"] = 2.0
    assert fleet_metrics(metrics, names)["decode_ms@8[mean:a,b:int8]"] == 1.5


def test_needs_lists_variants_to_profile_and_export():
    needs = MetricNeeds.of(
        [
            "perplexity[:int4]",
            "decode_ms@8[max:a,b:int8]",
            "peak_mem_mb[a]",
            "model_bytes[:int4]",
            "params",
        ]
    )
    assert set(needs.profiled) == {("a", "int8"), ("b", "int8"), ("a", "float32")}
    assert set(needs.exported) == {"int8", "float32", "int4"}
    assert needs.quantized_quality == ("int4",)


def spec(**overrides):
    base = {"name": "j", "objectives": ["perplexity"], "profiling": {"devices": ["a", "b"]}}
    return JobSpec.model_validate({**base, **overrides})


def test_the_job_spec_stores_canonical_names_and_checks_every_fleet_class():
    job = spec(
        objectives=["decode_ms@128[a:float32]", "perplexity[:int8]"],
        constraints=[{"metric": "model_bytes[:float32]", "value": 1e6}],
    )
    assert job.objectives == ["decode_ms@128[a]", "perplexity[:int8]"]
    assert job.constraints[0].metric == "model_bytes"
    with pytest.raises(ValueError, match="'c' is not in profiling.devices"):
        spec(objectives=["decode_ms@128[max:a,c]"])
    with pytest.raises(ValueError, match="must not repeat"):
        spec(objectives=["decode_ms@128[a]", "decode_ms@128[a:float32]"])


def test_export_block_names_its_settings_and_makes_variants():
    assert spec(export={"int4_block_size": 64}).export.variant("int4").tag == "int4-b64"
    with pytest.raises(ValueError, match="power of two"):
        ExportSpec(int4_block_size=48)
    fused = ExportSpec(attention="fused")
    assert fused.variant("int8").base == Variant(attention="fused")
    for variant in (
        Variant(),
        Variant("int8"),
        Variant("int4", "fused", 64, False),
        Variant(attention="fused"),
    ):
        assert Variant.from_tag(variant.tag) == variant
        assert len(set(variant.files)) == 3
    with pytest.raises(ValueError, match="not an export variant"):
        Variant.from_tag("int4-x")
