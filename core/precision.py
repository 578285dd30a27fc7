"""Export variants: the precision a graph runs at, how it was quantized, how attention is
exported, and the file names each variant's graphs and manifest are stored under.

Phones run small language models quantized, so a candidate can be profiled (and scored) at
`float32`, `int8` (ONNX Runtime's dynamic quantization of the MatMul/Gemm weights;
activations quantized at run time; weights on 7 bits, see `workers/export/quantize.py`) or
`int4` (block quantization of the weights to `MatMulNBits`, run with int8 compute as phone
builds run it: `accuracy_level=4`). In both, the embedding table (and an untied LM head) is
quantized too, with onnxruntime's own operators. Depthwise and long convolutions, norms and
the decode cache stay float in every variant. Attention is exported either as
plain ONNX ops ("plain": the L x L score matrix is materialised) or through ONNX Runtime's
fused `GroupQueryAttention` contrib operator ("fused"), as onnxruntime-genai's model builder
exports it.

A variant is named by its `tag`: "" for the plain float32 graphs (`prefill.onnx`,
`decode.onnx`, `manifest.json`, the names agents and users have always seen), otherwise e.g.
"int8", "int4-b32", "int4-b32-fused", "float32-fused" (`prefill.int4-b32.onnx`, ...). Every
setting that changes the graph bytes is in the tag, so artifacts stored per genome hash never
collide and nothing is exported twice. Pure Python: the API, the agents and the workers share
it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import Field, field_validator

from .strict import StrictModel

Precision = Literal["float32", "int8", "int4"]
PRECISIONS: tuple[str, ...] = ("float32", "int8", "int4")
DEFAULT_PRECISION = "float32"
AttentionExport = Literal["plain", "fused"]
ExecutionProvider = Literal["cpu", "xnnpack", "nnapi", "qnn"]
EXECUTION_PROVIDERS: tuple[str, ...] = ("cpu", "xnnpack", "nnapi", "qnn")
# onnxruntime's provider names (the Python API and the host runner use these; the phone
# runner takes the short names above after `-e`)
ORT_PROVIDER_NAMES = {
    "cpu": "CPUExecutionProvider",
    "xnnpack": "XnnpackExecutionProvider",
    "nnapi": "NnapiExecutionProvider",
    "qnn": "QNNExecutionProvider",
}

# How far decode-after-prefill may stray from prefill of the whole sequence (max abs difference
# of the logits, onnxruntime against itself) before a variant is refused. A broken cache path
# is off by about the logits' scale itself.
#
# float32 and int4 (MatMulNBits dequantizes the same weights in both phases; at accuracy
# level 4 it quantizes each activation row per block, so a token's row is quantized alike in
# a one-row decode step and in prefill) run the same arithmetic in both phases, in another
# order on other kernels (a one-row GEMV against an L-row GEMM; MLAS picks the kernel by
# shape and by the CPU's ISA: SSE, AVX2, AVX-512, AMX). They agree to float32 rounding
# (~6e-8 relative per operation) grown by depth and gating: int4 measured 1.9e-6..1.5e-5
# absolute on the presets, random and trained, with logits' scales 4-19 (python -m
# bench.quant_agreement, accuracy level 0). The bound is a fraction of the logits' scale
# (their largest magnitude, at least 1): int4's leaves >= 25x room; float32's is the floor
# of the int8 bound.
AGREEMENT_TOLERANCE: dict[str, float] = {"float32": 1e-5, "int4": 1e-4}

# Dynamic int8 quantizes activations per tensor with a scale computed at run time: from one
# token in a decode step, from the whole sequence in prefill, so the two phases can never agree
# to float precision. Each is an approximation of the same float graph, so by the triangle
# inequality |decode - prefill| <= |decode - float| + |prefill - float|; a one-token step
# quantizes a narrower range than the whole sequence, so its own error is of prefill's order.
# The bound is this factor x the int8 prefill graph's measured max deviation from the float
# graph on the same tokens (1 for prefill's error, up to 2 for decode's). Measured ratios
# decode-vs-prefill / prefill-vs-float: 0.4-0.9 on the presets (random and trained weights).
# On a trained model int8 deviates by 2-7 % of the logits' scale, so a broken cache path (off
# by the scale) fails it; on a random deep gated network int8 is barely better than noise and
# the check says little (the manifest records both numbers).
INT8_DEVIATION_FACTOR = 3.0


# int4 at accuracy level 4 (int8 compute) quantizes each activation row per block at run time:
# the same rows in both phases, but a value that float rounding moves across a rounding
# boundary moves by a whole int8 step, so the phases agree to float rounding only until one
# such flip. Then the int8 argument holds with int8 compute's own error: the bound is
# INT8_DEVIATION_FACTOR x the prefill graph's deviation from the same graph at accuracy level
# 0 (float compute on the same 4-bit weights), never below the float floor. Measured on the
# presets (random weights): decode-vs-prefill / that deviation <= 0.05 (lfm2; the others
# never flipped, 2e-5).


def agreement_bound(
    precision: str,
    logits_scale: float,
    vs_float_max_abs_diff: float | None,
    compute_deviation: float | None = None,
) -> float:
    """The largest decode-vs-prefill difference a variant may show (see the constants above);
    int8 needs its prefill graph's deviation from the float graphs on the same tokens, int4
    with int8 compute (`compute_deviation`) its deviation from float compute."""
    exact = AGREEMENT_TOLERANCE["float32" if precision == "int8" else precision]
    floor = exact * max(1.0, logits_scale)
    if precision == "int4" and compute_deviation is not None:
        return max(floor, INT8_DEVIATION_FACTOR * compute_deviation)
    if precision != "int8":
        return floor
    if vs_float_max_abs_diff is None:
        raise ValueError("the int8 bound needs the int8 graph's deviation from float32")
    return max(floor, INT8_DEVIATION_FACTOR * vs_float_max_abs_diff)


class ExportSpec(StrictModel):
    """How a job's candidates are exported (the `export` block of a job spec)."""

    attention: AttentionExport = Field(
        default="plain",
        description="fused: attention through onnxruntime's "
        "GroupQueryAttention contrib operator (per layer where the operator can express it)",
    )
    int4_block_size: int = Field(
        default=32,
        ge=16,
        le=256,
        description="int4: weights per quantization block (a power of two, 16..256)",
    )
    int4_symmetric: bool = Field(
        default=True, description="int4: symmetric blocks (no zero points)"
    )

    @field_validator("int4_block_size")
    @classmethod
    def _power_of_two(cls, size: int) -> int:
        if size & (size - 1):
            raise ValueError(f"int4_block_size must be a power of two, got {size}")
        return size

    def variant(self, precision: str = DEFAULT_PRECISION) -> "Variant":
        return Variant(
            precision=precision,
            attention=self.attention,
            block_size=self.int4_block_size,
            symmetric=self.int4_symmetric,
        )


@dataclass(frozen=True)
class Variant:
    """One exported form of a candidate: precision, quantization settings, attention export."""

    precision: str = DEFAULT_PRECISION
    attention: str = "plain"
    block_size: int = 32  # int4 only
    symmetric: bool = True  # int4 only

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(
                f"precision must be one of {', '.join(PRECISIONS)}, not {self.precision!r}"
            )
        if self.attention not in ("plain", "fused"):
            raise ValueError(f"attention must be plain or fused, not {self.attention!r}")

    @property
    def tag(self) -> str:
        parts = []
        if self.precision == "int8":
            parts.append("int8")
        elif self.precision == "int4":
            parts.append(f"int4-b{self.block_size}" + ("" if self.symmetric else "-asym"))
        if self.attention == "fused":
            parts.append(f"{self.precision}-fused" if not parts else "fused")
        return "-".join(parts)

    @property
    def base(self) -> "Variant":
        """The float32 graphs this variant is quantized from (same attention export)."""
        return Variant(attention=self.attention)

    def file(
        self,
        kind: Literal["prefill", "prefill_last", "prefill_chunk", "decode", "manifest", "weights"],
    ) -> str:
        """The variant's file of one kind: a graph (`prefill_last`: the prefill graph that
        returns only the last position's logits, what phones run and profiling times;
        `prefill_chunk`: prefill a chunk at a time after a cache), the
        manifest, or `weights`, the one external-data file every graph of the variant reads
        its weights from (onnxruntime resolves it beside the graph)."""
        ext = {"manifest": "json", "weights": "data"}.get(kind, "onnx")
        return f"{kind}.{self.tag}.{ext}" if self.tag else f"{kind}.{ext}"

    @property
    def files(self) -> tuple[str, str, str]:
        return self.file("prefill"), self.file("decode"), self.file("manifest")

    @classmethod
    def from_tag(cls, tag: str) -> "Variant":
        """The inverse of `tag` (ValueError naming the tag if it is not one)."""
        if not tag:
            return cls()
        parts = tag.split("-")
        attention = "fused" if parts[-1] == "fused" else "plain"
        if attention == "fused":
            parts = parts[:-1]
        try:
            if parts == ["float32"] and attention == "fused":
                return cls(attention="fused")
            if parts == ["int8"]:
                return cls("int8", attention)
            if len(parts) in (2, 3) and parts[0] == "int4" and parts[1].startswith("b"):
                if len(parts) == 3 and parts[2] != "asym":
                    raise ValueError
                return cls("int4", attention, int(parts[1][1:]), len(parts) == 2)
        except ValueError:
            pass
        raise ValueError(
            f"{tag!r} is not an export variant tag (e.g. int8, int4-b32, float32-fused)"
        )
