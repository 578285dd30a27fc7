"""Exact static costs without torch (tests/workers/test_flops.py and test_compiler.py check
them against the built modules): block repeats, attention's growth with context, `flops@L`
as a static metric."""

from __future__ import annotations

import pytest

from core import catalog, costs, metrics, preset


def test_block_repeat_reuses_weights_but_not_cache():
    once = preset("mobilellm", width=32, layers=2, heads=2, kv_heads=1, ffn=64, vocab=50)
    twice = preset("mobilellm", width=32, layers=2, heads=2, kv_heads=1, ffn=64, vocab=50, repeat=2)
    assert costs.params(once.to_json()) == costs.params(twice.to_json())
    assert costs.cache_bytes(twice.to_json(), 100) == 2 * costs.cache_bytes(once.to_json(), 100)


def test_attention_grows_with_context_and_ignores_gqa_in_scores():
    spec = catalog.REGISTRY["attention"]
    mha = {"heads": 4, "kv_heads": 4, "window": 0, "qk_norm": 0}
    mqa = {**mha, "kv_heads": 1}
    d = 64
    for g in (mha, mqa):
        assert spec.macs(g, d, 10) - spec.macs(g, d, 9) == 2 * d  # one more key and value
    assert spec.macs(mha, d, 9) - spec.macs(mqa, d, 9) == 2 * d * (d - d // 4)


def test_flops_is_a_static_metric_with_a_length():
    genome = preset(
        "transformer++", width=32, layers=2, heads=4, kv_heads=2, ffn=48, vocab=61
    ).to_json()
    m = metrics.parse_metric("flops@128")
    assert (m.name, m.length, m.kind) == ("flops", 128, "static")
    out = metrics.static_metrics(genome, ["flops@128", "params"])
    assert out["flops@128"] == float(costs.macs_per_token(genome, 128))
    for bad in ("flops", "flops@0", "flops@8[SM-S928B]"):
        with pytest.raises(ValueError):
            metrics.parse_metric(bad)
