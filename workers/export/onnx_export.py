"""ONNX export: a prefill graph and a decode-step graph with the cache as explicit tensors.

prefill.onnx: `input_ids` int64 [1, seq] -> `logits` [1, seq, V] and every decode-state
tensor (`present_*`), i.e. the cache after the prompt.
prefill_last.onnx: the same, with only the last position's logits [1, 1, V]: what a phone
generating text runs, and what profiling times (the manifest's `profiled_prefill`); the
full-logit graph stays for perplexity and the decode-vs-prefill checks.
decode.onnx:  `input_ids` int64 [1, 1], `position` int64 [1] (absolute index of the token)
and every state tensor (`past_*`) -> `logits` [1, 1, V] and the next states (`present_*`).
prefill_chunk.onnx (with `chunk_graph=True`): decode.onnx's inputs and outputs with
`input_ids` [1, seq]: a chunk of a prompt after the cache held, for prefilling a long prompt
a chunk at a time as phone runtimes do (core/chunked_prefill.py feeds it). Opt-in: agents
time prefill on the last-token graph, and a fourth graph to trace, verify and quantize
costs every phone-scale export time.
Attention caches have a dynamic "past" axis; conv and recurrent states are fixed-size.
`manifest.json` names all of it (shapes, dtypes, roles, which output feeds which input) so a
phone-side runner needs no Python. Opset 18.

Two exporters, `exporter=`: "torchscript" (torch.onnx's tracer: about 0.2 s for a small model)
and "dynamo" (torch.export: 10-20 s on two cores, but it never bakes a traced shape in).
"auto", the default, traces first and keeps the traced graphs only when onnxruntime matches
torch at two prompt lengths on either side of every window (and the decode steps after them);
otherwise, or when tracing fails, it exports again with dynamo. The manifest records which.

`attention="fused"` exports every attention layer that onnxruntime's fused
`com.microsoft::GroupQueryAttention` operator expresses exactly through it (see
workers/export/fused_attention.py; the others fall back to plain ops, per layer), with the
tracer only, verified against torch like "auto"; its files are named by the variant
(`prefill.float32-fused.onnx`, `decode.float32-fused.onnx`, `manifest.float32-fused.json`),
and its manifest lists the fused layers. Inputs, outputs and cache layout are the plain
graphs'. The graphs of a variant keep one copy of their weights, in one external-data file
they all read (`weights.data`, `weights.float32-fused.data`; workers/export/shared_weights.py),
and every manifest records `model_bytes`, the bytes of all the files a phone stores.

The exporter annotates nodes with Python stack traces (absolute paths of this host's source
tree and environment); every enrolled device downloads the graphs, so they are stripped and
state outputs are scheduled after their layers (workers/export/graph_finish.py) before the
files are hashed. The graphs themselves are written by workers/export/graph_writer.py; this
module picks the exporter, checks what it wrote and writes the manifest.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core import costs
from core.chunked_prefill import CHUNK_GRAPH
from core.genome import Genome
from core.manifest import GraphManifest, GraphSpec, TensorSpec
from core.precision import Variant
from workers.export.graph_stats import file_sha256
from workers.export.graph_writer import (
    OPSET,
    cache_pairs,
    export_graphs,
    graph_inputs,
    io_names,
)
from workers.export.shared_weights import files_bytes, share_weights, weights_spec
from workers.export.verify import worst_difference
from workers.model.compiler import TailorLM, compile_genome


@dataclass
class ExportResult:
    out_dir: Path
    manifest: GraphManifest
    max_abs_diff: float  # onnxruntime vs torch, over prefill and decode logits and states
    exporter: str = "dynamo"  # which exporter wrote the graphs
    # attention="fused": backbone slots exported through GroupQueryAttention, and why the
    # other attention slots fell back to plain ops
    fused_attention_layers: list[int] = field(default_factory=list)
    fused_fallbacks: dict[int, str] = field(default_factory=dict)


@dataclass(frozen=True)
class GraphSet:
    """Which graphs one export writes: the variant's, and the chunk graph or not."""

    variant: Variant
    chunk_graph: bool = False

    @property
    def kinds(self) -> list[str]:
        """The graph kinds, in the manifest's order."""
        chunk = [CHUNK_GRAPH] if self.chunk_graph else []
        return ["prefill", "prefill_last", *chunk, "decode"]

    @property
    def files(self) -> list[str]:
        """The graph files, in the manifest's order (what share_weights reads)."""
        return [self.variant.file(kind) for kind in self.kinds]


EXPORTERS = ("auto", "torchscript", "dynamo")
ATTENTION_EXPORTS = ("plain", "fused")
# Worst |onnxruntime - torch| for "auto" to keep a traced export: two runtimes' float32
# kernels, rounding only (measured <= 1.3e-5 over the registry on logits of scale ~4, with
# AVX-512 or generic PyTorch kernels); a wrong trace is off by O(1).
TRACE_TOLERANCE = 1e-4
# ... or, for a model whose own float32 rounding is larger (it grows with width and depth:
# 9.9e-5 from float64 at width 256 / 16 layers), this many times that rounding
# (`verify.float32_rounding`): two float32 implementations differ by a few times what
# either differs from exact arithmetic (onnxruntime's at width 256 / 16 layers: 3.4x), and a
# wrong trace stays O(1) off, far above it.
ROUNDING_FACTOR = 10.0


def trace_tolerance(model: TailorLM) -> float:
    """What a traced export of `model` may differ from torch by: TRACE_TOLERANCE, or for a
    large model ROUNDING_FACTOR times its own float32 rounding (phone-scale models traced
    right differ by more than 1e-4 and would otherwise fall back to the ~10x slower dynamo)."""
    from workers.export.verify import float32_rounding

    return max(TRACE_TOLERANCE, ROUNDING_FACTOR * float32_rounding(model))


def export_onnx(
    genome: Genome | dict[str, Any],
    out_dir: str | Path,
    model: TailorLM | None = None,
    example_context: int = 16,
    verify: bool = True,
    exporter: str = "auto",
    attention: str = "plain",
    chunk_graph: bool = False,
) -> ExportResult:
    """Write the graphs and manifest (prefill.onnx, decode.onnx, manifest.json for plain
    attention; core.precision.Variant(attention="fused").files for fused) and genome.json
    into `out_dir`.

    `model` carries trained weights when given (else fresh weights, seed 0). With `verify`,
    both graphs are run in onnxruntime on random inputs and compared with torch ("auto"
    always verifies the traced graphs before keeping them). `attention="fused"` traces the
    attention layers GroupQueryAttention can express through it (exporter "auto" or
    "torchscript"; it is always verified, and a RuntimeError says so if tracing fails or
    onnxruntime differs from torch by more than TRACE_TOLERANCE). `chunk_graph` adds the
    chunk graph (`prefill_chunk`), verified like the others.
    """
    _check_options(exporter, attention)
    variant = Variant(attention=attention)
    genome = Genome.coerce(genome)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model = (model if model is not None else compile_genome(genome, seed=0)).eval().float()
    fused_layers: list[int] = []
    fallbacks: dict[int, str] = {}
    graphs = GraphSet(variant, chunk_graph)
    if attention == "fused":
        used, diff, fused_layers, fallbacks = _export_fused(model, out, example_context, graphs)
    else:
        used, diff = _export_plain(model, out, example_context, verify, exporter, graphs)
    share_weights(out, graphs.files, variant.file("weights"))
    manifest = _write_manifest(genome, model, out, graphs, used, fused_layers)
    (out / "genome.json").write_text(json.dumps(genome.to_json(), indent=2))
    return ExportResult(out, manifest, diff, used, fused_layers, fallbacks)


def _check_options(exporter: str, attention: str) -> None:
    """Refuse an unknown exporter or attention export, and fused attention with dynamo."""
    if exporter not in EXPORTERS:
        raise ValueError(f"exporter must be one of {', '.join(EXPORTERS)}, not {exporter!r}")
    if attention not in ATTENTION_EXPORTS:
        raise ValueError(
            f"attention must be one of {', '.join(ATTENTION_EXPORTS)}, not {attention!r}"
        )
    if attention == "fused" and exporter == "dynamo":
        raise ValueError(
            "attention='fused' exports with the tracer (exporter 'auto' or "
            "'torchscript'); torch.export would need onnxscript custom ops"
        )


def _export_plain(
    model: TailorLM,
    out: Path,
    example_context: int,
    verify: bool,
    exporter: str,
    graphs: GraphSet,
) -> tuple[str, float]:
    """Trace first (fast); "auto" falls back to dynamo if tracing fails or is wrong."""
    if exporter != "dynamo":
        try:
            return "torchscript", _trace_plain(
                model, out, example_context, verify, exporter, graphs
            )
        except Exception:
            if exporter == "torchscript":
                raise
    export_graphs(model, out, "dynamo", example_context, chunk_graph=graphs.chunk_graph)
    if not verify:
        return "dynamo", float("nan")
    return "dynamo", worst_difference(model, out, chunk_graph=graphs.chunk_graph)


def _trace_plain(
    model: TailorLM,
    out: Path,
    example_context: int,
    verify: bool,
    exporter: str,
    graphs: GraphSet,
) -> float:
    """Trace; "auto" refuses graphs off by more than TRACE_TOLERANCE (a baked shape)."""
    export_graphs(model, out, "torchscript", example_context, chunk_graph=graphs.chunk_graph)
    _check_traced_inputs(model, out, graphs, "the tracer dropped an unused graph input")
    if not (verify or exporter == "auto"):
        return float("nan")
    diff = worst_difference(model, out, chunk_graph=graphs.chunk_graph)
    if exporter == "auto" and not diff <= TRACE_TOLERANCE:
        tolerance = trace_tolerance(model)
        if not diff <= tolerance:
            raise RuntimeError(f"traced graphs differ from torch by {diff:.2e} (> {tolerance:.2e})")
    return diff


def _export_fused(
    model: TailorLM, out: Path, example_context: int, graphs: GraphSet
) -> tuple[str, float, list[int], dict[int, str]]:
    """Trace through GroupQueryAttention where exact; any failure falls back."""
    from workers.export.fused_attention import fused_attention

    variant, chunk = graphs.variant, graphs.chunk_graph
    fused_layers: list[int] = []
    fallbacks: dict[int, str] = {}
    try:
        with fused_attention(model) as layers:
            fused_layers, fallbacks = layers.fused, layers.fallbacks
            export_graphs(model, out, "torchscript", example_context, variant, chunk_graph=chunk)
        _check_traced_inputs(model, out, graphs, "the tracer dropped a graph input")
        diff = worst_difference(model, out, variant.tag, chunk)
        if not diff <= TRACE_TOLERANCE and not diff <= (tolerance := trace_tolerance(model)):
            raise RuntimeError(f"onnxruntime differs from torch by {diff:.2e} (> {tolerance:.2e})")
        return "torchscript", diff, fused_layers, fallbacks
    except Exception as exc:
        return _fused_fallback(
            model, out, example_context, graphs, exc, list(fallbacks) + fused_layers
        )


def _fused_fallback(
    model: TailorLM,
    out: Path,
    example_context: int,
    graphs: GraphSet,
    exc: Exception,
    layers: list[int],
) -> tuple[str, float, list[int], dict[int, str]]:
    """Plain ops with dynamo under the fused names: a fused job still gets graphs."""
    # The tracer cannot export this model (e.g. a long convolution whose kernel is as long
    # as the sequence) or got it wrong: every attention layer falls back to plain ops; the
    # manifest lists no fused layer.
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
    fallbacks = {i: f"the tracer cannot export this model: {first}" for i in layers} or {-1: first}
    variant, chunk = graphs.variant, graphs.chunk_graph
    export_graphs(model, out, "dynamo", example_context, variant, plain_ops=True, chunk_graph=chunk)
    return "dynamo", worst_difference(model, out, variant.tag, chunk), [], fallbacks


def _check_traced_inputs(model: TailorLM, out: Path, graphs: GraphSet, message: str) -> None:
    """The tracer drops inputs nothing reads; the manifest promises them."""
    _, expected_decode_inputs = io_names(model.state_layout())
    expected = {"prefill": ["input_ids"], "prefill_last": ["input_ids"]}
    for kind in graphs.kinds:
        path = out / graphs.variant.file(kind)
        if graph_inputs(path) != expected.get(kind, expected_decode_inputs):
            raise RuntimeError(message)


def _graph_specs(model: TailorLM, out: Path, graphs: GraphSet) -> dict[str, GraphSpec]:
    """Every graph's file, checksum, inputs and outputs, as the manifest lists them."""
    layout = model.state_layout()
    vocab = model.plan.vocab_size

    def cache_specs(prefix: str) -> list[TensorSpec]:
        return [
            TensorSpec(
                name=f"{prefix}_{t.name}",
                dtype="float32",
                shape=list(t.shape),
                role="cache",
                past_cap=t.past_cap,
            )
            for t in layout
        ]

    def graph_spec(kind: str, inputs: list[TensorSpec], outputs: list[TensorSpec]) -> GraphSpec:
        path = out / graphs.variant.file(kind)
        return GraphSpec(
            file=path.name,
            sha256=file_sha256(path),
            size_bytes=path.stat().st_size,
            inputs=inputs,
            outputs=outputs,
        )

    ids = TensorSpec(name="input_ids", dtype="int64", shape=[1, "seq"], role="input_ids")
    position_spec = TensorSpec(name="position", dtype="int64", shape=[1], role="position")
    logits = TensorSpec(name="logits", dtype="float32", shape=[1, "seq", vocab], role="logits")
    last_logits = logits.model_copy(update={"shape": [1, 1, vocab]})
    io = {
        "prefill": ([ids], [logits, *cache_specs("present")]),
        "prefill_last": ([ids], [last_logits, *cache_specs("present")]),
        CHUNK_GRAPH: (
            [ids, position_spec, *cache_specs("past")],
            [last_logits, *cache_specs("present")],
        ),
        "decode": (
            [ids.model_copy(update={"shape": [1, 1]}), position_spec, *cache_specs("past")],
            [last_logits, *cache_specs("present")],
        ),
    }
    return {kind: graph_spec(kind, *io[kind]) for kind in graphs.kinds}


def _write_manifest(
    genome: Genome,
    model: TailorLM,
    out: Path,
    graphs: GraphSet,
    used: str,
    fused_layers: list[int],
) -> GraphManifest:
    """The manifest lets a phone-side runner feed the graphs without Python."""
    variant = graphs.variant
    per_token, fixed = costs.cache_split(genome)
    manifest = GraphManifest(
        genome_hash=genome.hash(),
        vocab_size=model.plan.vocab_size,
        opset=OPSET,
        dtype="float32",
        exporter=used,
        graphs=_graph_specs(model, out, graphs),
        cache_pairs=cache_pairs(model.state_layout()),
        params=costs.params(genome),
        cache_bytes_per_token=per_token * 4,
        cache_bytes_fixed=fixed * 4,
        variant=variant.tag,
        attention=variant.attention,
        fused_attention_layers=fused_layers,
        profiled_prefill="prefill_last",
        weights=weights_spec(out, variant.file("weights")),
    )
    manifest = manifest.model_copy(update={"model_bytes": files_bytes(out, manifest.phone_files)})
    (out / variant.file("manifest")).write_text(manifest.model_dump_json(indent=2))
    return manifest
