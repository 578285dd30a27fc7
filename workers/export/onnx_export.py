"""ONNX export: a prefill graph and a decode-step graph with the cache as explicit tensors.

prefill.onnx: `input_ids` int64 [1, seq] -> `logits` [1, seq, V] and every decode-state
tensor (`present_*`), i.e. the cache after the prompt.
decode.onnx:  `input_ids` int64 [1, 1], `position` int64 [1] (absolute index of the token)
and every state tensor (`past_*`) -> `logits` [1, 1, V] and the next states (`present_*`).
Attention caches have a dynamic "past" axis; conv and recurrent states are fixed-size.
`manifest.json` names all of it (shapes, dtypes, roles, which output feeds which input) so a
phone-side runner needs no Python. Opset 18.

Two exporters, `exporter=`: "torchscript" (torch.onnx's tracer: about 0.2 s for a small model)
and "dynamo" (torch.export: 10-20 s on two cores, but it never bakes a traced shape in).
"auto", the default, traces first and keeps the traced graphs only when onnxruntime matches
torch at two prompt lengths on either side of every window (and the decode steps after them);
otherwise, or when tracing fails, it exports again with dynamo. The manifest records which.

`attention="fused"` exports every attention layer that onnxruntime's fused
`com.microsoft::GroupQueryAttention` operator expresses exactly through it (see
workers/export/fused_attention.py; the others fall back to plain ops, per layer), with the
tracer only, verified against torch like "auto"; its files are named by the variant
(`prefill.float32-fused.onnx`, `decode.float32-fused.onnx`, `manifest.float32-fused.json`),
and its manifest lists the fused layers. Inputs, outputs and cache layout are the plain
graphs'. Every manifest records `model_bytes`, the decode graph's initializer bytes.

The exporter annotates nodes with Python stack traces (absolute paths of this host's source
tree and environment); every enrolled device downloads the graphs, so they are stripped and
state outputs are scheduled after their layers (workers/export/graph_finish.py) before the
files are hashed.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import warnings
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from core import costs
from core.genome import Genome
from core.manifest import GraphManifest, GraphSpec, TensorSpec
from core.precision import Variant
from workers.export.graph_finish import finish_graph
from workers.export.graph_stats import file_sha256, initializer_bytes
from workers.export.verify import worst_difference
from workers.model.compiler import TailorLM, compile_genome

OPSET = 18


class PrefillGraph(nn.Module):
    def __init__(self, model: TailorLM):
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor):
        logits, states = self.model.prefill(input_ids)
        return (logits, *states)


class DecodeGraph(nn.Module):
    def __init__(self, model: TailorLM):
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, position: torch.Tensor, *states: torch.Tensor):
        logits, new_states = self.model.step(input_ids, position, list(states))
        return (logits, *new_states)


@dataclass
class ExportResult:
    out_dir: Path
    manifest: GraphManifest
    max_abs_diff: float  # onnxruntime vs torch, over prefill and decode logits and states
    exporter: str = "dynamo"  # which exporter wrote the graphs
    # attention="fused": backbone slots exported through GroupQueryAttention, and why the
    # other attention slots fell back to plain ops
    fused_attention_layers: list[int] = field(default_factory=list)
    fused_fallbacks: dict[int, str] = field(default_factory=dict)


EXPORTERS = ("auto", "torchscript", "dynamo")
ATTENTION_EXPORTS = ("plain", "fused")
# Worst |onnxruntime - torch| for "auto" to keep a traced export: two runtimes' float32
# kernels, rounding only (measured <= 1.3e-5 over the registry on logits of scale ~4, with
# AVX-512 or generic PyTorch kernels); a wrong trace is off by O(1).
TRACE_TOLERANCE = 1e-4


@contextmanager
def _silenced_fds():
    """Point file descriptors 1 and 2 at /dev/null: the tracer's C++ side prints the whole
    IR graph when a model cannot be traced (then "auto" falls back to dynamo)."""
    sys.stdout.flush(), sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 1), os.dup2(null, 2)
        yield
    finally:
        os.dup2(saved[0], 1), os.dup2(saved[1], 2)
        for fd in (*saved, null):
            os.close(fd)


def _quiet_export(*args, **kwargs):
    """Both exporters print progress and warnings; keep the CLI output clean."""
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    with (
        open(os.devnull, "w") as devnull,
        redirect_stdout(devnull),
        redirect_stderr(devnull),
        warnings.catch_warnings(),
        _silenced_fds(),
    ):
        warnings.simplefilter("ignore")
        return torch.onnx.export(*args, **kwargs)


def _io_names(layout) -> tuple[list[str], list[str]]:
    """(prefill and decode outputs, decode inputs), in the order the manifest lists them."""
    names = [t.name for t in layout]
    return (
        ["logits"] + [f"present_{n}" for n in names],
        ["input_ids", "position"] + [f"past_{n}" for n in names],
    )


def _export_graphs(
    model: TailorLM,
    out: Path,
    exporter: str,
    example_context: int,
    variant: Variant = Variant(),
    plain_ops: bool = False,
) -> None:
    """Write the variant's prefill and decode graphs (prefill.onnx and decode.onnx for the
    plain one) with one exporter, host metadata stripped. A fused variant must be traced
    inside `fused_attention.fused_attention(model)`."""
    prefill_file, decode_file, _ = variant.files
    layout = model.state_layout()
    vocab = model.plan.vocab_size
    dynamo = exporter == "dynamo"
    prefill_out, decode_in = _io_names(layout)
    gen = torch.Generator().manual_seed(0)
    prefill_ids = torch.randint(0, vocab, (1, max(example_context, 4)), generator=gen)
    with torch.no_grad():
        _, past = model.prefill(prefill_ids)
    position = torch.tensor([prefill_ids.shape[1]], dtype=torch.int64)
    decode_ids = torch.randint(0, vocab, (1, 1), generator=gen)
    past_axes = {f"past_{t.name}": t.shape.index("past") for t in layout if "past" in t.shape}
    if dynamo:
        seq = torch.export.Dim("seq", min=2, max=1 << 16)
        prefill_shapes: dict[str, Any] = {"dynamic_shapes": ({1: seq},)}
        past_dims = [
            {past_axes[f"past_{t.name}"]: torch.export.Dim(f"past{i}", min=2, max=1 << 20)}
            if f"past_{t.name}" in past_axes
            else None
            for i, t in enumerate(layout)
        ]
        decode_shapes: dict[str, Any] = {
            "dynamic_shapes": (None, None, tuple(past_dims)) if past_dims else None
        }
    else:
        prefill_shapes = {
            "dynamic_axes": {
                "input_ids": {1: "seq"},
                **{f"present_{n[5:]}": {a: "seq"} for n, a in past_axes.items()},
            }
        }
        decode_shapes = {
            "dynamic_axes": {
                **{n: {a: "past"} for n, a in past_axes.items()},
                **{f"present_{n[5:]}": {a: "past_next"} for n, a in past_axes.items()},
            }
        }
    if variant.attention == "fused" and not plain_ops:
        if dynamo:
            raise ValueError("fused attention exports with the tracer only")
        from workers.export.fused_attention import CUSTOM_OPSETS

        prefill_shapes["custom_opsets"] = decode_shapes["custom_opsets"] = CUSTOM_OPSETS
    _quiet_export(
        PrefillGraph(model),
        (prefill_ids,),
        str(out / prefill_file),
        input_names=["input_ids"],
        output_names=prefill_out,
        opset_version=OPSET,
        dynamo=dynamo,
        **({"external_data": False} if dynamo else {}),
        **prefill_shapes,
    )
    _quiet_export(
        DecodeGraph(model),
        (decode_ids, position, *past),
        str(out / decode_file),
        input_names=decode_in,
        output_names=prefill_out,
        opset_version=OPSET,
        dynamo=dynamo,
        **({"external_data": False} if dynamo else {}),
        **decode_shapes,
    )
    if not dynamo:
        _restore_unused_position(out / decode_file)
    for name in (prefill_file, decode_file):
        finish_graph(out / name)


def _restore_unused_position(path: Path) -> None:
    """The tracer drops graph inputs nothing reads; a model without position-dependent
    layers (no RoPE) does not read `position`, but the manifest promises it. Put it back,
    unused, second as in the manifest (ONNX allows inputs that feed nothing)."""
    import onnx

    model = onnx.load(str(path))
    if any(i.name == "position" for i in model.graph.input):
        return
    position = onnx.helper.make_tensor_value_info("position", onnx.TensorProto.INT64, [1])
    inputs = list(model.graph.input)
    del model.graph.input[:]
    model.graph.input.extend(inputs[:1] + [position] + inputs[1:])
    onnx.save(model, str(path))


def _graph_inputs(path: Path) -> list[str]:
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    initializers = {i.name for i in graph.initializer}
    return [i.name for i in graph.input if i.name not in initializers]


def export_onnx(
    genome: Genome | dict[str, Any],
    out_dir: str | Path,
    model: TailorLM | None = None,
    example_context: int = 16,
    verify: bool = True,
    exporter: str = "auto",
    attention: str = "plain",
) -> ExportResult:
    """Write the graphs and manifest (prefill.onnx, decode.onnx, manifest.json for plain
    attention; core.precision.Variant(attention="fused").files for fused) and genome.json
    into `out_dir`.

    `model` carries trained weights when given (else fresh weights, seed 0). With `verify`,
    both graphs are run in onnxruntime on random inputs and compared with torch ("auto"
    always verifies the traced graphs before keeping them). `attention="fused"` traces the
    attention layers GroupQueryAttention can express through it (exporter "auto" or
    "torchscript"; it is always verified, and a RuntimeError says so if tracing fails or
    onnxruntime differs from torch by more than TRACE_TOLERANCE).
    """
    _check_options(exporter, attention)
    variant = Variant(attention=attention)
    genome = Genome.coerce(genome)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model = (model if model is not None else compile_genome(genome, seed=0)).eval().float()
    fused_layers: list[int] = []
    fallbacks: dict[int, str] = {}
    if attention == "fused":
        used, diff, fused_layers, fallbacks = _export_fused(model, out, example_context, variant)
    else:
        used, diff = _export_plain(model, out, example_context, verify, exporter)
    manifest = _write_manifest(genome, model, out, variant, used, fused_layers)
    (out / "genome.json").write_text(json.dumps(genome.to_json(), indent=2))
    return ExportResult(out, manifest, diff, used, fused_layers, fallbacks)


def _check_options(exporter: str, attention: str) -> None:
    """Refuse an unknown exporter or attention export, and fused attention with dynamo."""
    if exporter not in EXPORTERS:
        raise ValueError(f"exporter must be one of {', '.join(EXPORTERS)}, not {exporter!r}")
    if attention not in ATTENTION_EXPORTS:
        raise ValueError(
            f"attention must be one of {', '.join(ATTENTION_EXPORTS)}, not {attention!r}"
        )
    if attention == "fused" and exporter == "dynamo":
        raise ValueError(
            "attention='fused' exports with the tracer (exporter 'auto' or "
            "'torchscript'); torch.export would need onnxscript custom ops"
        )


def _export_plain(
    model: TailorLM, out: Path, example_context: int, verify: bool, exporter: str
) -> tuple[str, float]:
    """Trace first (fast); "auto" falls back to dynamo if tracing fails or is wrong."""
    if exporter != "dynamo":
        try:
            return "torchscript", _trace_plain(model, out, example_context, verify, exporter)
        except Exception:
            if exporter == "torchscript":
                raise
    _export_graphs(model, out, "dynamo", example_context)
    return "dynamo", worst_difference(model, out) if verify else float("nan")


def _trace_plain(
    model: TailorLM, out: Path, example_context: int, verify: bool, exporter: str
) -> float:
    """Trace; "auto" refuses graphs off by more than TRACE_TOLERANCE (a baked shape)."""
    _export_graphs(model, out, "torchscript", example_context)
    _check_traced_inputs(model, out, Variant(), "the tracer dropped an unused graph input")
    if not (verify or exporter == "auto"):
        return float("nan")
    diff = worst_difference(model, out)
    if exporter == "auto" and not diff <= TRACE_TOLERANCE:
        raise RuntimeError(f"traced graphs differ from torch by {diff:.2e}")
    return diff


def _export_fused(
    model: TailorLM, out: Path, example_context: int, variant: Variant
) -> tuple[str, float, list[int], dict[int, str]]:
    """Trace through GroupQueryAttention where exact; any failure falls back."""
    from workers.export.fused_attention import fused_attention

    fused_layers: list[int] = []
    fallbacks: dict[int, str] = {}
    try:
        with fused_attention(model) as layers:
            fused_layers, fallbacks = layers.fused, layers.fallbacks
            _export_graphs(model, out, "torchscript", example_context, variant)
        _check_traced_inputs(model, out, variant, "the tracer dropped a graph input")
        diff = worst_difference(model, out, variant.tag)
        if not diff <= TRACE_TOLERANCE:
            raise RuntimeError(
                f"onnxruntime differs from torch by {diff:.2e} (> {TRACE_TOLERANCE:g})"
            )
        return "torchscript", diff, fused_layers, fallbacks
    except Exception as exc:
        return _fused_fallback(
            model, out, example_context, variant, exc, list(fallbacks) + fused_layers
        )


def _fused_fallback(
    model: TailorLM,
    out: Path,
    example_context: int,
    variant: Variant,
    exc: Exception,
    layers: list[int],
) -> tuple[str, float, list[int], dict[int, str]]:
    """Plain ops with dynamo under the fused names: a fused job still gets graphs."""
    # The tracer cannot export this model (e.g. a long convolution whose kernel is as long
    # as the sequence) or got it wrong: every attention layer falls back to plain ops; the
    # manifest lists no fused layer.
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
    fallbacks = {i: f"the tracer cannot export this model: {first}" for i in layers} or {-1: first}
    _export_graphs(model, out, "dynamo", example_context, variant, plain_ops=True)
    return "dynamo", worst_difference(model, out, variant.tag), [], fallbacks


def _check_traced_inputs(model: TailorLM, out: Path, variant: Variant, message: str) -> None:
    """The tracer drops inputs nothing reads; the manifest promises them."""
    prefill_file, decode_file, _ = variant.files
    _, expected_decode_inputs = _io_names(model.state_layout())
    if (
        _graph_inputs(out / prefill_file) != ["input_ids"]
        or _graph_inputs(out / decode_file) != expected_decode_inputs
    ):
        raise RuntimeError(message)


def _write_manifest(
    genome: Genome, model: TailorLM, out: Path, variant: Variant, used: str, fused_layers: list[int]
) -> GraphManifest:
    """The manifest lets a phone-side runner feed the graphs without Python."""
    prefill_file, decode_file, manifest_file = variant.files
    layout = model.state_layout()
    vocab = model.plan.vocab_size

    def cache_specs(prefix: str) -> list[TensorSpec]:
        return [
            TensorSpec(
                name=f"{prefix}_{t.name}",
                dtype="float32",
                shape=list(t.shape),
                role="cache",
                past_cap=t.past_cap,
            )
            for t in layout
        ]

    def graph_spec(file: str, inputs: list[TensorSpec], outputs: list[TensorSpec]) -> GraphSpec:
        path = out / file
        return GraphSpec(
            file=file,
            sha256=file_sha256(path),
            size_bytes=path.stat().st_size,
            inputs=inputs,
            outputs=outputs,
        )

    ids = TensorSpec(name="input_ids", dtype="int64", shape=[1, "seq"], role="input_ids")
    position_spec = TensorSpec(name="position", dtype="int64", shape=[1], role="position")
    logits = TensorSpec(name="logits", dtype="float32", shape=[1, "seq", vocab], role="logits")
    per_token, fixed = costs.cache_split(genome)
    manifest = GraphManifest(
        genome_hash=genome.hash(),
        vocab_size=vocab,
        opset=OPSET,
        dtype="float32",
        exporter=used,
        graphs={
            "prefill": graph_spec(prefill_file, [ids], [logits, *cache_specs("present")]),
            "decode": graph_spec(
                decode_file,
                [ids.model_copy(update={"shape": [1, 1]}), position_spec, *cache_specs("past")],
                [logits.model_copy(update={"shape": [1, 1, vocab]}), *cache_specs("present")],
            ),
        },
        cache_pairs={f"past_{t.name}": f"present_{t.name}" for t in layout},
        params=costs.params(genome),
        cache_bytes_per_token=per_token * 4,
        cache_bytes_fixed=fixed * 4,
        variant=variant.tag,
        attention=variant.attention,
        fused_attention_layers=fused_layers,
        model_bytes=initializer_bytes(out / decode_file),
    )
    (out / manifest_file).write_text(manifest.model_dump_json(indent=2))
    return manifest
