"""Prefilling a long prompt a chunk at a time through an exported chunk graph, measured by
the host agent's runner: what chunking is for (a chunk's activations, not the prompt's)."""

from __future__ import annotations

from core import preset
from device_agent.host_runner import measure
from workers.export.onnx_export import export_onnx


def test_chunked_prefill_holds_a_chunks_activations_not_the_prompts(tmp_path):
    # plain attention at 2048 tokens: each layer's (heads, L, L) float scores are 4 x 2048^2
    # x 4 B = 64 MiB; in chunks of 128 they are 4 x 128 x 2048 x 4 B = 4 MiB, and the cache
    # of 2048 tokens is 2 layers x K, V x 2048 x 32 x 4 B = 1 MiB
    genome = preset("transformer++", width=64, layers=2, heads=4, kv_heads=2, ffn=128, vocab=256)
    export_onnx(genome, tmp_path, exporter="torchscript", chunk_graph=True)
    whole, chunked = (
        measure(tmp_path, "prefill", 2048, repeats=1, warmup=0, chunk=chunk)
        for chunk in (None, 128)
    )
    added = {
        name: run["run_peak_bytes"] - run["idle_bytes"]
        for name, run in (("whole", whole), ("chunked", chunked))
    }
    assert added["whole"] > 48 << 20, added  # at least most of one layer's scores
    # the chunked prompt adds under a quarter of that (4 MiB of scores per layer at a time,
    # the cache, allocator slack), on any CPU: the bound is set by sizes, not by speed
    assert added["chunked"] < added["whole"] / 4, added
    assert len(chunked["samples_ms"]) == 1 and chunked["samples_ms"][0] > 0


def test_the_chunk_graph_masks_attention_without_extra_passes_over_the_scores(tmp_path):
    """torch.onnx writes a boolean attention mask as Where, and after the softmax IsNaN and
    Where over every score: two more passes over a plain-attention chunk's largest tensor,
    which made one chunk up to 1.5x slower than the last-token graph doing the same work.
    The chunk graph adds a float mask instead, as the prefill graph's causal flag does."""
    import onnx

    genome = preset("transformer++", width=64, layers=1, heads=4, kv_heads=2, ffn=128, vocab=256)
    export_onnx(genome, tmp_path, exporter="torchscript", chunk_graph=True)
    ops = {
        kind: [n.op_type for n in onnx.load(str(tmp_path / f"{kind}.onnx")).graph.node]
        for kind in ("prefill_last", "prefill_chunk")
    }
    assert "IsNaN" not in ops["prefill_chunk"]
    assert ops["prefill_chunk"].count("Where") <= ops["prefill_last"].count("Where")
    assert ops["prefill_chunk"].count("Softmax") == ops["prefill_last"].count("Softmax") == 1
