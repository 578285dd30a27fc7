"""Fused attention export: GroupQueryAttention graphs match torch and the plain graphs, the
operator really replaces the score matrix of the layers listed, and layers it cannot
express fall back to plain ops."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from core import catalog, presets
from core.genome import LLAMA3_ROPE
from core.manifest import GraphManifest
from core.precision import Variant
from workers.export import fused_attention
from workers.export.onnx_export import TRACE_TOLERANCE, export_onnx
from workers.export.verify import verify_export
from workers.model.compiler import compile_genome

from .helpers import operator_genome

FUSED = Variant(attention="fused")
SMALL_PRESET = dict(width=64, layers=3, heads=4, kv_heads=2, ffn=96, vocab=128)


def _nodes(path: Path) -> list:
    return list(onnx.load(str(path)).graph.node)


def _score_matmuls(path: Path) -> int:
    """MatMuls of two computed tensors (Q K^T and P V); projections multiply by weights
    (initializers, or Identity/Transpose of them where weights are shared)."""
    graph = onnx.load(str(path)).graph
    constant = {i.name for i in graph.initializer}
    for n in graph.node:
        if n.op_type == "Constant" or (
            n.op_type in ("Identity", "Transpose") and all(i in constant for i in n.input)
        ):
            constant.update(n.output)
    return sum(
        n.op_type == "MatMul" and not any(i in constant for i in n.input) for n in graph.node
    )


def _gqa_slots(path: Path, kind: str) -> list[int]:
    """The backbone slot each GroupQueryAttention node serves, from the cache tensor its
    present_key output becomes (directly, or through the window's Slice)."""
    graph = onnx.load(str(path)).graph
    outputs = {o.name for o in graph.output}
    consumers: dict[str, list] = {}
    for n in graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    slots = []
    for node in graph.node:
        if node.op_type != "GroupQueryAttention":
            continue
        assert node.domain == "com.microsoft"
        names = [node.output[1]]
        while not any(n in outputs for n in names):
            names = [o for n in names for c in consumers.get(n, []) for o in c.output]
            assert names, f"{node.name}'s present_key reaches no graph output"
        name = next(n for n in names if n in outputs)
        assert name.startswith("present_e") and name.endswith("_attention_k"), name
        slots.append(int(name.split("_")[2][1:]))
        if kind == "decode":
            assert node.input[3].startswith("past_") and node.input[3][5:] == name[8:]
    return slots


def _attention_executions(model, slots) -> int:
    return sum(1 for s in model.plan.executions if s in set(slots))


def _check_fused(genome, tmp_path: Path, model=None):
    model = model if model is not None else compile_genome(genome, seed=0)
    result = export_onnx(genome, tmp_path, model=model, attention="fused", chunk_graph=True)
    assert result.max_abs_diff <= TRACE_TOLERANCE
    assert result.exporter == "torchscript"
    prefill_file, decode_file, manifest_file = FUSED.files
    manifest = json.loads((tmp_path / manifest_file).read_text())
    assert manifest["attention"] == "fused" and manifest["variant"] == "float32-fused"
    assert manifest["graphs"]["prefill"]["file"] == prefill_file
    assert manifest["graphs"]["decode"]["file"] == decode_file
    assert manifest["fused_attention_layers"] == result.fused_attention_layers
    phone_files = GraphManifest.model_validate(manifest).phone_files
    assert manifest["model_bytes"] == sum((tmp_path / f).stat().st_size for f in phone_files)
    attention_slots = [i for i, s in enumerate(model.plan.slots) if s.op == "attention"]
    fused = manifest["fused_attention_layers"]
    assert sorted(fused + list(result.fused_fallbacks)) == attention_slots
    plain_slots = [s for s in attention_slots if s not in fused]
    chunk_file = FUSED.file("prefill_chunk")
    assert manifest["graphs"]["prefill_chunk"]["file"] == chunk_file
    for kind, file in (("prefill", prefill_file), ("decode", decode_file), ("decode", chunk_file)):
        nodes = _nodes(tmp_path / file)
        slots = _gqa_slots(tmp_path / file, kind)
        assert sorted(slots) == sorted(s for s in model.plan.executions if s in fused)
        # every score matrix left belongs to a plain layer: two MatMuls and a Softmax each
        plain = _attention_executions(model, plain_slots)
        assert sum(n.op_type == "Softmax" for n in nodes) == plain
        assert _score_matmuls(tmp_path / file) == 2 * plain
    return result, manifest


def _plain_vs_fused(genome, tmp_path: Path, prompt: int = 19, steps: int = 3) -> float:
    """onnxruntime's fused graphs against its plain graphs, prefill and decode steps."""
    import onnxruntime as ort

    def sessions(tag):
        files = Variant.from_tag(tag).files
        return [
            ort.InferenceSession(str(tmp_path / f), providers=["CPUExecutionProvider"])
            for f in files[:2]
        ]

    export_onnx(genome, tmp_path, exporter="torchscript")
    (pp, pd), (fp, fd) = sessions(""), sessions("float32-fused")
    ids = np.random.default_rng(0).integers(0, genome.vocab_size, (1, prompt + steps))
    worst = 0.0
    plain, fused = (
        pp.run(None, {"input_ids": ids[:, :prompt]}),
        fp.run(None, {"input_ids": ids[:, :prompt]}),
    )
    for t in range(prompt, prompt + steps):
        worst = max(
            [worst] + [float(np.abs(a - b).max()) if a.size else 0.0 for a, b in zip(plain, fused)]
        )
        names = [i.name for i in pd.get_inputs()]
        feed = {"input_ids": ids[:, t : t + 1], "position": np.array([t])}
        plain = pd.run(None, {**feed, **dict(zip(names[2:], plain[1:]))})
        fused = fd.run(None, {**feed, **dict(zip(names[2:], fused[1:]))})
    return max(
        [worst] + [float(np.abs(a - b).max()) if a.size else 0.0 for a, b in zip(plain, fused)]
    )


@pytest.mark.parametrize("heads,kv_heads", [(4, 4), (4, 2), (4, 1)], ids=["mha", "gqa", "mqa"])
def test_fused_matches_torch_and_plain(heads, kv_heads, tmp_path):
    genome = operator_genome("attention", sharing=False, heads=heads, kv_heads=kv_heads, qk_norm=0)
    _, manifest = _check_fused(genome, tmp_path)
    assert manifest["fused_attention_layers"] == [0]
    assert _plain_vs_fused(genome, tmp_path) <= TRACE_TOLERANCE


@pytest.mark.parametrize("window", [1, 4, 16])
def test_sliding_window_fuses_and_matches_on_both_sides(window, tmp_path):
    genome = operator_genome("attention", window=window)  # QK-norm, shared featurizer/weights
    _, manifest = _check_fused(genome, tmp_path)
    assert manifest["fused_attention_layers"] == [0, 2, 3]
    cap = {t["name"]: t["past_cap"] for t in manifest["graphs"]["decode"]["inputs"]}
    assert cap["past_e0_s0_attention_k"] == window
    model = compile_genome(genome, seed=0)
    # prompts shorter than, equal to and past the window, decode steps across it
    for prompt in sorted({2, window, window + 3}):
        assert (
            verify_export(
                model, tmp_path, prompt=prompt, decode_steps=window + 2, variant="float32-fused"
            )
            <= TRACE_TOLERANCE
        )
    assert _plain_vs_fused(genome, tmp_path, prompt=window + 5) <= TRACE_TOLERANCE


def test_qk_norm_llama3_rope_shared_featurizer_and_repeat(tmp_path):
    genome = operator_genome("attention", repeat=2, qk_norm=1)
    genome.rope = LLAMA3_ROPE
    model = compile_genome(genome, seed=0)
    with torch.no_grad():  # trained-looking norm gains, so QK-norm is not the identity
        for p in model.parameters():
            if p.ndim == 1:
                p.uniform_(0.5, 1.5)
    result, manifest = _check_fused(genome, tmp_path, model=model)
    assert manifest["fused_attention_layers"] == [0, 2, 3]
    # block repeat: every execution of the fused modules goes through the operator
    assert len(_gqa_slots(tmp_path / FUSED.files[0], "prefill")) == 6


def test_eager_hooked_model_computes_the_plain_attention():
    genome = operator_genome("attention", window=4)
    model = compile_genome(genome, seed=0).eval()
    ids = torch.randint(0, genome.vocab_size, (1, 9), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        logits, states = model.prefill(ids)
        step, next_states = model.step(ids[:, :1], torch.tensor([9]), states)
        with fused_attention.fused_attention(model):
            logits_f, states_f = model.prefill(ids)
            step_f, next_f = model.step(ids[:, :1], torch.tensor([9]), states_f)
    for a, b in zip([logits, step, *states, *next_states], [logits_f, step_f, *states_f, *next_f]):
        # the fused path is the same float32 math through scaled_dot_product_attention's
        # kernel: rounding only (~1e-7 relative on unit-scale values); 1e-5 is >= 10x that
        assert a.shape == b.shape and torch.allclose(a, b, atol=1e-5)
    assert all("export_hook" not in b.op.__dict__ for b in model.blocks)


ATTENTION_PRESETS = [
    name
    for name, p in presets.PRESETS.items()
    if "attention" in {s.op for s in p.build(presets.Size(layers=3)).backbone}
]


def test_every_preset_with_attention_is_covered():
    assert {"transformer++", "lfm2", "hyena-edge", "striped-hyena", "mobilellm"} <= set(
        ATTENTION_PRESETS
    )


@pytest.mark.parametrize("name", ATTENTION_PRESETS)
def test_presets_fuse_at_small_size(name, tmp_path):
    genome = presets.preset(name, **SMALL_PRESET)
    result = export_onnx(genome, tmp_path, attention="fused", verify=False)
    attention = [i for i, s in enumerate(genome.backbone) if s.op == "attention"]
    if result.exporter == "dynamo":  # only where the tracer cannot export the plain model
        with pytest.raises(Exception):
            export_onnx(genome, tmp_path / "plain", exporter="torchscript", verify=False)
        # every attention layer fell back to plain ops, under the fused variant's names
        assert result.manifest.fused_attention_layers == [] and result.manifest.attention == "fused"
        assert set(result.fused_fallbacks) == set(attention)
        assert all("tracer cannot export" in r for r in result.fused_fallbacks.values())
        assert result.max_abs_diff <= 1e-4  # onnx_export.TRACE_TOLERANCE's bound and reason
        return
    _, manifest = _check_fused(genome, tmp_path)
    assert manifest["fused_attention_layers"] == attention and attention


def test_head_size_the_kernel_refuses_falls_back_to_plain_ops(tmp_path):
    genome = operator_genome("attention", sharing=False, heads=8, kv_heads=2)  # head size 4
    result, manifest = _check_fused(genome, tmp_path)
    assert manifest["fused_attention_layers"] == []
    assert "multiple of 8" in result.fused_fallbacks[0]
    assert manifest["attention"] == "fused"  # still the fused variant, all layers plain


def test_one_layer_falls_back_while_the_others_fuse(tmp_path, monkeypatch):
    genome = operator_genome("attention", sharing=False)
    genome.backbone = genome.backbone * 2  # slots 0 and 2 are separate attention layers
    genome.validate()
    model = compile_genome(genome, seed=0)
    refused = model.blocks[model.slot_module[2]].op
    original = fused_attention.unsupported_reason
    monkeypatch.setattr(
        fused_attention,
        "unsupported_reason",
        lambda op: "refused by the test" if op is refused else original(op),
    )
    result, manifest = _check_fused(genome, tmp_path, model=model)
    assert manifest["fused_attention_layers"] == [0]
    assert result.fused_fallbacks == {2: "refused by the test"}
    assert _plain_vs_fused(genome, tmp_path) <= TRACE_TOLERANCE


def test_plain_export_keeps_its_files_and_records_model_bytes(tmp_path):
    genome = operator_genome("attention", sharing=False)
    result = export_onnx(genome, tmp_path, exporter="torchscript")
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "decode.onnx",
        "genome.json",
        "manifest.json",
        "prefill.onnx",
        "prefill_last.onnx",
        "weights.data",
    ]
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["attention"] == "plain" and manifest["variant"] == ""
    assert manifest["fused_attention_layers"] == []
    phone_files = GraphManifest.model_validate(manifest).phone_files
    stored = sum((tmp_path / f).stat().st_size for f in phone_files)
    assert manifest["model_bytes"] == stored > 0
    assert result.manifest.model_bytes == manifest["model_bytes"]
    assert not any(n.op_type == "GroupQueryAttention" for n in _nodes(tmp_path / "prefill.onnx"))
    # the fused variant beside it leaves the plain files alone and has the same interface
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.suffix == ".onnx"}
    export_onnx(genome, tmp_path, attention="fused")
    assert {p: (tmp_path / p).read_bytes() for p in before} == before
    fused = json.loads((tmp_path / FUSED.file("manifest")).read_text())
    for kind in ("prefill", "decode"):
        for side in ("inputs", "outputs"):
            assert fused["graphs"][kind][side] == manifest["graphs"][kind][side]
    assert fused["cache_pairs"] == manifest["cache_pairs"]


def test_model_without_attention_exports_fused_with_no_layers(tmp_path):
    genome = operator_genome("hyena_y", sharing=False)
    result = export_onnx(genome, tmp_path, attention="fused")
    assert result.fused_attention_layers == [] and result.fused_fallbacks == {}
    assert result.max_abs_diff <= TRACE_TOLERANCE


def test_fused_refuses_dynamo_and_unknown_attention(tmp_path):
    genome = operator_genome("attention", sharing=False)
    with pytest.raises(ValueError, match="tracer"):
        export_onnx(genome, tmp_path, exporter="dynamo", attention="fused")
    with pytest.raises(ValueError, match="attention must be"):
        export_onnx(genome, tmp_path, attention="flash")


def test_window_semantics_probe_matches_tailor():
    # local_window_size = window in onnxruntime 1.32's CPU kernel (probed, not assumed)
    assert fused_attention._window_offset() == 0
    assert fused_attention._probe(4, 2, 16, 3) is None
    assert fused_attention._probe(4, 2, 16, 3, offset=-1) is not None  # off by one: caught
    assert catalog.REGISTRY["attention"].impl == "workers.liv.attention:Attention"
