"""Quantized variants of an export, made with ONNX Runtime's own tools.

Phones run small language models with 8- and 4-bit weights, so a search tailored to a phone
must measure (and score) those graphs, not the float ones. From the float32 graphs of
`variant.base` in a folder, `quantize_export` writes the variant's:

- int8: `onnxruntime.quantization.quantize_dynamic` on the MatMul/Gemm nodes whose weight
  is a constant (int8 weights, activations quantized per tensor at run time), weights on 7
  bits (`reduce_range`): MLAS's u8 x s8 kernels for x86 without VNNI (AVX2, AVX-512 core:
  `vpmaddubsw` in qgemm_kernel_avx2.cpp / QgemmU8S8KernelAvx512Core) add pairs of products in
  saturating 16-bit lanes, which 8-bit weights can overflow (255 x 127 x 2 > 32767) and 7-bit
  ones cannot (255 x 64 x 2 < 32767); VNNI, AMX and ARM's dot products do not saturate. With 7
  bits the integer arithmetic is exact on every CPU, so a graph scores and runs the same
  everywhere (it cost <= 0.2 % perplexity on the trained presets);
- int4: `MatMulNBitsQuantizer`, block quantization of those MatMuls to `MatMulNBits` (block
  size and symmetry from the variant), computed with int8 activations as phone builds run it
  (`accuracy_level` INT4_ACCURACY_LEVEL).

The embedding table (and an untied LM head, a MatMul like the others) is quantized too, with
onnxruntime's own operators (workers/export/embedding_quant.py): a phone's vocabulary makes
it a large share of the weights. Everything else stays float: attention's activation-by-
activation products, the depthwise and long convolutions, norms and the decode cache. Every
graph of the float variant (prefill, the last-token prefill profiling runs, decode) is
quantized, and the variant's graphs then share one weights file
(workers/export/shared_weights.py). Each variant is verified like the float graphs — decode
after prefill against prefill of the whole sequence, the last-token graph against its last
row, within `core.precision.agreement_bound` (workers/export/variant_check.py) — and its
deviation from the float graphs is recorded in the manifest (`check`).
"""

from __future__ import annotations

import logging
import tempfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from core.manifest import GraphManifest, GraphSpec, QuantizationInfo
from core.precision import Variant
from workers.export.decode_checks import session, token_nll
from workers.export.embedding_quant import find_embedding, gathers_to_leave, read_head_weights
from workers.export.graph_stats import file_sha256
from workers.export.shared_weights import files_bytes, load_inline, share_weights, weights_spec
from workers.export.variant_check import QuantizationError, check_variant, require_agreement

__all__ = ["QuantizationError", "onnx_perplexity", "quantize_export"]
# MatMulNBits' accuracy level: 4 computes with int8 activations (quantized per row and block
# at run time), as phone builds run int4 (onnxruntime-genai's builder exports int4 models with
# it); 0 would dequantize to float. onnxruntime's x86 kernels for it need AVX2 at least.
INT4_ACCURACY_LEVEL = 4

QUANTIZED_OPS = {
    "MatMulInteger",
    "DynamicQuantizeMatMul",
    "MatMulIntegerToFloat",
    "MatMulNBits",
    "QGemm",
    "DynamicQuantizeLinear",
}


def _weight_matmuls(model) -> tuple[list[str], list[str]]:
    """(MatMul/Gemm nodes whose second input is a constant, the other MatMuls)."""
    constants = {i.name for i in model.graph.initializer}
    constants |= {o for n in model.graph.node if n.op_type == "Constant" for o in n.output}
    weights, others = [], []
    for node in model.graph.node:
        if node.op_type in ("MatMul", "Gemm"):
            (weights if len(node.input) > 1 and node.input[1] in constants else others).append(
                node.name
            )
    return weights, others


def _prepare(model) -> None:
    """Make every weight product visible to the quantizers. The TorchScript exporter routes a
    shared weight (weight sharing, a shared featurizer) through `Identity(weight)`, which
    the quantizers do not see through: point each MatMul/Gemm at the weight itself and drop
    Identity nodes nothing reads any more. Also name every node (the quantizers address
    nodes by name)."""
    constants = {i.name for i in model.graph.initializer}
    alias = {
        n.output[0]: n.input[0]
        for n in model.graph.node
        if n.op_type == "Identity" and n.input[0] in constants
    }
    for node in model.graph.node:
        if node.op_type in ("MatMul", "Gemm") and len(node.input) > 1 and node.input[1] in alias:
            node.input[1] = alias[node.input[1]]
    read = {i for n in model.graph.node for i in n.input} | {o.name for o in model.graph.output}
    keep = [
        n
        for n in model.graph.node
        if not (n.op_type == "Identity" and n.output[0] in alias and n.output[0] not in read)
    ]
    del model.graph.node[:]
    model.graph.node.extend(keep)
    for i, node in enumerate(model.graph.node):
        if not node.name:
            node.name = f"{node.op_type}_{i}"


def _dedupe_initializers(model) -> None:
    """MatMulNBitsQuantizer quantizes a weight once per MatMul that reads it, under the same
    names: keep one copy of each (they are identical)."""
    seen: dict[str, bytes] = {}
    unique = []
    for tensor in model.graph.initializer:
        data = tensor.SerializeToString()
        if tensor.name in seen:
            if seen[tensor.name] != data:
                raise QuantizationError(f"two different initializers named {tensor.name!r}")
            continue
        seen[tensor.name] = data
        unique.append(tensor)
    if len(unique) != len(model.graph.initializer):
        del model.graph.initializer[:]
        model.graph.initializer.extend(unique)


@contextmanager
def _quiet_quantizer():
    """onnxruntime.quantization logs through the root logger (an INFO line per activation it
    leaves float, a warning to pre-process): keep the workers' and the CLI's output clean."""
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(previous)


def _quantize_graph(src: Path, dst: Path, variant: Variant) -> tuple[int, str]:
    """Write the quantized graph; returns (how many weight matmuls were quantized, how the
    embedding is stored: QuantizationInfo.embedding)."""
    import onnx

    model = load_inline(src)
    _prepare(model)
    weights, others = _weight_matmuls(model)
    embedding = find_embedding(model)
    leave = others + gathers_to_leave(model, embedding)
    with tempfile.TemporaryDirectory(prefix="tailor-quant-") as tmp, _quiet_quantizer():
        if variant.precision == "int8":
            named = Path(tmp) / "named.onnx"
            onnx.save(model, str(named))
            _int8(named, dst, leave)
            model = onnx.load(str(dst))
        else:
            model = _int4(model, variant, leave)
    stored = "float" if embedding is None else "own_table"
    if embedding is not None and embedding.head_output is not None:
        tied = read_head_weights(model, embedding, variant.precision)
        stored = "lm_head_weights" if tied else "float"
    onnx.save(model, str(dst))
    quantized = sum(
        n.op_type
        in ("MatMulInteger", "DynamicQuantizeMatMul", "MatMulNBits", "MatMulIntegerToFloat")
        for n in model.graph.node
    )
    return quantized or len(weights), stored


def _int8(named: Path, dst: Path, leave: list[str]) -> None:
    """quantize_dynamic of the weight MatMuls (7-bit weights, module docstring) and of an
    own-table embedding Gather (an int8 table, Gather, DequantizeLinear)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(
        str(named),
        str(dst),
        weight_type=QuantType.QInt8,
        op_types_to_quantize=["MatMul", "Gemm", "Gather"],
        nodes_to_exclude=leave,
        per_channel=False,
        reduce_range=True,
        use_external_data_format=False,
        extra_options={"MatMulConstBOnly": True},
    )


def _int4(model, variant: Variant, leave: list[str]):
    """MatMulNBits (int8 compute: INT4_ACCURACY_LEVEL) for the weight MatMuls and
    GatherBlockQuantized for an own-table embedding, blocks of the variant's size."""
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    quantizer = MatMulNBitsQuantizer(
        model,
        bits=4,
        block_size=variant.block_size,
        is_symmetric=variant.symmetric,
        accuracy_level=INT4_ACCURACY_LEVEL,
        nodes_to_exclude=leave,
        op_types_to_quantize=("MatMul", "Gather"),
    )
    quantizer.process()
    _dedupe_initializers(quantizer.model.model)
    return quantizer.model.model


def quantize_export(export_dir: str | Path, variant: Variant) -> GraphManifest:
    """Write `variant`'s graphs, their weights file and manifest beside the float32 graphs
    of `variant.base` in `export_dir`; QuantizationError when its check fails."""
    if variant.precision == "float32":
        raise ValueError(
            "quantize_export makes int8 or int4 variants; float32 graphs come from export_onnx"
        )
    folder = Path(export_dir)
    base = GraphManifest.model_validate_json((folder / variant.base.file("manifest")).read_text())
    graphs, quantized, embedding = _quantize_graphs(folder, base, variant)
    weights = weights_spec(folder, variant.file("weights"))
    manifest = base.model_copy(
        update={
            "graphs": graphs,
            "weights": weights,
            "precision": variant.precision,
            "variant": variant.tag,
            "quantization": _quantization_info(variant, quantized, embedding),
        }
    )
    model_bytes = files_bytes(folder, manifest.phone_files)
    manifest = manifest.model_copy(update={"model_bytes": model_bytes})
    check = check_variant(folder, manifest, base)
    require_agreement(check, variant)
    manifest = manifest.model_copy(update={"check": check})
    (folder / variant.file("manifest")).write_text(manifest.model_dump_json(indent=2))
    return manifest


def _quantize_graphs(
    folder: Path, base: GraphManifest, variant: Variant
) -> tuple[dict[str, GraphSpec], int, str]:
    """(the variant's graph specs, the most weight matmuls quantized in any graph, how the
    embedding is stored): inputs and outputs stay the float graphs', only the files change;
    the graphs share one weights file (workers/export/shared_weights.py)."""
    from workers.export.graph_finish import finish_graph

    quantized, embedding = 0, "float"
    for kind, spec in base.graphs.items():
        dst = folder / variant.file(kind)
        try:
            count, embedding = _quantize_graph(folder / spec.file, dst, variant)
        except Exception as exc:  # the quantizer's own errors, named
            raise QuantizationError(
                f"{variant.tag}: onnxruntime.quantization failed on the "
                f"{kind} graph: {type(exc).__name__}: {exc}"
            ) from exc
        quantized = max(quantized, count)
        finish_graph(dst)
    files = [variant.file(kind) for kind in base.graphs]
    share_weights(folder, files, variant.file("weights"))
    graphs = {
        kind: GraphSpec(
            file=variant.file(kind),
            sha256=file_sha256(folder / variant.file(kind)),
            size_bytes=(folder / variant.file(kind)).stat().st_size,
            inputs=spec.inputs,
            outputs=spec.outputs,
        )
        for kind, spec in base.graphs.items()
    }
    return graphs, quantized, embedding


def _quantization_info(variant: Variant, quantized: int, embedding: str) -> QuantizationInfo:
    """How the weights were quantized, recorded so a measurement names the exact recipe."""
    import onnxruntime as ort

    return QuantizationInfo(
        method="dynamic" if variant.precision == "int8" else "matmul_nbits",
        weight_bits=8 if variant.precision == "int8" else 4,
        block_size=variant.block_size if variant.precision == "int4" else None,
        symmetric=variant.symmetric if variant.precision == "int4" else True,
        reduce_range=variant.precision == "int8",
        quantized_nodes=quantized,
        accuracy_level=INT4_ACCURACY_LEVEL if variant.precision == "int4" else None,
        embedding=embedding,
        tool=f"onnxruntime.quantization {ort.__version__}",
    )


def onnx_perplexity(prefill_path: str | Path, tokens: np.ndarray, seq_len: int) -> float:
    """exp(mean next-token cross-entropy) of `tokens` through an ONNX prefill graph, over
    non-overlapping windows of `seq_len` tokens, as the trainer's `evaluate_loss` scores a
    torch model (the graph takes batch 1, so window by window)."""
    prefill = session(prefill_path)
    windows = (len(tokens) - 1) // seq_len
    if windows < 1:
        raise ValueError(f"held-out split has {len(tokens)} tokens, fewer than seq_len+1")
    total, count = 0.0, 0
    for w in range(windows):
        window = np.asarray(tokens[w * seq_len : w * seq_len + seq_len + 1], dtype=np.int64)
        logits = prefill.run(["logits"], {"input_ids": window[None, :-1]})[0][0]
        total += float(token_nll(logits, window[1:]).sum())
        count += seq_len
    return float(np.exp(total / count))
