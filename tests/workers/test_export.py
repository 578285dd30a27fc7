"""ONNX export of every operator and every preset: onnxruntime matches torch, manifests are
complete enough to feed the graphs without Python."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from core import PRESETS, Genome, catalog, costs, preset
from core.chunked_prefill import CHUNK_GRAPH, empty_cache
from core.manifest import GraphManifest
from workers.export.onnx_export import OPSET, export_onnx

from .helpers import operator_genome

# onnxruntime vs torch on the same float32 weights: two runtimes' kernels, rounding only.
# Worst measured over the registry: 1.3e-5 (AVX-512 torch) / 1.0e-5 (generic torch kernels,
# tests/workers/test_generic_kernels.py) on logits of scale ~4: >= 7x room. The exporter keeps
# a traced graph under the same bound (onnx_export.TRACE_TOLERANCE).
TOL = 1e-4


@pytest.mark.parametrize("op", sorted(catalog.REGISTRY))
def test_every_operator_exports_and_matches_torch(op, tmp_path):
    genome = operator_genome(op, repeat=2).to_json()
    # with the chunk graph: verified too (chunks of 1, 3 and 7 tokens, 3 then the rest)
    result = export_onnx(genome, tmp_path, chunk_graph=True)
    assert result.max_abs_diff <= TOL
    manifest = GraphManifest.model_validate_json((tmp_path / "manifest.json").read_text())
    assert manifest.exporter == result.exporter
    assert list(manifest.graphs) == ["prefill", "prefill_last", "prefill_chunk", "decode"]
    for name in ("prefill.onnx", "decode.onnx", "prefill_chunk.onnx"):
        model = onnx.load(tmp_path / name)
        onnx.checker.check_model(model)
        assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) >= OPSET
    for kind in ("prefill", CHUNK_GRAPH):
        assert_states_computed_before_the_logits(tmp_path, manifest, kind=kind)


def test_windowed_attention_export_runs_past_the_window(tmp_path):
    genome = operator_genome("attention", window=4).to_json()
    # verify feeds 11 + 5 tokens, and the chunk graph 3 tokens then 8 (twice the window)
    assert export_onnx(genome, tmp_path, chunk_graph=True).max_abs_diff <= TOL


def test_a_gqa_decode_step_is_the_same_graph_as_one_with_a_kv_head_per_query_head(tmp_path):
    """Grouped query attention's decode step attends with its KV heads grouped
    (`Attention._attend_one`), so its graph differs from multi-head attention's only in the
    K/V weights' shapes: no Expand, no shape computation over the cache length. Expanded, a
    GQA layer's step carried ~60 more nodes and a width-512 GQA Transformer's int8 decode
    step took 1.4x the time it takes grouped (bench/README, latency model's seventh run)."""
    graphs = {}
    for kv_heads in (1, 2):
        genome = operator_genome("attention", heads=2, kv_heads=kv_heads).to_json()
        assert export_onnx(genome, tmp_path / str(kv_heads)).max_abs_diff <= TOL
        graphs[kv_heads] = onnx.load(tmp_path / str(kv_heads) / "decode.onnx")
    ops = {k: sorted(n.op_type for n in g.graph.node) for k, g in graphs.items()}
    assert "Expand" not in ops[1]
    assert ops[1] == ops[2]


@pytest.mark.parametrize("window", [0, 4])
def test_gqa_prefill_and_chunk_graphs_keep_the_kv_heads_grouped(tmp_path, window):
    """Exported prefill and chunk graphs of grouped-query attention attend with the KV heads
    grouped (`Attention._attend`: the query heads of a group on a fifth axis the keys
    broadcast over), so no Expand of K and V and its shape computation over the key length
    (a GQA layer's prefill ran 56 nodes more than a multi-head one's, now 16); torch and
    onnxruntime still agree on prompts either side of the window and on chunks after a
    cache (export_onnx's checks)."""
    genome = operator_genome("attention", heads=2, kv_heads=1, window=window).to_json()
    assert export_onnx(genome, tmp_path, chunk_graph=True).max_abs_diff <= TOL
    for graph in ("prefill", "prefill_last", CHUNK_GRAPH):
        ops = [n.op_type for n in onnx.load(tmp_path / f"{graph}.onnx").graph.node]
        assert "Expand" not in ops, graph


@pytest.mark.parametrize("name", list(PRESETS))
def test_presets_export_at_small_size(name, tmp_path):
    size = dict(width=32, heads=2, kv_heads=1, ffn=64, vocab=97)
    if name != "lfm2":
        size["layers"] = 3
    genome = preset(name, **size).to_json()
    result = export_onnx(genome, tmp_path)
    assert result.max_abs_diff <= TOL


def test_manifest_describes_graphs_exactly(tmp_path):
    genome = preset(
        "hyena-edge", width=32, heads=2, kv_heads=1, ffn=64, vocab=97, layers=3
    ).to_json()
    export_onnx(genome, tmp_path)
    manifest = GraphManifest.model_validate_json((tmp_path / "manifest.json").read_text())
    assert json.loads((tmp_path / "genome.json").read_text()) == genome
    assert manifest.params == costs.params(genome)
    assert manifest.genome_hash == Genome.from_json(genome).hash()
    for kind, spec in manifest.graphs.items():
        session = ort.InferenceSession(
            str(tmp_path / spec.file), providers=["CPUExecutionProvider"]
        )
        assert [i.name for i in session.get_inputs()] == [t.name for t in spec.inputs]
        assert [o.name for o in session.get_outputs()] == [t.name for t in spec.outputs]
    # Feed the decode graph from the manifest alone, at a context of 40 tokens.
    decode = manifest.graphs["decode"]
    session = ort.InferenceSession(str(tmp_path / decode.file), providers=["CPUExecutionProvider"])
    feed = {}
    for t in decode.inputs:
        shape = [40 if d == "past" else (1 if d == "seq" else d) for d in t.shape]
        if t.role == "input_ids":
            feed[t.name] = np.array([[5]], dtype=np.int64)
        elif t.role == "position":
            feed[t.name] = np.array([40], dtype=np.int64)
        else:
            feed[t.name] = np.zeros(shape, dtype=np.float32)
    outputs = dict(zip([o.name for o in decode.outputs], session.run(None, feed)))
    assert outputs["logits"].shape == (1, 1, 97)
    # profiling times the last-token prefill graph: the same input and cache, one row of
    # logits (the full-logit graph stays for perplexity)
    assert manifest.profiled_prefill == "prefill_last"
    assert manifest.profiled("prefill").outputs[0].shape == [1, 1, 97]
    assert manifest.graphs["prefill_last"].outputs[1:] == manifest.graphs["prefill"].outputs[1:]
    per_token_bytes = manifest.cache_bytes_per_token
    held = sum(
        outputs[manifest.cache_pairs[t.name]].nbytes for t in decode.inputs if t.role == "cache"
    )
    assert held == per_token_bytes * 41 + manifest.cache_bytes_fixed
    assert held == costs.cache_bytes(genome, 41, "float32")


def test_graphs_name_no_host_path_and_still_match_torch(tmp_path):
    """Every device downloads the graphs: the exporter's stack traces (this host's source
    and environment paths) are stripped before hashing, and the graphs still compute."""
    import sys
    from pathlib import Path

    from workers.export.graph_finish import STACK_TRACE_KEY
    from workers.export.graph_stats import file_sha256

    genome = preset(
        "hyena-edge", width=32, heads=2, kv_heads=1, ffn=64, vocab=97, layers=2
    ).to_json()
    result = export_onnx(genome, tmp_path)
    assert result.max_abs_diff <= TOL
    repo = str(Path(__file__).resolve().parents[2])
    for spec in result.manifest.graphs.values():
        data = (tmp_path / spec.file).read_bytes()
        for path in {repo, sys.prefix, str(Path.home())} - {"/"}:
            assert path.encode() not in data, (spec.file, path)
        assert STACK_TRACE_KEY.encode() not in data and b'File "' not in data
        assert file_sha256(tmp_path / spec.file) == spec.sha256  # hashed after stripping


def test_auto_traces_when_exact_and_falls_back_to_dynamo_quietly(tmp_path, capfd):
    """ "auto" keeps the fast traced export when it matches torch (here a model whose decode
    graph does not read `position`: the input is put back), and exports with dynamo when
    the tracer cannot express an operator (a long convolution whose kernel is as long as the
    sequence), printing nothing either way."""
    traced = export_onnx(operator_genome("gla", repeat=2).to_json(), tmp_path / "gla")
    assert traced.exporter == "torchscript" and traced.max_abs_diff <= TOL
    names = [
        i.name
        for i in ort.InferenceSession(
            str(tmp_path / "gla" / "decode.onnx"), providers=["CPUExecutionProvider"]
        ).get_inputs()
    ]
    assert names[:2] == ["input_ids", "position"]
    fallback = export_onnx(operator_genome("hyena_modal", repeat=1).to_json(), tmp_path / "m")
    assert fallback.exporter == "dynamo" and fallback.max_abs_diff <= TOL
    out, err = capfd.readouterr()
    assert "Torch IR graph" not in out + err and "Traceback" not in out + err
    with pytest.raises(ValueError, match="exporter must be one of"):
        export_onnx(operator_genome("gla").to_json(), tmp_path / "x", exporter="tvm")


def test_forced_exporters_agree_on_the_graph_interface(tmp_path):
    genome = preset(
        "transformer++", width=32, heads=2, kv_heads=1, ffn=64, vocab=97, layers=2
    ).to_json()
    specs = {}
    for exporter in ("torchscript", "dynamo"):
        result = export_onnx(genome, tmp_path / exporter, exporter=exporter, chunk_graph=True)
        assert result.exporter == exporter and result.max_abs_diff <= TOL
        specs[exporter] = {k: (g.inputs, g.outputs) for k, g in result.manifest.graphs.items()}
    assert specs["torchscript"] == specs["dynamo"]


def assert_states_computed_before_the_logits(
    folder, manifest: GraphManifest, known_late: tuple[str, ...] = (), kind: str = "prefill"
) -> None:
    """ONNX Runtime runs a state-only branch (a conv's last steps) where it sits in the file's
    leaf order; traced in place it ran after the logits, keeping every layer's full-length
    conv input alive through the peak. After export, each state output of graph `kind`
    (prefill, or the chunk graph: a chunk of 8 tokens after an empty cache) is computed
    before the logits' producer in the order onnxruntime really executes (its profile)."""
    graph = manifest.graphs[kind]
    options = ort.SessionOptions()
    options.enable_profiling = True
    options.profile_file_prefix = str(folder / f"profile_{kind}")
    options.optimized_model_filepath = str(folder / f"optimized_{kind}.onnx")
    session = ort.InferenceSession(
        str(folder / graph.file), options, providers=["CPUExecutionProvider"]
    )
    feeds = {"input_ids": np.zeros((1, 64), dtype=np.int64)}
    if kind == CHUNK_GRAPH:
        feeds = {
            "input_ids": np.zeros((1, 8), dtype=np.int64),
            "position": np.zeros(1, dtype=np.int64),
            **empty_cache(manifest.model_dump(mode="json")["graphs"][kind]),
        }
    session.run(None, feeds)
    events = json.loads(open(session.end_profiling()).read())
    ran = [
        e["name"][: -len("_kernel_time")]
        for e in events
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time")
    ]
    optimized = onnx.load(str(folder / f"optimized_{kind}.onnx"), load_external_data=False)
    producer = {out: n.name for n in optimized.graph.node for out in n.output}
    position = {name: i for i, name in enumerate(ran)}
    logits_at = position[producer["logits"]]
    states = [o.name for o in graph.outputs if o.role != "logits"]
    late = [
        s
        for s in states
        if s in producer and position[producer[s]] > logits_at and not s.endswith(known_late)
    ]
    assert not late, f"computed after the logits: {late}"


def test_a_larger_model_may_differ_by_its_own_rounding_and_no_more():
    """`trace_tolerance` widens TRACE_TOLERANCE only as far as the model's own float32
    rounding (against float64) times ROUNDING_FACTOR: a width-256, 12-layer model rounds
    more than a 2-layer one and gets more, yet stays far below the O(1) error of a wrong
    trace (which `test_auto_traces_when_exact_and_falls_back_to_dynamo_quietly` sees
    refused)."""
    import random

    from core import SearchSpace
    from core.variation import sample
    from workers.export.onnx_export import ROUNDING_FACTOR, TRACE_TOLERANCE, trace_tolerance
    from workers.export.verify import float32_rounding
    from workers.model.compiler import compile_genome

    def model(depth: int):
        space = SearchSpace(widths=[256], depth_min=depth, depth_max=depth, vocab_size=4096)
        return compile_genome(sample(space, random.Random(5)), seed=0).eval()

    shallow, deep = model(2), model(12)
    assert float32_rounding(deep) > float32_rounding(shallow) > 0
    for m in (shallow, deep):
        assert trace_tolerance(m) == max(TRACE_TOLERANCE, ROUNDING_FACTOR * float32_rounding(m))
    assert trace_tolerance(deep) < 0.05  # a wrong trace: O(1) off
