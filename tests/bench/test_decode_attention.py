"""bench.decode_attention: every kernel it times computes the decode step (onnxruntime's real
kernels against numpy attention), the in-place ones leave the new token in the buffer bound to
them, and a run writes each kernel's reading beside one read of the cache."""

from __future__ import annotations

import json

import numpy as np
import pytest

from bench.decode_attention import (
    KERNELS,
    Shape,
    check,
    main,
    parse_args,
    runner,
    session,
    step_inputs,
)
from workers.export.fused_attention import PROBE_TOLERANCE


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("past", [1, 9, 40])
def test_each_kernel_computes_the_decode_step_and_leaves_the_cache_holding_the_new_token(
    kernel, past
):
    # check() raises past PROBE_TOLERANCE (float32 rounding of unit-scale attention, ~1e-7)
    assert check(kernel, Shape(layers=2, heads=8, kv_heads=2, head_dim=16), past) <= PROBE_TOLERANCE


@pytest.mark.parametrize("kernel", ["gqa-shared", "scatter", "attention24"])
def test_in_place_kernels_leave_the_new_token_at_its_position_in_the_bound_buffer(kernel):
    """Bound as past and present, one buffer holds the cache after the step: the tokens held
    unchanged, the new token's K and V at the step's position. (Whether onnxruntime copied the
    buffer on the way is a matter of time, which the benchmark reads, not of the result.)"""
    s = Shape(layers=1, heads=4, kv_heads=1, head_dim=8)
    step = step_inputs(s, past=5)
    before = [c.copy() for c in step.caches]
    run, result = runner(kernel, session(kernel, s), s, step)
    run()
    _, caches = result()
    for held, old, new in zip(caches, before, (step.k, step.v)):
        np.testing.assert_array_equal(held[:, :, :5], old[:, :, :5])
        np.testing.assert_array_equal(held[:, :, 5:], new)


def test_a_run_reads_every_kernel_beside_one_read_of_the_cache(tmp_path):
    out = tmp_path / "decode_attention.json"
    args = ["--lengths", "8", "24", "--layers", "2", "--head-dim", "16", "--repeats", "3"]
    assert main([*args, "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert set(result["checked_worst_abs_difference"]) == set(KERNELS)
    shape = Shape(2, 8, 2, 16)
    for past in (8, 24):
        row = result["rows"][str(past)]
        bound = shape.cache_bytes(past + 1) / (result["memory_bandwidth_gb_s"] * 1e9) * 1e3
        assert row["cache_read_once_ms"] == pytest.approx(bound)
        for kernel in KERNELS:
            reading = row[kernel]
            assert len(reading["samples_ms"]) == 3 and min(reading["samples_ms"]) > 0
            assert reading["over_read_once"] == pytest.approx(reading["median_ms"] / bound)


@pytest.mark.parametrize(
    "argv, named",
    [
        (["--heads", "6", "--kv-heads", "4"], "--heads"),
        (["--head-dim", "12"], "--head-dim"),
        (["--lengths", "0"], "--lengths"),
        (["--kernels", "flash"], "--kernels"),
    ],
)
def test_bad_arguments_are_refused_naming_the_argument(argv, named, capsys):
    with pytest.raises(SystemExit) as exit_:
        parse_args(argv)
    assert exit_.value.code == 2
    assert named in capsys.readouterr().err
