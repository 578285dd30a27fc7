"""Prefilling a prompt a chunk at a time through an export's `prefill_chunk` graph.

Phone runtimes bound prefill's working memory by feeding a long prompt in chunks (llama.cpp's
micro-batches, `n_ubatch` 512 by default): each chunk's activations are a chunk's, not the
prompt's, and only the cache grows with the prompt. The chunk graph takes `input_ids`
(1, T), `position` (the absolute index of the chunk's first token) and the cache held
(`past_*`), and returns the last position's logits and the cache after the chunk
(`present_*`), which feeds the next chunk. Before the first chunk the cache is empty:
attention caches hold 0 tokens, fixed-size states (convolution tails, recurrent states) are
zeros, exactly `TailorLM.init_states()`.

numpy only, reading the manifest as JSON (a dict), so the host runner (which loads no torch)
and the exporter's checks feed the graph the same way.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

CHUNK_GRAPH = "prefill_chunk"  # the manifest's graph kind


def chunk_bounds(length: int, chunk: int, first: int | None = None) -> list[tuple[int, int]]:
    """[start, end) of each chunk of a `length`-token prompt: `first` tokens (default
    `chunk`), then `chunk` tokens each (the last takes the rest); ValueError for a chunk or
    length below 1."""
    first = chunk if first is None else first
    if min(chunk, first, length) < 1:
        raise ValueError(
            f"chunk, first chunk and length must be at least 1, not {chunk}, {first} and {length}"
        )
    starts = [0, *range(first, length, chunk)] if first < length else [0]
    return [(a, b) for a, b in zip(starts, [*starts[1:], length])]


def empty_cache(graph: dict[str, Any]) -> dict[str, np.ndarray]:
    """The chunk graph's cache inputs before the first chunk: attention caches with a past
    of 0 tokens, every fixed-size state zero."""
    out = {}
    for spec in graph["inputs"]:
        if spec["role"] == "cache":
            shape = [0 if d == "past" else d for d in spec["shape"]]
            out[spec["name"]] = np.zeros(shape, dtype=spec.get("dtype", "float32"))
    return out


def run_chunked(
    run: Callable[[dict[str, np.ndarray]], list[np.ndarray]],
    manifest: dict[str, Any],
    ids: np.ndarray,
    chunk: int,
    first: int | None = None,
) -> list[np.ndarray]:
    """Prefill `ids` (1, L) a chunk at a time (`chunk_bounds`); `run(feeds)` runs the chunk
    graph (an onnxruntime session's `run(None, feeds)`). Returns the last chunk's outputs:
    the last position's logits (1, 1, V), then the cache after the prompt, in the graph's
    order. Each chunk's cache inputs are the previous chunk's outputs: while a chunk runs,
    the cache it reads and the one it writes are both held (no in-place cache)."""
    graph = manifest["graphs"][CHUNK_GRAPH]
    cache = empty_cache(graph)
    pairs = manifest["cache_pairs"]  # past_* -> present_*
    outputs = [spec["name"] for spec in graph["outputs"]]
    out: list[np.ndarray] = []
    for start, end in chunk_bounds(ids.shape[1], chunk, first):
        feeds = {"input_ids": ids[:, start:end], "position": np.array([start], dtype=np.int64)}
        out = run({**feeds, **cache})
        produced = dict(zip(outputs, out))
        cache = {past: produced[present] for past, present in pairs.items()}
    return out
