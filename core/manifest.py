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
    tool: str = Field(description="e.g. 'onnxruntime.quantization 1.32.0'")


class VariantCheck(StrictModel):
    """How a variant's graphs were verified (onnxruntime on random token ids).

    `decode_vs_prefill_max_diff`: logits of decode-after-prefill vs prefill of the whole
    sequence, max abs, at most `allowed` (core.precision.agreement_bound: `tolerance` x
    max(1, `logits_scale`) for float32 and int4; for int8 INT8_DEVIATION_FACTOR x
    `vs_float_max_abs_diff`, the int8 prefill graph's own deviation from float). The float
    deviation fields compare this variant's logits with the float32 graphs' on the same tokens
    (absent for the float32 variant itself)."""

    decode_vs_prefill_max_diff: float
    tolerance: float
    logits_scale: float = 1.0
    allowed: float | None = Field(
        default=None,
        description="the bound the decode-vs-prefill "
        "difference was held to (absent in older manifests)",
    )
    vs_float_max_abs_diff: float | None = None
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


class GraphManifest(StrictModel):
    """Written as manifest.json beside prefill.onnx and decode.onnx.

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
    graphs: dict[Literal["prefill", "decode"], GraphSpec]
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
        description="bytes of the decode graph's initializers (weights and constants)",
    )
    quantization: QuantizationInfo | None = None
    check: VariantCheck | None = None
