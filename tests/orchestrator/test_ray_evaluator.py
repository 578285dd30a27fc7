"""Evaluations as real Ray tasks on a local cluster: training, export, failure, timeout."""

from __future__ import annotations

import time

import pytest
import ray

from core import preset
from orchestrator.ray_evaluator import RayEvaluator, connect

TINY = preset("transformer++", width=32, layers=1, heads=2, kv_heads=1, ffn=64, vocab=257).to_json()
CONFIG = {"tokens": 6_000, "seq_len": 32, "tokenizer": {"kind": "byte"}}


@pytest.fixture(scope="module")
def local_ray():
    connect(num_cpus=2)
    yield
    ray.shutdown()


def drain(evaluator: RayEvaluator, limit_s: float = 240) -> dict:
    results = {}
    deadline = time.monotonic() + limit_s
    while evaluator.in_flight() and time.monotonic() < deadline:
        for finished in evaluator.collect(wait_s=1.0):
            results[finished.genome_hash] = finished
    assert not evaluator.in_flight(), "tasks still running at the deadline"
    return results


def test_quality_and_export_run_as_ray_tasks(local_ray):
    evaluator = RayEvaluator()
    evaluator.submit_quality("q", TINY, CONFIG, timeout_s=300)
    quality = drain(evaluator)["q"]
    assert quality.ok, quality.error
    record = quality.value.result
    assert record.ok and record.perplexity > 1 and record.node
    assert quality.value.weights  # bytes, not a path on the worker's disk
    evaluator.submit_export("e", TINY, quality.value.weights, timeout_s=300, tags=["", "int8"])
    export = drain(evaluator)["e"]
    assert export.ok, export.error
    # onnxruntime vs torch, rounding only (the bound of tests/workers/test_export.py TOL)
    assert export.value.variants[""].max_abs_diff <= 1e-4
    assert export.value.variants["int8"].manifest["precision"] == "int8"
    assert {
        "prefill.onnx",
        "decode.onnx",
        "manifest.json",
        "prefill.int8.onnx",
        "decode.int8.onnx",
        "manifest.int8.json",
    } <= set(export.value.files)
    evaluator.submit_quantized_quality(
        "qq", TINY, CONFIG, quality.value.weights, ["int8"], timeout_s=300
    )
    scored = drain(evaluator)["qq"]
    assert scored.ok and scored.value.ok, scored.value
    int8 = scored.value.variants["int8"]
    # the same trained model: its float ONNX graph scores the trainer's perplexity
    # (a mean of log-probabilities through two runtimes: rounding of ~1e-6 relative; 1e-3 is
    # the float-vs-torch bound of the logits, 1e-4, carried through exp with room)
    assert int8.float_onnx_perplexity == pytest.approx(record.perplexity, rel=1e-3)
    assert int8.perplexity > 1 and int8.precision == "int8"


def test_a_bad_candidate_comes_back_failed_not_raised(local_ray):
    evaluator = RayEvaluator()
    evaluator.submit_quality("bad", {"global": {}}, CONFIG, timeout_s=120)
    evaluator.submit_export("bad-export", {"backbone": []}, None, timeout_s=120)
    results = drain(evaluator)
    assert results["bad"].ok and results["bad"].value.result.status == "failed"
    assert not results["bad-export"].ok and results["bad-export"].error


def test_timeouts_cancel_the_task(local_ray):
    evaluator = RayEvaluator()
    evaluator.submit_quality("slow", TINY, {**CONFIG, "tokens": 50_000_000}, timeout_s=3)
    finished = drain(evaluator, limit_s=60)["slow"]
    assert not finished.ok and finished.error.startswith("timeout")
