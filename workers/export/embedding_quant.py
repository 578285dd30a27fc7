"""The embedding table in the quantized variants, with onnxruntime's own operators.

At a phone's vocabulary the embedding (and an untied LM head) is a large share of the
weights, so a variant that leaves it float stores most of its bytes in float. Two cases:

- Its own table (an untied head, or no head reads it): onnxruntime's quantizers quantize
  the Gather itself, as they do for onnxruntime-genai's builder: int4 with
  `MatMulNBitsQuantizer` to `com.microsoft::GatherBlockQuantized` (blocks along the width,
  the variant's block size and symmetry), int8 with `quantize_dynamic` to an int8 table,
  `Gather` and `DequantizeLinear`.
- Tied to the LM head (the traced graph holds the table and its transpose, the head's
  weight): the head is quantized as every other MatMul, and the embedding then reads the
  head's quantized weights, so one quantized copy serves both. int4: `MatMulNBits` stores
  the head's weight [D, V] as V rows of D/block blocks, exactly a row-wise block-quantized
  [V, D] table, which `GatherBlockQuantized` reads as packed uint8 with the same scales
  (and zero points). int8: `MatMulInteger` reads the head's int8 weight [D, V]; the
  embedding gathers its columns (`Gather` on axis 1), transposes them to [1, L, D] and
  `DequantizeLinear`s them with the head's per-tensor scale and zero point.

The shared-weights writer (workers/export/shared_weights.py) stores bytes that two tensors
share once, so the reshaped views cost nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Embedding:
    """The embedding Gather of a graph and, when the LM head is tied to it, the head."""

    gather: str  # the Gather node's name
    table: str  # its float [V, D] initializer
    head_output: str | None  # the tied head MatMul's output (its weight: the table transposed)
    head_weight: str | None  # that MatMul's weight initializer


def find_embedding(model) -> Embedding | None:
    """The Gather that reads `input_ids` from a float [V, D] initializer, and the MatMul
    whose constant weight is that table transposed (the tied LM head), if any. Nodes must be
    named (quantize._prepare names them)."""
    import onnx
    from onnx import numpy_helper

    inits = {i.name: i for i in model.graph.initializer}
    gather = next(
        (
            n
            for n in model.graph.node
            if n.op_type == "Gather"
            and n.input[1] == "input_ids"
            and n.input[0] in inits
            and inits[n.input[0]].data_type == onnx.TensorProto.FLOAT
            and len(inits[n.input[0]].dims) == 2
        ),
        None,
    )
    if gather is None:
        return None
    table = numpy_helper.to_array(inits[gather.input[0]])
    for node in model.graph.node:
        weight = inits.get(node.input[1]) if node.op_type == "MatMul" else None
        if weight is not None and tuple(weight.dims) == table.shape[::-1]:
            if np.array_equal(numpy_helper.to_array(weight), table.T):
                return Embedding(gather.name, gather.input[0], node.output[0], weight.name)
    return Embedding(gather.name, gather.input[0], None, None)


def gathers_to_leave(model, embedding: Embedding | None) -> list[str]:
    """Gather nodes the quantizers must not touch: every one but an own-table embedding
    (constant tables such as RoPE's stay float; a tied table is rewritten afterwards)."""
    own = embedding.gather if embedding is not None and embedding.head_output is None else None
    return [n.name for n in model.graph.node if n.op_type == "Gather" and n.name != own]


def read_head_weights(model, embedding: Embedding, precision: str) -> bool:
    """Point a tied embedding at the quantized head's weights (in place). False, leaving the
    embedding float, when the head was not quantized the way this expects."""
    import onnx

    gather = next(n for n in model.graph.node if n.name == embedding.gather)
    inits = {i.name: i for i in model.graph.initializer}
    if precision == "int4":
        nodes, tensors = _int4_view(model, embedding, inits)
    else:
        nodes, tensors = _int8_view(embedding, inits)
    if nodes is None:
        return False
    for i, node in enumerate(nodes):
        node.name = f"{embedding.gather}_q{i}"
    nodes[-1].output[:] = [gather.output[0]]
    names = [n.name for n in model.graph.node]
    at = names.index(embedding.gather)
    kept = [n for n in model.graph.node if n.name != embedding.gather]
    del model.graph.node[:]
    model.graph.node.extend(kept[:at] + nodes + kept[at:])
    model.graph.initializer.extend(tensors)
    if not any(embedding.table in n.input for n in model.graph.node):
        keep = [i for i in model.graph.initializer if i.name != embedding.table]
        del model.graph.initializer[:]
        model.graph.initializer.extend(keep)
    if not any(o.domain == "com.microsoft" for o in model.opset_import):
        model.opset_import.append(onnx.helper.make_opsetid("com.microsoft", 1))
    return True


def _int4_view(model, embedding: Embedding, inits: dict):
    """GatherBlockQuantized over the head's MatMulNBits weights, as [V, D/2] packed uint8."""
    from onnx import helper, numpy_helper

    head = _producer(model, embedding, "MatMulNBits")
    if head is None:
        return None, []
    attrs = {a.name: helper.get_attribute_value(a) for a in head.attribute}
    if attrs.get("bits", 4) != 4 or attrs["K"] % attrs["block_size"]:
        return None, []
    vocab, width = attrs["N"], attrs["K"]
    names = [f"{embedding.table}_head_q4", "input_ids", f"{embedding.table}_head_scales"]
    views = [(head.input[1], [vocab, width // 2]), (head.input[2], [vocab, -1])]
    if len(head.input) > 3 and head.input[3]:
        names.append(f"{embedding.table}_head_zero_points")
        views.append((head.input[3], [vocab, -1]))
    tensors = [
        numpy_helper.from_array(numpy_helper.to_array(inits[src]).reshape(shape), name)
        for (src, shape), name in zip(views, names[:1] + names[2:])
    ]
    node = helper.make_node(
        "GatherBlockQuantized",
        names,
        ["out"],
        domain="com.microsoft",
        gather_axis=0,
        quantize_axis=1,
        block_size=attrs["block_size"],
        bits=4,
    )
    return [node], tensors


def _int8_view(embedding: Embedding, inits: dict):
    """Columns of the head's int8 weight [D, V], transposed and dequantized."""
    from onnx import helper

    # quantize_dynamic's names for a quantized weight W: W_quantized, W_scale, W_zero_point
    suffixes = ("_quantized", "_scale", "_zero_point")
    weight, scale, zero = (f"{embedding.head_weight}{s}" for s in suffixes)
    if not all(name in inits for name in (weight, scale, zero)):
        return None, []
    gathered, rows = f"{embedding.gather}_columns", f"{embedding.gather}_rows"
    nodes = [
        helper.make_node("Gather", [weight, "input_ids"], [gathered], axis=1),  # (D, 1, L)
        helper.make_node("Transpose", [gathered], [rows], perm=[1, 2, 0]),  # (1, L, D)
        helper.make_node("DequantizeLinear", [rows, scale, zero], ["out"]),
    ]
    return nodes, []


def _producer(model, embedding: Embedding, op_type: str):
    """The quantized head: the node of `op_type` that writes the head MatMul's output (the
    quantizer keeps the output's name)."""
    return next(
        (n for n in model.graph.node if n.op_type == op_type and embedding.head_output in n.output),
        None,
    )
