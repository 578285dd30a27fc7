"""Presets are the published layouts."""

from __future__ import annotations

from core import preset


def test_lfm2_layout():
    genome = preset("lfm2")
    mixers = [s.op for s in genome.backbone[::2]]
    assert [i for i, op in enumerate(mixers) if op == "attention"] == [2, 5, 8, 10, 12, 14]
    assert set(mixers) == {"attention", "hyena_y"}
    assert genome.operators["hyena_y"]["filter_length"] == 3
    assert genome.operators["attention"]["qk_norm"] == 1
    assert all(s.op == "swiglu" for s in genome.backbone[1::2])
