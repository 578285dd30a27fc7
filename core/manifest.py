"""The graph manifest that `workers/` writes beside every ONNX export.

A phone runner feeds the graphs from it without Python: names, dtypes and shapes of every
input and output, with symbolic dimensions spelled out. The exporter builds it as this
model, the API validates it when it hands a task out, and the agents read it.
"""

from __future__ import annotations

from typing import Literal

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


