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
- int4: `MatMulNBitsQuantizer`, weight-only block quantization of those MatMuls to
  `MatMulNBits` (block size and symmetry from the variant).

Everything else stays float: attention's activation-by-activation products, the depthwise
and long convolutions, norms, the embedding table and the decode cache. Each variant is
verified like the float graphs — decode after prefill against prefill of the whole
sequence, within `core.precision.agreement_bound` — and its deviation from the float graphs
is recorded in the manifest (`check`).
"""

from __future__ import annotations

import logging
import tempfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from core.manifest import GraphManifest, GraphSpec, QuantizationInfo, VariantCheck
from core.precision import AGREEMENT_TOLERANCE, INT8_DEVIATION_FACTOR, Variant, agreement_bound
from workers.export.decode_checks import (
    GraphPair,
    decode_after_prefill,
    load_pair,
    session,
    token_nll,
)
from workers.export.graph_stats import file_sha256, initializer_bytes

QUANTIZED_OPS = {
    "MatMulInteger",
    "DynamicQuantizeMatMul",
    "MatMulIntegerToFloat",
    "MatMulNBits",
    "QGemm",
    "DynamicQuantizeLinear",
}


class QuantizationError(ValueError):
    """A quantized variant that does not agree with itself (decode vs prefill) within the
    precision's tolerance, or that could not be made."""


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


def _quantize_graph(src: Path, dst: Path, variant: Variant) -> int:
    """Write the quantized graph; returns how many weight matmuls were quantized."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    model = onnx.load(str(src))
    _prepare(model)
    weights, others = _weight_matmuls(model)
    with tempfile.TemporaryDirectory(prefix="tailor-quant-") as tmp, _quiet_quantizer():
        named = Path(tmp) / "named.onnx"
        onnx.save(model, str(named))
        if variant.precision == "int8":
            quantize_dynamic(
                str(named),
                str(dst),
                weight_type=QuantType.QInt8,
                op_types_to_quantize=["MatMul", "Gemm"],
                nodes_to_exclude=others,
                per_channel=False,
                reduce_range=True,
                use_external_data_format=False,
                extra_options={"MatMulConstBOnly": True},
            )
        else:
            from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

            quantizer = MatMulNBitsQuantizer(
                model,
                bits=4,
                block_size=variant.block_size,
                is_symmetric=variant.symmetric,
                nodes_to_exclude=others,
                op_types_to_quantize=("MatMul",),
            )
            quantizer.process()
            _dedupe_initializers(quantizer.model.model)
            quantizer.model.save_model_to_file(str(dst), use_external_data_format=False)
    out = onnx.load(str(dst), load_external_data=False)
    return sum(
        n.op_type
        in ("MatMulInteger", "DynamicQuantizeMatMul", "MatMulNBits", "MatMulIntegerToFloat")
        for n in out.graph.node
    ) or len(weights)


def _lengths(manifest: GraphManifest) -> tuple[int, ...]:
    """Prompt lengths on both sides of every window (as the float export is verified)."""
    window = max([t.past_cap or 0 for t in manifest.graphs["decode"].inputs] + [0])
    return (11, max(23, window + 7))


def check_variant(
    folder: Path, manifest: GraphManifest, base: GraphManifest | None, steps: int = 5, seed: int = 0
) -> VariantCheck:
    """Decode-after-prefill vs prefill of the whole sequence (this variant against itself),
    and this variant's logits against the float graphs' (`base`) on the same tokens; the
    bound it is held to is `core.precision.agreement_bound`."""
    pair = load_pair(folder, manifest)
    reference: GraphPair | None = load_pair(folder, base) if base is not None else None
    rng = np.random.default_rng(seed)
    worst, scale, decode_dev, deviations, agree, count = 0.0, 0.0, 0.0, [], 0, 0
    for prompt in _lengths(manifest):
        ids = rng.integers(0, manifest.vocab_size, (1, prompt + steps), dtype=np.int64)
        stepped = decode_after_prefill(pair, ids, prompt)
        whole = pair.prefill.run(None, {"input_ids": ids})[0]
        worst = max(worst, float(np.abs(stepped - whole[:, prompt - 1 :]).max()))
        scale = max(scale, float(np.abs(whole).max()))
        if reference is not None:
            floats = reference.prefill.run(None, {"input_ids": ids})[0]
            deviations.append(np.abs(whole - floats).ravel())
            decode_dev = max(decode_dev, float(np.abs(stepped - floats[:, prompt - 1 :]).max()))
            agree += int((whole.argmax(-1) == floats.argmax(-1)).sum())
            count += whole.shape[1]
    tolerance = (
        INT8_DEVIATION_FACTOR
        if manifest.precision == "int8"
        else AGREEMENT_TOLERANCE[manifest.precision]
    )
    if not deviations:
        return VariantCheck(
            decode_vs_prefill_max_diff=worst,
            tolerance=tolerance,
            logits_scale=scale,
            allowed=agreement_bound(manifest.precision, scale, None),
        )
    dev = np.concatenate(deviations)
    return VariantCheck(
        decode_vs_prefill_max_diff=worst,
        tolerance=tolerance,
        logits_scale=scale,
        allowed=agreement_bound(manifest.precision, scale, float(dev.max())),
        vs_float_max_abs_diff=float(dev.max()),
        vs_float_mean_abs_diff=float(dev.mean()),
        decode_vs_float_max_abs_diff=decode_dev,
        vs_float_top1_agreement=agree / count,
    )


def quantize_export(export_dir: str | Path, variant: Variant) -> GraphManifest:
    """Write `variant`'s graphs and manifest beside the float32 graphs of `variant.base`
    in `export_dir`; QuantizationError when its check fails."""
    if variant.precision == "float32":
        raise ValueError(
            "quantize_export makes int8 or int4 variants; float32 graphs come from export_onnx"
        )
    folder = Path(export_dir)
    base = GraphManifest.model_validate_json((folder / variant.base.file("manifest")).read_text())
    graphs, quantized = _quantize_graphs(folder, base, variant)
    manifest = base.model_copy(
        update={
            "graphs": graphs,
            "precision": variant.precision,
            "variant": variant.tag,
            "quantization": _quantization_info(variant, quantized),
            "model_bytes": initializer_bytes(folder / graphs["decode"].file),
        }
    )
    check = check_variant(folder, manifest, base)
    _require_agreement(check, variant)
    manifest = manifest.model_copy(update={"check": check})
    (folder / variant.file("manifest")).write_text(manifest.model_dump_json(indent=2))
    return manifest


def _quantize_graphs(
    folder: Path, base: GraphManifest, variant: Variant
) -> tuple[dict[str, GraphSpec], int]:
    """(the variant's prefill and decode graph specs, the most weight matmuls quantized in
    either): inputs and outputs stay the float graphs', only the files change."""
    from workers.export.graph_finish import finish_graph

    quantized = 0
    graphs = {}
    for kind in ("prefill", "decode"):
        dst = folder / variant.file(kind)
        try:
            quantized = max(
                quantized, _quantize_graph(folder / base.graphs[kind].file, dst, variant)
            )
        except Exception as exc:  # the quantizer's own errors, named
            raise QuantizationError(
                f"{variant.tag}: onnxruntime.quantization failed on the "
                f"{kind} graph: {type(exc).__name__}: {exc}"
            ) from exc
        finish_graph(dst)
        spec = base.graphs[kind]
        graphs[kind] = GraphSpec(
            file=dst.name,
            sha256=file_sha256(dst),
            size_bytes=dst.stat().st_size,
            inputs=spec.inputs,
            outputs=spec.outputs,
        )
    return graphs, quantized


def _quantization_info(variant: Variant, quantized: int) -> QuantizationInfo:
    """How the weights were quantized, recorded so a measurement names the exact recipe."""
    import onnxruntime as ort

    return QuantizationInfo(
        method="dynamic" if variant.precision == "int8" else "matmul_nbits",
        weight_bits=8 if variant.precision == "int8" else 4,
        block_size=variant.block_size if variant.precision == "int4" else None,
        symmetric=variant.symmetric if variant.precision == "int4" else True,
        reduce_range=variant.precision == "int8",
        quantized_nodes=quantized,
        tool=f"onnxruntime.quantization {ort.__version__}",
    )


def _require_agreement(check: VariantCheck, variant: Variant) -> None:
    """Refuse a variant whose decode after prefill drifts from prefill past its bound: a
    phone would measure a graph that does not compute the model."""
    if check.decode_vs_prefill_max_diff <= check.allowed:
        return
    rule = (
        f"{check.tolerance:g} x the int8 prefill graph's deviation from float, "
        f"{check.vs_float_max_abs_diff:.3g}"
        if variant.precision == "int8"
        else f"{check.tolerance:g} of the logits' scale {check.logits_scale:.3g}"
    )
    raise QuantizationError(
        f"{variant.tag}: decode after prefill differs from prefill of the whole sequence by "
        f"{check.decode_vs_prefill_max_diff:.3g} (allowed {check.allowed:.3g}: {rule}); "
        f"decode after prefill deviates from float by up to "
        f"{check.decode_vs_float_max_abs_diff:.3g}"
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
