"""int8 and int4 variants of every preset and every operator: they run in onnxruntime, their
decode steps agree with prefill, weights shrink, and only the weight products are quantized."""

from __future__ import annotations

import json
import math

import numpy as np
import onnx
import onnx.numpy_helper
import pytest
import torch

from core import PRESETS, catalog, costs, preset
from core.chunked_prefill import CHUNK_GRAPH
from core.manifest import GraphManifest
from core.precision import AGREEMENT_TOLERANCE, INT8_DEVIATION_FACTOR, Variant, agreement_bound
from workers.export.quantize import QuantizationError, onnx_perplexity, quantize_export
from workers.export.variants import export_variants
from workers.model.compiler import compile_genome
from workers.train.trainer import evaluate_loss

from .helpers import operator_genome
from .test_export import assert_states_computed_before_the_logits

INT8, INT4 = Variant("int8"), Variant("int4")
WEIGHT_OPS = {"MatMulInteger", "DynamicQuantizeMatMul", "MatMulNBits"}


def small(name: str) -> dict:
    size = dict(width=32, heads=2, kv_heads=1, ffn=64, vocab=97)
    if name != "lfm2":
        size["layers"] = 3
    return preset(name, **size).to_json()


def check_both(genome: dict, folder) -> dict:
    exported = export_variants(genome, folder, [INT8, INT4], chunk_graph=True)
    for variant in (INT8, INT4):
        manifest = exported[variant.tag].manifest
        check = manifest.check
        # int8: 3x its own deviation from float; int4 (int8 compute): 1e-4 of the logits'
        # scale or 3x int8 compute's deviation from float compute (the bounds' derivations
        # are beside them in core/precision.py)
        assert check.allowed == agreement_bound(
            variant.precision,
            check.logits_scale,
            check.vs_float_max_abs_diff,
            check.vs_float_compute_max_abs_diff,
        )
        assert check.decode_vs_prefill_max_diff <= check.allowed
        assert check.last_token_vs_prefill_max_diff <= check.allowed
        if variant.precision == "int4":
            assert manifest.quantization.accuracy_level == 4
            assert check.allowed == max(
                AGREEMENT_TOLERANCE["int4"] * max(1, check.logits_scale),
                INT8_DEVIATION_FACTOR * check.vs_float_compute_max_abs_diff,
            )
        else:
            assert check.allowed >= INT8_DEVIATION_FACTOR * check.vs_float_max_abs_diff
        assert 0 <= check.vs_float_top1_agreement <= 1 and check.vs_float_max_abs_diff > 0
    return exported


@pytest.mark.parametrize("name", list(PRESETS))
def test_every_preset_quantizes_and_decodes_like_it_prefills(name, tmp_path):
    exported = check_both(small(name), tmp_path)
    base = exported[""].manifest
    for variant in (INT8, INT4):
        manifest = GraphManifest.model_validate_json(
            (tmp_path / variant.file("manifest")).read_text()
        )
        assert manifest == exported[variant.tag].manifest
        # the same contract as the float graphs: names, shapes, roles, cache pairs
        assert set(manifest.graphs) == {"prefill", "prefill_last", "prefill_chunk", "decode"}
        # the variant was checked prefilling a chunk at a time (require_agreement refuses
        # one beyond its bound)
        assert manifest.check.chunked_vs_prefill_max_diff is not None
        for kind in manifest.graphs:
            assert manifest.graphs[kind].inputs == base.graphs[kind].inputs
            assert manifest.graphs[kind].outputs == base.graphs[kind].outputs
            assert manifest.graphs[kind].file == variant.file(kind)
        assert manifest.cache_pairs == base.cache_pairs and manifest.precision == variant.precision
        # int8: onnxruntime fuses the quantized logits MatMul into a new node, which its
        # execution order takes first, so a state only the file's order put early (the modal
        # conv's) runs after it again; the conv states are on the main path and never do.
        for kind in ("prefill", CHUNK_GRAPH):
            assert_states_computed_before_the_logits(
                tmp_path,
                manifest,
                ("hyena_modal_modal",) if variant.precision == "int8" else (),
                kind,
            )


def float_weight_products(path) -> list[str]:
    """MatMul/Gemm nodes still reading a float weight, directly or through an Identity (how
    the tracer routes a shared weight)."""
    graph = onnx.load(path).graph
    weights = {i.name for i in graph.initializer if i.data_type == onnx.TensorProto.FLOAT}
    weights |= {
        n.output[0] for n in graph.node if n.op_type == "Identity" and n.input[0] in weights
    }
    return [n.name for n in graph.node if n.op_type in ("MatMul", "Gemm") and n.input[1] in weights]


@pytest.mark.parametrize("op", sorted(catalog.REGISTRY))
def test_every_operator_quantizes_every_weight_product_shared_ones_too(op, tmp_path):
    check_both(operator_genome(op).to_json(), tmp_path)  # slots share featurizer and weights
    assert float_weight_products(tmp_path / "decode.onnx")
    for variant in (INT8, INT4):
        for kind in ("prefill", "prefill_last", "decode"):
            assert float_weight_products(tmp_path / variant.file(kind)) == []


def test_weights_shrink_where_matmul_weights_dominate(tmp_path):
    genome = preset(
        "transformer++", width=256, layers=4, heads=4, kv_heads=2, ffn=768, vocab=512, tie=False
    ).to_json()
    exported = export_variants(genome, tmp_path, [INT8, INT4])
    float_bytes = 4 * costs.params(genome)  # the float32 weights, one copy
    # the float graphs' one weights file holds them, 64-byte aligned (the rest: tensors
    # under 1 KiB stay in the graphs)
    assert exported[""].manifest.weights.size_bytes == pytest.approx(float_bytes, rel=0.01)
    int8 = exported["int8"].manifest.model_bytes / float_bytes
    int4 = exported["int4-b32"].manifest.model_bytes / float_bytes
    assert int8 <= 0.3 and int4 <= 0.2, (int8, int4)


def test_only_the_weight_products_are_quantized_and_the_rest_stays_float(tmp_path):
    genome = operator_genome("hyena_y").to_json()  # gated short convolutions and SwiGLU
    export_variants(genome, tmp_path, [INT8, INT4])
    plain = onnx.load(tmp_path / "decode.onnx")
    float_convs = sum(n.op_type == "Conv" for n in plain.graph.node)
    for variant in (INT8, INT4):
        graph = onnx.load(tmp_path / variant.file("decode")).graph
        ops = [n.op_type for n in graph.node]
        assert WEIGHT_OPS & set(ops), ops
        assert ops.count("Conv") == float_convs  # convolutions untouched
        assert "ConvInteger" not in ops
        # the cache stays float32
        dtypes = {i.name: i.type.tensor_type.elem_type for i in (*graph.input, *graph.output)}
        assert all(
            t == onnx.TensorProto.FLOAT
            for n, t in dtypes.items()
            if n.startswith(("past_", "present_"))
        )
    manifest = json.loads((tmp_path / INT4.file("manifest")).read_text())
    assert manifest["quantization"]["method"] == "matmul_nbits"
    assert (
        manifest["quantization"]["block_size"] == 32
        and manifest["quantization"]["quantized_nodes"] > 0
    )


def test_block_size_and_files_are_recorded(tmp_path):
    genome = operator_genome("attention").to_json()
    variant = Variant("int4", block_size=64, symmetric=False)
    exported = export_variants(genome, tmp_path, [variant])
    manifest = exported["int4-b64-asym"].manifest
    assert (manifest.quantization.block_size, manifest.quantization.symmetric) == (64, False)
    blocks = {
        a.i
        for n in onnx.load(tmp_path / variant.file("decode")).graph.node
        if n.op_type == "MatMulNBits"
        for a in n.attribute
        if a.name == "block_size"
    }
    assert blocks == {64}
    import hashlib

    for spec in manifest.graphs.values():
        data = (tmp_path / spec.file).read_bytes()
        assert hashlib.sha256(data).hexdigest() == spec.sha256 and len(data) == spec.size_bytes
    assert not [p for p in tmp_path.iterdir() if p.name.startswith((".", "tmp"))]


@pytest.mark.parametrize("variant", [INT8, INT4], ids=["int8", "int4"])
def test_a_variant_whose_decode_graph_loses_its_cache_is_refused(variant, tmp_path):
    """A real defect, not a lowered bound: the float decode graph is rewritten to read an
    attention cache of zeros, so every quantized decode step forgets the prompt."""
    import onnx.helper as helper

    genome = operator_genome("attention").to_json()
    export_variants(genome, tmp_path, [Variant()])
    model = onnx.load(tmp_path / "decode.onnx")
    cache = next(i.name for i in model.graph.input if i.name.startswith("past_"))
    model.graph.node.insert(0, helper.make_node("Mul", [cache, "zero"], ["forgotten"]))
    model.graph.initializer.append(onnx.numpy_helper.from_array(np.zeros((), np.float32), "zero"))
    for node in model.graph.node[1:]:
        node.input[:] = ["forgotten" if i == cache else i for i in node.input]
    onnx.save(model, tmp_path / "decode.onnx")
    with pytest.raises(QuantizationError, match=f"{variant.tag}: decode after prefill differs"):
        quantize_export(tmp_path, variant)


def test_onnx_perplexity_equals_the_trainers_on_the_same_tokens(tmp_path):
    genome = operator_genome("attention").to_json()
    model = compile_genome(genome, seed=3).eval()
    export_variants(genome, tmp_path, [Variant()], model=model)
    tokens = np.random.default_rng(1).integers(0, genome["global"]["vocab_size"], 3 * 16 + 5)
    loss = evaluate_loss(model, tokens, 16, 4, torch.device("cpu"), autocast=False)
    assert onnx_perplexity(tmp_path / "prefill.onnx", tokens, 16) == pytest.approx(
        math.exp(loss), rel=1e-4
    )
