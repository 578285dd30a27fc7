"""What the peak-memory cost terms count (orchestrator/search/latency_features.py): the V x d
table once whatever the tie, an untied head apart from the backbone's weights, one count per
executed layer (a repeated block counts again), and a windowed attention layer's K/V for
every prompt token."""

from __future__ import annotations

import numpy as np

from core import catalog, costs
from core.genome import Genome, Slot
from orchestrator.search.latency_features import LatencyTarget, columns, peak_features

TARGET = LatencyTarget.parse("peak_mem_mb[phone:int8]")
MIB = 2**20


def terms(genome: Genome) -> dict[tuple[str, str], float]:
    row = peak_features(genome, TARGET, (128, 128))
    return {(c.group, c.kind): float(v) for c, v in zip(columns(TARGET), row)}


def hybrid(**fields) -> Genome:
    ops = ["attention", "swiglu", "hyena", "swiglu"]
    return Genome(width=256, vocab_size=4096, backbone=[Slot(op) for op in ops], **fields)


def test_an_untied_head_is_its_own_term_and_not_in_the_weights():
    tied, untied = terms(hybrid()), terms(hybrid(tie_embeddings=False))
    table = 4096 * 256 / MIB  # int8: one byte per weight
    assert tied[("lm_head", "lm_head")] == 0.0
    assert np.isclose(untied[("lm_head", "lm_head")], table)
    assert np.isclose(tied[("embedding", "embedding")], untied[("embedding", "embedding")])
    assert np.isclose(tied[("weights", "weights")], untied[("weights", "weights")])
    backbone = costs.params(hybrid()) - 4096 * 256
    assert np.isclose(tied[("weights", "weights")], backbone / MIB)


def test_every_executed_layer_counts_by_class():
    once, twice = terms(hybrid()), terms(hybrid(block_repeat=2))
    for spec in catalog.ordered():
        executed = sum(op == spec.name for op in ["attention", "swiglu", "hyena", "swiglu"])
        assert once[(spec.name, "count")] == executed
        assert twice[(spec.name, "count")] == 2 * executed
        assert twice[(spec.name, "held")] == 2 * once[(spec.name, "held")]
        assert (once[(spec.name, "held")] > 0) == (executed > 0)
    assert np.isclose(once[("weights", "weights")], twice[("weights", "weights")])  # shared


def test_a_windowed_attention_layer_holds_the_whole_prompts_kv():
    def attention(window: int) -> Genome:
        g = hybrid()
        g.operators["attention"].update(heads=4, kv_heads=2, window=window)
        return g

    global_, windowed = terms(attention(0)), terms(attention(64))
    head_dim = 256 // 4
    assert global_[("attention", "uncapped")] == 0.0
    assert np.isclose(windowed[("attention", "uncapped")], 128 * 2 * 2 * head_dim * 4 / MIB)
    assert all(windowed[(op, "uncapped")] == 0.0 for op in ("swiglu", "hyena"))
    assert windowed[("cache", "cache")] < global_[("cache", "cache")]  # the cache keeps 64
