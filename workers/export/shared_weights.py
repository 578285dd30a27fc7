"""One copy of the weights for every graph of a variant: a shared external-data file.

The prefill, last-token prefill, chunk and decode graphs are traced (or quantized) separately, so
each carries its own copy of every weight, under names that differ between graphs. A phone
stores what it runs, so `share_weights` moves every large tensor of the graphs into one
file, written once per distinct content (the same bytes, whatever the tensor's name, shape
or graph, are stored once and every graph points at the same offset), and leaves the graphs
as small protobufs that reference it (onnx external data: `location`, `offset`, `length`).
onnxruntime resolves `location` relative to the graph's own path, so the file sits beside
the graphs wherever they go.

Offsets follow onnx's own external-data writer (`onnx.external_data_helper`): tensors of
1 MiB or more start on a 64 KiB boundary (the allocation granularity onnxruntime maps files
with), smaller ones on 64 bytes; tensors under 1 KiB stay inside the graphs, as onnx leaves
them.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from workers.export.graph_stats import file_sha256

MIN_EXTERNAL_BYTES = 1024  # onnx.external_data_helper's size_threshold
LARGE_BYTES = 1 << 20  # onnx's align_threshold
LARGE_ALIGN = 1 << 16  # onnx's allocation_granularity
SMALL_ALIGN = 64


def _tensors(graph):
    """Every initializer of a graph and its subgraphs."""
    yield from graph.initializer
    for node in graph.node:
        for attribute in node.attribute:
            if attribute.HasField("g"):
                yield from _tensors(attribute.g)
            for sub in attribute.graphs:
                yield from _tensors(sub)


def _point(tensor, location: str, offset: int, length: int) -> None:
    """Make `tensor` read its bytes from `location` instead of its own raw_data."""
    import onnx

    tensor.ClearField("raw_data")
    tensor.data_location = onnx.TensorProto.EXTERNAL
    del tensor.external_data[:]
    for key, value in (("location", location), ("offset", str(offset)), ("length", str(length))):
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value


def load_inline(path: Path):
    """The onnx model at `path` with every weight inside it (external data read and the
    references dropped), so that saving it elsewhere writes a self-contained graph and
    never writes into the weights file it came from."""
    import onnx

    model = onnx.load(str(path))
    for tensor in _tensors(model.graph):
        if tensor.data_location == onnx.TensorProto.EXTERNAL and tensor.HasField("raw_data"):
            tensor.data_location = onnx.TensorProto.DEFAULT
            del tensor.external_data[:]
    return model


def share_weights(folder: Path, graph_files: list[str], weights_file: str) -> None:
    """Rewrite the graphs `graph_files` in `folder` to read every tensor of at least
    MIN_EXTERNAL_BYTES from `folder / weights_file`, each distinct content stored once.
    Graphs may already use external data (it is loaded first); the file is replaced."""
    import onnx

    models = [load_inline(folder / name) for name in graph_files]
    stored: dict[bytes, tuple[int, int]] = {}
    partial = folder / f"{weights_file}.partial"
    with open(partial, "wb") as data:
        for model in models:
            for tensor in _tensors(model.graph):
                raw = tensor.raw_data
                if len(raw) < MIN_EXTERNAL_BYTES:  # small ones stay in the graph, as onnx does
                    continue
                key = hashlib.sha256(raw).digest()
                if key not in stored:
                    align = LARGE_ALIGN if len(raw) >= LARGE_BYTES else SMALL_ALIGN
                    data.write(b"\0" * (-data.tell() % align))
                    stored[key] = (data.tell(), len(raw))
                    data.write(raw)
                _point(tensor, weights_file, *stored[key])
    os.replace(partial, folder / weights_file)
    for model, name in zip(models, graph_files):
        onnx.save(model, str(folder / name))


def files_bytes(folder: Path, names: list[str]) -> int:
    """Bytes a phone stores for these files, each distinct file once."""
    return sum((folder / name).stat().st_size for name in dict.fromkeys(names))


def weights_spec(folder: Path, weights_file: str):
    """The manifest's record of the weights file."""
    from core.manifest import WeightsFile

    path = folder / weights_file
    return WeightsFile(file=weights_file, sha256=file_sha256(path), size_bytes=path.stat().st_size)
