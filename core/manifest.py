"""The graph manifest that `workers/` writes beside every ONNX export.

A phone runner feeds the graphs from it without Python: names, dtypes and shapes of every
input and output, with symbolic dimensions spelled out. The exporter builds it as this
model, the API validates it when it hands a task out, and the agents read it.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from .precision import AttentionExport, Precision
from .strict import StrictModel

MANIFEST_FORMAT = "tailor.manifest/1"
# The exporter's graph revision: what a timing or a size depends on (the manifest's format is
# unchanged). Exports and measurements of another revision describe other graphs: the
# orchestrator's evaluation cache keys exports by it (orchestrator/records.py EXPORT_KEY) and
# bench/phone_measurements.py refuses a measurement cache of another. 2: traced when exact;
# 3: state outputs scheduled right after their layers (lower prefill peak memory); 4: int8
# weights on 7 bits, so no x86 kernel saturates; 5: one weights file both graphs read, the
# embedding quantized, a last-token prefill graph, int4 at accuracy level 4; 6: a GQA
# attention decode step attends with its KV heads grouped, not expanded
# (workers/liv/attention.py `Attention._attend_one`); 7: so do GQA prefill and chunk graphs
# (`Attention._attend`; multi-head attention's graphs are revision 6's).
GRAPH_REVISION = 7
# What a cache written before revisions were recorded is read as (it may be older).
UNRECORDED_GRAPH_REVISION = 5


class TensorSpec(StrictModel):
    """One graph input or output.

    `shape` holds ints for fixed dimensions and these symbols for variable ones:
    - "seq": the number of new tokens (L for prefill; always 1 in the decode graph),
    - "past": the number of tokens already held by an attention cache; a windowed
      attention layer caps it at `past_cap` (its window).
    """

    name: str
    dtype: Literal["int64", "float32", "float16"]
    shape: list[int | Literal["seq", "past"]]
    role: Literal["input_ids", "position", "logits", "cache"]
    past_cap: int | None = None


class GraphSpec(StrictModel):
    file: str
    sha256: str
    size_bytes: int
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]


class WeightsFile(StrictModel):
    """The external-data file every graph of a variant reads its weights from: one copy of
    each weight, at the same offset in every graph (onnx external data), beside the graphs."""

    file: str
    sha256: str
    size_bytes: int


class QuantizationInfo(StrictModel):
    """How a quantized variant was made (onnxruntime.quantization), for the record."""

    method: Literal["dynamic", "matmul_nbits"]  # int8: quantize_dynamic; int4: MatMulNBits
    weight_bits: Literal[8, 4]
    block_size: int | None = None  # int4
    symmetric: bool = True
    reduce_range: bool = Field(
        default=False,
        description="int8: weights on 7 bits, so no x86 "
        "kernel saturates (absent in older manifests: 8 bits)",
    )
    quantized_nodes: int = Field(ge=0, description="MatMul/Gemm nodes whose weights were quantized")
    accuracy_level: int | None = Field(
        default=None,
        description="int4: MatMulNBits' accuracy_level (4: int8 compute, "
        "as phone builds run it; absent in older manifests: float compute)",
    )
    embedding: Literal["float", "own_table", "lm_head_weights"] | None = Field(
        default=None,
        description="how the embedding table is stored: float; quantized as its own table "
        "(GatherBlockQuantized for int4, int8 Gather + DequantizeLinear for int8); or read "
        "from the tied LM head's quantized weights (one copy for both); absent in older "
        "manifests: float",
    )
    tool: str = Field(description="e.g. 'onnxruntime.quantization 1.32.0'")


class VariantCheck(StrictModel):
    """How a variant's graphs were verified (onnxruntime on random token ids).

    `decode_vs_prefill_max_diff`: logits of decode-after-prefill vs prefill of the whole
    sequence, max abs, at most `allowed` (core.precision.agreement_bound: `tolerance` x
    max(1, `logits_scale`) for float32 and int4; for int8 INT8_DEVIATION_FACTOR x
    `vs_float_max_abs_diff`, the int8 prefill graph's own deviation from float; for int4 with
    int8 compute the larger of its floor and INT8_DEVIATION_FACTOR x
    `vs_float_compute_max_abs_diff`). The float deviation fields compare this variant's
    logits with the float32 graphs' on the same tokens (absent for the float32 variant
    itself)."""

    decode_vs_prefill_max_diff: float
    last_token_vs_prefill_max_diff: float | None = Field(
        default=None,
        description="the last-token prefill graph's logits against the full prefill "
        "graph's last row, held to the same bound (absent in older manifests)",
    )
    chunked_vs_prefill_max_diff: float | None = Field(
        default=None,
        description="the prompt prefilled a chunk at a time through the chunk graph: its "
        "last logits against the full prefill graph's last row, held to the same bound "
        "(absent in older manifests)",
    )
    tolerance: float
    logits_scale: float = 1.0
    allowed: float | None = Field(
        default=None,
        description="the bound the decode-vs-prefill "
        "difference was held to (absent in older manifests)",
    )
    vs_float_max_abs_diff: float | None = None
    vs_float_compute_max_abs_diff: float | None = Field(
        default=None,
        description="int4 at accuracy level 4: the prefill graph's deviation from the same "
        "graph computing in float (accuracy level 0), what int8 compute alone changes",
    )
    vs_float_mean_abs_diff: float | None = None
    decode_vs_float_max_abs_diff: float | None = Field(
        default=None, description="decode after prefill against the float graphs"
    )
    vs_float_top1_agreement: float | None = Field(
        default=None,
        ge=0,
        le=1,
        description="share of positions whose argmax token equals the float graphs'",
    )


GraphKind = Literal["prefill", "prefill_last", "prefill_chunk", "decode"]


class GraphManifest(StrictModel):
    """Written as manifest.json beside prefill.onnx and decode.onnx.

    `prefill_last` (absent in older manifests) takes the same input as `prefill` and returns
    the same cache, but only the last position's logits ([1, 1, V]): a phone generating text
    needs no others, and at long prompts the L x V logits would set prefill's peak memory.
    `profiled_prefill` names the graph profiling times for prefill; the full-logit graph
    stays for perplexity and the decode-vs-prefill checks. `prefill_chunk` (absent in older
    manifests) prefills a prompt a chunk at a time: the decode graph's inputs with
    `input_ids` of any length (1, T), `position` the chunk's first token, and the same
    outputs (the last position's logits, the cache after the chunk); before the first chunk
    the cache is empty (core/chunked_prefill.py). `weights` names the one
    external-data file all of them read their weights from (absent: weights inside each
    graph).

    The decode graph's cache outputs are the next step's cache inputs, in the same order
    (`cache_pairs` maps input name -> output name). `position` is the absolute index of the
    token being fed (0 for the first decode step after an empty prefill).
    """

    format: Literal[MANIFEST_FORMAT] = MANIFEST_FORMAT
    genome_hash: str
    vocab_size: int
    opset: int
    exporter: Literal["torchscript", "dynamo"] = "dynamo"  # torch.onnx's tracer or torch.export
    dtype: Literal["float32", "float16"]
    graphs: dict[GraphKind, GraphSpec]
    profiled_prefill: Literal["prefill", "prefill_last"] = "prefill"
    weights: WeightsFile | None = None
    cache_pairs: dict[str, str]
    params: int
    cache_bytes_per_token: int
    cache_bytes_fixed: int
    precision: Precision = "float32"
    variant: str = Field(
        default="",
        description="core.precision.Variant tag: '' for the plain "
        "float32 graphs, else e.g. 'int8', 'int4-b32', 'int4-b32-fused'",
    )
    attention: AttentionExport = "plain"
    fused_attention_layers: list[int] = Field(
        default_factory=list,
        description="attention layers exported through "
        "GroupQueryAttention (the others, if any, fell back to plain ops)",
    )
    model_bytes: int | None = Field(
        default=None,
        ge=0,
        description="bytes of every file a phone stores to run the variant (`phone_files`: "
        "the graphs it runs and their one weights file, each counted once; older "
        "manifests: the decode graph's initializer bytes)",
    )
    quantization: QuantizationInfo | None = None
    check: VariantCheck | None = None

    @property
    def files(self) -> list[str]:
        """Every file of this variant: each graph and the weights file they share, each
        once (an agent is handed `phone_files`)."""
        return self._with_weights([g.file for g in self.graphs.values()])

    @property
    def phone_files(self) -> list[str]:
        """What a phone stores to run this variant: the graphs it runs (the profiled prefill
        graph and decode; the full-logit prefill graph serves perplexity on the host) and
        their weights file, each once (what the ADB backend pushes; `model_bytes`)."""
        return self._with_weights([self.profiled(k).file for k in ("prefill", "decode")])

    def _with_weights(self, names: list[str]) -> list[str]:
        if self.weights is not None:
            names.append(self.weights.file)
        return list(dict.fromkeys(names))

    def profiled(self, kind: Literal["prefill", "decode"]) -> GraphSpec:
        """The graph profiling times for `kind` (prefill: `profiled_prefill`)."""
        return self.graphs[self.profiled_prefill if kind == "prefill" else kind]
