"""Exported graphs against torch: onnxruntime runs the prefill graph on a prompt, then decode
steps fed with the graphs' own cache outputs (the way a phone runs them), and the chunk
graph over the same prompt a few tokens at a time; the worst difference from the torch
model's logits and states says whether the export is right."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from core.chunked_prefill import CHUNK_GRAPH, run_chunked
from core.precision import Variant
from workers.export.graph_writer import CHUNK_EXAMPLE, cache_pairs, io_names
from workers.model.compiler import TailorLM

# Chunk lengths the chunk graph is checked at: a single token, then one chunk shorter and
# one longer than the chunk it was traced on, so a traced shape baked into the graph shows.
VERIFY_CHUNKS = (1, CHUNK_EXAMPLE - 2, CHUNK_EXAMPLE + 2)
# ... and the prompt as a short first chunk then the rest in one: at the longer prompt
# (`verify_lengths`: past every window by 7) a chunk longer than any window, after a cache.
VERIFY_FIRST_CHUNK = 3


def verify_lengths(model: TailorLM) -> tuple[int, ...]:
    """Prompt lengths that put every window (and the decode steps after it) on both sides."""
    window = max([t.past_cap or 0 for t in model.state_layout()] + [0])
    return (11, max(23, window + 7))


def worst_difference(
    model: TailorLM, out: Path, variant: str = "", chunk_graph: bool = False
) -> float:
    """`verify_export` at every prompt length `verify_lengths` names, the worst of them."""
    return max(
        verify_export(model, out, prompt=n, variant=variant, chunk_graph=chunk_graph)
        for n in verify_lengths(model)
    )


def verify_export(
    model: TailorLM,
    out_dir: str | Path,
    prompt: int = 11,
    decode_steps: int = 5,
    seed: int = 0,
    variant: str = "",
    chunk_graph: bool = False,
) -> float:
    """Max abs difference between onnxruntime and torch: prefill of a prompt (the full-logit
    graph, and the last-token graph against the last row), then decode steps fed with the
    graphs' own cache outputs (the way a phone runs them), and with `chunk_graph` the chunk
    graph over the prompt at each of VERIFY_CHUNKS' chunk lengths and as VERIFY_FIRST_CHUNK
    tokens then the rest, against its last row and the cache. `variant`:
    the float32 variant's tag whose graphs to run ("" for prefill.onnx and decode.onnx,
    "float32-fused" for the fused ones)."""
    import onnxruntime as ort

    out = Path(out_dir)
    files = Variant.from_tag(variant)
    options = ort.SessionOptions()
    options.log_severity_level = 3

    def session(kind: str):
        path = str(out / files.file(kind))
        return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])

    prefill, last, decode = session("prefill"), session("prefill_last"), session("decode")
    chunked = session(CHUNK_GRAPH) if chunk_graph else None
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, model.plan.vocab_size, (1, prompt + decode_steps), generator=gen)
    worst = 0.0
    with torch.no_grad():
        logits, states = model.prefill(ids[:, :prompt])
        last_out = last.run(None, {"input_ids": ids[:, :prompt].numpy()})
        worst = _worst(worst, last_out, [logits[:, -1:], *states])
        ort_out = prefill.run(None, {"input_ids": ids[:, :prompt].numpy()})
        worst = _worst(worst, ort_out, [logits, *states])
        manifest = chunk_manifest(model)
        chunkings = [(n, None) for n in VERIFY_CHUNKS] + [(prompt, VERIFY_FIRST_CHUNK)]
        for size, first in chunkings if chunked is not None else []:
            chunk_out = run_chunked(
                lambda feeds: chunked.run(None, feeds),
                manifest,
                ids[:, :prompt].numpy(),
                size,
                first,
            )
            worst = _worst(worst, chunk_out, [logits[:, -1:], *states])
        ort_states = ort_out[1:]
        names = [i.name for i in decode.get_inputs()]
        for t in range(prompt, prompt + decode_steps):
            position = torch.tensor([t], dtype=torch.int64)
            logits, states = model.step(ids[:, t : t + 1], position, states)
            feed = {"input_ids": ids[:, t : t + 1].numpy(), "position": position.numpy()}
            feed.update(zip(names[2:], ort_states))
            ort_out = decode.run(None, feed)
            ort_states = ort_out[1:]
            worst = _worst(worst, ort_out, [logits, *states])
    return worst


def chunk_manifest(model: TailorLM) -> dict:
    """What core.chunked_prefill reads of a manifest (the chunk graph's cache inputs, its
    outputs, which output feeds which input), from the model's state layout as the exporter
    writes the manifest: verification runs before the manifest exists."""
    layout = model.state_layout()
    outputs, _ = io_names(layout)
    caches = [{"name": f"past_{t.name}", "role": "cache", "shape": list(t.shape)} for t in layout]
    graph = {"inputs": caches, "outputs": [{"name": n} for n in outputs]}
    return {"graphs": {CHUNK_GRAPH: graph}, "cache_pairs": cache_pairs(layout)}


def _worst(worst: float, ort_out: list[np.ndarray], torch_out: list[torch.Tensor]) -> float:
    """The larger of `worst` and the max abs difference of each onnxruntime output from
    torch's (an empty state, e.g. a cache of zero length, differs by nothing)."""
    return max(
        worst,
        *(
            float(np.abs(a - b.numpy()).max()) if a.size else 0.0
            for a, b in zip(ort_out, torch_out)
        ),
    )


def float32_rounding(model: TailorLM, seed: int = 0) -> float:
    """How far the torch model's own float32 outputs (logits and states of a prefill at each
    `verify_lengths` prompt) are from the same model in float64: the rounding every float32
    implementation of this model carries, which grows with width and depth (measured here:
    1.1e-5 at width 64 / 4 layers, 9.9e-5 at 256 / 16, 1.6e-4 at 768 / 24)."""
    import copy

    exact = copy.deepcopy(model).double()
    gen = torch.Generator().manual_seed(seed)
    worst = 0.0
    with torch.no_grad():
        for n in verify_lengths(model):
            ids = torch.randint(0, model.plan.vocab_size, (1, n), generator=gen)
            logits, states = model.prefill(ids)
            logits64, states64 = exact.prefill(ids)
            for a, b in zip([logits, *states], [logits64, *states64]):
                if a.numel():
                    worst = max(worst, float((a.double() - b).abs().max()))
    return worst
