"""How a prompt is cut into chunks, and the cache the chunk graph starts from."""

from __future__ import annotations

import numpy as np
import pytest

from core.chunked_prefill import chunk_bounds, empty_cache


def test_chunks_cover_the_prompt_in_order_and_the_last_takes_the_rest():
    assert chunk_bounds(10, 4) == [(0, 4), (4, 8), (8, 10)]
    assert chunk_bounds(8, 4) == [(0, 4), (4, 8)]
    assert chunk_bounds(3, 256) == [(0, 3)]
    assert chunk_bounds(5, 1) == [(i, i + 1) for i in range(5)]


@pytest.mark.parametrize("length, chunk", [(0, 4), (4, 0), (4, -1)])
def test_an_empty_prompt_or_chunk_is_refused(length, chunk):
    with pytest.raises(ValueError, match="at least 1"):
        chunk_bounds(length, chunk)


def test_the_first_chunk_sees_an_empty_attention_cache_and_zero_states():
    graph = {
        "inputs": [
            {"name": "input_ids", "role": "input_ids", "shape": [1, "seq"]},
            {"name": "position", "role": "position", "shape": [1]},
            {"name": "past_k", "role": "cache", "shape": [1, 2, "past", 8]},
            {"name": "past_conv", "role": "cache", "shape": [1, 12, 2]},
        ]
    }
    cache = empty_cache(graph)
    assert set(cache) == {"past_k", "past_conv"}
    assert cache["past_k"].shape == (1, 2, 0, 8)
    assert cache["past_conv"].shape == (1, 12, 2) and not cache["past_conv"].any()
    assert all(a.dtype == np.float32 for a in cache.values())


def test_a_short_first_chunk_then_the_rest():
    assert chunk_bounds(10, 4, first=3) == [(0, 3), (3, 7), (7, 10)]
    assert chunk_bounds(10, 10, first=3) == [(0, 3), (3, 10)]
    assert chunk_bounds(3, 4, first=5) == [(0, 3)]
    with pytest.raises(ValueError, match="at least 1"):
        chunk_bounds(10, 4, first=0)


def test_each_chunk_gets_its_position_and_the_cache_the_previous_one_returned():
    """A stand-in chunk graph whose cache counts the tokens seen: run_chunked must feed each
    chunk its first token's index and the previous chunk's present_* as past_*."""
    from core.chunked_prefill import run_chunked

    manifest = {
        "graphs": {
            "prefill_chunk": {
                "inputs": [
                    {"name": "input_ids", "role": "input_ids", "shape": [1, "seq"]},
                    {"name": "position", "role": "position", "shape": [1]},
                    {"name": "past_seen", "role": "cache", "shape": [1, 1]},
                    {"name": "past_k", "role": "cache", "shape": [1, "past"]},
                ],
                "outputs": [{"name": "logits"}, {"name": "present_seen"}, {"name": "present_k"}],
            }
        },
        "cache_pairs": {"past_seen": "present_seen", "past_k": "present_k"},
    }
    calls = []

    def run(feeds):
        calls.append((int(feeds["position"][0]), feeds["input_ids"].shape[1]))
        assert feeds["past_seen"][0, 0] == feeds["position"][0] == feeds["past_k"].shape[1]
        seen = feeds["past_seen"] + feeds["input_ids"].shape[1]
        k = np.concatenate([feeds["past_k"], feeds["input_ids"].astype(np.float32)], axis=1)
        return [feeds["input_ids"][:, -1:], seen, k]

    ids = np.arange(10, dtype=np.int64)[None]
    logits, seen, k = run_chunked(run, manifest, ids, 4)
    assert calls == [(0, 4), (4, 4), (8, 2)]
    assert seen[0, 0] == 10 and (k == ids).all() and logits[0, 0] == 9
