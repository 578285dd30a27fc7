"""The graphs written with torch.onnx.export: the prefill, last-token prefill, chunked-prefill
and decode-step wrappers, their example inputs and dynamic axes for either exporter, and the
output silenced.

`workers/export/onnx_export.py` decides which exporter writes them and checks the result;
this module only writes them (and finishes them, `workers/export/graph_finish.py`).
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from pathlib import Path
from typing import Any

import torch
from torch import nn

from core.chunked_prefill import CHUNK_GRAPH
from core.precision import Variant
from workers.export.graph_finish import finish_graph
from workers.model.compiler import TailorLM

OPSET = 18


class PrefillGraph(nn.Module):
    def __init__(self, model: TailorLM):
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor):
        logits, states = self.model.prefill(input_ids)
        return (logits, *states)


class PrefillLastGraph(nn.Module):
    """Prefill returning only the last position's logits (and the whole cache), what a phone
    generating text runs: the LM head reads one row, not L. TailorLM.prefill's loop with
    the head applied to the last hidden state (`workers/model` has no such mode)."""

    def __init__(self, model: TailorLM):
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor):
        h = self.model.embed(input_ids)  # (B, L, D)
        states: list[torch.Tensor] = []
        for block in self.model.executions():
            h, state = block.prefill(h)
            states.extend(state)
        return (self.model._logits(h[:, -1:]), *states)  # (B, 1, V), the cache


class ChunkGraph(nn.Module):
    """A chunk of a prompt after the cache held: the decode graph's inputs with any number
    of tokens, the last position's logits and the cache after the chunk."""

    def __init__(self, model: TailorLM):
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, position: torch.Tensor, *states: torch.Tensor):
        logits, new_states = self.model.chunk(input_ids, position, list(states), last_only=True)
        return (logits, *new_states)


class DecodeGraph(nn.Module):
    def __init__(self, model: TailorLM):
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, position: torch.Tensor, *states: torch.Tensor):
        logits, new_states = self.model.step(input_ids, position, list(states))
        return (logits, *new_states)


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


def cache_pairs(layout) -> dict[str, str]:
    """Which output feeds which input from one step (or chunk) to the next: past_x ->
    present_x (the manifest's `cache_pairs`)."""
    return {f"past_{t.name}": f"present_{t.name}" for t in layout}


def io_names(layout) -> tuple[list[str], list[str]]:
    """(prefill and decode outputs, decode inputs), in the order the manifest lists them."""
    names = [t.name for t in layout]
    return (
        ["logits"] + [f"present_{n}" for n in names],
        ["input_ids", "position"] + [f"past_{n}" for n in names],
    )


CHUNK_EXAMPLE = 5  # tokens of the chunk the chunk graph is traced on, after the prompt


def _example_inputs(
    model: TailorLM, example_context: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[torch.Tensor], torch.Tensor]:
    """(prompt, decode token, its position, the cache after the prompt, a chunk of tokens
    after it): what both exporters run the model on, from a fixed seed so every export
    traces the same inputs."""
    vocab = model.plan.vocab_size
    gen = torch.Generator().manual_seed(0)
    prefill_ids = torch.randint(0, vocab, (1, max(example_context, 4)), generator=gen)
    with torch.no_grad():
        _, past = model.prefill(prefill_ids)
    position = torch.tensor([prefill_ids.shape[1]], dtype=torch.int64)
    decode_ids = torch.randint(0, vocab, (1, 1), generator=gen)
    chunk_ids = torch.randint(0, vocab, (1, CHUNK_EXAMPLE), generator=gen)
    return prefill_ids, decode_ids, position, past, chunk_ids


def _dynamic_shapes(layout, dynamo: bool) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """The prefill, decode and chunk export arguments that keep the prompt, the chunk and
    the attention caches' past axes dynamic, each exporter in its own terms."""
    past_axes = {f"past_{t.name}": t.shape.index("past") for t in layout if "past" in t.shape}
    if dynamo:
        seq = torch.export.Dim("seq", min=2, max=1 << 16)
        past_dims = [
            {past_axes[f"past_{t.name}"]: torch.export.Dim(f"past{i}", min=2, max=1 << 20)}
            if f"past_{t.name}" in past_axes
            else None
            for i, t in enumerate(layout)
        ]
        chunk = torch.export.Dim("chunk", min=2, max=1 << 16)
        return (
            {"dynamic_shapes": ({1: seq},)},
            {"dynamic_shapes": (None, None, tuple(past_dims)) if past_dims else None},
            # a state with no dynamic axis is {} here, not None: given a dynamic first input,
            # torch.onnx turned a tuple of Nones into a list, which torch.export refused for
            # the *states tuple (the decode graph, with nothing dynamic beyond the caches,
            # was not affected). The ranges are torch.export's (min 2: it specialises 0 and
            # 1); onnxruntime does not enforce them, and the graphs are verified at chunks
            # of 1 token and from an empty cache (workers/export/verify.py).
            {"dynamic_shapes": ({1: chunk}, None, tuple(d or {} for d in past_dims))}
            if past_dims
            else {"dynamic_shapes": ({1: chunk}, None)},
        )
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
    chunk_shapes = {"dynamic_axes": {"input_ids": {1: "seq"}, **decode_shapes["dynamic_axes"]}}
    return prefill_shapes, decode_shapes, chunk_shapes


def export_graphs(
    model: TailorLM,
    out: Path,
    exporter: str,
    example_context: int,
    variant: Variant = Variant(),
    plain_ops: bool = False,
    chunk_graph: bool = False,
) -> None:
    """Write the variant's prefill, last-token prefill and decode graphs (prefill.onnx,
    prefill_last.onnx and decode.onnx for the plain one), with `chunk_graph` also the chunk
    graph (prefill_chunk.onnx), with one exporter, host metadata stripped. A fused variant
    must be traced inside `fused_attention.fused_attention(model)`."""
    prefill_file, decode_file, _ = variant.files
    last_file, chunk_file = variant.file("prefill_last"), variant.file(CHUNK_GRAPH)
    layout = model.state_layout()
    dynamo = exporter == "dynamo"
    prefill_out, decode_in = io_names(layout)
    prefill_ids, decode_ids, position, past, chunk_ids = _example_inputs(model, example_context)
    prefill_shapes, decode_shapes, chunk_shapes = _dynamic_shapes(layout, dynamo)
    if variant.attention == "fused" and not plain_ops:
        if dynamo:
            raise ValueError("fused attention exports with the tracer only")
        from workers.export.fused_attention import CUSTOM_OPSETS

        for shapes in (prefill_shapes, decode_shapes, chunk_shapes):
            shapes["custom_opsets"] = CUSTOM_OPSETS
    for wrapper, file in ((PrefillGraph, prefill_file), (PrefillLastGraph, last_file)):
        _quiet_export(
            wrapper(model),
            (prefill_ids,),
            str(out / file),
            input_names=["input_ids"],
            output_names=prefill_out,
            opset_version=OPSET,
            dynamo=dynamo,
            **({"external_data": False} if dynamo else {}),
            **prefill_shapes,
        )
    graphs = [(DecodeGraph, decode_ids, decode_file, decode_shapes)]
    if chunk_graph:
        graphs.append((ChunkGraph, chunk_ids, chunk_file, chunk_shapes))
    else:  # a chunk graph left in the folder by an earlier export is not this one's
        (out / chunk_file).unlink(missing_ok=True)
    for wrapper, ids, file, shapes in graphs:
        _quiet_export(
            wrapper(model),
            (ids, position, *past),
            str(out / file),
            input_names=decode_in,
            output_names=prefill_out,
            opset_version=OPSET,
            dynamo=dynamo,
            **({"external_data": False} if dynamo else {}),
            **shapes,
        )
        if not dynamo:
            _restore_unused_position(out / file)
    for file in (prefill_file, last_file, *(graph[2] for graph in graphs)):
        finish_graph(out / file)


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


def graph_inputs(path: Path) -> list[str]:
    """The inputs a graph file takes (its initializers aside), to check the tracer's."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    initializers = {i.name for i in graph.initializer}
    return [i.name for i in graph.input if i.name not in initializers]
