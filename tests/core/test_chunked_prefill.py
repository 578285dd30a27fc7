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
